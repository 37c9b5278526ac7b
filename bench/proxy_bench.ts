/**
 * Upstream client cost for one small keep-alive GET: the gate's raw HTTP/1.1 client against
 * `fetch` and `node:http` with a keep-alive agent, and the same three behind a Deno.serve front
 * (what the gate's proxy path costs end to end, without auth).
 *
 *   deno bench -A bench/proxy_bench.ts
 */
import http from "node:http";
import { Http1Client } from "../src/http1_client.ts";
import { createForwarder } from "../src/proxy.ts";
import { configFor } from "../tests/helpers/issuer.ts";
import { upstreamOf } from "../tests/helpers/upstream.ts";

const BODY = JSON.stringify({ jsonrpc: "2.0", id: 1, result: { tools: [{ name: "echo" }] } });
const upstream = Deno.serve(
  { port: 0, hostname: "127.0.0.1", onListen() {} },
  () => new Response(BODY, { headers: { "content-type": "application/json" } }),
);
const port = upstream.addr.port;
const base = `http://127.0.0.1:${port}`;

const raw = new Http1Client({ hostname: "127.0.0.1", port });
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const HEAD = `GET /mcp HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\naccept: application/json\r\n\r\n`;

async function viaRaw(): Promise<void> {
  const res = await raw.request({
    head: HEAD,
    method: "GET",
    body: null,
    chunked: false,
    headersTimeoutMs: 5000,
  });
  const body = res.body;
  if (body instanceof ReadableStream) await new Response(body).arrayBuffer();
}

async function viaFetch(): Promise<void> {
  const res = await fetch(`${base}/mcp`, { headers: { accept: "application/json" } });
  await res.arrayBuffer();
}

function viaNode(): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/mcp", agent }, (res) => {
      res.on("data", () => {});
      res.on("end", resolve);
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

// Fronts: a Deno.serve per client, forwarding to the upstream.
const forwarder = createForwarder(configFor("https://as.example", { upstream: upstreamOf(base) }));
const ctx = {
  clientIp: "127.0.0.1",
  forwardedFor: "127.0.0.1",
  forwardedProto: "http" as const,
  requestId: "bench",
};
const fronts = {
  gate: Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    (req) => forwarder.forward(req, ctx),
  ),
  fetch: Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async (req) => {
      const u = new URL(req.url);
      const res = await fetch(base + u.pathname + u.search, {
        method: req.method,
        headers: req.headers,
        body: req.body,
        redirect: "manual",
      });
      return new Response(res.body, { status: res.status, headers: res.headers });
    },
  ),
};
const frontClient = new Http1Client({ hostname: "127.0.0.1", port: fronts.gate.addr.port });
const fetchFrontClient = new Http1Client({ hostname: "127.0.0.1", port: fronts.fetch.addr.port });

async function through(c: Http1Client): Promise<void> {
  const res = await c.request({
    head: HEAD,
    method: "GET",
    body: null,
    chunked: false,
    headersTimeoutMs: 5000,
  });
  if (res.body instanceof ReadableStream) await new Response(res.body).arrayBuffer();
}

Deno.bench({ name: "raw http1 client", group: "client", baseline: true, fn: viaRaw });
Deno.bench({ name: "fetch", group: "client", fn: viaFetch });
Deno.bench({ name: "node:http keep-alive agent", group: "client", fn: viaNode });

Deno.bench({
  name: "Deno.serve + forwarder (raw client)",
  group: "front",
  baseline: true,
  fn: () => through(frontClient),
});
Deno.bench({
  name: "Deno.serve + fetch proxy",
  group: "front",
  fn: () => through(fetchFrontClient),
});

globalThis.addEventListener("unload", () => {
  raw.close();
  frontClient.close();
  fetchFrontClient.close();
  forwarder.close();
});
