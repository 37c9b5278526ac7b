/**
 * Faults under load, black-box over real sockets and bounded in time: a hostile or broken key
 * set, an upstream that refuses, stalls or breaks mid-stream, and clients that vanish or read
 * slowly. The gate must stay up, keep its keys, and never buffer without bound.
 * (Rotation, old kid still published, and the AS going down after warm-up are in gate_test.ts.)
 */
import assert from "node:assert/strict";
import { generateTestKey, mintToken, startTestIssuer } from "./helpers/issuer.ts";
import {
  never,
  readRequestHead,
  sse,
  startRawUpstream,
  type UpstreamHandler,
  writeText,
} from "./helpers/upstream.ts";
import { startGate } from "./helpers/gate.ts";
import { gateEnv, ready, RESOURCE, startRig } from "./helpers/rig.ts";
import { closedPort } from "./helpers/net.ts";
import { withTimeout } from "./helpers/wait.ts";

/**
 * GET /mcp over a raw socket with `token`; returns everything read until EOF or a reset. A
 * connection still open after 5 s is closed and reported as `timedOut`.
 */
async function rawExchange(
  port: number,
  token: string,
): Promise<{ raw: string; timedOut: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let raw = "";
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, 5000);
  try {
    await writeText(
      conn,
      `GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\n\r\n`,
    );
    const buf = new Uint8Array(16 * 1024);
    const dec = new TextDecoder();
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      raw += dec.decode(buf.subarray(0, n), { stream: true });
    }
  } catch (err) {
    if (!timedOut && !(err instanceof Deno.errors.ConnectionReset)) throw err;
  } finally {
    clearTimeout(timer);
    if (!timedOut) conn.close();
  }
  return { raw, timedOut };
}

async function status(url: string, init?: RequestInit): Promise<number> {
  const res = await fetch(url, init);
  await res.body?.cancel();
  return res.status;
}

// ---- key set ----

Deno.test("500 tokens with random unknown kids make the gate fetch the JWKS at most a handful of times", async () => {
  // 500 at once from one address: the per-address in-flight cap (MAX_CONCURRENT_REQUESTS,
  // default 100) is not what this test is about.
  await using r = await startRig({
    env: { JWKS_MIN_REFRESH_INTERVAL: "1s", MAX_CONCURRENT_REQUESTS: "0" },
  });
  const attacker = await generateTestKey("ES256");
  const tokens = await Promise.all(
    Array.from({ length: 500 }, () =>
      mintToken({
        issuer: r.issuer.issuer,
        key: attacker,
        header: { kid: crypto.randomUUID() },
      })),
  );
  // Past JWKS_MIN_REFRESH_INTERVAL since the startup load, so one refetch is allowed.
  await new Promise((res) => setTimeout(res, 1100));
  const before = r.issuer.jwksFetchCount;
  const started = performance.now();
  const statuses = await Promise.all(
    tokens.map((t) => status(r.url, { headers: { authorization: `Bearer ${t}` } })),
  );
  const elapsed = performance.now() - started;
  const fetches = r.issuer.jwksFetchCount - before;
  assert.deepEqual(new Set(statuses), new Set([401]));
  assert.ok(fetches >= 1 && fetches <= 3, `${fetches} JWKS fetches for 500 unknown kids`);
  assert.ok(elapsed < 15_000, `took ${elapsed} ms`);
  r.assertUpstreamUntouched();
  const lines = await r.gate.requestLogs(500);
  assert.ok(lines.every((l) => l.reason === "unknown_kid"));
  // And the gate still serves real users.
  const good = await r.issuer.mint();
  assert.equal(await status(r.url, { headers: { authorization: `Bearer ${good}` } }), 200);
});

Deno.test("a garbage, oversized or empty key set never replaces the keys the gate has", async (t) => {
  await using r = await startRig({ env: { JWKS_MIN_REFRESH_INTERVAL: "50ms" } });
  const cached = await r.issuer.mint({ sub: "cached" });
  assert.equal(await status(r.url, { headers: { authorization: `Bearer ${cached}` } }), 200);
  const stranger = await generateTestKey("ES256");
  const faults: [string, () => void][] = [
    ["HTML instead of JSON", () => r.issuer.jwksMode("garbage")],
    ["a 2 MiB document with a Content-Length", () => r.issuer.jwksMode("oversized")],
    ["a 2.5 MiB chunked document", () => r.issuer.jwksMode("oversized-chunked")],
    ["HTTP 503", () => r.issuer.jwksMode("503")],
    ["an empty key set", () => r.issuer.setJwks({ keys: [] })],
    ["a JSON array", () => r.issuer.setJwks([r.issuer.current.publicJwk])],
    ["only a symmetric key", () => r.issuer.setJwks({ keys: [{ kty: "oct", k: "c2VjcmV0" }] })],
  ];
  for (const [name, fault] of faults) {
    await t.step(name, async () => {
      fault();
      const before = r.issuer.jwksFetchCount;
      // An unknown kid makes the gate refetch (the minimum interval has passed).
      await new Promise((res) => setTimeout(res, 60));
      const probe = await mintToken({
        issuer: r.issuer.issuer,
        key: stranger,
        header: { kid: stranger.kid },
      });
      assert.equal(await status(r.url, { headers: { authorization: `Bearer ${probe}` } }), 401);
      assert.equal(r.issuer.jwksFetchCount, before + 1, "the refetch happened");
      // The cached token and a fresh one by the known key both still pass.
      const fresh = await r.issuer.mint({ sub: "fresh" });
      assert.equal(await status(r.url, { headers: { authorization: `Bearer ${cached}` } }), 200);
      assert.equal(await status(r.url, { headers: { authorization: `Bearer ${fresh}` } }), 200);
      assert.equal(await status(`${r.gate.origin}/readyz`), 200);
      await r.issuer.up(); // back to serving the real keys
    });
  }
  const failures = () => r.gate.logs().filter((l) => l.msg === "key set refresh failed");
  // (With MCP_GATE_BIN the log arrives through a pipe: wait for it.)
  await r.gate.waitForLog(() => failures().length >= faults.length).catch(() => {});
  assert.equal(failures().length, faults.length, "one warning per failed refresh");
});

// ---- upstream ----

Deno.test("upstream refusing connections: 502 within a second, every time, and the gate stays up", async () => {
  const issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  await using _i = issuer;
  const port = closedPort();
  await using gate = await startGate(gateEnv(issuer, { url: `http://127.0.0.1:${port}` }));
  await ready(gate);
  const token = await issuer.mint();
  const started = performance.now();
  const statuses = await Promise.all(
    Array.from(
      { length: 20 },
      () => status(`${gate.origin}/mcp`, { headers: { authorization: `Bearer ${token}` } }),
    ),
  );
  const elapsed = performance.now() - started;
  assert.deepEqual(statuses, Array(20).fill(502));
  assert.ok(elapsed < 1000, `20 refused requests took ${elapsed} ms`);
  assert.equal(await status(`${gate.origin}/livez`), 200);
  assert.equal(await status(`${gate.origin}/readyz`), 200);
  const lines = await gate.requestLogs(20);
  assert.ok(lines.every((l) => l.reason === "upstream_unreachable"));
});

Deno.test("upstream that accepts but never answers: 504 after UPSTREAM_TIMEOUT, not before", async () => {
  await using r = await startRig({ handler: never(), env: { UPSTREAM_TIMEOUT: "600ms" } });
  const token = await r.issuer.mint();
  const started = performance.now();
  const res = await fetch(r.url, { headers: { authorization: `Bearer ${token}` } });
  const elapsed = performance.now() - started;
  assert.equal(res.status, 504);
  assert.equal((await res.json()).error, "upstream_timeout");
  assert.ok(elapsed >= 550 && elapsed < 2500, `504 after ${elapsed} ms`);
  assert.equal(await status(`${r.gate.origin}/livez`), 200);
});

Deno.test("upstream resetting mid-stream: the client's stream fails, the gate stays healthy and logs no crash", async (t) => {
  const issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  await using _i = issuer;
  // Connection 0: headers and one event, then the socket closes mid-body. Connection 1 and
  // later: a complete answer.
  const framings = [
    "transfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n" +
    "13\r\ndata: first event\n\n\r\n",
    "content-length: 1000\r\ncontent-type: application/json\r\n\r\n" + '{"partial":',
  ];
  let broken = 0;
  const framing = { current: framings[0] };
  await using upstream = startRawUpstream(async (conn) => {
    while ((await readRequestHead(conn)) !== null) {
      if (broken++ % 2 === 0) {
        await writeText(conn, "HTTP/1.1 200 OK\r\n" + framing.current);
        return; // the helper closes the socket mid-body
      }
      await writeText(conn, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    }
  });
  await using gate = await startGate(gateEnv(issuer, upstream));
  await ready(gate);
  const token = await issuer.mint();
  const auth = { authorization: `Bearer ${token}` };
  let n = 0;
  for (const [i, f] of framings.entries()) {
    await t.step(
      i === 0 ? "chunked SSE cut after one event" : "Content-Length body cut short",
      async () => {
        framing.current = f;
        // On the wire, so no client leniency can hide it: the response must be visibly cut,
        // short of its Content-Length or without the last chunk, never ended cleanly.
        const { raw, timedOut } = await rawExchange(gate.port, token);
        assert.ok(!timedOut, "the gate kept the client's connection open after the cut");
        // (A runtime may also close the connection before sending the head: an error as well.)
        if (raw !== "") {
          assert.match(raw, /^HTTP\/1\.1 200 /);
          const end = raw.indexOf("\r\n\r\n");
          const [head, body] = [raw.slice(0, end), raw.slice(end + 4)];
          const length = /^content-length: (\d+)$/im.exec(head);
          if (length) assert.ok(body.length < Number(length[1]), "a short body passed as complete");
          else {
            assert.match(head, /^transfer-encoding: chunked$/im);
            assert.ok(!body.endsWith("0\r\n\r\n"), "a cut stream ended with the last chunk");
          }
        }
        const line = (await gate.requestLogs(++n))[n - 1];
        assert.equal(line.status, 200);
        assert.equal(line.upstream_status, 200);
        // Healthy: the next exchange works.
        const next = await fetch(`${gate.origin}/mcp`, { headers: auth });
        assert.equal(next.status, 200);
        assert.equal(await next.text(), "ok");
        n++;
        assert.equal(await status(`${gate.origin}/livez`), 200);
      },
    );
  }
  const crashes = gate.logs().filter((l) => l.level === "error");
  assert.deepEqual(crashes, [], "an upstream breaking off is not an unhandled error");
});

// ---- client ----

Deno.test("a client leaving mid-SSE aborts the upstream request within two seconds", async () => {
  let cancelled!: () => void;
  const upstreamSawCancel = new Promise<void>((r) => (cancelled = r));
  await using r = await startRig({
    handler: sse({ events: ["one"], hold: true, onCancel: () => cancelled() }),
  });
  const ac = new AbortController();
  const res = await fetch(r.url, {
    headers: { authorization: `Bearer ${await r.issuer.mint()}` },
    signal: ac.signal,
  });
  const reader = res.body!.getReader();
  await reader.read();
  const t0 = performance.now();
  ac.abort();
  await reader.cancel().catch(() => {});
  await withTimeout(upstreamSawCancel, 2000, "the upstream never saw the client leave");
  const elapsed = performance.now() - t0;
  assert.ok(elapsed < 2000, `${elapsed} ms`);
  const [line] = await r.gate.requestLogs(1);
  assert.equal(line.status, 200);
  assert.equal(await status(`${r.gate.origin}/livez`), 200);
});

Deno.test("a slow client reading a 256 MiB response: the gate reads the upstream only as fast as the client", async () => {
  const total = 256 * 1024 * 1024;
  const chunk = new Uint8Array(64 * 1024).fill(120);
  let pulled = 0;
  let cancelled!: () => void;
  const upstreamCancelled = new Promise<void>((r) => (cancelled = r));
  const handler: UpstreamHandler = () =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull(c) {
          if (pulled >= total) return c.close();
          pulled += chunk.length;
          c.enqueue(chunk.slice());
        },
        cancel() {
          cancelled();
        },
      }, { highWaterMark: 0 }),
      { headers: { "content-length": String(total), "content-type": "application/octet-stream" } },
    );
  await using r = await startRig({ handler });
  const token = await r.issuer.mint();
  const rssBefore = Deno.memoryUsage().rss;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: r.gate.port });
  let read = 0;
  try {
    await writeText(
      conn,
      `GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\n\r\n`,
    );
    const buf = new Uint8Array(64 * 1024);
    while (read < 1024 * 1024) read += (await conn.read(buf)) ?? 0;
    // The client now stalls; give a gate without backpressure time to pull everything.
    for (let i = 0; i < 3; i++) {
      await new Promise((res) => setTimeout(res, 500));
      const ahead = pulled - read;
      assert.ok(ahead < 48 * 1024 * 1024, `the gate pulled ${ahead} bytes ahead of the client`);
    }
    const grown = Deno.memoryUsage().rss - rssBefore;
    assert.ok(grown < 96 * 1024 * 1024, `resident memory grew ${grown} bytes`);
    // Reading resumes where it stopped.
    while (read < 8 * 1024 * 1024) read += (await conn.read(buf)) ?? 0;
  } finally {
    conn.close();
  }
  await withTimeout(
    upstreamCancelled,
    2000,
    "the upstream body was not cancelled after the client left",
  );
  assert.ok(pulled < total, "the whole body was pulled anyway");
});
