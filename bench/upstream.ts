/**
 * The bench's upstream: a small, fast MCP-shaped server run as its own process
 * (`deno run --allow-net bench/upstream.ts`), so it never shares an event loop with the gate or
 * the load generator. Prints `{"port":N}` on stdout once it listens on 127.0.0.1.
 *
 * - `POST` (any path): reads the JSON-RPC body and answers a small `tools/list` result.
 * - `GET /sse?n=100&gap_ms=1`: `text/event-stream`, the first event at once, then one every
 *   `gap_ms` until `n` events, then the end of the stream.
 * - `GET /idle`: `text/event-stream`, one event, then silence until the client goes away.
 * - anything else: 404.
 */

const encoder = new TextEncoder();
const JSON_BODY = encoder.encode(JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  result: {
    tools: [{
      name: "echo",
      description: "Echoes its input",
      inputSchema: { type: "object", properties: { text: { type: "string" } } },
    }],
  },
}));
const JSON_HEADERS = { "content-type": "application/json" };
const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-store" };

function event(id: number): Uint8Array {
  return encoder.encode(
    `id: ${id}\nevent: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":${id}}}\n\n`,
  );
}

function sse(n: number, gapMs: number): Response {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const tick = () => {
        controller.enqueue(event(++sent));
        if (sent >= n) {
          controller.close();
          return;
        }
        timer = setTimeout(tick, gapMs);
      };
      tick();
    },
    cancel() {
      clearTimeout(timer);
    },
  });
  return new Response(body, { headers: SSE_HEADERS });
}

function idle(): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(event(1));
    },
  });
  return new Response(body, { headers: SSE_HEADERS });
}

Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen({ port }) {
    console.log(JSON.stringify({ port }));
  },
}, async (req) => {
  if (req.method === "POST") {
    await req.arrayBuffer();
    return new Response(JSON_BODY, { headers: JSON_HEADERS });
  }
  const url = new URL(req.url);
  if (url.pathname === "/sse") {
    const n = Number(url.searchParams.get("n") ?? "100");
    const gapMs = Number(url.searchParams.get("gap_ms") ?? "1");
    return sse(n, gapMs);
  }
  if (url.pathname === "/idle") return idle();
  return new Response("not found\n", { status: 404 });
});
