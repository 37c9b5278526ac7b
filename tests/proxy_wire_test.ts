/**
 * The forwarder over real sockets: client -> Deno.serve front -> forwarder -> recording upstream.
 * Header rules are asserted on what the upstream received; streaming, framing, aborts and errors
 * on what a raw client sees on the wire.
 */
import assert from "node:assert/strict";
import { claimRef, type Config } from "../src/config/mod.ts";
import { GateError } from "../src/errors.ts";
import {
  createForwarder,
  type ForwardContext,
  type Forwarder,
  type ForwardResult,
  isUpstreamStreamError,
} from "../src/proxy/mod.ts";
import { configFor } from "./helpers/issuer.ts";
import {
  chunked,
  echoStream,
  gzip,
  large,
  never,
  pattern,
  readRequestHead,
  sha256,
  slow,
  sse,
  startRawUpstream,
  startUpstream,
  status,
  upstreamOf,
  writeText,
} from "./helpers/upstream.ts";
import { closedPort } from "./helpers/net.ts";
import { concatBytes } from "./helpers/bytes.ts";
import { withTimeout } from "./helpers/wait.ts";

const STATUS: Record<string, number> = {
  upstream_error: 502,
  upstream_timeout: 504,
  payload_too_large: 413,
};

/** A gate front: Deno.serve in front of a forwarder, with the handler's error mapping. */
interface Gate extends AsyncDisposable {
  readonly port: number;
  readonly url: string;
  readonly forwarder: Forwarder;
  readonly errors: GateError[];
  readonly results: ForwardResult[];
  /** Resolves with the n-th onDone result (0-based). */
  result(n: number): Promise<ForwardResult>;
}

function testConfig(upstreamUrl: string, overrides: Partial<Config> = {}): Config {
  return configFor("https://as.example.com", {
    upstream: upstreamOf(upstreamUrl),
    upstreamTimeoutMs: 5_000,
    ...overrides,
  });
}

function startGate(config: Config, ctx: Partial<ForwardContext> = {}): Gate {
  const forwarder = createForwarder(config);
  const errors: GateError[] = [];
  const results: ForwardResult[] = [];
  const waiters = new Map<number, (r: ForwardResult) => void>();
  const server = Deno.serve({
    port: 0,
    hostname: "127.0.0.1",
    onListen() {},
    // Stream errors after the head are expected here (resets, cut bodies).
    onError: (e) => {
      if (!isUpstreamStreamError(e)) console.error(e);
      return new Response(null, { status: 500 });
    },
  }, async (req) => {
    try {
      return await forwarder.forward(req, {
        clientIp: "203.0.113.7",
        forwardedFor: "203.0.113.7",
        forwardedProto: "https",
        requestId: "req-1",
        ...ctx,
        onDone: (r) => {
          const n = results.push(r) - 1;
          waiters.get(n)?.(r);
        },
      });
    } catch (e) {
      assert.ok(e instanceof GateError, `forward rejected with ${e}`);
      errors.push(e);
      // Like challenge.ts: the client gets the code, never the detail.
      return new Response(JSON.stringify({ error: e.code }), {
        status: STATUS[e.code] ?? 500,
        headers: { "content-type": "application/json" },
      });
    }
  });
  const port = server.addr.port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    forwarder,
    errors,
    results,
    result: (n) => results[n] ? Promise.resolve(results[n]) : new Promise((r) => waiters.set(n, r)),
    async [Symbol.asyncDispose]() {
      forwarder.close();
      await server.shutdown();
    },
  };
}

/** A response as read off the wire by {@linkcode raw}. */
interface RawResponse {
  status: number;
  /** Lower-case names, in wire order. */
  headers: [string, string][];
  header(name: string): string | null;
  /** Body bytes with the transfer framing removed. */
  body: Uint8Array;
  /** Body bytes as on the wire. */
  wire: Uint8Array;
}

/**
 * Sends `head` (and `body`) on a fresh connection with `Connection: close` and reads the whole
 * response until EOF. For asserting exact bytes and fields `fetch` would hide or change.
 */
async function raw(port: number, head: string, body?: Uint8Array): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const enc = new TextEncoder();
    const h = enc.encode(head.replace(/\r\n\r\n$/, "\r\nconnection: close\r\n\r\n"));
    await conn.write(body ? concatBytes(h, body) : h);
    const parts: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
    }
    return parseRaw(concatBytes(...parts), head.startsWith("HEAD "));
  } finally {
    conn.close();
  }
}

function parseRaw(all: Uint8Array, head: boolean): RawResponse {
  const text = new TextDecoder("latin1").decode(all);
  const end = text.indexOf("\r\n\r\n");
  assert.notEqual(end, -1, "response has a complete head");
  const lines = text.slice(0, end).split("\r\n");
  const status = Number(lines[0].split(" ")[1]);
  const headers = lines.slice(1).map((l): [string, string] => {
    const i = l.indexOf(":");
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
  });
  const get = (name: string) => headers.find(([n]) => n === name)?.[1] ?? null;
  const wire = all.subarray(end + 4);
  let body = wire;
  if (!head && get("transfer-encoding") === "chunked") body = dechunk(wire);
  return { status, headers, header: get, body, wire };
}

function dechunk(wire: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let i = 0;
  for (;;) {
    const lineEnd = wire.indexOf(10, i);
    const size = parseInt(new TextDecoder().decode(wire.subarray(i, lineEnd)), 16);
    if (size === 0) break;
    parts.push(wire.subarray(lineEnd + 1, lineEnd + 1 + size));
    i = lineEnd + 1 + size + 2;
  }
  return concatBytes(...parts);
}

const enc = new TextEncoder();
const dec = new TextDecoder();

// ---- request header rules ----

Deno.test("forward() applies every request header rule of docs/contract.md §3.8", async (t) => {
  await using up = await startUpstream();
  await using gate = startGate(
    testConfig(up.url, { claimHeaders: [{ claim: claimRef("sub"), header: "x-auth-subject" }] }),
    { forwardedFor: "198.51.100.1, 203.0.113.7", setHeaders: [["x-auth-subject", "user-42"]] },
  );
  const res = await raw(
    gate.port,
    "POST /mcp?x=1 HTTP/1.1\r\n" +
      "Host: mcp.example.com\r\n" +
      "Authorization: Bearer secret-token\r\n" +
      "Cookie: session=abc\r\n" +
      "Connection: X-Hop-Named, keep-alive\r\n" +
      "X-Hop-Named: drop me\r\n" +
      "Keep-Alive: timeout=5\r\n" +
      "Proxy-Connection: keep-alive\r\n" +
      "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
      "TE: trailers\r\n" +
      "Trailer: X-Checksum\r\n" +
      "Upgrade: websocket\r\n" +
      "X-Forwarded-For: 10.9.9.9\r\n" +
      "X-Forwarded-Proto: http\r\n" +
      "X-Forwarded-Host: evil.example\r\n" +
      "Forwarded: for=10.9.9.9\r\n" +
      "X-Request-Id: client-chosen\r\n" +
      "X-Auth-Subject: admin\r\n" +
      "Mcp-Session-Id: sess-1\r\n" +
      "MCP-Protocol-Version: 2025-11-25\r\n" +
      "Last-Event-ID: 41\r\n" +
      "Mcp-Method: tools/call\r\n" +
      "Mcp-Name: =?base64?Zm9v?=\r\n" +
      "Mcp-Param-Region: eu\r\n" +
      "Accept: application/json, text/event-stream\r\n" +
      "Content-Type: application/json\r\n" +
      "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n" +
      "User-Agent: test-client/1.0\r\n" +
      "Content-Length: 2\r\n\r\n",
    enc.encode("{}"),
  );
  assert.equal(res.status, 200);
  const rec = up.requests[0];
  const seen = (name: string) => rec.header(name);

  await t.step("method, path and query pass unchanged", () => {
    assert.equal(rec.method, "POST");
    assert.equal(rec.target, "/mcp?x=1");
    assert.equal(dec.decode(rec.body), "{}");
    assert.equal(seen("content-length"), "2");
  });
  await t.step("hop-by-hop fields and the ones Connection names are removed", () => {
    for (
      const name of [
        "connection",
        "x-hop-named",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
      ]
    ) {
      assert.equal(seen(name), null, name);
    }
  });
  await t.step("Host is the upstream's; X-Forwarded-Host the client's", () => {
    assert.equal(seen("host"), `127.0.0.1:${up.port}`);
    assert.equal(seen("x-forwarded-host"), "mcp.example.com");
  });
  await t.step("X-Forwarded-For/-Proto and X-Request-Id come from the gate", () => {
    assert.equal(seen("x-forwarded-for"), "198.51.100.1, 203.0.113.7");
    assert.equal(seen("x-forwarded-proto"), "https");
    assert.equal(seen("x-request-id"), "req-1");
    assert.equal(seen("forwarded"), null);
  });
  await t.step("Authorization and Cookie are removed by default", () => {
    assert.equal(seen("authorization"), null);
    assert.equal(seen("cookie"), null);
  });
  await t.step("an inbound claim header is replaced by the token's value", () => {
    assert.equal(seen("x-auth-subject"), "user-42");
  });
  await t.step("MCP, content negotiation and trace headers pass untouched", () => {
    assert.equal(seen("mcp-session-id"), "sess-1");
    assert.equal(seen("mcp-protocol-version"), "2025-11-25");
    assert.equal(seen("last-event-id"), "41");
    assert.equal(seen("mcp-method"), "tools/call");
    assert.equal(seen("mcp-name"), "=?base64?Zm9v?=");
    assert.equal(seen("mcp-param-region"), "eu");
    assert.equal(seen("accept"), "application/json, text/event-stream");
    assert.equal(seen("content-type"), "application/json");
    assert.equal(seen("traceparent"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert.equal(seen("user-agent"), "test-client/1.0");
  });
});

Deno.test("forward() removes inbound claim headers even when the token sets none", async () => {
  await using up = await startUpstream();
  await using gate = startGate(
    testConfig(up.url, { claimHeaders: [{ claim: claimRef("email"), header: "x-auth-email" }] }),
  );
  const res = await fetch(gate.url + "/mcp", { headers: { "X-Auth-Email": "root@example.com" } });
  await res.body?.cancel();
  assert.equal(up.requests[0].header("x-auth-email"), null);
});

Deno.test("forward() refuses a head with a CR/LF in a claim value: 502, nothing sent", async () => {
  await using up = await startUpstream();
  await using gate = startGate(testConfig(up.url), {
    setHeaders: [["x-auth-name", "eve\r\nx-injected: 1"], ["x-auth-subject", "ok"]],
  });
  const res = await fetch(gate.url + "/mcp");
  assert.equal(res.status, 502);
  await res.body?.cancel();
  assert.equal(up.requests.length, 0);
});

Deno.test("forward() keeps Authorization and Cookie with FORWARD_AUTHORIZATION", async () => {
  await using up = await startUpstream();
  await using gate = startGate(testConfig(up.url, { forwardAuthorization: true }));
  const res = await fetch(gate.url + "/mcp", {
    headers: { Authorization: "Bearer abc", Cookie: "a=b" },
  });
  await res.body?.cancel();
  assert.equal(up.requests[0].header("authorization"), "Bearer abc");
  assert.equal(up.requests[0].header("cookie"), "a=b");
});

Deno.test("forward() sends the client's Host with PRESERVE_HOST", async () => {
  await using up = await startUpstream();
  await using gate = startGate(testConfig(up.url, { preserveHost: true }));
  const res = await raw(gate.port, "GET /mcp HTTP/1.1\r\nHost: public.example\r\n\r\n");
  assert.equal(res.status, 200);
  assert.equal(up.requests[0].header("host"), "public.example");
  assert.equal(up.requests[0].header("x-forwarded-host"), "public.example");
});

Deno.test("forward() appends the request path to the upstream base path", async () => {
  await using up = await startUpstream();
  await using gate = startGate(testConfig(`${up.url}/base`));
  const res = await fetch(gate.url + "/mcp/x?y=1");
  await res.body?.cancel();
  assert.equal(up.requests[0].target, "/base/mcp/x?y=1");
});

Deno.test("forward() removes access_token from the query and keeps the rest as sent", async (t) => {
  await using up = await startUpstream();
  await using gate = startGate(testConfig(up.url));
  const cases: [string, string][] = [
    ["/mcp?access_token=abc", "/mcp"],
    ["/mcp?a=1&access_token=abc&b=%2f+x", "/mcp?a=1&b=%2f+x"],
    ["/mcp?access%5Ftoken=abc&c", "/mcp?c"],
    ["/mcp?q=access_token&x=%41", "/mcp?q=access_token&x=%41"],
  ];
  for (const [sent, expected] of cases) {
    await t.step(`${sent} -> ${expected}`, async () => {
      const before = up.requests.length;
      const res = await raw(gate.port, `GET ${sent} HTTP/1.1\r\nHost: a\r\n\r\n`);
      assert.equal(res.status, 200);
      assert.equal(up.requests[before].target, expected);
    });
  }
});

// ---- response side ----

Deno.test("forward() passes upstream statuses through untouched and follows no redirect", async (t) => {
  const cases: [number, Record<string, string>, string | null][] = [
    [202, {}, null],
    [404, { "content-type": "application/json" }, '{"error":"session not found"}'],
    [405, { allow: "POST" }, "method not allowed"],
    [406, {}, "not acceptable"],
    [301, { location: "https://elsewhere.example/" }, null],
    [400, {}, "bad protocol version"],
  ];
  for (const [code, headers, body] of cases) {
    await t.step(`${code}`, async () => {
      await using up = await startUpstream(status(code, { headers, body }));
      await using gate = startGate(testConfig(up.url));
      const res = await fetch(gate.url + "/mcp", {
        method: "POST",
        body: "{}",
        redirect: "manual",
      });
      assert.equal(res.status, code);
      for (const [k, v] of Object.entries(headers)) assert.equal(res.headers.get(k), v);
      assert.equal(await res.text(), body ?? "");
      assert.equal(up.requests.length, 1);
      assert.deepEqual(await gate.result(0), {
        upstreamStatus: code,
        bytesIn: 2,
        bytesOut: body === null ? 0 : enc.encode(body).length,
        outcome: "complete",
      });
    });
  }
});

Deno.test("forward() removes hop-by-hop response fields and the ones Connection names", async () => {
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    await writeText(
      conn,
      "HTTP/1.1 200 OK\r\nConnection: X-Internal, keep-alive\r\nX-Internal: secret\r\n" +
        "Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X-Sum\r\n" +
        "X-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
    );
  });
  await using gate = startGate(testConfig(up.url));
  const res = await raw(gate.port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal(res.status, 200);
  assert.equal(dec.decode(res.body), "ok");
  assert.equal(res.header("x-kept"), "yes");
  for (const name of ["x-internal", "keep-alive", "proxy-authenticate", "upgrade", "trailer"]) {
    assert.equal(res.header(name), null, name);
  }
});

Deno.test("forward() answers HEAD, 204 and 304 without a body and keeps the client connection usable", async (t) => {
  await using up = await startUpstream((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/204") return new Response(null, { status: 204 });
    if (path === "/304") return new Response(null, { status: 304, headers: { etag: '"v1"' } });
    return new Response(null, { headers: { "content-length": "1234", etag: '"v1"' } });
  });
  await using gate = startGate(testConfig(up.url));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: gate.port });
  try {
    const ask = async (line: string) => {
      await writeText(conn, `${line}\r\nHost: a\r\n\r\n`);
      return dec.decode(await readUntil(conn, "\r\n\r\n"));
    };
    await t.step("HEAD keeps the upstream's Content-Length", async () => {
      const head = await ask("HEAD /head HTTP/1.1");
      assert.match(head, /^HTTP\/1\.1 200/);
      assert.match(head, /content-length: 1234\r\n/);
    });
    await t.step("204", async () => {
      assert.match(await ask("GET /204 HTTP/1.1"), /^HTTP\/1\.1 204/);
    });
    await t.step("304", async () => {
      const head = await ask("GET /304 HTTP/1.1");
      assert.match(head, /^HTTP\/1\.1 304/);
      assert.match(head, /etag: "v1"/);
    });
    await t.step("no stray body bytes followed", async () => {
      // A body after any of them would show up here in front of the next status line.
      assert.match(await ask("GET /204 HTTP/1.1"), /^HTTP\/1\.1 204/);
    });
  } finally {
    conn.close();
  }
  // The client's connection stays usable; upstream connections are not reused after a response
  // that has no body by status or method: bytes a buggy upstream writes after one could not be
  // told from the next response (docs/security.md).
  assert.equal(up.connections.size, 4, "a fresh upstream connection after each bodiless response");
});

/** Reads from `conn` until `marker` was seen; returns everything read. */
async function readUntil(conn: Deno.Conn, marker: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`EOF before ${JSON.stringify(marker)}`);
    parts.push(buf.slice(0, n));
    const all = concatBytes(...parts);
    if (new TextDecoder("latin1").decode(all).includes(marker)) return all;
  }
}

Deno.test("forward() streams SSE: the first event arrives before the upstream finished", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  await using up = await startUpstream(sse({
    events: ['{"n":1}', '{"n":2}'],
    gate: () => released,
  }));
  await using gate = startGate(testConfig(up.url));
  const res = await fetch(gate.url + "/mcp", { headers: { accept: "text/event-stream" } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  assert.equal(res.headers.get("x-accel-buffering"), "no");
  assert.equal(res.headers.get("cache-control"), "no-cache, no-transform");
  const reader = res.body!.getReader();
  const first = await withTimeout(reader.read(), 2000, "Timed out waiting for the first event");
  assert.equal(dec.decode(first.value), 'event: message\ndata: {"n":1}\n\n');
  assert.equal(gate.results.length, 0, "the exchange is still open");
  release();
  let rest = "";
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    rest += dec.decode(r.value);
  }
  assert.equal(rest, 'event: message\ndata: {"n":2}\n\n');
  const done = await gate.result(0);
  assert.equal(done.outcome, "complete");
  assert.equal(done.bytesOut, enc.encode(`event: message\ndata: {"n":1}\n\n`).length * 2);
});

Deno.test("forward() never cuts a streaming body with UPSTREAM_TIMEOUT", async () => {
  await using up = await startUpstream(sse({
    events: ["a", "b"],
    gate: () => new Promise((r) => setTimeout(r, 400)),
  }));
  await using gate = startGate(testConfig(up.url, { upstreamTimeoutMs: 150 }));
  const res = await fetch(gate.url + "/mcp");
  const text = await res.text();
  assert.equal(text, "event: message\ndata: a\n\nevent: message\ndata: b\n\n");
  assert.equal((await gate.result(0)).outcome, "complete");
});

Deno.test("forward() adds X-Accel-Buffering: no to event streams, replacing the upstream's", async () => {
  await using up = await startUpstream(status(200, {
    headers: { "content-type": "Text/Event-Stream; charset=utf-8", "x-accel-buffering": "yes" },
    body: "data: x\n\n",
  }));
  await using gate = startGate(testConfig(up.url));
  const res = await raw(gate.port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.deepEqual(res.headers.filter(([n]) => n === "x-accel-buffering"), [
    ["x-accel-buffering", "no"],
  ]);
});

Deno.test("forward() passes a gzip body byte-identical with Content-Encoding and Content-Length", async () => {
  const json = JSON.stringify({
    result: "x".repeat(5000),
    list: Array.from({ length: 200 }, (_, i) => i),
  });
  const g = await gzip(json);
  await using up = await startUpstream(g.handler);
  await using gate = startGate(testConfig(up.url));
  const res = await raw(gate.port, "GET /mcp HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n");
  assert.equal(res.status, 200);
  assert.equal(res.header("content-encoding"), "gzip");
  assert.equal(res.header("content-length"), String(g.bytes.length));
  assert.equal(res.header("transfer-encoding"), null);
  assert.deepEqual(res.wire, g.bytes);
  assert.equal(up.requests[0].header("accept-encoding"), "gzip");
});

Deno.test("forward() passes a large Content-Length body streamed in pieces", async () => {
  const size = 3 * 1024 * 1024 + 17;
  await using up = await startUpstream(large(size));
  await using gate = startGate(testConfig(up.url));
  const res = await raw(gate.port, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal(res.header("content-length"), String(size));
  assert.equal(await sha256(res.body), await sha256(pattern(0, size)));
  assert.equal((await gate.result(0)).bytesOut, size);
});

Deno.test("forward() decodes a chunked upstream body and passes the payload", async () => {
  await using up = await startUpstream(chunked(["hello ", "chunked ", "world"]));
  await using gate = startGate(testConfig(up.url));
  const res = await raw(gate.port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal(res.status, 200);
  assert.equal(dec.decode(res.body), "hello chunked world");
  assert.equal(res.header("content-type"), "text/plain");
});

Deno.test("forward() round-trips a 20 MB request body both ways with matching SHA-256", async (t) => {
  const size = 20 * 1024 * 1024;
  const data = pattern(7, size);
  const digest = await sha256(data);
  await using up = await startUpstream(echoStream(), { readBody: false });
  await using gate = startGate(testConfig(up.url, { maxRequestBodyBytes: 32 * 1024 * 1024 }));
  await t.step("with Content-Length", async () => {
    const res = await fetch(gate.url + "/upload", { method: "POST", body: data });
    const back = await res.bytes();
    assert.equal(back.length, size);
    assert.equal(await sha256(back), digest);
    assert.equal(up.requests.at(-1)!.header("content-length"), String(size));
  });
  await t.step("chunked (no Content-Length)", async () => {
    let off = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (off >= size) return c.close();
        c.enqueue(data.subarray(off, off + 1_000_000));
        off += 1_000_000;
      },
    });
    const res = await fetch(gate.url + "/upload", { method: "POST", body });
    const back = await res.bytes();
    assert.equal(await sha256(back), digest);
    assert.equal(up.requests.at(-1)!.header("transfer-encoding"), "chunked");
  });
  const r = await gate.result(1);
  assert.equal(r.bytesIn, size);
  assert.equal(r.bytesOut, size);
});

Deno.test("forward() streams the request body: the upstream has the first piece before the rest is sent", async () => {
  let gotFirst!: () => void;
  const upstreamGotFirst = new Promise<void>((r) => gotFirst = r);
  await using up = await startUpstream(async (req) => {
    const reader = req.body!.getReader();
    let text = "";
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      text += dec.decode(r.value);
      if (text.includes("first")) gotFirst();
    }
    return new Response(text);
  }, { readBody: false });
  await using gate = startGate(testConfig(up.url));
  let step = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (step === 0) c.enqueue(enc.encode("first "));
      // Sent only once the upstream has the first piece: a buffering proxy would deadlock here.
      else if (step === 1) c.enqueue(await upstreamGotFirst.then(() => enc.encode("second")));
      else c.close();
      step++;
    },
  });
  const res = await withTimeout(
    fetch(gate.url + "/upload", { method: "POST", body }),
    5000,
    "Timed out waiting for the streamed upload",
  );
  assert.equal(await res.text(), "first second");
});

Deno.test("forward() reuses one upstream connection for sequential requests", async () => {
  await using up = await startUpstream();
  await using gate = startGate(testConfig(up.url));
  for (let i = 0; i < 5; i++) {
    const res = await fetch(gate.url + "/mcp", {
      method: i % 2 ? "POST" : "GET",
      body: i % 2 ? "{}" : undefined,
    });
    assert.equal(await res.text(), "ok");
  }
  assert.equal(up.requests.length, 5);
  assert.equal(up.connections.size, 1);
});

// ---- aborts and failures ----

Deno.test("forward() aborts the upstream request when the client goes away mid-stream", async () => {
  let cancelled!: () => void;
  const upstreamCancelled = new Promise<void>((r) => cancelled = r);
  await using up = await startUpstream(sse({ events: ["first"], hold: true, onCancel: cancelled }));
  await using gate = startGate(testConfig(up.url));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: gate.port });
  await writeText(conn, "GET /mcp HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n");
  await readUntil(conn, "data: first");
  conn.close();
  await withTimeout(
    upstreamCancelled,
    3000,
    "Timed out waiting for the upstream to see its stream cancelled",
  );
  const result = await withTimeout(gate.result(0), 3000, "Timed out waiting for onDone");
  assert.equal(result.outcome, "client_abort");
  assert.equal(result.upstreamStatus, 200);
});

Deno.test("forward() aborts the upstream request when the client leaves before the response", async () => {
  let sawEof!: () => void;
  const upstreamSawEof = new Promise<void>((r) => sawEof = r);
  let headSeen!: () => void;
  const requestArrived = new Promise<void>((r) => headSeen = r);
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    headSeen();
    const n = await conn.read(new Uint8Array(16)).catch(() => null);
    if (n === null) sawEof();
  });
  await using gate = startGate(testConfig(up.url));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: gate.port });
  await writeText(conn, "GET /mcp HTTP/1.1\r\nHost: a\r\n\r\n");
  await requestArrived;
  conn.close();
  await withTimeout(upstreamSawEof, 3000, "Timed out waiting for the upstream connection to close");
  assert.equal(gate.errors[0]?.reason, "client_closed");
  assert.equal(gate.results.length, 0, "onDone is only for resolved forwards");
});

Deno.test("forward() fails fast with upstream_error when the upstream refuses connections", async () => {
  const port = closedPort();
  await using gate = startGate(testConfig(`http://127.0.0.1:${port}`));
  const started = performance.now();
  const res = await fetch(gate.url + "/mcp");
  const body = await res.text();
  assert.ok(performance.now() - started < 1000, "answered without waiting for a timeout");
  assert.equal(res.status, 502);
  assert.equal(body, '{"error":"upstream_error"}');
  assert.equal(gate.errors[0].code, "upstream_error");
  assert.equal(gate.errors[0].reason, "upstream_unreachable");
  assert.ok(!body.includes(String(port)) && !body.includes("127.0.0.1"));
});

Deno.test("forward() times out with upstream_timeout when the upstream never answers", async () => {
  await using up = await startUpstream(never());
  await using gate = startGate(testConfig(up.url, { upstreamTimeoutMs: 200 }));
  const started = performance.now();
  const res = await fetch(gate.url + "/mcp");
  const body = await res.text();
  const elapsed = performance.now() - started;
  assert.equal(res.status, 504);
  assert.equal(body, '{"error":"upstream_timeout"}');
  assert.ok(elapsed >= 190 && elapsed < 2000, `took ${elapsed} ms`);
  assert.equal(gate.errors[0].reason, "upstream_timeout");
  assert.ok(!body.includes(String(up.port)));
});

Deno.test("forward() errors never name the upstream in what the client gets", async () => {
  const port = closedPort();
  await using gate = startGate(testConfig(`http://127.0.0.1:${port}/base`));
  const res = await raw(gate.port, "GET /mcp HTTP/1.1\r\nHost: a\r\n\r\n");
  const everything = dec.decode(concatBytes(enc.encode(JSON.stringify(res.headers)), res.wire));
  assert.ok(!everything.includes(String(port)), everything);
  assert.ok(!everything.includes("/base"), everything);
});

Deno.test("forward() breaks the client's body when the upstream resets mid-stream", async (t) => {
  const cases: [string, string][] = [
    ["content-length body cut short", "Content-Length: 1000\r\n\r\n" + "x".repeat(100)],
    ["chunked body without its last chunk", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"],
  ];
  for (const [name, rest] of cases) {
    await t.step(name, async () => {
      let sent!: () => void;
      const partSent = new Promise<void>((r) => sent = r);
      await using up = startRawUpstream(async (conn) => {
        await readRequestHead(conn);
        await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + rest);
        sent();
      });
      await using gate = startGate(testConfig(up.url));
      const res = await fetch(gate.url + "/mcp");
      assert.equal(res.status, 200);
      await partSent;
      await assert.rejects(res.bytes());
      const r = await withTimeout(gate.result(0), 3000, "Timed out waiting for onDone");
      assert.equal(r.outcome, "upstream_abort");
    });
  }
});

Deno.test("forward() cuts a chunked request body over MAX_REQUEST_BODY with 413", async () => {
  await using up = await startUpstream(never());
  await using gate = startGate(testConfig(up.url, { maxRequestBodyBytes: 100_000 }));
  let off = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (off >= 1_000_000) return c.close();
      c.enqueue(pattern(off, 10_000));
      off += 10_000;
    },
  });
  const res = await fetch(gate.url + "/upload", { method: "POST", body });
  assert.equal(res.status, 413);
  assert.equal(await res.text(), '{"error":"payload_too_large"}');
  assert.equal(gate.errors[0].reason, "body_too_large");
  const rec = await up.request(0);
  await withTimeout(
    rec.abortedEvent,
    3000,
    "Timed out waiting for the upstream to see its request aborted",
  );
  assert.ok(rec.body.length <= 100_000);
});

Deno.test("forward() ends a streaming exchange with body_too_large when the upstream already answered", async () => {
  await using up = await startUpstream(echoStream(), { readBody: false });
  await using gate = startGate(testConfig(up.url, { maxRequestBodyBytes: 100_000 }));
  let off = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (off >= 1_000_000) return c.close();
      c.enqueue(pattern(off, 10_000));
      off += 10_000;
      // Let the echo answer first.
      if (off === 10_000) await new Promise((r) => setTimeout(r, 50));
    },
  });
  const res = await fetch(gate.url + "/upload", { method: "POST", body });
  assert.equal(res.status, 200);
  await assert.rejects(res.bytes());
  const r = await withTimeout(gate.result(0), 3000, "Timed out waiting for onDone");
  assert.equal(r.outcome, "body_too_large");
  const rec = await up.request(0);
  await withTimeout(
    rec.abortedEvent,
    3000,
    "Timed out waiting for the upstream to see its request aborted",
  );
});

Deno.test("forward() rejects a declared Content-Length over MAX_REQUEST_BODY without contacting the upstream", async () => {
  await using up = await startUpstream();
  await using gate = startGate(testConfig(up.url, { maxRequestBodyBytes: 10 }));
  const res = await fetch(gate.url + "/upload", { method: "POST", body: "x".repeat(11) });
  assert.equal(res.status, 413);
  await res.body?.cancel();
  assert.equal(up.requests.length, 0);
});

Deno.test("forward() reports bytes and outcome once per exchange", async () => {
  await using up = await startUpstream(slow(10, () => new Response("0123456789")));
  await using gate = startGate(testConfig(up.url));
  const res = await fetch(gate.url + "/mcp", { method: "POST", body: "abc" });
  assert.equal(await res.text(), "0123456789");
  assert.deepEqual(await gate.result(0), {
    upstreamStatus: 200,
    bytesIn: 3,
    bytesOut: 10,
    outcome: "complete",
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(gate.results.length, 1);
});
