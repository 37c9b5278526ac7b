/**
 * Upstream client cost for one small keep-alive GET: the gate's raw HTTP/1.1 client against
 * `fetch` and `node:http` with a keep-alive agent, alone and behind a Deno.serve front (the
 * gate's proxy path without auth).
 *
 *   deno run -A bench/proxy_bench.ts
 *
 * Sequential loops timed with performance.now() and process.cpuUsage(), not `deno bench`: its
 * per-iteration timing of async work reported node:http round trips of 7 µs, less than Deno.serve
 * alone costs. Everything runs in one process, so each figure includes the upstream (and the
 * front) too; those parts are the same in every row, the differences are the clients.
 */
import http from "node:http";
import process from "node:process";
import { Http1Client } from "../src/http1/mod.ts";
import { createForwarder } from "../src/proxy/mod.ts";
import { configFor } from "../tests/helpers/issuer.ts";
import { upstreamOf } from "../tests/helpers/upstream.ts";

const N = 5000;
const BODY = JSON.stringify({ jsonrpc: "2.0", id: 1, result: { tools: [{ name: "echo" }] } });
const serve = (handler: (req: Request) => Response | Promise<Response>) =>
  Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, handler);

const upstream = serve(() =>
  new Response(BODY, { headers: { "content-type": "application/json" } })
);
const base = `http://127.0.0.1:${upstream.addr.port}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
// Bounded idle pool: in a tight loop Deno's fetch otherwise opens connections faster than it
// returns them to its pool.
const fetchClient = Deno.createHttpClient({ poolMaxIdlePerHost: 16 });

/** A GET with a fresh raw client per target (the load generator for the fronts, too). */
function rawGet(port: number): () => Promise<void> {
  const client = new Http1Client({ hostname: "127.0.0.1", port });
  const head = `GET /mcp HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\naccept: application/json\r\n\r\n`;
  closers.push(() => client.close());
  return async () => {
    const res = await client.request({
      head,
      method: "GET",
      body: null,
      chunked: false,
      headersTimeoutMs: 5000,
    });
    if (res.body instanceof ReadableStream) await new Response(res.body).arrayBuffer();
  };
}

async function fetchGet(): Promise<void> {
  const res = await fetch(`${base}/mcp`, { client: fetchClient });
  await res.arrayBuffer();
}

function nodeGet(): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/mcp`, { agent }, (res) => {
      res.on("data", () => {});
      res.on("end", resolve);
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

const closers: (() => void)[] = [];
const forwarder = createForwarder(configFor("https://as.example", { upstream: upstreamOf(base) }));
closers.push(() => forwarder.close());
const ctx = {
  clientIp: "127.0.0.1",
  forwardedFor: "127.0.0.1",
  forwardedProto: "http" as const,
  requestId: "bench",
};
const gateFront = serve((req) => forwarder.forward(req, ctx));
const fetchFront = serve(async (req) => {
  const u = req.url;
  const res = await fetch(base + u.slice(u.indexOf("/", u.indexOf("//") + 2)), {
    method: req.method,
    headers: req.headers,
    body: req.body,
    redirect: "manual",
    client: fetchClient,
  });
  return new Response(res.body, { status: res.status, headers: res.headers });
});

const cases: [string, () => Promise<void>][] = [
  ["raw http1 client", rawGet(upstream.addr.port)],
  ["fetch", fetchGet],
  ["node:http keep-alive agent", nodeGet],
  ["Deno.serve + forwarder (raw client)", rawGet(gateFront.addr.port)],
  ["Deno.serve + fetch proxy", rawGet(fetchFront.addr.port)],
];

console.log(`| case | wall µs/req | CPU µs/req |\n|---|---:|---:|`);
for (const [name, fn] of cases) {
  for (let i = 0; i < 500; i++) await fn(); // warm up (JIT, pools)
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await fn();
  const wall = (performance.now() - t0) * 1000 / N;
  const cpu = process.cpuUsage(cpu0);
  console.log(`| ${name} | ${wall.toFixed(1)} | ${((cpu.user + cpu.system) / N).toFixed(1)} |`);
}

for (const close of closers) close();
fetchClient.close();
agent.destroy();
await Promise.all([upstream.shutdown(), gateFront.shutdown(), fetchFront.shutdown()]);
