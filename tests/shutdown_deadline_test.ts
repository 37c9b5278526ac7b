/**
 * The exit after SIGTERM is bounded (docs/contract.md §1 SHUTDOWN_TIMEOUT): at most
 * SHUTDOWN_TIMEOUT for the drain of both listeners, a short grace for what was cut, and a fixed
 * limit for the closes after the drain (the trace flush, the Redis client). Neither a client of
 * METRICS_ADDR that never finishes its request nor an OTLP collector that never answers holds
 * the process longer. The gate runs as a child process, so the real signal handler and exit code
 * are what is tested.
 */
import assert from "node:assert/strict";
import { spawnGate } from "./helpers/process.ts";
import { gateEnv, RESOURCE } from "./helpers/rig.ts";
import { startTestIssuer } from "./helpers/issuer.ts";
import { startUpstream } from "./helpers/upstream.ts";

Deno.test("a stalled request on METRICS_ADDR does not hold the exit past SHUTDOWN_TIMEOUT", async () => {
  await using issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  await using upstream = await startUpstream();
  await using gate = await spawnGate(gateEnv(issuer, upstream, {
    METRICS_ADDR: "127.0.0.1:0",
    SHUTDOWN_TIMEOUT: "1s",
  }));
  const listening = gate.logs().find((l) => l.msg === "listening")!;
  const metricsPort = Number(String(listening.metrics_addr).split(":").pop());
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: metricsPort });
  try {
    // A body announced and never finished: Deno's shutdown() waits for this exchange forever.
    await conn.write(
      new TextEncoder().encode(
        "POST /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 1000000\r\n\r\nabc",
      ),
    );
    await new Promise((r) => setTimeout(r, 300));
    const t0 = performance.now();
    gate.kill("SIGTERM");
    let status: Deno.CommandStatus | undefined;
    try {
      status = await gate.exited(8_000);
    } catch { /* still running: reported below */ }
    const ms = Math.round(performance.now() - t0);
    const said = gate.logs().map((l) => String(l.msg)).slice(-4).join(" | ");
    assert.ok(
      status !== undefined,
      `still running ${ms} ms after SIGTERM (SHUTDOWN_TIMEOUT=1s); last log lines: ${said}`,
    );
    assert.equal(status.code, 0);
    // SHUTDOWN_TIMEOUT (1 s) and the 0.5 s grace after the cut, with a margin for a loaded machine.
    assert.ok(ms < 4_000, `exit took ${ms} ms with SHUTDOWN_TIMEOUT=1s`);
    // Deno 2.9.6's shutdown() waits for the unfinished body (the drain is cut, `drained` false);
    // the binary's 2.7.11 runtime closes it at once. Either way the exit is bounded.
    assert.ok(gate.logs().some((l) => l.msg === "stopped"));
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
});

Deno.test("a collector that never answers does not hold the exit past SHUTDOWN_TIMEOUT", async () => {
  await using issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  await using upstream = await startUpstream();
  // Accepts and reads, never answers.
  const collector = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const c of collector) {
      held.push(c);
      (async () => {
        const buf = new Uint8Array(65536);
        try {
          while ((await c.read(buf)) !== null) { /* swallow */ }
        } catch { /* closed */ }
      })();
    }
  })().catch(() => {});
  try {
    await using gate = await spawnGate(gateEnv(issuer, upstream, {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.addr.port}`,
      SHUTDOWN_TIMEOUT: "1s",
    }));
    const res = await fetch(`http://127.0.0.1:${gate.port}/mcp`, { method: "POST", body: "{}" });
    await res.body?.cancel();
    assert.ok(res.status >= 400, String(res.status)); // any answer: every request has a span
    const t0 = performance.now();
    gate.kill("SIGTERM");
    const status = await gate.exited(30_000);
    const ms = performance.now() - t0;
    assert.equal(status.code, 0);
    // Nothing to drain, then at most the 2 s limit after the drain; the exporter alone would wait
    // its own 10 s timeout.
    assert.ok(ms < 4_000, `exit took ${Math.round(ms)} ms with SHUTDOWN_TIMEOUT=1s`);
    const cut = gate.logs().find((l) => l.msg === "close after the drain cut at its limit");
    assert.ok(cut, "a warn line names what was cut");
    assert.equal(cut.level, "warn");
    assert.deepEqual(cut.pending, ["tracing"]);
  } finally {
    collector.close();
    for (const c of held) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }
});
