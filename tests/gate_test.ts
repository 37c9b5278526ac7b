/**
 * Black-box tests of the whole gate over real sockets: a test issuer (discovery + JWKS), a
 * recording upstream, and the gate in front of it (in-process, or the binary named by
 * MCP_GATE_BIN). Every status of docs/contract.md §3 with its exact headers.
 */
import assert from "node:assert/strict";
import { startTestIssuer } from "./helpers/issuer.ts";
import {
  echoStream,
  gzip,
  never,
  pattern,
  sha256,
  sse,
  startUpstream,
} from "./helpers/upstream.ts";
import { startGate } from "./helpers/gate.ts";
import { rawRequest } from "./helpers/raw_http.ts";
import {
  BARE_CHALLENGE,
  expectedMetadata,
  gateEnv,
  META,
  METADATA_PATHS,
  ready,
  RESOURCE,
  type Rig,
  type RigOptions,
  startRig,
} from "./helpers/rig.ts";
import { closedPort } from "./helpers/net.ts";
import { withTimeout } from "./helpers/wait.ts";

/** Refetches for an unknown kid or after an outage are not held back for 30 s here. */
// 1 ms: the rotation test's refetch must never fall inside the interval after the initial load,
// however fast the run (a refetch that soon is refused by design, then the kid is unknown).
const FAST_REFETCH = { JWKS_MIN_REFRESH_INTERVAL: "1ms" };

/** The shared rig with {@linkcode FAST_REFETCH}. */
function rig(options: RigOptions = {}): Promise<Rig> {
  return startRig({ ...options, env: { ...FAST_REFETCH, ...options.env } });
}

Deno.test("gate proxies a verified request with the token removed and forwarding headers set", async () => {
  await using r = await rig();
  const token = await r.issuer.mint({ sub: "alice" });
  const res = await fetch(`${r.gate.origin}/mcp?x=1`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      cookie: "session=secret",
      "mcp-session-id": "s-1",
      "mcp-protocol-version": "2025-11-25",
      "x-request-id": "rid-42",
    },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  });
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "ok");
  const seen = await r.upstream.request(0);
  assert.equal(seen.method, "POST");
  assert.equal(seen.target, "/mcp?x=1");
  assert.equal(seen.header("authorization"), null);
  assert.equal(seen.header("cookie"), null);
  assert.equal(seen.header("mcp-session-id"), "s-1");
  assert.equal(seen.header("mcp-protocol-version"), "2025-11-25");
  assert.equal(seen.header("host"), `127.0.0.1:${r.upstream.port}`);
  assert.equal(seen.header("x-forwarded-host"), `127.0.0.1:${r.gate.port}`);
  assert.equal(seen.header("x-forwarded-for"), "127.0.0.1");
  assert.equal(seen.header("x-forwarded-proto"), "http");
  assert.equal(seen.header("x-request-id"), "rid-42");
  assert.equal(new TextDecoder().decode(seen.body), '{"jsonrpc":"2.0","id":1,"method":"ping"}');
  const [line] = await r.gate.requestLogs(1);
  assert.equal(line.status, 200);
  assert.equal(line.auth, "ok");
  assert.equal(line.sub, "alice");
  assert.equal(line.upstream_status, 200);
  assert.equal(line.method, "POST");
  assert.equal(line.path, "/mcp");
  assert.equal(line.client_ip, "127.0.0.1");
  assert.equal(line.request_id, "rid-42");
  assert.equal(typeof line.duration_ms, "number");
  assert.ok(!r.gate.logText().includes(token.split(".")[2]));
});

Deno.test("gate answers each rejection of docs/contract.md §3 with its exact status and challenge", async (t) => {
  await using r = await rig({ env: { REQUIRED_SCOPES: "mcp:tools" } });
  const good = await r.issuer.mint({ scope: "mcp:tools" });
  const noScope = await r.issuer.mint({ scope: "other" });
  const expired = await r.issuer.mint({
    scope: "mcp:tools",
    exp: Math.floor(Date.now() / 1000) - 3600,
    iat: Math.floor(Date.now() / 1000) - 7200,
  });
  const url = `${r.gate.origin}/mcp`;

  await t.step("no token: 401 with resource_metadata and scope, no error", async () => {
    const res = await fetch(url, { method: "POST" });
    assert.equal(res.status, 401);
    assert.equal(
      res.headers.get("www-authenticate"),
      BARE_CHALLENGE,
    );
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    await res.body?.cancel();
  });
  await t.step("expired token: 401 invalid_token", async () => {
    const res = await fetch(url, { headers: { authorization: `Bearer ${expired}` } });
    assert.equal(res.status, 401);
    const h = res.headers.get("www-authenticate") ?? "";
    assert.match(h, /^Bearer error="invalid_token", error_description="[^"]+"/);
    assert.ok(h.includes(`resource_metadata="${META}"`));
    const body = await res.json();
    assert.equal(body.error, "invalid_token");
    assert.equal(typeof body.error_description, "string");
    assert.ok(!JSON.stringify(body).includes("expired"));
  });
  await t.step("missing scope: 403 insufficient_scope", async () => {
    const res = await fetch(url, { headers: { authorization: `Bearer ${noScope}` } });
    assert.equal(res.status, 403);
    const h = res.headers.get("www-authenticate") ?? "";
    assert.match(h, /^Bearer error="insufficient_scope"/);
    assert.ok(h.includes(`scope="mcp:tools"`));
    assert.ok(h.includes(`resource_metadata="${META}"`));
    assert.equal((await res.json()).error, "insufficient_scope");
  });
  await t.step("two Authorization header lines: 400 invalid_request", async () => {
    const res = await rawRequest(r.gate.port, {
      method: "GET",
      path: "/mcp",
      headers: [["authorization", `Bearer ${good}`], ["authorization", `Bearer ${good}`]],
    });
    assert.equal(res.status, 400);
    assert.equal(JSON.parse(new TextDecoder().decode(res.body)).error, "invalid_request");
  });
  await t.step("token in header and query: 400 invalid_request", async () => {
    const res = await fetch(`${url}?access_token=${good}`, {
      headers: { authorization: `Bearer ${good}` },
    });
    assert.equal(res.status, 400);
    await res.body?.cancel();
  });
  await t.step("declared body over MAX_REQUEST_BODY: 413", async () => {
    const res = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${good}` },
      body: new Uint8Array(10 * 1024 * 1024 + 1),
    });
    assert.equal(res.status, 413);
    assert.equal((await res.json()).error, "payload_too_large");
  });
  await t.step("the logs name the reason and never a token byte", async () => {
    const lines = await r.gate.requestLogs(6);
    const byStatus = lines.map((l) => [l.status, l.auth, l.reason ?? null]);
    assert.deepEqual(byStatus, [
      [401, "none", null],
      [401, "invalid_token", "expired"],
      [403, "insufficient_scope", "scope"],
      [400, "invalid_request", "multiple_authorization"],
      [400, "invalid_request", "token_in_query"],
      [413, "ok", "body_too_large"],
    ]);
    const text = r.gate.logText();
    for (const tok of [good, noScope, expired]) {
      assert.ok(!text.includes(tok.split(".")[2]), "signature segment in the log");
      assert.ok(!text.includes(tok.split(".")[1]), "payload segment in the log");
    }
  });
  assert.equal(r.upstream.requests.length, 0);
});

Deno.test("gate answers 503 until the key set loads, then serves without a restart", async () => {
  const issuer = await startTestIssuer({ audience: RESOURCE });
  await using _i = issuer;
  await issuer.down("503");
  await using upstream = await startUpstream();
  await using gate = await startGate(gateEnv(issuer, upstream, FAST_REFETCH));
  const token = await issuer.mint();
  const ready0 = await fetch(`${gate.origin}/readyz`);
  assert.equal(ready0.status, 503);
  await ready0.body?.cancel();
  const early = await fetch(`${gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(early.status, 503);
  assert.ok(Number(early.headers.get("retry-after")) >= 1);
  assert.equal((await early.json()).error, "temporarily_unavailable");
  const live = await fetch(`${gate.origin}/livez`);
  assert.equal(live.status, 200);
  await live.body?.cancel();
  await issuer.up();
  await ready(gate);
  const later = await fetch(`${gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(later.status, 200);
  await later.body?.cancel();
  assert.equal(upstream.requests.length, 1);
});

Deno.test("gate accepts a rotated key without restart and keeps cached keys through an outage", async () => {
  await using r = await rig();
  const first = await r.issuer.mint();
  const ok1 = await fetch(`${r.gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${first}` },
  });
  assert.equal(ok1.status, 200);
  await ok1.body?.cancel();

  await r.issuer.rotate({ keepOld: true });
  const rotated = await r.issuer.mint();
  const ok2 = await fetch(`${r.gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${rotated}` },
  });
  assert.equal(ok2.status, 200, "new kid accepted after a refetch");
  await ok2.body?.cancel();
  const old = await fetch(`${r.gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${first}` },
  });
  assert.equal(old.status, 200, "old kid still accepted while published");
  await old.body?.cancel();

  await r.issuer.down("refused");
  const fresh = await r.issuer.mint({ sub: "someone-else" });
  const ok3 = await fetch(`${r.gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${fresh}` },
  });
  assert.equal(ok3.status, 200, "cached keys keep working while the AS is down");
  await ok3.body?.cancel();
  const readyz = await fetch(`${r.gate.origin}/readyz`);
  assert.equal(readyz.status, 200);
  await readyz.body?.cancel();
  await r.issuer.up();
});

Deno.test("gate streams SSE: the first event arrives before the upstream has finished", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  await using r = await rig({ handler: sse({ events: ["one", "two"], gate: () => released }) });
  const token = await r.issuer.mint();
  const res = await fetch(`${r.gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  assert.equal(res.headers.get("x-accel-buffering"), "no");
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("data: one\n\n")) text += (await reader.read()).value ?? "";
  assert.ok(!text.includes("two"), "second event not yet sent");
  release();
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  assert.equal(text, "event: message\ndata: one\n\nevent: message\ndata: two\n\n");
  const [line] = await r.gate.requestLogs(1);
  assert.equal(line.bytes_out, text.length);
});

Deno.test("gate round-trips a 20 MB streamed body with identical checksums", async () => {
  await using r = await rig({
    handler: echoStream(),
    env: { MAX_REQUEST_BODY: "32MiB" },
    upstream: { readBody: false },
  });
  const token = await r.issuer.mint();
  const size = 20 * 1024 * 1024;
  const body = pattern(7, size);
  const res = await fetch(`${r.gate.origin}/mcp`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" },
    body,
  });
  assert.equal(res.status, 200);
  const back = new Uint8Array(await res.arrayBuffer());
  assert.equal(back.length, size);
  assert.equal(await sha256(back), await sha256(body));
});

Deno.test("gate passes a gzip response through byte-identical with consistent headers", async () => {
  const json = JSON.stringify({ jsonrpc: "2.0", id: 1, result: { text: "x".repeat(5000) } });
  const { handler, bytes } = await gzip(json);
  await using r = await rig({ handler });
  const token = await r.issuer.mint();
  const res = await rawRequest(r.gate.port, {
    method: "GET",
    path: "/mcp",
    headers: [["authorization", `Bearer ${token}`], ["accept-encoding", "gzip"]],
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-encoding"), "gzip");
  assert.equal(res.headers.get("content-length"), String(bytes.length));
  assert.equal(await sha256(res.body), await sha256(bytes));
});

Deno.test("gate aborts the upstream request when the client disconnects mid-stream", async () => {
  let cancelled!: () => void;
  const upstreamSawCancel = new Promise<void>((r) => (cancelled = r));
  await using r = await rig({
    handler: sse({ events: ["hello"], hold: true, onCancel: () => cancelled() }),
  });
  const token = await r.issuer.mint();
  const ac = new AbortController();
  const res = await fetch(`${r.gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${token}` },
    signal: ac.signal,
  });
  const reader = res.body!.getReader();
  await reader.read();
  ac.abort();
  await reader.cancel().catch(() => {});
  await withTimeout(upstreamSawCancel, 3000, "upstream never saw the abort");
  const [line] = await r.gate.requestLogs(1);
  assert.equal(line.status, 200);
});

Deno.test("gate answers 502 when the upstream is unreachable, without naming it", async () => {
  const issuer = await startTestIssuer({ audience: RESOURCE });
  await using _i = issuer;
  const port = closedPort();
  await using gate = await startGate(
    gateEnv(issuer, { url: `http://127.0.0.1:${port}` }, FAST_REFETCH),
  );
  await ready(gate);
  const res = await fetch(`${gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${await issuer.mint()}` },
  });
  assert.equal(res.status, 502);
  const text = await res.text();
  assert.equal(JSON.parse(text).error, "upstream_error");
  assert.ok(!text.includes(String(port)));
  assert.equal(res.headers.get("cache-control"), "no-store");
});

Deno.test("gate answers 504 when the upstream sends no headers within UPSTREAM_TIMEOUT", async () => {
  await using r = await rig({ handler: never(), env: { UPSTREAM_TIMEOUT: "300ms" } });
  const started = Date.now();
  const res = await fetch(`${r.gate.origin}/mcp`, {
    headers: { authorization: `Bearer ${await r.issuer.mint()}` },
  });
  assert.equal(res.status, 504);
  const text = await res.text();
  assert.equal(JSON.parse(text).error, "upstream_timeout");
  assert.ok(!text.includes(String(r.upstream.port)));
  assert.ok(Date.now() - started < 5000);
});

Deno.test("gate publishes metadata from config whatever Host or X-Forwarded-Host say", async () => {
  await using r = await rig();
  for (const path of METADATA_PATHS) {
    const res = await rawRequest(r.gate.port, {
      method: "GET",
      path,
      headers: [["host", "evil.example"], ["x-forwarded-host", "evil.example"]],
    });
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get("cache-control"), "public, max-age=300");
    assert.equal(res.headers.get("access-control-allow-origin"), "*");
    const doc = JSON.parse(new TextDecoder().decode(res.body));
    assert.deepEqual(doc, expectedMetadata(r.issuer));
  }
  const challenge = await rawRequest(r.gate.port, {
    method: "POST",
    path: "/mcp",
    headers: [["host", "evil.example"], ["x-forwarded-host", "evil.example"]],
  });
  assert.equal(challenge.status, 401);
  assert.equal(
    challenge.headers.get("www-authenticate"),
    BARE_CHALLENGE,
  );
  assert.equal(r.upstream.requests.length, 0);
});
