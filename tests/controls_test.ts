/**
 * The policy controls of docs/contract.md §1 and §3, black-box: ALLOWED_ORIGINS and CORS,
 * CLAIM_HEADERS, TRUSTED_PROXIES, RATE_LIMIT_* (per subject after auth, per IP before it,
 * bounded), and MAX_REQUEST_BODY (declared and chunked), over real sockets;
 * TLS_CERT_FILE/TLS_KEY_FILE with the gate as a child process (the CLI reads the files).
 */
import assert from "node:assert/strict";
import { startUpstream, status } from "./helpers/upstream.ts";
import { rawRequest } from "./helpers/raw_http.ts";
import { assertNoTokenBytes, BARE_CHALLENGE, gateEnv, RESOURCE, startRig } from "./helpers/rig.ts";
import { startTestIssuer } from "./helpers/issuer.ts";
import { spawnGate } from "./helpers/process.ts";
import { HAVE_OPENSSL, selfSignedCert } from "./helpers/tls.ts";
import { withTimeout } from "./helpers/wait.ts";
import { parseConfig } from "../src/config/mod.ts";
import { createHandler } from "../src/handler.ts";
import { GateError } from "../src/errors.ts";
import { createLogger, createMemorySink } from "../src/ops/mod.ts";
import { createPlan, type Forwarder, readRequestFields } from "../src/proxy/mod.ts";

const EXPOSE = "WWW-Authenticate, Mcp-Session-Id";

// ---- ALLOWED_ORIGINS and CORS ----

Deno.test("ALLOWED_ORIGINS refuses a present, unlisted Origin with 403 before any token check", async (t) => {
  await using r = await startRig({
    env: { ALLOWED_ORIGINS: "https://app.example, https://Other.Example:8443" },
  });
  const token = await r.issuer.mint({ sub: "alice" });
  const cases: { name: string; origin: string; headers?: Record<string, string> }[] = [
    { name: "a valid token from an unlisted origin", origin: "https://evil.example" },
    { name: "no token from an unlisted origin", origin: "https://evil.example", headers: {} },
    { name: "a listed host over another scheme", origin: "http://app.example" },
    { name: "a listed host on another port", origin: "https://app.example:444" },
    { name: "a suffix of a listed origin", origin: "https://app.example.evil.example" },
    { name: "the opaque origin null", origin: "null" },
    {
      name: "a preflight from an unlisted origin",
      origin: "https://evil.example",
      headers: { "access-control-request-method": "POST" },
    },
  ];
  let n = 0;
  for (const c of cases) {
    await t.step(c.name, async () => {
      const res = await fetch(r.url, {
        method: c.headers?.["access-control-request-method"] ? "OPTIONS" : "POST",
        headers: { origin: c.origin, ...(c.headers ?? { authorization: `Bearer ${token}` }) },
      });
      assert.equal(res.status, 403);
      assert.deepEqual(await res.json(), {
        error: "forbidden",
        error_description: "Origin not allowed",
      });
      assert.equal(res.headers.get("access-control-allow-origin"), null);
      assert.equal(res.headers.get("www-authenticate"), null);
      const line = (await r.gate.requestLogs(++n))[n - 1];
      assert.equal(line.auth, "forbidden");
      assert.equal(line.reason, "origin");
      r.assertUpstreamUntouched();
    });
  }
  await t.step("no Origin at all (a server-side client) passes", async () => {
    const res = await fetch(r.url, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), null);
    await res.body?.cancel();
    assert.equal(r.upstream.requests.length, 1);
  });
  assertNoTokenBytes(r.gate.logText(), [token]);
});

Deno.test("ALLOWED_ORIGINS: listed origins get CORS on every response, 401 included, and a free preflight", async (t) => {
  await using r = await startRig({
    env: { ALLOWED_ORIGINS: "https://app.example,https://Other.Example:8443" },
    handler: status(200, {
      headers: {
        "access-control-allow-origin": "*",
        "access-control-allow-credentials": "true",
        "mcp-session-id": "s-1",
      },
      body: "ok",
    }),
  });
  const origin = "https://app.example";
  const token = await r.issuer.mint({ sub: "alice" });
  const assertCors = (res: Response, allowOrigin = origin) => {
    assert.equal(res.headers.get("access-control-allow-origin"), allowOrigin);
    assert.equal(res.headers.get("access-control-expose-headers"), EXPOSE);
    assert.equal(res.headers.get("access-control-allow-credentials"), null);
    assert.match(res.headers.get("vary") ?? "", /Origin/);
  };

  await t.step(
    "preflight: 204 without a token, requested Mcp-Param-* allowed, others not",
    async () => {
      const res = await fetch(r.url, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers":
            "authorization, content-type, mcp-param-region, x-evil-header",
        },
      });
      assert.equal(res.status, 204);
      assert.equal(res.headers.get("access-control-allow-origin"), origin);
      assert.equal(
        res.headers.get("access-control-allow-methods"),
        "GET, POST, DELETE, HEAD, OPTIONS",
      );
      assert.equal(
        res.headers.get("access-control-allow-headers"),
        "Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID, " +
          "Mcp-Method, Mcp-Name, mcp-param-region",
      );
      assert.equal(res.headers.get("access-control-max-age"), "600");
      assert.equal(res.headers.get("access-control-allow-credentials"), null);
      await res.body?.cancel();
      r.assertUpstreamUntouched("a preflight reached the upstream");
    },
  );
  await t.step("origin compared case-insensitively in scheme and host", async () => {
    const res = await fetch(r.url, {
      method: "OPTIONS",
      headers: { origin: "https://other.example:8443", "access-control-request-method": "GET" },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("access-control-allow-origin"), "https://other.example:8443");
    await res.body?.cancel();
  });
  await t.step("401 without a token carries the challenge and exposes it", async () => {
    const res = await fetch(r.url, { method: "POST", headers: { origin } });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("www-authenticate"), BARE_CHALLENGE);
    assertCors(res);
    await res.body?.cancel();
  });
  await t.step("401 invalid_token exposes the challenge too", async () => {
    const res = await fetch(r.url, {
      method: "POST",
      headers: { origin, authorization: "Bearer not.a.token" },
    });
    assert.equal(res.status, 401);
    assertCors(res);
    await res.body?.cancel();
  });
  await t.step(
    "a proxied response gets the gate's CORS, never the upstream's credentials",
    async () => {
      const res = await fetch(r.url, {
        method: "POST",
        headers: { origin, authorization: `Bearer ${token}` },
      });
      assert.equal(res.status, 200);
      assertCors(res);
      assert.equal(res.headers.get("mcp-session-id"), "s-1");
      assert.equal(await res.text(), "ok");
      assert.equal(r.upstream.requests.length, 1);
    },
  );
  await t.step("metadata stays public: Access-Control-Allow-Origin *", async () => {
    const res = await fetch(`${r.gate.origin}/.well-known/oauth-protected-resource/mcp`, {
      headers: { origin: "https://evil.example" },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), "*");
    await res.body?.cancel();
  });
});

Deno.test("ALLOWED_ORIGINS unset checks no Origin and emits no CORS; * allows any origin", async (t) => {
  await t.step("unset", async () => {
    await using r = await startRig();
    const token = await r.issuer.mint();
    const res = await fetch(r.url, {
      headers: { origin: "https://anything.example", authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), null);
    assert.equal(res.headers.get("access-control-expose-headers"), null);
    await res.body?.cancel();
  });
  await t.step("*", async () => {
    await using r = await startRig({ env: { ALLOWED_ORIGINS: "*" } });
    const res = await fetch(r.url, { headers: { origin: "https://anything.example" } });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("access-control-allow-origin"), "*");
    assert.equal(res.headers.get("access-control-expose-headers"), EXPOSE);
    await res.body?.cancel();
    r.assertUpstreamUntouched();
  });
});

// ---- CLAIM_HEADERS ----

Deno.test("CLAIM_HEADERS sets identity headers from the token and always drops client copies", async (t) => {
  await using r = await startRig({
    env: { CLAIM_HEADERS: "sub=X-Auth-Subject,email=X-Auth-Email,groups=X-Auth-Groups" },
  });
  await t.step(
    "forged copies (any case, repeated) are replaced by the token's values",
    async () => {
      const token = await r.issuer.mint({
        sub: "alice",
        email: "alice@example.com",
        groups: ["eng", "ops"],
      });
      const res = await rawRequest(r.gate.port, {
        method: "POST",
        path: "/mcp",
        headers: [
          ["authorization", `Bearer ${token}`],
          ["X-Auth-Subject", "admin"],
          ["x-auth-subject", "root"],
          ["X-AUTH-EMAIL", "admin@example.com"],
          ["x-auth-groups", "wheel"],
        ],
        body: "{}",
      });
      assert.equal(res.status, 200);
      const seen = await r.upstream.request(0);
      const pick = (name: string) => seen.headers.filter(([n]) => n === name).map(([, v]) => v);
      assert.deepEqual(pick("x-auth-subject"), ["alice"]);
      assert.deepEqual(pick("x-auth-email"), ["alice@example.com"]);
      assert.deepEqual(pick("x-auth-groups"), ["eng,ops"]);
    },
  );
  await t.step(
    "a claim the token lacks leaves the header absent, not the client's copy",
    async () => {
      const token = await r.issuer.mint({ sub: "bob" });
      const res = await rawRequest(r.gate.port, {
        method: "GET",
        path: "/mcp",
        headers: [
          ["authorization", `Bearer ${token}`],
          ["x-auth-email", "ceo@example.com"],
          ["x-auth-groups", "admins"],
        ],
      });
      assert.equal(res.status, 200);
      const seen = await r.upstream.request(1);
      assert.equal(seen.header("x-auth-subject"), "bob");
      assert.equal(seen.header("x-auth-email"), null);
      assert.equal(seen.header("x-auth-groups"), null);
    },
  );
  await t.step(
    "a claim with CR/LF refuses the request (403), never reaching the upstream",
    async () => {
      const token = await r.issuer.mint({ sub: "eve", email: "eve@example.com\r\nX-Injected: 1" });
      const res = await rawRequest(r.gate.port, {
        method: "GET",
        path: "/mcp",
        headers: [["authorization", `Bearer ${token}`]],
      });
      assert.equal(res.status, 403);
      assert.equal(r.upstream.requests.length, 2);
    },
  );
  await t.step("without a valid token nothing is forwarded, forged headers or not", async () => {
    const res = await rawRequest(r.gate.port, {
      method: "GET",
      path: "/mcp",
      headers: [["x-auth-subject", "admin"]],
    });
    assert.equal(res.status, 401);
    assert.equal(r.upstream.requests.length, 2);
  });
});

// ---- TRUSTED_PROXIES ----

Deno.test("TRUSTED_PROXIES: X-Forwarded-For is believed only through trusted hops, right to left", async (t) => {
  await t.step("untrusted peer: spoofed X-Forwarded-For and -Proto are ignored", async () => {
    await using r = await startRig();
    const token = await r.issuer.mint();
    const res = await fetch(r.url, {
      headers: {
        authorization: `Bearer ${token}`,
        "x-forwarded-for": "198.51.100.66",
        "x-forwarded-proto": "https",
        forwarded: "for=198.51.100.66;proto=https",
      },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const seen = await r.upstream.request(0);
    assert.equal(seen.header("x-forwarded-for"), "127.0.0.1");
    assert.equal(seen.header("x-forwarded-proto"), "http");
    assert.equal(seen.header("forwarded"), null);
    const [line] = await r.gate.requestLogs(1);
    assert.equal(line.client_ip, "127.0.0.1");
  });
  await t.step("TRUSTED_PROXIES set, but the peer is not in it: the same", async () => {
    await using r = await startRig({ env: { TRUSTED_PROXIES: "10.0.0.0/8, 192.168.0.0/16" } });
    const token = await r.issuer.mint();
    const res = await fetch(r.url, {
      headers: {
        authorization: `Bearer ${token}`,
        "x-forwarded-for": "198.51.100.66, 10.0.0.2",
        "x-forwarded-proto": "https",
      },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const seen = await r.upstream.request(0);
    assert.equal(seen.header("x-forwarded-for"), "127.0.0.1");
    assert.equal(seen.header("x-forwarded-proto"), "http");
    const [line] = await r.gate.requestLogs(1);
    assert.equal(line.client_ip, "127.0.0.1");
  });
  await t.step("trusted peer: the rightmost untrusted hop is the client", async () => {
    await using r = await startRig({ env: { TRUSTED_PROXIES: "127.0.0.0/8, 10.0.0.0/8" } });
    const token = await r.issuer.mint();
    const cases: [string, string][] = [
      ["203.0.113.9", "203.0.113.9"],
      ["6.6.6.6, 203.0.113.9", "203.0.113.9"],
      ["6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"],
      ["203.0.113.9:5555, 10.0.0.2", "203.0.113.9"],
      ["[2001:DB8::1]:443, 10.9.9.9", "2001:db8::1"],
      ["garbage, 10.0.0.2", "10.0.0.2"],
      ["10.0.0.3, 10.0.0.2", "10.0.0.3"],
    ];
    for (const [i, [xff, client]] of cases.entries()) {
      const res = await fetch(r.url, {
        headers: {
          authorization: `Bearer ${token}`,
          "x-forwarded-for": xff,
          "x-forwarded-proto": "https",
        },
      });
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const line = (await r.gate.requestLogs(i + 1))[i];
      assert.equal(line.client_ip, client, xff);
      const seen = await r.upstream.request(i);
      assert.equal(seen.header("x-forwarded-for"), `${xff}, 127.0.0.1`);
      assert.equal(seen.header("x-forwarded-proto"), "https");
    }
  });
});

// ---- RATE_LIMIT_RPS / RATE_LIMIT_BURST ----

Deno.test("rate limit: per subject after auth, so users behind one address do not throttle each other", async () => {
  // 0.05 rps: no token comes back during the test, so the sequence is deterministic.
  await using r = await startRig({ env: { RATE_LIMIT_RPS: "0.05", RATE_LIMIT_BURST: "2" } });
  const alice = await r.issuer.mint({ sub: "alice" });
  const bob = await r.issuer.mint({ sub: "bob" });
  const statuses: number[] = [];
  for (const token of [alice, alice, alice, bob, bob, bob]) {
    const res = await fetch(r.url, { headers: { authorization: `Bearer ${token}` } });
    statuses.push(res.status);
    if (res.status === 429) {
      assert.ok(Number(res.headers.get("retry-after")) >= 1);
      assert.equal((await res.json()).error, "rate_limited");
    } else await res.body?.cancel();
  }
  assert.deepEqual(statuses, [200, 200, 429, 200, 200, 429]);
  assert.equal(r.upstream.requests.length, 4);
  const lines = await r.gate.requestLogs(6);
  assert.deepEqual(lines.map((l) => [l.sub, l.auth]), [
    ["alice", "ok"],
    ["alice", "ok"],
    ["alice", "rate_limited"],
    ["bob", "ok"],
    ["bob", "ok"],
    ["bob", "rate_limited"],
  ]);
});

Deno.test("rate limit: per client IP before auth, and a spoofed X-Forwarded-For does not escape it", async (t) => {
  await t.step("untrusted peer", async () => {
    await using r = await startRig({ env: { RATE_LIMIT_RPS: "0.05", RATE_LIMIT_BURST: "2" } });
    const statuses: number[] = [];
    for (const xff of ["1.1.1.1", "2.2.2.2", "3.3.3.3"]) {
      const res = await fetch(r.url, { headers: { "x-forwarded-for": xff } });
      statuses.push(res.status);
      if (res.status === 429) assert.ok(Number(res.headers.get("retry-after")) >= 1);
      await res.body?.cancel();
    }
    const bad = await fetch(r.url, { headers: { authorization: "Bearer a.b.c" } });
    statuses.push(bad.status);
    await bad.body?.cancel();
    // Once the address's bucket is empty even a valid token is refused before any signature
    // work: the flood costs the gate nothing more (docs/security.md).
    const good = await fetch(r.url, {
      headers: { authorization: `Bearer ${await r.issuer.mint({ sub: "carol" })}` },
    });
    statuses.push(good.status);
    await good.body?.cancel();
    assert.deepEqual(statuses, [401, 401, 429, 429, 429]);
    r.assertUpstreamUntouched();
  });
  await t.step("behind a trusted proxy each forwarded client has its own bucket", async () => {
    await using r = await startRig({
      env: { RATE_LIMIT_RPS: "0.05", RATE_LIMIT_BURST: "2", TRUSTED_PROXIES: "127.0.0.1/32" },
    });
    const statuses: number[] = [];
    for (const xff of ["1.1.1.1", "1.1.1.1", "1.1.1.1", "2.2.2.2"]) {
      const res = await fetch(r.url, { headers: { "x-forwarded-for": xff } });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    assert.deepEqual(statuses, [401, 401, 429, 401]);
    r.assertUpstreamUntouched();
  });
});

Deno.test("rate limit buckets are bounded: 10 000 other addresses evict the oldest bucket, 9 000 do not", async () => {
  const config = parseConfig({
    UPSTREAM_URL: "http://127.0.0.1:9",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: "https://as.example",
    JWKS_URI: "https://as.example/jwks",
    METRICS_ADDR: "",
    RATE_LIMIT_RPS: "0.0001",
    RATE_LIMIT_BURST: "1",
    TRUSTED_PROXIES: "10.0.0.0/8",
    LOG_LEVEL: "error",
  });
  const forwarder: Forwarder = {
    forward: () => Promise.reject(new Error("nothing may be forwarded")),
    readFields: (headers) => readRequestFields(createPlan(config), headers),
    close() {},
  };
  const handler = createHandler({
    config,
    keys: { ready: true },
    verifier: {
      verify: () => Promise.reject(new GateError("invalid_token", { reason: "signature" })),
    },
    forwarder,
    log: createLogger({ level: "error", sink: createMemorySink() }),
  });
  const from = async (ip: string) => {
    const res = await handler(
      new Request("http://gate.internal/mcp", { headers: { "x-forwarded-for": ip } }),
      { remoteAddr: { hostname: "10.0.0.1", port: 1 } },
    );
    await res.body?.cancel();
    return res.status;
  };
  const flood = async (from0: number, count: number) => {
    for (let i = from0; i < from0 + count; i++) {
      const status = await from(`198.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      assert.equal(status, 401);
    }
  };
  const victim = "203.0.113.1";
  assert.equal(await from(victim), 401);
  assert.equal(await from(victim), 429);
  // 9 000 other addresses: the victim's empty bucket is still held (the bound is not tiny).
  await flood(0, 9_000);
  assert.equal(await from(victim), 429, "the bucket was dropped too early");
  // 10 000 more: the least recently used bucket (the victim's) must have made room.
  await flood(9_000, 10_000);
  assert.equal(await from(victim), 401, "the bucket table grew past its bound");
});

// ---- MAX_REQUEST_BODY ----

Deno.test("MAX_REQUEST_BODY: a declared length over the limit gets 413 and the upstream sees nothing", async () => {
  await using r = await startRig({ env: { MAX_REQUEST_BODY: "1KiB" } });
  const token = await r.issuer.mint();
  const over = await fetch(r.url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
    body: new Uint8Array(1025),
  });
  assert.equal(over.status, 413);
  assert.deepEqual(await over.json(), {
    error: "payload_too_large",
    error_description: "The request body is too large",
  });
  r.assertUpstreamUntouched();
  const [line] = await r.gate.requestLogs(1);
  assert.equal(line.reason, "body_too_large");
  // Without a token the same body is a 401: authentication comes first (docs/contract.md §3).
  const anon = await fetch(r.url, { method: "POST", body: new Uint8Array(4096) });
  assert.equal(anon.status, 401);
  await anon.body?.cancel();
  const exact = await fetch(r.url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
    body: new Uint8Array(1024).fill(7),
  });
  assert.equal(exact.status, 200);
  await exact.body?.cancel();
  assert.equal(r.upstream.requests.length, 1);
  assert.equal(r.upstream.requests[0].body.length, 1024);
});

Deno.test("MAX_REQUEST_BODY: a Content-Length repeated on two lines is still the declared length", async () => {
  // RFC 9110 §8.6 lets a recipient accept repeated identical Content-Length values; Deno's
  // Headers joins them as "2048, 2048", which must not read as "no declared length".
  await using r = await startRig({ env: { MAX_REQUEST_BODY: "1KiB" } });
  const token = await r.issuer.mint();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: r.gate.port });
  let out = "";
  try {
    await conn.write(new TextEncoder().encode(
      `POST /mcp HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n` +
        `content-length: 2048\r\ncontent-length: 2048\r\nconnection: close\r\n\r\n` +
        "x".repeat(2048),
    ));
    const buf = new Uint8Array(16 * 1024);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      out += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    conn.close();
  }
  const res = { status: Number(out.split(" ")[1]) };
  assert.equal(res.status, 413);
  r.assertUpstreamUntouched();
});

Deno.test("MAX_REQUEST_BODY: a chunked body that grows past the limit is cut and the upstream request aborted", async () => {
  await using r = await startRig({ env: { MAX_REQUEST_BODY: "1KiB" } });
  const token = await r.issuer.mint();
  const chunk = new Uint8Array(512).fill(97);
  let sent = 0;
  let release!: () => void;
  const upstreamHasIt = new Promise<void>((res) => (release = res));
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      // The first chunk goes at once; the rest only after the upstream saw the request start.
      if (sent === 1) await upstreamHasIt;
      if (sent >= 64) return c.close();
      sent++;
      c.enqueue(chunk);
    },
  });
  const pending = fetch(r.url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" },
    body,
    duplex: "half",
  } as RequestInit);
  const seen = await r.upstream.request(0);
  release();
  const res = await pending;
  assert.equal(res.status, 413);
  await res.body?.cancel();
  await withTimeout(seen.abortedEvent, 2000, "the upstream request was not aborted");
  assert.equal(seen.aborted, true);
  assert.ok(seen.body.length <= 1024, `the upstream got ${seen.body.length} bytes`);
  assert.equal(r.upstream.requests.length, 1);

  // Within the limit, the same framing passes.
  let n = 0;
  const small = new ReadableStream<Uint8Array>({
    pull(c) {
      if (n++ < 2) c.enqueue(chunk);
      else c.close();
    },
  });
  // A fresh connection: after a 413 the server may close the one the cut body was on (Deno 2.7
  // does), and a pooled client would race that close.
  using client = Deno.createHttpClient({});
  const ok = await fetch(r.url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
    body: small,
    duplex: "half",
    client,
  } as RequestInit);
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  const second = await r.upstream.request(1);
  await second.bodyDone;
  assert.equal(second.body.length, 1024);
});

// ---- TLS ----

if (!HAVE_OPENSSL) console.warn("controls_test: openssl not found, TLS tests are skipped");

Deno.test({
  name: "TLS_CERT_FILE/TLS_KEY_FILE: the gate serves HTTPS itself and tells the upstream so",
  ignore: !HAVE_OPENSSL,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "mcp-gate-tls-" });
    try {
      const files = await selfSignedCert({ dir });
      await using issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
      await using upstream = await startUpstream();
      await using gate = await spawnGate(
        gateEnv(issuer, upstream, { TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.key }),
      );
      const listening = gate.logs().find((l) => l.msg === "listening")!;
      assert.equal(listening.tls, true);
      await gate.waitForLog((l) => l.msg === "key set loaded");
      using client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(files.cert)] });
      const base = `https://127.0.0.1:${gate.port}`;
      const meta = await fetch(`${base}/.well-known/oauth-protected-resource/mcp`, { client });
      assert.equal(meta.status, 200);
      assert.equal((await meta.json()).resource, RESOURCE);
      const anon = await fetch(`${base}/mcp`, { client });
      assert.equal(anon.status, 401);
      assert.equal(anon.headers.get("www-authenticate"), BARE_CHALLENGE);
      await anon.body?.cancel();
      const ok = await fetch(`${base}/mcp`, {
        client,
        headers: { authorization: `Bearer ${await issuer.mint()}` },
      });
      assert.equal(ok.status, 200);
      await ok.body?.cancel();
      const seen = await upstream.request(0);
      assert.equal(seen.header("x-forwarded-proto"), "https");
      // Plain HTTP to the TLS port gets no HTTP answer.
      const plain = await fetch(`http://127.0.0.1:${gate.port}/livez`).then(
        async (res) => (await res.body?.cancel(), res.status),
        () => "refused",
      );
      assert.notEqual(plain, 200);
      gate.kill("SIGTERM");
      assert.equal((await gate.exited(10_000)).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "bad TLS files are a configuration error: exit 2 naming the variable",
  ignore: !HAVE_OPENSSL,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "mcp-gate-tls-" });
    try {
      const good = await selfSignedCert({ dir, name: "good" });
      const other = await selfSignedCert({ dir, name: "other" });
      const notPem = `${dir}/not.pem`;
      await Deno.writeTextFile(notPem, "hello\n");
      const fakeCert = `${dir}/fake.crt`;
      await Deno.writeTextFile(
        fakeCert,
        "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n",
      );
      const fakeKey = `${dir}/fake.key`;
      await Deno.writeTextFile(
        fakeKey,
        "-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n",
      );
      const base = {
        UPSTREAM_URL: "http://127.0.0.1:9",
        RESOURCE_URI: RESOURCE,
        AUTHORIZATION_SERVER: "https://as.example",
      };
      const cases: {
        name: string;
        env: Record<string, string>;
        names: string[];
        pemShaped?: boolean;
      }[] = [
        {
          name: "a missing certificate file",
          env: { TLS_CERT_FILE: `${dir}/missing.crt`, TLS_KEY_FILE: good.key },
          names: ["TLS_CERT_FILE"],
        },
        {
          name: "a key file that is not PEM",
          env: { TLS_CERT_FILE: good.cert, TLS_KEY_FILE: notPem },
          names: ["TLS_KEY_FILE"],
        },
        {
          name: "a directory as the certificate",
          env: { TLS_CERT_FILE: dir, TLS_KEY_FILE: good.key },
          names: ["TLS_CERT_FILE"],
        },
        {
          name: "a certificate without its key",
          env: { TLS_CERT_FILE: good.cert },
          names: ["TLS_KEY_FILE"],
        },
        {
          name: "a PEM-shaped certificate that is not one",
          pemShaped: true,
          env: { TLS_CERT_FILE: fakeCert, TLS_KEY_FILE: good.key },
          names: ["TLS_CERT_FILE"],
        },
        {
          name: "a PEM-shaped key that is not one",
          pemShaped: true,
          env: { TLS_CERT_FILE: good.cert, TLS_KEY_FILE: fakeKey },
          names: ["TLS_KEY_FILE"],
        },
        {
          name: "a key that does not match the certificate",
          pemShaped: true,
          env: { TLS_CERT_FILE: good.cert, TLS_KEY_FILE: other.key },
          names: ["TLS_KEY_FILE"],
        },
      ];
      for (const c of cases) {
        await t.step({
          name: c.name,
          fn: async () => {
            await using gate = await spawnGate({ ...base, ...c.env }, { waitListening: false });
            const status = await gate.exited(20_000);
            const err = gate.stderr();
            assert.equal(status.code, 2, err);
            for (const name of c.names) assert.ok(err.includes(name), err);
            assert.equal(err.trim().split("\n").length, 1, "one stderr line");
            assert.ok(!gate.logs().some((l) => l.msg === "listening"), "it never listened");
          },
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("MAX_REQUEST_BODY: a GET or HEAD declaring a body over the limit gets 413 too", async (t) => {
  // The body of a GET is never forwarded, but a declared length over the limit is still refused
  // (found in review after the limit moved to the forwarder).
  await using r = await startRig({ env: { MAX_REQUEST_BODY: "1KiB" } });
  const token = await r.issuer.mint();
  for (const method of ["GET", "HEAD"]) {
    await t.step(method, async () => {
      const res = await rawRequest(r.gate.port, {
        method,
        path: "/mcp",
        headers: [["authorization", `Bearer ${token}`], ["content-length", "2048"]],
        body: "x".repeat(2048),
      });
      assert.equal(res.status, 413);
      r.assertUpstreamUntouched();
    });
  }
});
