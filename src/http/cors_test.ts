import assert from "node:assert/strict";
import fc from "fast-check";
import {
  CORS_ALLOW_HEADERS,
  CORS_ALLOW_METHODS,
  CORS_EXPOSE_HEADERS,
  createCors,
  normalizeOrigin,
} from "./cors.ts";
import { testConfig } from "../../tests/helpers/config.ts";

/** The CORS policy for these ALLOWED_ORIGINS. */
function corsFor(allowedOrigins: string[]) {
  return createCors(testConfig({ allowedOrigins }));
}

const APP = "https://app.example.com";
const LISTED = [APP, "http://localhost:6274"];

function preflightRequest(origin: string | null, requestHeaders?: string): Request {
  const headers = new Headers({ "access-control-request-method": "POST" });
  if (origin !== null) headers.set("origin", origin);
  if (requestHeaders !== undefined) headers.set("access-control-request-headers", requestHeaders);
  return new Request("https://mcp.example.com/mcp", { method: "OPTIONS", headers });
}

Deno.test("originAllowed() follows ALLOWED_ORIGINS", async (t) => {
  const cases: [string, string[], string | null, boolean][] = [
    ["no Origin, list set", LISTED, null, true],
    ["listed origin", LISTED, APP, true],
    ["second listed origin", LISTED, "http://localhost:6274", true],
    ["upper-case scheme and host", LISTED, "HTTPS://APP.EXAMPLE.COM", true],
    ["unlisted origin", LISTED, "https://evil.example", false],
    ["other scheme", LISTED, "http://app.example.com", false],
    ["other port", LISTED, "https://app.example.com:8443", false],
    ["suffix of a listed host", LISTED, "https://app.example.com.evil.example", false],
    ["subdomain of a listed host", LISTED, "https://x.app.example.com", false],
    ["listed origin plus a path", LISTED, `${APP}/`, false],
    ["null origin", LISTED, "null", false],
    ["empty origin", LISTED, "", false],
    ["list empty: any origin", [], "https://evil.example", true],
    ["list empty: null origin", [], "null", true],
    ["wildcard: any origin", ["*"], "https://evil.example", true],
    ["wildcard: null origin", ["*"], "null", true],
    [
      "configured with trailing slash and default port",
      ["https://App.Example.com:443/"],
      APP,
      true,
    ],
  ];
  for (const [name, list, origin, want] of cases) {
    await t.step(
      name,
      () => assert.equal(corsFor(list).originAllowed(origin), want),
    );
  }
});

Deno.test("originAllowed() refuses every origin not in the list", () => {
  const cors = corsFor(LISTED);
  const listed = new Set(LISTED);
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.webUrl().map((u) => new URL(u).origin)), (origin) => {
      assert.equal(cors.originAllowed(origin), listed.has(origin.toLowerCase()));
    }),
  );
});

Deno.test("normalizeOrigin() canonicalises configured origins", async (t) => {
  const cases: [string, string][] = [
    ["https://App.Example.com", APP],
    ["https://app.example.com/", APP],
    ["https://app.example.com:443", APP],
    ["http://localhost:6274", "http://localhost:6274"],
    ["null", "null"],
    ["NULL", "null"],
  ];
  for (const [input, want] of cases) {
    await t.step(input, () => assert.equal(normalizeOrigin(input), want));
  }
});

Deno.test("isPreflight() needs OPTIONS and Access-Control-Request-Method", async (t) => {
  const cors = corsFor(LISTED);
  const cases: [string, Request, boolean][] = [
    ["preflight", preflightRequest(APP), true],
    ["preflight without Origin", preflightRequest(null), true],
    ["plain OPTIONS", new Request("https://h/mcp", { method: "OPTIONS" }), false],
    [
      "POST with the header",
      new Request("https://h/mcp", {
        method: "POST",
        headers: { "access-control-request-method": "POST" },
      }),
      false,
    ],
  ];
  for (const [name, req, want] of cases) {
    await t.step(name, () => assert.equal(cors.isPreflight(req), want));
  }
});

Deno.test("preflight() answers an allowed origin with the full CORS set", () => {
  const res = corsFor(LISTED).preflight(preflightRequest(APP));
  assert.equal(res.status, 204);
  assert.equal(res.body, null);
  assert.deepEqual(Object.fromEntries(res.headers), {
    "access-control-allow-headers": CORS_ALLOW_HEADERS,
    "access-control-allow-methods": CORS_ALLOW_METHODS,
    "access-control-allow-origin": APP,
    "access-control-max-age": "600",
    "cache-control": "no-store",
    vary: "Origin",
    "x-content-type-options": "nosniff",
  });
  assert.equal(
    CORS_ALLOW_HEADERS,
    "Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID, " +
      "Mcp-Method, Mcp-Name",
  );
  assert.equal(CORS_ALLOW_METHODS, "GET, POST, DELETE, HEAD, OPTIONS");
});

Deno.test("preflight() answers * when ALLOWED_ORIGINS is *", () => {
  const res = corsFor(["*"]).preflight(preflightRequest("https://any.example"));
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.equal(res.headers.get("access-control-allow-methods"), CORS_ALLOW_METHODS);
});

/** Requests that get no CORS headers: [name, ALLOWED_ORIGINS, Origin]. */
const NOT_ALLOWED: [string, string[], string | null][] = [
  ["no Origin", LISTED, null],
  ["ALLOWED_ORIGINS empty", [], APP],
  ["unlisted origin", LISTED, "https://evil.example"],
];

Deno.test("preflight() sends no CORS headers unless the origin is present and listed", async (t) => {
  for (const [name, list, origin] of NOT_ALLOWED) {
    await t.step(name, () => {
      const res = corsFor(list).preflight(preflightRequest(origin));
      assert.equal(res.status, 204);
      for (const [key] of res.headers) assert.ok(!key.startsWith("access-control-"), key);
      assert.equal(res.headers.get("cache-control"), "no-store");
    });
  }
});

Deno.test("preflight() echoes requested Mcp-Param-* headers and nothing else", async (t) => {
  const cors = corsFor(LISTED);
  const cases: [string, string, string][] = [
    ["listed headers only", "authorization, content-type", ""],
    ["one Mcp-Param header", "authorization, mcp-param-city", ", mcp-param-city"],
    ["mixed case", "Mcp-Param-City, MCP-PARAM-zip", ", mcp-param-city, mcp-param-zip"],
    ["duplicates", "mcp-param-a, mcp-param-a", ", mcp-param-a"],
    ["other unknown header", "x-secret, mcp-param-a", ", mcp-param-a"],
    ["bare prefix", "mcp-param-", ""],
    ["illegal characters", "mcp-param-a b, mcp-param-(x)", ""],
  ];
  for (const [name, requested, suffix] of cases) {
    await t.step(name, () => {
      const res = cors.preflight(preflightRequest(APP, requested));
      assert.equal(res.headers.get("access-control-allow-headers"), CORS_ALLOW_HEADERS + suffix);
    });
  }
});

Deno.test("preflight() echoes at most 32 Mcp-Param-* headers", () => {
  const requested = Array.from({ length: 100 }, (_, i) => `mcp-param-p${i}`).join(", ");
  const res = corsFor(LISTED).preflight(preflightRequest(APP, requested));
  const names = res.headers.get("access-control-allow-headers")!.split(", ");
  assert.equal(names.filter((n) => n.startsWith("mcp-param-")).length, 32);
});

Deno.test("preflight() never allows credentials", () => {
  for (const list of [LISTED, ["*"], []]) {
    const res = corsFor(list).preflight(preflightRequest(APP));
    assert.equal(res.headers.get("access-control-allow-credentials"), null);
  }
});

Deno.test("decorate() adds CORS headers for a present, allowed origin", () => {
  const headers = new Headers({ "content-type": "application/json" });
  corsFor(LISTED).decorate(headers, APP);
  assert.deepEqual(Object.fromEntries(headers), {
    "access-control-allow-origin": APP,
    "access-control-expose-headers": CORS_EXPOSE_HEADERS,
    "content-type": "application/json",
    vary: "Origin",
  });
  assert.equal(CORS_EXPOSE_HEADERS, "WWW-Authenticate, Mcp-Session-Id");
});

Deno.test("decorate() leaves headers alone otherwise", async (t) => {
  for (const [name, list, origin] of NOT_ALLOWED) {
    await t.step(name, () => {
      const headers = new Headers({
        "content-type": "text/plain",
        "access-control-allow-origin": "https://upstream.example",
      });
      corsFor(list).decorate(headers, origin);
      assert.deepEqual(Object.fromEntries(headers), {
        "access-control-allow-origin": "https://upstream.example",
        "content-type": "text/plain",
      });
    });
  }
});

Deno.test("decorate() overrides the upstream's CORS and drops Allow-Credentials", () => {
  const headers = new Headers({
    "access-control-allow-origin": "*",
    "access-control-allow-credentials": "true",
    "access-control-expose-headers": "X-Other",
    vary: "Accept-Encoding",
  });
  corsFor(LISTED).decorate(headers, APP);
  assert.equal(headers.get("access-control-allow-origin"), APP);
  assert.equal(headers.get("access-control-allow-credentials"), null);
  assert.equal(headers.get("access-control-expose-headers"), CORS_EXPOSE_HEADERS);
  assert.equal(headers.get("vary"), "Accept-Encoding, Origin");
});

Deno.test("decorate() does not repeat Origin in Vary", async (t) => {
  for (const vary of ["Origin", "origin", "Accept, Origin", "*"]) {
    await t.step(vary, () => {
      const headers = new Headers({ vary });
      corsFor(LISTED).decorate(headers, APP);
      assert.equal(headers.get("vary"), vary);
    });
  }
});

Deno.test("decorate() sends * when ALLOWED_ORIGINS is *", () => {
  const headers = new Headers();
  corsFor(["*"]).decorate(headers, "https://any.example");
  assert.equal(headers.get("access-control-allow-origin"), "*");
  assert.equal(headers.get("access-control-expose-headers"), CORS_EXPOSE_HEADERS);
});
