/**
 * The auth decision reaches the trace: with Deno's OpenTelemetry on, the server span of each
 * request carries `mcpgate.auth.outcome`, `mcpgate.auth.reason` and `enduser.id` (src/ops/tracing.ts).
 * Checked end to end: a child process exports OTLP/HTTP JSON to a collector started here. The cost
 * with OpenTelemetry off is measured by bench/tracing_bench.ts, not asserted here (a wall-clock
 * threshold would flake on a slow machine).
 */
import assert from "node:assert/strict";
import { SPAN_ATTRIBUTES } from "../src/ops/mod.ts";

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
