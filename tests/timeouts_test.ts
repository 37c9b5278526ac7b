/**
 * The Go gate's READ_TIMEOUT, SSE_IDLE_TIMEOUT, MAX_HEADER_BYTES and IDLE_TIMEOUT, black box
 * (docs/contract.md §1): a body that stalls gets 408 and never reaches the upstream as a complete
 * request; a silent stream is closed, logged and counted while a talking one stays open; a head
 * over the limit gets 431; a setting the runtime cannot apply is named in one start-up warning.
 */
import assert from "node:assert/strict";
import { gateEnv, ready, RESOURCE } from "./helpers/rig.ts";
import { startGate, type TestGate } from "./helpers/gate.ts";
import { startTestIssuer, type TestIssuer } from "./helpers/issuer.ts";
import {
  readRequestHead,
  type RecordedRequest,
  sse,
  startRawUpstream,
  startUpstream,
} from "./helpers/upstream.ts";
import { rawRequest } from "./helpers/raw_http.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Sends `head` and `body` on a raw socket, then waits (without sending more) for the answer. */
async function stalledRequest(
  port: number,
  head: string,
  body: Uint8Array,
): Promise<{ status: number; text: string; elapsedMs: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const t0 = performance.now();
  try {
    await conn.write(enc.encode(head));
    let off = 0;
    while (off < body.length) off += await conn.write(body.subarray(off));
    let text = "";
    const buf = new Uint8Array(16 * 1024);
    const guard = setTimeout(() => conn.close(), 15_000);
    try {
      while (!/\r\n\r\n[\s\S]*\}/.test(text)) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += dec.decode(buf.subarray(0, n));
      }
    } finally {
      clearTimeout(guard);
    }
    return { status: Number(text.split(" ")[1]), text, elapsedMs: performance.now() - t0 };
  } finally {
    try {
      conn.close();
    } catch { /* closed by the guard */ }
  }
}

function reqHead(port: number, token: string, framing: string): string {
  return `POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nauthorization: Bearer ${token}\r\n` +
    `content-type: application/json\r\n${framing}\r\n`;
}

async function withGate(
  upstreamUrl: string,
  env: Record<string, string>,
  fn: (gate: TestGate, issuer: TestIssuer) => Promise<void> | void,
): Promise<void> {
  await using issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  await using gate = await startGate(gateEnv(issuer, { url: upstreamUrl }, env));
  await ready(gate);
  await fn(gate, issuer);
}

Deno.test("READ_TIMEOUT: a small body that stalls gets 408 and nothing reaches the upstream", async () => {
  await using upstream = await startUpstream();
  await withGate(upstream.url, { READ_TIMEOUT: "1s" }, async (gate, issuer) => {
    const token = await issuer.mint({ scope: "mcp:tools" });
    const res = await stalledRequest(
      gate.port,
      reqHead(gate.port, token, "content-length: 100\r\n"),
      enc.encode('{"jsonrpc":'),
    );
    assert.equal(res.status, 408, res.text);
    assert.match(res.text, /"error":"request_timeout"/);
    assert.ok(res.elapsedMs >= 900 && res.elapsedMs < 10_000, `answered after ${res.elapsedMs} ms`);
    const [line] = await gate.requestLogs(1);
    assert.equal(line.status, 408);
    assert.equal(line.reason, "read_timeout");
    assert.deepEqual(upstream.requests.map((r: RecordedRequest) => r.method), []);
  });
});

for (
  const [name, framing, sent] of [
    ["a large body with Content-Length", "content-length: 200000\r\n", new Uint8Array(100_000)],
    ["a chunked body", "transfer-encoding: chunked\r\n", enc.encode("a\r\n0123456789\r\n")],
  ] as const
) {
  Deno.test(`READ_TIMEOUT: ${name} that stalls gets 408 and the upstream sees its connection close before the body's end`, async () => {
    const seen: { head: string; bodyBytes: number; eof: boolean }[] = [];
    await using upstream = startRawUpstream(async (conn) => {
      const head = await readRequestHead(conn);
      if (head === null) return;
      const rec = { head, bodyBytes: head.length - head.indexOf("\r\n\r\n") - 4, eof: false };
      seen.push(rec);
      const buf = new Uint8Array(65536);
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
        rec.bodyBytes += n;
        if (dec.decode(buf.subarray(0, n)).endsWith("0\r\n\r\n")) return; // a complete chunked body
      }
      rec.eof = true;
    });
    await withGate(upstream.url, { READ_TIMEOUT: "1s" }, async (gate, issuer) => {
      const token = await issuer.mint({ scope: "mcp:tools" });
      const res = await stalledRequest(gate.port, reqHead(gate.port, token, framing), sent);
      assert.equal(res.status, 408, res.text);
      const [line] = await gate.requestLogs(1);
      assert.equal(line.reason, "read_timeout");
      for (let i = 0; i < 50 && !(seen[0]?.eof); i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(seen.length, 1, "the head was forwarded once");
      assert.ok(seen[0].eof, "the upstream connection was closed");
      if (framing.startsWith("content-length")) {
        assert.ok(seen[0].bodyBytes < 200_000, `only ${seen[0].bodyBytes} of 200000 body bytes`);
      }
    });
  });
}

Deno.test("READ_TIMEOUT: a body that keeps coming within the deadline is forwarded whole", async () => {
  await using upstream = await startUpstream();
  await withGate(upstream.url, { READ_TIMEOUT: "2s" }, async (gate, issuer) => {
    const token = await issuer.mint({ scope: "mcp:tools" });
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        await new Promise((r) => setTimeout(r, 100));
        if (i++ < 5) c.enqueue(enc.encode(`part${i};`));
        else c.close();
      },
    });
    const res = await fetch(`${gate.origin}/mcp`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body,
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(dec.decode((await upstream.request(0)).body), "part1;part2;part3;part4;part5;");
  });
});

Deno.test("SSE_IDLE_TIMEOUT: a silent stream is closed, logged and counted; a talking one stays open", async () => {
  let release!: () => void;
  const silence = new Promise<void>((r) => (release = r));
  await using upstream = await startUpstream((req, rec, up) => {
    const path = new URL(req.url).pathname;
    if (path.endsWith("/silent")) {
      // One event, then nothing until the test ends.
      return sse({ events: ["first", "never"], gate: () => silence })(req, rec, up);
    }
    return sse({ events: Array.from({ length: 8 }, (_, i) => `tick${i}`), gate: () => wait(200) })(
      req,
      rec,
      up,
    );
  });
  await withGate(
    upstream.url,
    { SSE_IDLE_TIMEOUT: "700ms", METRICS_ADDR: "127.0.0.1:0" },
    async (gate, issuer) => {
      const token = await issuer.mint({ scope: "mcp:tools" });
      const headers = { authorization: `Bearer ${token}`, accept: "text/event-stream" };

      // 8 events 200 ms apart: 1.4 s in all, longer than the idle timeout, never silent that long.
      const talking = await fetch(`${gate.origin}/mcp/talking`, { headers });
      assert.equal(talking.status, 200);
      const all = await talking.text();
      assert.equal((all.match(/data: tick/g) ?? []).length, 8);

      const t0 = performance.now();
      const silent = await fetch(`${gate.origin}/mcp/silent`, { headers });
      assert.equal(silent.status, 200);
      const reader = silent.body!.getReader();
      let got = "";
      while (!got.includes("data: first")) {
        const r = await reader.read();
        assert.ok(!r.done, "the first event arrives");
        got += dec.decode(r.value);
      }
      await assert.rejects(async () => {
        for (;;) if ((await reader.read()).done) break;
      }, "the client sees the stream cut, not a complete response");
      const after = performance.now() - t0;
      assert.ok(after >= 600 && after < 5000, `closed after ${after} ms`);

      const lines = await gate.requestLogs(2);
      const byPath = (p: string) => lines.find((l) => l.path === p)!;
      assert.equal(byPath("/mcp/talking").reason, undefined);
      assert.equal(byPath("/mcp/silent").reason, "stream_idle");
      const listening = await gate.waitForLog((l) => l.msg === "listening");
      const metrics = await (await fetch(`http://${listening.metrics_addr}/metrics`)).text();
      assert.match(metrics, /^mcpgate_stream_idle_closed_total 1$/m);
    },
  );
  release();
});

Deno.test("MAX_HEADER_BYTES: a larger request head gets 431 with a JSON body; a smaller one passes", async () => {
  await using upstream = await startUpstream();
  await withGate(upstream.url, { MAX_HEADER_BYTES: "4KiB" }, async (gate, issuer) => {
    const token = await issuer.mint({ scope: "mcp:tools" });
    const send = async (pad: number) => {
      const res = await fetch(`${gate.origin}/mcp`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "x-pad": "p".repeat(pad) },
        body: "{}",
      });
      return { status: res.status, body: await res.text(), type: res.headers.get("content-type") };
    };
    const small = await send(2000);
    assert.equal(small.status, 200);
    const big = await send(5000);
    assert.deepEqual(big, {
      status: 431,
      body: '{"error":"request_header_fields_too_large",' +
        '"error_description":"The request header fields are too large"}',
      type: "application/json",
    });
    assert.equal(upstream.requests.length, 1, "the large head never reached the upstream");
    const lines = await gate.requestLogs(2);
    assert.equal(lines[1].reason, "header_too_large");
  });
});

Deno.test("MAX_HEADER_BYTES counts a repeated field line by line, not as Headers joins them", async (t) => {
  // 100 lines "x-padding-…(60 chars): v" are a 6.5 KB head on the wire; Headers joins them into
  // one value ("v, v, …", about 360 bytes as one line), and Deno's iteration drops empty values
  // before a field's first non-empty one (100 empty lines iterate as one).
  await using upstream = await startUpstream();
  await withGate(upstream.url, { MAX_HEADER_BYTES: "4KiB" }, async (gate, issuer) => {
    const token = await issuer.mint({ scope: "mcp:tools" });
    const name = "x-padding-" + "a".repeat(50);
    const cases: [string, string[]][] = [["v", ["v"]], ["empty", [""]], ["empty, then v", [
      "",
      "v",
    ]]];
    for (const [label, values] of cases) {
      await t.step(label, async () => {
        const headers: [string, string][] = [["authorization", `Bearer ${token}`]];
        for (let i = 0; i < 100; i++) headers.push([name, values[i < 99 ? 0 : values.length - 1]]);
        const wire = headers.reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
        assert.ok(wire > 4096, `the head sent is ${wire} bytes`);
        const res = await rawRequest(gate.port, {
          method: "POST",
          path: "/mcp",
          headers,
          body: "{}",
        });
        assert.equal(res.status, 431, `a ${wire}-byte head passed MAX_HEADER_BYTES=4KiB`);
        assert.equal(upstream.requests.length, 0);
      });
    }
  });
});

Deno.test("IDLE_TIMEOUT, which Deno.serve cannot apply, gets one start-up warning naming it", async () => {
  await using upstream = await startUpstream();
  await withGate(upstream.url, { IDLE_TIMEOUT: "120s" }, (gate) => {
    const warnings = gate.logs().filter((l) => l.level === "warn" && l.variable !== undefined);
    assert.deepEqual(warnings.map((l) => l.variable), ["IDLE_TIMEOUT"]);
    assert.match(String(warnings[0].detail), /Deno\.serve/);
  });
  await withGate(upstream.url, {}, (gate) => {
    assert.deepEqual(gate.logs().filter((l) => l.variable !== undefined), []);
  });
});

function wait(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
