/**
 * The metrics listener (docs/contract.md §8): the `process_*` series every Prometheus client
 * library has, read at scrape time (CPU time that grows with work, resident memory, the process
 * start, and the descriptor counts only where Deno lets the gate read /proc/self); and its
 * `/healthz`, a liveness probe as on the original Go gate's metrics port.
 */
import assert from "node:assert/strict";
import { gateEnv, RESOURCE, startRig } from "./helpers/rig.ts";
import { GATE_BIN, startGate } from "./helpers/gate.ts";
import { startTestIssuer } from "./helpers/issuer.ts";
import { startUpstream } from "./helpers/upstream.ts";

function sample(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

Deno.test("GET /metrics on METRICS_ADDR carries process CPU, memory and start time", async () => {
  const before = Date.now() / 1000;
  await using rig = await startRig({ env: { METRICS_ADDR: "127.0.0.1:0" } });
  const listening = await rig.gate.waitForLog((l) => l.msg === "listening");
  const metricsUrl = `http://${String(listening.metrics_addr)}/metrics`;
  const scrape = async () => {
    const res = await fetch(metricsUrl);
    assert.equal(res.status, 200);
    return await res.text();
  };
  const first = await scrape();
  const token = await rig.issuer.mint({ scope: "mcp:tools" });
  for (let i = 0; i < 200; i++) {
    const res = await fetch(rig.url, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: "{}",
    });
    await res.body?.cancel();
  }
  const second = await scrape();

  for (const name of ["process_cpu_seconds_total", "process_resident_memory_bytes"]) {
    assert.match(first, new RegExp(`^# TYPE ${name} (counter|gauge)$`, "m"), name);
  }
  const cpu1 = sample(first, "process_cpu_seconds_total")!;
  const cpu2 = sample(second, "process_cpu_seconds_total")!;
  assert.ok(cpu1 > 0 && cpu2 > cpu1, `CPU time grows with work: ${cpu1} -> ${cpu2}`);
  const rss = sample(second, "process_resident_memory_bytes")!;
  assert.ok(rss > 8 * 1024 * 1024 && rss < 4 * 1024 ** 3, `resident memory ${rss}`);
  const start = sample(second, "process_start_time_seconds")!;
  const now = Date.now() / 1000;
  // In process the gate shares the test runner's start; a binary starts after `before`.
  const earliest = GATE_BIN ? before - 1 : now - 3600;
  assert.ok(start > earliest && start <= now, `start ${start} within [${earliest}, ${now}]`);
  // The gate has no --allow-all, which Deno asks for /proc/self: no descriptor series then.
  const fds = sample(second, "process_open_fds");
  if (fds !== undefined) assert.ok(fds > 3);
});

Deno.test("/healthz on METRICS_ADDR is 200 while the gate waits for its key set; /readyz is 503", async () => {
  await using issuer = await startTestIssuer({ audience: RESOURCE });
  await issuer.down("503");
  await using upstream = await startUpstream();
  await using gate = await startGate(
    gateEnv(issuer, upstream, { METRICS_ADDR: "127.0.0.1:0" }),
  );
  const listening = await gate.waitForLog((l) => l.msg === "listening");
  const status = async (origin: string, path: string) => {
    const res = await fetch(`${origin}${path}`);
    await res.body?.cancel();
    return res.status;
  };
  const metrics = `http://${String(listening.metrics_addr)}`;
  assert.deepEqual(
    {
      metricsHealthz: await status(metrics, "/healthz"),
      metricsLivez: await status(metrics, "/livez"),
      metricsReadyz: await status(metrics, "/readyz"),
      gateHealthz: await status(gate.origin, "/healthz"),
    },
    { metricsHealthz: 200, metricsLivez: 200, metricsReadyz: 503, gateHealthz: 503 },
  );
});
