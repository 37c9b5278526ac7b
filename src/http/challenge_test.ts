import assert from "node:assert/strict";
import fc from "fast-check";
import type { Config } from "../config/mod.ts";
import { GateError, type GateErrorCode, type RejectReason } from "../errors.ts";
import {
  chargeOf,
  createResponder,
  ERROR_RULES,
  loggedStatusOf,
  outcomeOf,
  upstreamErrorOf,
} from "./challenge.ts";
import { testConfig } from "../../tests/helpers/config.ts";

/** The test config with scopes: the challenge's `scope` attribute reports them. */
function scopedConfig(overrides: Partial<Config> = {}): Config {
  return testConfig({
    requiredScopes: ["mcp:read", "mcp:write"],
    scopesSupported: ["mcp:read", "mcp:write", "mcp:admin"],
    ...overrides,
  });
}

const URL_PARAM =
  'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"';
const ALL_CODES = Object.keys(ERROR_RULES) as GateErrorCode[];

interface Expected {
  status: number;
  wwwAuthenticate: string | null;
  body: { error: string; error_description: string };
  retryAfter: string | null;
}

Deno.test("createResponder() answers each code with the contract's status, challenge and body", async (t) => {
  const responder = createResponder(scopedConfig());
  const cases: [string, GateError, Expected][] = [
    ["no_token", new GateError("no_token"), {
      status: 401,
      wwwAuthenticate: `Bearer ${URL_PARAM}, scope="mcp:read mcp:write mcp:admin"`,
      body: { error: "unauthorized", error_description: "Bearer token required" },
      retryAfter: null,
    }],
    ["invalid_token", new GateError("invalid_token", { reason: "expired" }), {
      status: 401,
      wwwAuthenticate:
        `Bearer error="invalid_token", error_description="The access token is invalid", ${URL_PARAM}`,
      body: { error: "invalid_token", error_description: "The access token is invalid" },
      retryAfter: null,
    }],
    ["insufficient_scope", new GateError("insufficient_scope", { reason: "scope" }), {
      status: 403,
      wwwAuthenticate: `Bearer error="insufficient_scope", scope="mcp:read mcp:write", ` +
        `error_description="The access token does not grant the required scope", ${URL_PARAM}`,
      body: {
        error: "insufficient_scope",
        error_description: "The access token does not grant the required scope",
      },
      retryAfter: null,
    }],
    [
      "invalid_request: multiple Authorization headers",
      new GateError("invalid_request", { reason: "multiple_authorization" }),
      {
        status: 400,
        wwwAuthenticate: `Bearer error="invalid_request", ` +
          `error_description="Only one Authorization header is allowed", ${URL_PARAM}`,
        body: {
          error: "invalid_request",
          error_description: "Only one Authorization header is allowed",
        },
        retryAfter: null,
      },
    ],
    [
      "invalid_request: token in header and query",
      new GateError("invalid_request", { reason: "token_in_query" }),
      {
        status: 400,
        wwwAuthenticate: `Bearer error="invalid_request", ` +
          `error_description="The access token was sent by more than one method", ${URL_PARAM}`,
        body: {
          error: "invalid_request",
          error_description: "The access token was sent by more than one method",
        },
        retryAfter: null,
      },
    ],
    ["invalid_request without a reason", new GateError("invalid_request"), {
      status: 400,
      wwwAuthenticate:
        `Bearer error="invalid_request", error_description="The request is malformed", ${URL_PARAM}`,
      body: { error: "invalid_request", error_description: "The request is malformed" },
      retryAfter: null,
    }],
    ["forbidden", new GateError("forbidden", { reason: "origin" }), {
      status: 403,
      wwwAuthenticate: null,
      body: { error: "forbidden", error_description: "Origin not allowed" },
      retryAfter: null,
    }],
    ["not_ready with the default delay", new GateError("not_ready"), {
      status: 503,
      wwwAuthenticate: null,
      body: {
        error: "temporarily_unavailable",
        error_description: "The service is starting, try again shortly",
      },
      retryAfter: "5",
    }],
    ["not_ready with its own delay", new GateError("not_ready", { retryAfterSeconds: 12 }), {
      status: 503,
      wwwAuthenticate: null,
      body: {
        error: "temporarily_unavailable",
        error_description: "The service is starting, try again shortly",
      },
      retryAfter: "12",
    }],
    ["introspection_unavailable", new GateError("introspection_unavailable"), {
      status: 503,
      wwwAuthenticate: null,
      body: {
        error: "temporarily_unavailable",
        error_description: "The authorization server cannot check the token now, try again shortly",
      },
      retryAfter: "5",
    }],
    ["rate_limited", new GateError("rate_limited", { retryAfterSeconds: 3 }), {
      status: 429,
      wwwAuthenticate: null,
      body: { error: "rate_limited", error_description: "Too many requests" },
      retryAfter: "3",
    }],
    [
      "rate_limited with a fractional delay",
      new GateError("rate_limited", { retryAfterSeconds: 0.2 }),
      {
        status: 429,
        wwwAuthenticate: null,
        body: { error: "rate_limited", error_description: "Too many requests" },
        retryAfter: "1",
      },
    ],
    ["rate_limited with a bogus delay", new GateError("rate_limited", { retryAfterSeconds: NaN }), {
      status: 429,
      wwwAuthenticate: null,
      body: { error: "rate_limited", error_description: "Too many requests" },
      retryAfter: "1",
    }],
    [
      "bad_request for a request target",
      new GateError("bad_request", {
        reason: "invalid_target",
      }),
      {
        status: 400,
        wwwAuthenticate: null,
        body: {
          error: "invalid_request",
          error_description: "The request target is not a valid URI path and query",
        },
        retryAfter: null,
      },
    ],
    ["bad_request for a Host", new GateError("bad_request", { reason: "invalid_host" }), {
      status: 400,
      wwwAuthenticate: null,
      body: {
        error: "invalid_request",
        error_description: "The Host header or request authority is not a valid host",
      },
      retryAfter: null,
    }],
    ["request_timeout", new GateError("request_timeout", { reason: "read_timeout" }), {
      status: 408,
      wwwAuthenticate: null,
      body: {
        error: "request_timeout",
        error_description: "The request body did not arrive in time",
      },
      retryAfter: null,
    }],
    ["header_too_large", new GateError("header_too_large", { reason: "header_too_large" }), {
      status: 431,
      wwwAuthenticate: null,
      body: {
        error: "request_header_fields_too_large",
        error_description: "The request header fields are too large",
      },
      retryAfter: null,
    }],
    ["not_implemented", new GateError("not_implemented"), {
      status: 501,
      wwwAuthenticate: null,
      body: {
        error: "not_implemented",
        error_description: "Only the chunked transfer coding is supported",
      },
      retryAfter: null,
    }],
    ["claim_unrepresentable", new GateError("claim_unrepresentable"), {
      status: 403,
      wwwAuthenticate: null,
      body: {
        error: "forbidden",
        error_description: "A claim of the access token cannot be passed to the service",
      },
      retryAfter: null,
    }],
    ["overloaded", new GateError("overloaded", { reason: "inflight_total" }), {
      status: 503,
      wwwAuthenticate: null,
      body: {
        error: "temporarily_unavailable",
        error_description: "The service is overloaded, try again shortly",
      },
      retryAfter: "1",
    }],
    ["payload_too_large", new GateError("payload_too_large"), {
      status: 413,
      wwwAuthenticate: null,
      body: { error: "payload_too_large", error_description: "The request body is too large" },
      retryAfter: null,
    }],
    ["upstream_error", new GateError("upstream_error"), {
      status: 502,
      wwwAuthenticate: null,
      body: { error: "upstream_error", error_description: "The upstream service is unavailable" },
      retryAfter: null,
    }],
    ["upstream_timeout", new GateError("upstream_timeout"), {
      status: 504,
      wwwAuthenticate: null,
      body: {
        error: "upstream_timeout",
        error_description: "The upstream service did not respond in time",
      },
      retryAfter: null,
    }],
  ];
  assert.deepEqual(
    new Set(cases.map(([, err]) => err.code)),
    new Set(ALL_CODES),
    "every code has a case",
  );
  for (const [name, err, want] of cases) {
    await t.step(name, async () => {
      const res = responder.respond(err);
      assert.equal(res.status, want.status);
      assert.equal(res.headers.get("www-authenticate"), want.wwwAuthenticate);
      assert.equal(res.headers.get("retry-after"), want.retryAfter);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.deepEqual(await res.json(), want.body);
    });
  }
});

Deno.test("createResponder() sends no error attribute when the request had no token (RFC 6750 §3.1)", async () => {
  const res = createResponder(scopedConfig()).respond(new GateError("no_token"));
  await res.body?.cancel();
  assert.doesNotMatch(res.headers.get("www-authenticate")!, /error/);
});

Deno.test("createResponder() omits scope attributes when no scopes are configured", async (t) => {
  const responder = createResponder(scopedConfig({ requiredScopes: [], scopesSupported: [] }));
  const cases: [GateErrorCode, string][] = [
    ["no_token", `Bearer ${URL_PARAM}`],
    [
      "insufficient_scope",
      `Bearer error="insufficient_scope", ` +
      `error_description="The access token does not grant the required scope", ${URL_PARAM}`,
    ],
  ];
  for (const [code, want] of cases) {
    await t.step(code, async () => {
      const res = responder.respond(new GateError(code, { reason: "claim" }));
      await res.body?.cancel();
      assert.equal(res.headers.get("www-authenticate"), want);
    });
  }
});

Deno.test("createResponder() points resource_metadata at the path-inserted URL (RFC 9728 §3.1)", async (t) => {
  const cases: [string, string][] = [
    [
      "https://mcp.example.com/mcp",
      "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
    ],
    ["https://mcp.example.com", "https://mcp.example.com/.well-known/oauth-protected-resource"],
    ["https://mcp.example.com/", "https://mcp.example.com/.well-known/oauth-protected-resource"],
    [
      "https://mcp.example.com/mcp?tenant=a",
      "https://mcp.example.com/.well-known/oauth-protected-resource/mcp?tenant=a",
    ],
  ];
  for (const [resourceUri, url] of cases) {
    await t.step(resourceUri, async () => {
      const responder = createResponder(scopedConfig({ resourceUri, scopesSupported: [] }));
      assert.equal(responder.resourceMetadataUrl, url);
      const res = responder.respond(new GateError("no_token"));
      await res.body?.cancel();
      assert.equal(res.headers.get("www-authenticate"), `Bearer resource_metadata="${url}"`);
    });
  }
});

Deno.test("createResponder() escapes quotes and backslashes in configured values", async () => {
  const responder = createResponder(scopedConfig({ scopesSupported: ['a"b', "c\\d"] }));
  const res = responder.respond(new GateError("no_token"));
  await res.body?.cancel();
  assert.equal(
    res.headers.get("www-authenticate"),
    `Bearer ${URL_PARAM}, scope="a\\"b c\\\\d"`,
  );
});

Deno.test("createResponder() refuses at construction a value that cannot be a header", () => {
  assert.throws(() => createResponder(scopedConfig({ scopesSupported: ["a\nb"] })), TypeError);
});

Deno.test("createResponder() sets extra headers and appends Vary", async () => {
  const responder = createResponder(scopedConfig());
  const res = responder.respond(new GateError("invalid_token"), [
    ["Access-Control-Allow-Origin", "https://app.example"],
    ["Vary", "Origin"],
    ["Cache-Control", "private"],
  ]);
  await res.body?.cancel();
  assert.equal(res.headers.get("access-control-allow-origin"), "https://app.example");
  assert.equal(res.headers.get("vary"), "Origin");
  assert.equal(res.headers.get("cache-control"), "private");
  const fromHeaders = responder.respond(
    new GateError("no_token"),
    new Headers({ "x-request-id": "r1" }),
  );
  await fromHeaders.body?.cancel();
  assert.equal(fromHeaders.headers.get("x-request-id"), "r1");
});

Deno.test("createResponder() gives each response its own headers", async () => {
  const responder = createResponder(scopedConfig());
  const first = responder.respond(new GateError("invalid_token"));
  first.headers.set("x-extra", "1");
  const second = responder.respond(new GateError("invalid_token"));
  await Promise.all([first.body?.cancel(), second.body?.cancel()]);
  assert.equal(second.headers.get("x-extra"), null);
});

Deno.test("createResponder() never tells the client the reason or detail", async () => {
  const responder = createResponder(scopedConfig());
  const reasons: RejectReason[] = ["expired", "signature", "audience", "issuer", "unknown_kid"];
  fc.assert(
    fc.property(
      fc.constantFrom(...ALL_CODES),
      fc.constantFrom(...reasons),
      fc.string({ minLength: 12 }).map((s) => `detail-${s}`),
      (code, reason, detail) => {
        const res = responder.respond(new GateError(code, { reason, detail }));
        const everything = [...res.headers].flat().join("\n");
        assert.ok(!everything.includes(detail));
        assert.ok(!everything.includes(reason));
        void res.body?.cancel();
      },
    ),
  );
  // The body too: read it for each code with a telling detail.
  for (const code of ALL_CODES) {
    const res = responder.respond(
      new GateError(code, { reason: "audience", detail: "aud was https://other" }),
    );
    const text = await res.text();
    assert.ok(!text.includes("audience") && !text.includes("other"), `${code}: ${text}`);
  }
});

Deno.test("createResponder() keeps every error_description within RFC 6750 §3's characters", async () => {
  const responder = createResponder(scopedConfig());
  const errors = [
    ...ALL_CODES.map((code) => new GateError(code)),
    new GateError("invalid_request", { reason: "multiple_authorization" }),
    new GateError("invalid_request", { reason: "token_in_query" }),
  ];
  for (const err of errors) {
    const res = responder.respond(err);
    const { error_description } = await res.json();
    assert.match(error_description, /^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/);
    const header = res.headers.get("www-authenticate");
    if (header !== null && err.code !== "no_token") {
      assert.ok(header.includes(`error_description="${error_description}"`), header);
    }
  }
});

Deno.test("outcomeOf() maps each code to its log auth value", async (t) => {
  const cases: [GateErrorCode, string][] = [
    ["no_token", "none"],
    ["bad_request", "invalid_request"],
    ["not_implemented", "invalid_request"],
    ["invalid_request", "invalid_request"],
    ["invalid_token", "invalid_token"],
    ["insufficient_scope", "insufficient_scope"],
    ["forbidden", "forbidden"],
    ["claim_unrepresentable", "forbidden"],
    ["not_ready", "not_ready"],
    ["introspection_unavailable", "not_ready"],
    ["rate_limited", "rate_limited"],
    ["overloaded", "overloaded"],
    ["payload_too_large", "ok"],
    ["request_timeout", "ok"],
    ["header_too_large", "invalid_request"],
    ["upstream_error", "ok"],
    ["upstream_timeout", "ok"],
  ];
  assert.equal(cases.length, ALL_CODES.length, "every code has a case");
  for (const [code, want] of cases) {
    await t.step(code, () => assert.equal(outcomeOf(code), want));
  }
});

Deno.test("the error table charges failed authentication to the IP and 403s to the subject", () => {
  const charged = Object.fromEntries(ALL_CODES.map((c) => [c, chargeOf(c) ?? null]));
  assert.deepEqual(charged, {
    no_token: "ip",
    bad_request: null,
    not_implemented: null,
    invalid_request: "ip",
    invalid_token: "ip",
    insufficient_scope: "subject",
    forbidden: null,
    claim_unrepresentable: "subject",
    not_ready: null,
    introspection_unavailable: null,
    rate_limited: null,
    overloaded: null,
    payload_too_large: null,
    request_timeout: null,
    header_too_large: null,
    upstream_error: null,
    upstream_timeout: null,
  });
});

Deno.test("a client that left is logged as 499 and is no upstream error", () => {
  const gone = new GateError("upstream_error", { reason: "client_closed" });
  assert.equal(loggedStatusOf(gone, 502), 499);
  assert.equal(upstreamErrorOf(gone), undefined);
  const down = new GateError("upstream_error", { reason: "upstream_unreachable" });
  assert.equal(loggedStatusOf(down, 502), 502);
  assert.equal(upstreamErrorOf(down), "unreachable");
  assert.equal(upstreamErrorOf(new GateError("upstream_timeout")), "timeout");
});
