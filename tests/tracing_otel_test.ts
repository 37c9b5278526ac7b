/**
 * The auth decision reaches the trace: with Deno's OpenTelemetry on, the server span of each
 * request carries `mcpgate.auth.outcome`, `mcpgate.auth.reason` and `enduser.id` (src/ops/tracing.ts).
 * Checked end to end: a child process exports OTLP/HTTP JSON to a collector started here. The cost
 * with OpenTelemetry off is measured by bench/tracing_bench.ts, not asserted here (a wall-clock
 * threshold would flake on a slow machine).
 */
import assert from "node:assert/strict";
import { SPAN_ATTRIBUTES } from "../src/ops/mod.ts";
import { startGate } from "./helpers/gate.ts";
import { startTestIssuer } from "./helpers/issuer.ts";
import { gateEnv, ready, RESOURCE } from "./helpers/rig.ts";
import { startUpstream } from "./helpers/upstream.ts";

const ROOT = new URL("..", import.meta.url);

interface OtlpSpan {
  name: string;
  kind: number;
  attributes: { key: string; value: { stringValue?: string; intValue?: string } }[];
}

Deno.test("annotateAuth() puts outcome, reason and subject on the Deno.serve server span", async () => {
  const bodies: unknown[] = [];
  await using collector = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      if (new URL(req.url).pathname === "/v1/traces") bodies.push(await req.json());
      else await req.body?.cancel();
      return Response.json({});
    },
  );
  const env: Record<string, string> = {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.addr.port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: "mcp-gate-test",
    NO_COLOR: "1",
  };
  for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "tests/fixtures/otel_app.ts"],
    cwd: ROOT,
    clearEnv: true,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));

  // deno-lint-ignore no-explicit-any
  const spans: OtlpSpan[] = bodies.flatMap((b: any) =>
    // deno-lint-ignore no-explicit-any
    b.resourceSpans.flatMap((r: any) => r.scopeSpans.flatMap((s: any) => s.spans))
  );
  const attrs = (s: OtlpSpan) =>
    Object.fromEntries(s.attributes.map((a) => [a.key, a.value.stringValue ?? a.value.intValue]));
  const server = spans.filter((s) => s.kind === 2).map(attrs); // SPAN_KIND_SERVER
  const byPath = (p: string) => server.find((a) => a["url.path"] === p);
  const ok = byPath("/ok");
  const rejected = byPath("/rejected");
  assert.ok(ok && rejected, `server spans for both requests: ${JSON.stringify(server)}`);
  assert.equal(ok[SPAN_ATTRIBUTES.outcome], "ok");
  assert.equal(ok[SPAN_ATTRIBUTES.subject], "alice");
  assert.equal(ok[SPAN_ATTRIBUTES.reason], undefined);
  assert.equal(rejected[SPAN_ATTRIBUTES.outcome], "invalid_token");
  assert.equal(rejected[SPAN_ATTRIBUTES.reason], "audience");
  assert.equal(rejected[SPAN_ATTRIBUTES.subject], undefined);
});

/** An OTLP/HTTP JSON receiver on port 0: the spans posted to /v1/traces, with their resource. */
function startCollector() {
  const spans: (OtlpSpan & {
    traceId: string;
    spanId: string;
    parentSpanId?: string;
    service?: string;
  })[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    if (new URL(req.url).pathname !== "/v1/traces") {
      await req.body?.cancel();
      return new Response(null, { status: 404 });
    }
    // deno-lint-ignore no-explicit-any
    const body: any = await req.json();
    for (const rs of body.resourceSpans ?? []) {
      const service = rs.resource?.attributes?.find((a: OtlpSpan["attributes"][number]) =>
        a.key === "service.name"
      )?.value?.stringValue;
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) spans.push({ ...s, service });
      }
    }
    return Response.json({});
  });
  return { server, spans, url: `http://127.0.0.1:${server.addr.port}` };
}

Deno.test("OTEL_EXPORTER_OTLP_ENDPOINT alone turns on a server span per request, parented by traceparent, passed to the upstream", async () => {
  const collector = startCollector();
  await using _collector = collector.server;
  await using issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  await using upstream = await startUpstream();
  const gate = await startGate(gateEnv(issuer, upstream, {
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
    OTEL_SERVICE_NAME: "gate-under-test",
    // New traces are never sampled: only the request whose parent says sampled is exported.
    OTEL_TRACE_SAMPLE_RATE: "0",
  }));
  const parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const parentSpan = "00f067aa0ba902b7";
  try {
    await ready(gate);
    const token = await issuer.mint({ scope: "mcp:tools", sub: "alice" });
    const traced = await fetch(`${gate.origin}/mcp`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        traceparent: `00-${parentTrace}-${parentSpan}-01`,
        tracestate: "vendor=abc",
      },
      body: "{}",
    });
    assert.equal(traced.status, 200);
    await traced.body?.cancel();
    const untraced = await fetch(`${gate.origin}/mcp`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: "{}",
    });
    assert.equal(untraced.status, 200);
    await untraced.body?.cancel();
    const refused = await fetch(`${gate.origin}/mcp`, {
      method: "POST",
      headers: { traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-01` },
      body: "{}",
    });
    assert.equal(refused.status, 401);
    await refused.body?.cancel();
  } finally {
    await gate.close(); // the drain exports what is buffered
  }

  // The upstream sees one traceparent per request: the gate's span, never the client's copy.
  const first = new Headers((await upstream.request(0)).headers);
  const tp = first.get("traceparent")!;
  assert.match(tp, new RegExp(`^00-${parentTrace}-[0-9a-f]{16}-01$`));
  assert.notEqual(tp.split("-")[2], parentSpan);
  assert.equal(first.get("tracestate"), "vendor=abc");
  const second = new Headers((await upstream.request(1)).headers).get("traceparent")!;
  assert.match(second, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, "unsampled, still propagated");

  const server = collector.spans.filter((s) => s.kind === 2);
  const attrs = (s: OtlpSpan) =>
    Object.fromEntries(s.attributes.map((a) => [a.key, a.value.stringValue ?? a.value.intValue]));
  const ok = server.find((s) => s.traceId === parentTrace);
  assert.ok(ok, `the sampled request's span was exported: ${JSON.stringify(collector.spans)}`);
  assert.equal(ok.parentSpanId, parentSpan);
  assert.equal(ok.spanId, tp.split("-")[2], "the upstream's parent is the gate's span");
  assert.equal(ok.service, "gate-under-test");
  const a = attrs(ok);
  assert.equal(a[SPAN_ATTRIBUTES.outcome], "ok");
  assert.equal(a[SPAN_ATTRIBUTES.subject], "alice");
  assert.equal(a["http.request.method"], "POST");
  assert.equal(a["url.path"], "/mcp");
  assert.equal(String(a["http.response.status_code"]), "200");
  const rejected = server.find((s) => s.traceId === "a".repeat(32));
  assert.ok(rejected, "the refused request with a sampled parent was exported too");
  assert.equal(attrs(rejected)[SPAN_ATTRIBUTES.outcome], "none");
  assert.equal(String(attrs(rejected)["http.response.status_code"]), "401");
  assert.equal(server.length, 2, "the unsampled new trace was not exported");
  assert.ok(!JSON.stringify(collector.spans).includes("Bearer"), "no token bytes in spans");
});

Deno.test("without OTEL_EXPORTER_OTLP_ENDPOINT an inbound traceparent reaches the upstream unchanged", async () => {
  await using issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  await using upstream = await startUpstream();
  await using gate = await startGate(gateEnv(issuer, upstream));
  await ready(gate);
  const token = await issuer.mint({ scope: "mcp:tools" });
  const tp = `00-${"c".repeat(32)}-${"d".repeat(16)}-01`;
  const res = await fetch(`${gate.origin}/mcp`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, traceparent: tp, tracestate: "x=1" },
    body: "{}",
  });
  await res.body?.cancel();
  const seen = new Headers((await upstream.request(0)).headers);
  assert.equal(seen.get("traceparent"), tp);
  assert.equal(seen.get("tracestate"), "x=1");
});
