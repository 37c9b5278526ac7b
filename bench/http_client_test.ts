import assert from "node:assert/strict";
import { buildRequest, RawConnection, SseCounter } from "./http_client.ts";

const encoder = new TextEncoder();

async function withServer(
  handler: Deno.ServeHandler,
  fn: (port: number) => Promise<void>,
): Promise<void> {
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  await fn(server.addr.port);
}

function get(port: number, path: string, headers: Record<string, string> = {}): Uint8Array {
  return buildRequest({ method: "GET", path, host: `127.0.0.1:${port}`, headers });
}

Deno.test("RawConnection reads content-length, chunked and bodiless responses on one kept-alive connection", async () => {
  const seen: string[] = [];
  await withServer((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/length") return new Response("x".repeat(100_000));
    if (path === "/chunked") {
      const body = ReadableStream.from(["a", "bb", "ccc"].map((s) => encoder.encode(s)));
      return new Response(body);
    }
    return new Response(null, { status: 204 });
  }, async (port) => {
    const conn = await RawConnection.open("127.0.0.1", port);
    try {
      for (const path of ["/length", "/chunked", "/empty", "/length"]) {
        await conn.send(get(port, path));
        let body = "";
        const res = await conn.readResponse({
          onBody: (b) => {
            body += new TextDecoder().decode(b);
          },
        });
        assert.equal(res.keepAlive, true);
        seen.push(`${res.status} ${body.length}`);
      }
    } finally {
      conn.close();
    }
  });
  assert.deepEqual(seen, ["200 100000", "200 6", "204 0", "200 100000"]);
});

Deno.test("RawConnection stops at the first SSE event when onBody asks to", async () => {
  let cancelled!: () => void;
  const wasCancelled = new Promise<void>((r) => cancelled = r);
  await withServer(() => {
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(encoder.encode("id: 1\ndata: one\n\n"));
      },
      cancel() {
        cancelled();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  }, async (port) => {
    const conn = await RawConnection.open("127.0.0.1", port);
    const counter = new SseCounter();
    await conn.send(get(port, "/"));
    const res = await conn.readResponse({ onBody: (b) => counter.feed(b) >= 1 });
    conn.close();
    await wasCancelled;
    assert.deepEqual([res.status, res.keepAlive, counter.events], [200, false, 1]);
  });
});

Deno.test("SseCounter counts events split across pieces and CRLF line ends", () => {
  const counter = new SseCounter();
  const pieces = ["data: a\n", "\ndata: b\r\n\r", "\ndata: c\n\n", "data: d\n"];
  const counts = pieces.map((p) => counter.feed(encoder.encode(p)));
  assert.deepEqual(counts, [0, 1, 3, 3]);
});

Deno.test("buildRequest writes Host, the headers and a Content-Length for a POST body", () => {
  const text = new TextDecoder().decode(buildRequest({
    method: "POST",
    path: "/mcp",
    host: "127.0.0.1:1",
    headers: { Authorization: "Bearer t" },
    body: "{}",
  }));
  assert.equal(
    text,
    "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\n\r\n{}",
  );
});
