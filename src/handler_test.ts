import assert from "node:assert/strict";
import { createHandler, type HandlerDeps, splitTarget } from "./handler.ts";
import { parseConfig } from "./config/mod.ts";
import { GateError } from "./errors.ts";
import { createLogger, createMemorySink } from "./ops/mod.ts";
import type { TokenVerifier } from "./auth/mod.ts";
import { createPlan, type ForwardContext, type Forwarder, readRequestFields } from "./proxy/mod.ts";

const BASE_ENV = {
  UPSTREAM_URL: "http://127.0.0.1:9/base",
  RESOURCE_URI: "https://mcp.example.com/mcp",
  AUTHORIZATION_SERVER: "https://auth.example.com/realms/demo",
  JWKS_URI: "https://auth.example.com/realms/demo/certs",
  METRICS_ADDR: "",
  SCOPES_SUPPORTED: "mcp:read mcp:write",
  REQUIRED_SCOPES: "mcp:read",
};

const GOOD = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWdvb2Q";
const NOSCOPE = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLW5vc2NvcGU";
const BAD = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJldmUifQ.c2lnbmF0dXJlLWJhZA";
const META = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

/** Calls of stubVerifier.verify (tests read the difference around what they do). */
let verifyCalls = 0;
const CONTROL = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJlLWN0bA";

const stubVerifier: TokenVerifier = {
  verify(token: string) {
    verifyCalls++;
    if (token === CONTROL) {
      return Promise.resolve({
        sub: "mallory",
        claims: { sub: "mallory", email: "adm\u0000in@example.com" },
        expMs: Date.now() + 60_000,
      });
    }
    if (token === GOOD) {
      return Promise.resolve({
        sub: "alice",
        claims: { sub: "alice", email: "alice@example.com", groups: ["a", "b"] },
        expMs: Date.now() + 60_000,
      });
    }
    if (token === NOSCOPE) {
      return Promise.reject(
        new GateError("insufficient_scope", { reason: "scope", subject: "bob" }),
      );
    }
    return Promise.reject(new GateError("invalid_token", { reason: "signature" }));
  },
};

interface Fixture {
  handle: (req: Request, ip?: string) => Promise<Response>;
  forwarded: { req: Request; ctx: ForwardContext }[];
  logs: () => Record<string, unknown>[];
  logText: () => string;
  keys: { ready: boolean };
}

function fixture(
  env: Record<string, string> = {},
  forward?: (req: Request, ctx: ForwardContext) => Promise<Response>,
  extra: Partial<HandlerDeps> = {},
): Fixture {
  const config = parseConfig({ ...BASE_ENV, ...env });
  const sink = createMemorySink();
  const log = createLogger({ level: "debug", sink });
  const forwarded: Fixture["forwarded"] = [];
  const plan = createPlan(config);
  const forwarder: Forwarder = {
    forward(req, ctx) {
      forwarded.push({ req, ctx });
      if (forward) return forward(req, ctx);
      ctx.onDone?.({ upstreamStatus: 200, bytesIn: 0, bytesOut: 2, outcome: "complete" });
      return Promise.resolve(new Response("ok", { status: 200 }));
    },
    readFields: (headers) => readRequestFields(plan, headers),
    close() {},
  };
  const keys = { ready: true };
  const deps: HandlerDeps = { config, keys, verifier: stubVerifier, forwarder, log, ...extra };
  const handler = createHandler(deps);
  return {
    handle: (req, ip = "203.0.113.7") =>
      handler(req, { remoteAddr: { hostname: ip, port: 40000 } }),
    forwarded,
    logs: () => sink.lines.map((l) => JSON.parse(l)),
    logText: () => sink.text(),
    keys,
  };
}

const url = (path: string) => `http://gate.internal${path}`;
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

Deno.test("splitTarget() separates path and raw query", async (t) => {
  const cases: [string, string, string][] = [
    ["http://h/mcp", "/mcp", ""],
    ["http://h:8080/mcp?a=1&b=%2F", "/mcp", "?a=1&b=%2F"],
    ["http://h", "/", ""],
    ["https://h/.well-known/x/../y?", "/.well-known/x/../y", "?"],
  ];
  for (const [input, path, search] of cases) {
    await t.step(input, () => assert.deepEqual(splitTarget(input), { path, search }));
  }
});

Deno.test("handler answers health probes without auth and exactly on their paths", async () => {
  const f = fixture();
  f.keys.ready = false;
  assert.equal((await f.handle(new Request(url("/livez")))).status, 200);
  const notReady = await f.handle(new Request(url("/readyz")));
  assert.equal(notReady.status, 503);
  assert.equal(await notReady.text(), '{"status":"unavailable"}');
  assert.equal((await f.handle(new Request(url("/healthz")))).status, 503);
  f.keys.ready = true;
  assert.equal((await f.handle(new Request(url("/readyz")))).status, 200);
  assert.equal((await f.handle(new Request(url("/healthz"), { method: "HEAD" }))).status, 200);
  const post = await f.handle(new Request(url("/healthz"), { method: "POST" }));
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
  // Not a health path: protected.
  assert.equal((await f.handle(new Request(url("/HEALTHZ")))).status, 401);
  assert.equal((await f.handle(new Request(url("/livez/")))).status, 401);
  assert.equal(f.forwarded.length, 0);
});

Deno.test("handler serves metadata unauthenticated at the path-inserted URLs", async () => {
  const f = fixture();
  for (
    const p of [
      "/.well-known/oauth-protected-resource",
      "/.well-known/oauth-protected-resource/mcp",
      "/.well-known/oauth-protected-resource/mcp/",
      "/.well-known/oauth-protected-resource/mcp?x=1",
    ]
  ) {
    const res = await f.handle(new Request(url(p)));
    assert.equal(res.status, 200, p);
    const doc = await res.json();
    assert.equal(doc.resource, "https://mcp.example.com/mcp");
    assert.deepEqual(doc.authorization_servers, ["https://auth.example.com/realms/demo"]);
  }
  const other = await f.handle(new Request(url("/.well-known/oauth-protected-resource/mcpx")));
  assert.equal(other.status, 401);
  assert.equal(f.forwarded.length, 0);
});

Deno.test("handler answers 401 with a bare challenge when no token is sent", async () => {
  const f = fixture();
  for (const method of ["GET", "POST", "DELETE", "HEAD", "PUT"]) {
    const res = await f.handle(new Request(url("/mcp"), { method }));
    assert.equal(res.status, 401, method);
    assert.equal(
      res.headers.get("www-authenticate"),
      `Bearer resource_metadata="${META}", scope="mcp:read mcp:write"`,
    );
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    await res.body?.cancel();
  }
  const basic = await f.handle(new Request(url("/mcp"), { headers: { authorization: "Basic x" } }));
  assert.equal(basic.status, 401);
  await basic.body?.cancel();
  const queryOnly = await f.handle(new Request(url(`/mcp?access_token=${GOOD}`)));
  assert.equal(queryOnly.status, 401);
  await queryOnly.body?.cancel();
  assert.equal(f.forwarded.length, 0);
  assert.equal(f.logs()[0].auth, "none");
});

Deno.test("handler answers 401 invalid_token and logs the reason only", async () => {
  const f = fixture();
  const res = await f.handle(new Request(url("/mcp"), { method: "POST", headers: bearer(BAD) }));
  assert.equal(res.status, 401);
  const challenge = res.headers.get("www-authenticate") ?? "";
  assert.match(challenge, /^Bearer error="invalid_token", /);
  assert.match(challenge, new RegExp(`resource_metadata="${META}"`));
  const body = await res.json();
  assert.equal(body.error, "invalid_token");
  assert.ok(!JSON.stringify(body).includes("signature"));
  const [line] = f.logs();
  assert.equal(line.auth, "invalid_token");
  assert.equal(line.reason, "signature");
  assert.equal(line.status, 401);
  assert.equal(f.forwarded.length, 0);
  assert.ok(!f.logText().includes(BAD.split(".")[2]));
});

Deno.test("handler answers 403 insufficient_scope with the required scopes", async () => {
  const f = fixture();
  const res = await f.handle(new Request(url("/mcp"), { headers: bearer(NOSCOPE) }));
  assert.equal(res.status, 403);
  const challenge = res.headers.get("www-authenticate") ?? "";
  assert.match(challenge, /error="insufficient_scope"/);
  assert.match(challenge, /scope="mcp:read"/);
  assert.equal((await res.json()).error, "insufficient_scope");
  assert.equal(f.forwarded.length, 0);
});

Deno.test("handler answers 400 invalid_request for a token sent twice", async () => {
  const f = fixture();
  const headers = new Headers();
  headers.append("authorization", `Bearer ${GOOD}`);
  headers.append("authorization", `Bearer ${GOOD}`);
  const twice = await f.handle(new Request(url("/mcp"), { headers }));
  assert.equal(twice.status, 400);
  assert.equal((await twice.json()).error, "invalid_request");
  const both = await f.handle(
    new Request(url(`/mcp?access_token=${GOOD}`), { headers: bearer(GOOD) }),
  );
  assert.equal(both.status, 400);
  await both.body?.cancel();
  assert.equal(f.forwarded.length, 0);
  assert.ok(!f.logText().includes(GOOD));
});

Deno.test("handler answers 503 with Retry-After until the key set is loaded", async () => {
  const f = fixture();
  f.keys.ready = false;
  const res = await f.handle(new Request(url("/mcp"), { headers: bearer(GOOD) }));
  assert.equal(res.status, 503);
  assert.ok(Number(res.headers.get("retry-after")) >= 1);
  assert.equal((await res.json()).error, "temporarily_unavailable");
  assert.equal(f.forwarded.length, 0);
});

Deno.test("handler forwards a verified request with identity and forwarding context", async () => {
  const f = fixture({ CLAIM_HEADERS: "sub=X-Auth-Subject,groups=X-Auth-Groups" });
  const res = await f.handle(
    new Request(url("/mcp?x=1"), {
      method: "POST",
      headers: { ...bearer(GOOD), "x-request-id": "req-123", "content-length": "2" },
      body: "{}",
    }),
  );
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "ok");
  assert.equal(f.forwarded.length, 1);
  const { ctx } = f.forwarded[0];
  assert.equal(ctx.clientIp, "203.0.113.7");
  assert.equal(ctx.forwardedFor, "203.0.113.7");
  assert.equal(ctx.forwardedProto, "http");
  assert.equal(ctx.requestId, "req-123");
  assert.deepEqual(ctx.setHeaders, [["x-auth-subject", "alice"], ["x-auth-groups", "a,b"]]);
  const [line] = f.logs();
  assert.equal(line.msg, "request");
  assert.equal(line.auth, "ok");
  assert.equal(line.sub, "alice");
  assert.equal(line.upstream_status, 200);
  assert.equal(line.path, "/mcp");
  assert.equal(line.request_id, "req-123");
  assert.ok(!f.logText().includes(GOOD));
});

Deno.test("handler turns upstream failures into 502 and 504", async () => {
  for (
    const [code, status] of [["upstream_error", 502], ["upstream_timeout", 504]] as const
  ) {
    const f = fixture({}, () => Promise.reject(new GateError(code, { detail: "10.0.0.1:80" })));
    const res = await f.handle(new Request(url("/mcp"), { headers: bearer(GOOD) }));
    assert.equal(res.status, status);
    const text = await res.text();
    assert.equal(JSON.parse(text).error, code);
    assert.ok(!text.includes("10.0.0.1"));
  }
});

Deno.test("handler refuses an unlisted Origin before the token check", async () => {
  const f = fixture({ ALLOWED_ORIGINS: "https://app.example.com" });
  const evil = await f.handle(
    new Request(url("/mcp"), { headers: { ...bearer(GOOD), origin: "https://evil.example" } }),
  );
  assert.equal(evil.status, 403);
  assert.equal((await evil.json()).error, "forbidden");
  const ok = await f.handle(
    new Request(url("/mcp"), { headers: { ...bearer(GOOD), origin: "https://app.example.com" } }),
  );
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("access-control-allow-origin"), "https://app.example.com");
  await ok.body?.cancel();
  const unauth = await f.handle(
    new Request(url("/mcp"), { headers: { origin: "https://app.example.com" } }),
  );
  assert.equal(unauth.status, 401);
  assert.match(unauth.headers.get("access-control-expose-headers") ?? "", /WWW-Authenticate/);
  await unauth.body?.cancel();
  const preflight = await f.handle(
    new Request(url("/mcp"), {
      method: "OPTIONS",
      headers: { origin: "https://app.example.com", "access-control-request-method": "POST" },
    }),
  );
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get("access-control-allow-origin"), "https://app.example.com");
  assert.equal(f.forwarded.length, 1);
});

Deno.test("handler rate-limits per subject after auth and per IP before it", async () => {
  const f = fixture({ RATE_LIMIT_RPS: "1", RATE_LIMIT_BURST: "2" });
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await f.handle(new Request(url("/mcp"), { headers: bearer(GOOD) }));
    statuses.push(res.status);
    await res.body?.cancel();
  }
  assert.deepEqual(statuses, [200, 200, 429]);
  const anon: number[] = [];
  let retryAfter: string | null = null;
  for (let i = 0; i < 3; i++) {
    const res = await f.handle(new Request(url("/mcp")), "198.51.100.1");
    anon.push(res.status);
    retryAfter = res.headers.get("retry-after");
    await res.body?.cancel();
  }
  assert.deepEqual(anon, [401, 401, 429]);
  assert.ok(Number(retryAfter) >= 1);
  // Another client IP is not affected by the first one's failures.
  const other = await f.handle(new Request(url("/mcp")), "198.51.100.2");
  assert.equal(other.status, 401);
  await other.body?.cancel();
});

Deno.test("handler writes each request line exactly as JSON.stringify would, fields in contract order", async () => {
  const f = fixture();
  const agent = 'ua "quoted" \\ back\tslash é';
  const res = await f.handle(
    new Request(url("/mcp/x?q=1"), {
      headers: { ...bearer(GOOD), "user-agent": agent, "x-request-id": "rid-1" },
    }),
  );
  await res.body?.cancel();
  const rejected = await f.handle(new Request(url("/mcp"), { headers: bearer(BAD) }));
  await rejected.body?.cancel();
  const lines = f.logText().split("\n").filter((l) => l.includes('"msg":"request"'));
  assert.equal(lines.length, 2);
  for (const line of lines) assert.equal(JSON.stringify(JSON.parse(line)), line);
  const [ok, bad] = lines.map((l) => JSON.parse(l));
  assert.deepEqual(Object.keys(ok), [
    "time",
    "level",
    "msg",
    "method",
    "path",
    "status",
    "duration_ms",
    "client_ip",
    "user_agent",
    "request_id",
    "auth",
    "sub",
    "upstream_status",
    "bytes_in",
    "bytes_out",
  ]);
  assert.equal(ok.user_agent, agent);
  assert.equal(ok.path, "/mcp/x");
  assert.equal(ok.request_id, "rid-1");
  assert.equal(bad.reason, "signature");
  assert.equal(bad.status, 401);
});

Deno.test("handler answers 400 before auth for a target or Host it cannot pass on", async (t) => {
  const f = fixture();
  const cases: [string, Request, string][] = [
    [
      "a bad percent escape",
      new Request(url("/mcp%zz"), { headers: bearer(GOOD) }),
      "invalid_target",
    ],
    [
      "a Host with a slash",
      new Request(url("/mcp"), { headers: { ...bearer(GOOD), host: "evil/inj" } }),
      "invalid_host",
    ],
    [
      "a Host with a space",
      new Request(url("/mcp"), { headers: { ...bearer(GOOD), host: "a b" } }),
      "invalid_host",
    ],
    [
      "a Host with userinfo",
      new Request(url("/mcp"), { headers: { ...bearer(GOOD), host: "u@h" } }),
      "invalid_host",
    ],
  ];
  for (const [name, req, reason] of cases) {
    await t.step(name, async () => {
      const before = verifyCalls;
      const res = await f.handle(req);
      assert.equal(res.status, 400);
      assert.equal(res.headers.get("www-authenticate"), null);
      assert.equal((await res.json()).error, "invalid_request");
      assert.equal(verifyCalls, before, "no token work");
      assert.equal(f.logs().at(-1)!.reason, reason);
    });
  }
  assert.equal(f.forwarded.length, 0);
});

Deno.test("handler passes the checked, re-encoded target to the forwarder", async () => {
  const f = fixture();
  const res = await f.handle(
    new Request(url("/mcp/\u00e9 x?q=\u010d\u010a"), {
      headers: bearer(GOOD),
    }),
  );
  await res.body?.cancel();
  assert.equal(res.status, 200);
  const target = f.forwarded[0].ctx.target!;
  assert.equal(target.path, "/mcp/%C3%A9%20x");
  assert.equal(target.query, "?q=%C4%8D%C4%8A");
  assert.equal(f.logs().at(-1)!.path, "/mcp/%C3%A9%20x");
});

Deno.test("handler refuses a client IP with an empty bucket before any signature work", async () => {
  const f = fixture({ RATE_LIMIT_RPS: "0.001", RATE_LIMIT_BURST: "2" });
  const statuses: number[] = [];
  for (let i = 0; i < 2; i++) {
    const res = await f.handle(new Request(url("/mcp"), { headers: bearer(BAD) }));
    statuses.push(res.status);
    await res.body?.cancel();
  }
  assert.deepEqual(statuses, [401, 401]);
  const before = verifyCalls;
  const res = await f.handle(new Request(url("/mcp"), { headers: bearer(BAD) }));
  await res.body?.cancel();
  assert.equal(res.status, 429);
  assert.equal(verifyCalls, before, "the verifier was not called");
});

Deno.test("handler charges a 403 to the token's subject", async () => {
  const f = fixture({ RATE_LIMIT_RPS: "0.001", RATE_LIMIT_BURST: "2" });
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await f.handle(new Request(url("/mcp"), { headers: bearer(NOSCOPE) }));
    statuses.push(res.status);
    await res.body?.cancel();
  }
  assert.deepEqual(statuses, [403, 403, 429]);
  assert.equal(f.logs().at(-2)!.sub, "bob");
  // The IP's bucket was not charged: another subject from the same IP still passes.
  const ok = await f.handle(new Request(url("/mcp"), { headers: bearer(GOOD) }));
  await ok.body?.cancel();
  assert.equal(ok.status, 200);
});

Deno.test("handler answers 403 claim_unrepresentable for a claim it cannot send as it is", async () => {
  const f = fixture({ CLAIM_HEADERS: "email=X-Auth-Email" });
  const res = await f.handle(new Request(url("/mcp"), { headers: bearer(CONTROL) }));
  assert.equal(res.status, 403);
  assert.equal((await res.json()).error, "forbidden");
  const line = f.logs().at(-1)!;
  assert.equal(line.reason, "claim_unrepresentable");
  assert.equal(line.sub, "mallory");
  assert.equal(f.forwarded.length, 0);
});

Deno.test("handler caps requests in flight per client IP (429) and in total (503), until each ends", async () => {
  let finish!: () => void;
  const gate = new Promise<void>((r) => (finish = r));
  const f = fixture(
    { MAX_CONCURRENT_REQUESTS: "1", MAX_TOTAL_CONNECTIONS: "2" },
    async (_req, ctx) => {
      await gate;
      ctx.onDone?.({ upstreamStatus: 200, bytesIn: 0, bytesOut: 2, outcome: "complete" });
      return new Response("ok");
    },
  );
  const first = f.handle(new Request(url("/mcp"), { headers: bearer(GOOD) }), "198.51.100.1");
  const sameIp = await f.handle(
    new Request(url("/mcp"), { headers: bearer(GOOD) }),
    "198.51.100.1",
  );
  assert.equal(sameIp.status, 429);
  assert.equal(sameIp.headers.get("retry-after"), "1");
  await sameIp.body?.cancel();
  assert.equal(f.logs().at(-1)!.reason, "inflight_ip");
  const second = f.handle(new Request(url("/mcp"), { headers: bearer(GOOD) }), "198.51.100.2");
  const third = await f.handle(new Request(url("/mcp")), "198.51.100.3");
  assert.equal(third.status, 503);
  assert.equal((await third.json()).error, "temporarily_unavailable");
  assert.equal(f.logs().at(-1)!.reason, "inflight_total");
  // Health probes are never refused by the caps.
  const live = await f.handle(new Request(url("/livez")), "198.51.100.1");
  assert.equal(live.status, 200);
  await live.body?.cancel();
  finish();
  for (const res of await Promise.all([first, second])) {
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
  const again = await f.handle(
    new Request(url("/mcp"), { headers: bearer(GOOD) }),
    "198.51.100.1",
  );
  assert.equal(again.status, 200, "the slots were released");
  await again.body?.cancel();
});

Deno.test("handler answers 400 invalid_header before auth for a field value it cannot forward", async (t) => {
  // Headers accepts C0 controls other than NUL/CR/LF (Fetch standard); none of these can be
  // forwarded as they are, so the handler refuses them before any other work.
  const cases: [string, Record<string, string>][] = [
    ["a C0 control inside a value", { "x-ctl": "a\x01b" }],
    ["DEL inside a value", { "x-ctl": "a\x7fb" }],
    ["a value that is a lone control", { "x-ctl": "\x1f" }],
  ];
  for (const [name, headers] of cases) {
    await t.step(name, async () => {
      const f = fixture();
      const before = verifyCalls;
      const res = await f.handle(
        new Request(url("/mcp"), { headers: { ...bearer(GOOD), ...headers } }),
      );
      assert.equal(res.status, 400);
      assert.equal(res.headers.get("www-authenticate"), null);
      assert.equal((await res.json()).error, "invalid_request");
      assert.equal(f.logs().at(-1)!.reason, "invalid_header");
      assert.equal(verifyCalls, before, "no token work");
      assert.equal(f.forwarded.length, 0, "nothing reaches the forwarder");
    });
  }
});

Deno.test("handler answers 501 for a transfer coding other than chunked, before auth", async () => {
  const f = fixture();
  const res = await f.handle(
    new Request(url("/mcp"), {
      method: "POST",
      headers: { ...bearer(GOOD), "transfer-encoding": "gzip, chunked" },
      body: "x",
    }),
  );
  assert.equal(res.status, 501);
  assert.equal(f.logs().at(-1)!.reason, "unsupported_transfer_coding");
  assert.equal(f.forwarded.length, 0);
  await res.body?.cancel();
});

Deno.test("handler serves the AS metadata mirror only with AS_METADATA_MIRROR, unauthenticated", async () => {
  const bytes = new TextEncoder().encode('{"issuer":"https://auth.example.com/realms/demo"}');
  let gets = 0;
  let fail = false;
  const asMetadata = {
    get() {
      gets++;
      return fail
        ? Promise.reject(new Error("Failed fetching authorization server metadata"))
        : Promise.resolve({ bytes, etag: '"abc"' });
    },
  };
  const path = url("/.well-known/oauth-authorization-server");
  const on = fixture({ AS_METADATA_MIRROR: "true" }, undefined, { asMetadata });
  const res = await on.handle(new Request(path));
  assert.equal(res.status, 200);
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
  assert.equal(res.headers.get("etag"), '"abc"');
  const post = await on.handle(new Request(path, { method: "POST" }));
  await post.body?.cancel();
  assert.equal(post.status, 405);
  assert.equal(gets, 1, "only GET and HEAD read the document");
  fail = true;
  const down = await on.handle(new Request(path));
  await down.body?.cancel();
  assert.equal(down.status, 503);
  const line = on.logs().filter((l) => l.msg === "request").at(-1)!;
  assert.equal(line.auth, "exempt");
  assert.match(String(line.detail), /Failed fetching authorization server metadata/);
  assert.equal(on.forwarded.length, 0);

  const off = fixture({}, undefined, { asMetadata });
  const protectedRes = await off.handle(new Request(path));
  await protectedRes.body?.cancel();
  assert.equal(protectedRes.status, 401);
  assert.equal(gets, 2);
});

Deno.test("handler adds healthDetails to /readyz without changing its status", async () => {
  const f = fixture({}, undefined, { healthDetails: () => ({ introspection: "failing" }) });
  const res = await f.handle(new Request(url("/readyz")));
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: "ok", introspection: "failing" });
});
