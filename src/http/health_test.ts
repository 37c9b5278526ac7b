import assert from "node:assert/strict";
import { HEALTH_PATHS, healthResponse, internalErrorResponse } from "./health.ts";

const JSON_HEADERS = {
  "cache-control": "no-store",
  "content-type": "application/json",
  "x-content-type-options": "nosniff",
};

function headersOf(res: Response): Record<string, string> {
  return Object.fromEntries(res.headers);
}

Deno.test("healthResponse() answers GET on each health path by readiness", async (t) => {
  const cases: [string, boolean, number, string][] = [
    ["/livez", false, 200, '{"status":"ok"}'],
    ["/livez", true, 200, '{"status":"ok"}'],
    ["/readyz", false, 503, '{"status":"unavailable"}'],
    ["/readyz", true, 200, '{"status":"ok"}'],
    ["/healthz", false, 503, '{"status":"unavailable"}'],
    ["/healthz", true, 200, '{"status":"ok"}'],
  ];
  for (const [path, ready, status, body] of cases) {
    await t.step(`${path} when ${ready ? "ready" : "not ready"}: ${status}`, async () => {
      const res = healthResponse("GET", path, ready)!;
      assert.equal(res.status, status);
      assert.deepEqual(headersOf(res), JSON_HEADERS);
      assert.equal(await res.text(), body);
    });
  }
});

Deno.test("healthResponse() answers HEAD with the GET status and headers and no body", () => {
  for (const path of HEALTH_PATHS) {
    for (const ready of [false, true]) {
      const head = healthResponse("HEAD", path, ready)!;
      const get = healthResponse("GET", path, ready)!;
      assert.equal(head.status, get.status);
      assert.deepEqual(headersOf(head), headersOf(get));
      assert.equal(head.body, null);
      void get.body?.cancel();
    }
  }
});

Deno.test("healthResponse() answers other methods with 405 and Allow: GET, HEAD", async (t) => {
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"]) {
    await t.step(method, async () => {
      const res = healthResponse(method, "/readyz", true)!;
      assert.equal(res.status, 405);
      assert.deepEqual(headersOf(res), { ...JSON_HEADERS, allow: "GET, HEAD" });
      assert.equal(await res.text(), '{"error":"method_not_allowed"}');
    });
  }
});

Deno.test("healthResponse() leaves every other path to the caller", async (t) => {
  for (const path of ["/", "/mcp", "/livez/", "/LIVEZ", "/metrics", "/readyz/x", "/healthz;x"]) {
    await t.step(path, () => {
      assert.equal(healthResponse("GET", path, true), undefined);
      assert.equal(healthResponse("POST", path, true), undefined);
    });
  }
});

Deno.test("internalErrorResponse() is a 500 with a fixed JSON body that nobody caches", async () => {
  const res = internalErrorResponse();
  assert.equal(res.status, 500);
  assert.deepEqual(headersOf(res), JSON_HEADERS);
  assert.equal(await res.text(), '{"error":"internal_error"}');
});

Deno.test("healthResponse() adds details to /readyz and /healthz but not /livez, without changing the status", async (t) => {
  const details = () => ({ introspection: "failing" });
  const cases: [string, boolean, number, string][] = [
    ["/readyz", true, 200, '{"status":"ok","introspection":"failing"}'],
    ["/readyz", false, 503, '{"status":"unavailable","introspection":"failing"}'],
    ["/healthz", true, 200, '{"status":"ok","introspection":"failing"}'],
    ["/livez", true, 200, '{"status":"ok"}'],
  ];
  for (const [path, ready, status, body] of cases) {
    await t.step(`${path} ${ready ? "ready" : "not ready"}`, async () => {
      const res = healthResponse("GET", path, ready, details)!;
      assert.equal(res.status, status);
      assert.equal(await res.text(), body);
    });
  }
});
