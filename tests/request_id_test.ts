/**
 * Every response carries the exchange's `X-Request-Id`, the same id as its log line's
 * `request_id` (docs/contract.md §5, §7): the gate's own answers (400, 401, 403, 429, 502, 504,
 * 503, health, metadata, preflight) and proxied ones. A well-formed inbound id is kept; anything
 * else is replaced. Gateway failures (502/504) are logged at warn with their cause.
 */
import assert from "node:assert/strict";
import { never } from "./helpers/upstream.ts";
import { startGate, type TestGate } from "./helpers/gate.ts";
import { rawRequest } from "./helpers/raw_http.ts";
import { startRig } from "./helpers/rig.ts";
import { startTestIssuer } from "./helpers/issuer.ts";
import { closedPort } from "./helpers/net.ts";

const RESOURCE = "https://mcp.example.com/mcp";
let seq = 0;

/**
 * Sends one request marked with a unique User-Agent, and returns its status, the response's
 * X-Request-Id and the log line's request_id.
 */
async function exchange(
  gate: TestGate,
  path: string,
  init: { method?: string; headers?: Record<string, string>; raw?: boolean } = {},
): Promise<
  { status: number; header: string | null; logged: unknown; line: Record<string, unknown> }
> {
  const ua = `request-id-test/${++seq}`;
  const headers = { ...init.headers, "user-agent": ua };
  let status: number;
  let header: string | null;
  if (init.raw) {
    const res = await rawRequest(gate.port, {
      method: init.method ?? "GET",
      path,
      headers: Object.entries(headers),
    });
    status = res.status;
    header = res.headers.get("x-request-id");
  } else {
    const res = await fetch(`${gate.origin}${path}`, { method: init.method, headers });
    await res.body?.cancel();
    status = res.status;
    header = res.headers.get("x-request-id");
  }
  const line = await gate.waitForLog((l) => l.msg === "request" && l.user_agent === ua);
  return { status, header, logged: line.request_id, line };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

Deno.test("every response of the gate carries its log line's X-Request-Id", async (t) => {
  await using r = await startRig({
    handler: (req, rec, up) =>
      new URL(req.url).pathname === "/mcp/slow" ? never()(req, rec, up) : new Response("ok"),
    env: { ALLOWED_ORIGINS: "https://app.example.com", UPSTREAM_TIMEOUT: "300ms" },
  });
  const token = await r.issuer.mint({ sub: "alice", scope: "mcp:tools" });
  const bearer = { authorization: `Bearer ${token}` };
  const rows: [string, number, string, Parameters<typeof exchange>[2]][] = [
    ["proxied 200", 200, "/mcp", { headers: bearer }],
    ["401 without a token", 401, "/mcp", {}],
    ["401 with a bad token", 401, "/mcp", { headers: { authorization: "Bearer x.y.z" } }],
    ["403 for an unlisted Origin", 403, "/mcp", { headers: { origin: "https://evil.example" } }],
    ["400 for an invalid request target", 400, "/mcp/%zz", { raw: true }],
    ["504 when the upstream sends no headers in time", 504, "/mcp/slow", { headers: bearer }],
    ["200 /livez", 200, "/livez", {}],
    ["200 /readyz", 200, "/readyz", {}],
    ["200 metadata", 200, "/.well-known/oauth-protected-resource/mcp", {}],
    ["204 preflight", 204, "/mcp", {
      method: "OPTIONS",
      headers: { origin: "https://app.example.com", "access-control-request-method": "POST" },
    }],
  ];
  for (const [name, want, path, init] of rows) {
    await t.step(name, async () => {
      const { status, header, logged } = await exchange(r.gate, path, init);
      assert.equal(status, want);
      assert.match(String(header), UUID);
      assert.equal(header, logged);
    });
  }
  await t.step("a well-formed inbound X-Request-Id is kept, and sent upstream", async () => {
    const { status, header, logged } = await exchange(r.gate, "/mcp", {
      headers: { ...bearer, "x-request-id": "trace-42.a:b" },
    });
    assert.equal(status, 200);
    assert.equal(header, "trace-42.a:b");
    assert.equal(logged, "trace-42.a:b");
    assert.equal(r.upstream.requests.at(-1)?.header("x-request-id"), "trace-42.a:b");
  });
  await t.step(
    "a malformed inbound X-Request-Id is replaced, also on the gate's own answers",
    async () => {
      const { status, header, logged } = await exchange(r.gate, "/mcp", {
        headers: { "x-request-id": "has space" },
      });
      assert.equal(status, 401);
      assert.match(String(header), UUID);
      assert.equal(header, logged);
    },
  );
});

Deno.test("502, 429 and 503 carry the X-Request-Id; a 502 is logged at warn with its cause", async (t) => {
  await using issuer = await startTestIssuer({ audience: RESOURCE });
  const env = {
    UPSTREAM_URL: `http://127.0.0.1:${closedPort()}`,
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: issuer.issuer,
    RATE_LIMIT_RPS: "1",
    RATE_LIMIT_BURST: "1",
    LOG_LEVEL: "info",
  };
  await t.step("503 while no key set is loaded", async () => {
    issuer.jwksMode("503");
    await using gate = await startGate(env);
    const { status, header, logged } = await exchange(gate, "/mcp", {});
    assert.equal(status, 503);
    assert.match(String(header), UUID);
    assert.equal(header, logged);
    issuer.jwksMode("keys");
  });
  await using gate = await startGate(env);
  await gate.waitForLog((l) => l.msg === "key set loaded", 10_000);
  const token = await issuer.mint({ sub: "bob" });
  await t.step("502: connection refused, at warn with the cause", async () => {
    const { status, header, logged, line } = await exchange(gate, "/mcp", {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(status, 502);
    assert.match(String(header), UUID);
    assert.equal(header, logged);
    assert.equal(line.level, "warn");
    assert.equal(line.reason, "upstream_unreachable");
    assert.match(String(line.detail), /connection refused/i);
  });
  await t.step("429: the subject's bucket is empty", async () => {
    const { status, header, logged } = await exchange(gate, "/mcp", {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(status, 429);
    assert.match(String(header), UUID);
    assert.equal(header, logged);
  });
});

Deno.test("a proxied response's X-Request-Id is the gate's, whatever the upstream sent", async () => {
  await using r = await startRig({
    handler: () => new Response("ok", { headers: { "x-request-id": "upstream-made-this" } }),
  });
  const token = await r.issuer.mint({ scope: "mcp:tools" });
  const { status, header, logged } = await exchange(r.gate, "/mcp", {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(status, 200);
  assert.equal(header, logged);
});
