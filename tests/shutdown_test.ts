/**
 * Graceful shutdown (docs/contract.md §1 SHUTDOWN_TIMEOUT) with the gate as a child process, so the
 * real signal handlers and exit code are what is tested: on SIGTERM/SIGINT the gate stops
 * accepting, lets in-flight exchanges finish up to SHUTDOWN_TIMEOUT, cuts what remains and exits 0.
 */
import assert from "node:assert/strict";
import { startTestIssuer } from "./helpers/issuer.ts";
import { slow, sse, startUpstream, type UpstreamHandler } from "./helpers/upstream.ts";
import { gateEnv, RESOURCE } from "./helpers/rig.ts";
import { spawnGate } from "./helpers/process.ts";

async function startAll(shutdownTimeout: string) {
  let streamCancelled!: () => void;
  const cancelled = new Promise<void>((r) => (streamCancelled = r));
  // `/slow` answers 200 after 3 s; `/sse` sends one event and then holds the stream open.
  const routes: UpstreamHandler = (req, rec, ctx) =>
    rec.target.startsWith("/slow")
      ? slow(3000, () => new Response("slow done"))(req, rec, ctx)
      : sse({ events: ["hello"], hold: true, onCancel: streamCancelled })(req, rec, ctx);
  const issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  const upstream = await startUpstream(routes);
  const gate = await spawnGate(gateEnv(issuer, upstream, { SHUTDOWN_TIMEOUT: shutdownTimeout }));
  await gate.waitForLog((l) => l.msg === "key set loaded");
  return {
    issuer,
    upstream,
    gate,
    origin: `http://127.0.0.1:${gate.port}`,
    /** Resolves when the upstream's SSE stream was cancelled (its client, the gate, left). */
    cancelled,
    async [Symbol.asyncDispose]() {
      await gate[Symbol.asyncDispose]();
      await upstream.close();
      await issuer.close();
    },
  };
}

Deno.test("SIGTERM: an in-flight 3 s request completes with 200, the SSE stream is cut at SHUTDOWN_TIMEOUT, exit 0", async () => {
  await using env = await startAll("5s");
  const token = await env.issuer.mint();
  const auth = { authorization: `Bearer ${token}` };

  const stream = await fetch(`${env.origin}/sse`, { headers: auth });
  assert.equal(stream.status, 200);
  const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
  assert.match((await reader.read()).value ?? "", /data: hello/);

  const slowReq = fetch(`${env.origin}/slow`, { method: "POST", headers: auth, body: "{}" });
  await env.upstream.request(1);

  const t0 = performance.now();
  env.gate.kill("SIGTERM");
  await env.gate.waitForLog((l) => l.msg === "signal received, draining");

  // Stop accepting: a new connection is refused while the drain runs.
  const late = await fetch(`${env.origin}/livez`).then(
    async (res) => (await res.body?.cancel(), `answered ${res.status}`),
    (err) => `failed: ${err}`,
  );
  assert.match(late, /^failed/);

  const res = await slowReq;
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "slow done");
  const slowDoneMs = performance.now() - t0;
  assert.ok(slowDoneMs < 4500, `the slow request took ${slowDoneMs} ms after SIGTERM`);

  // The stream stays open through the drain and ends (cleanly or with an error) at the timeout.
  let ended: string;
  try {
    while (!(await reader.read()).done);
    ended = "done";
  } catch {
    ended = "error";
  }
  const streamEndMs = performance.now() - t0;
  assert.ok(streamEndMs >= 4500, `the stream ended after ${streamEndMs} ms (${ended})`);
  assert.ok(streamEndMs < 7000, `the stream ended after ${streamEndMs} ms (${ended})`);

  const status = await env.gate.exited(4000);
  const exitMs = performance.now() - t0;
  assert.equal(status.code, 0, env.gate.stderr());
  assert.ok(exitMs < 7000, `exited after ${exitMs} ms`);
  const logs = env.gate.logs();
  const stopped = logs.findIndex((l) => l.msg === "stopped");
  assert.equal(logs[stopped]?.drained, false);
  const slowLine = logs.find((l) => l.msg === "request" && l.path === "/slow");
  assert.equal(slowLine?.status, 200);
  // The cut stream is a finished exchange: its log line is written, before "stopped".
  const cut = logs.findIndex((l) => l.msg === "request" && l.path === "/sse");
  assert.ok(cut !== -1 && cut < stopped, "no log line for the stream cut at the timeout");
  // And the upstream saw its stream cancelled.
  assert.equal(env.upstream.requests[0].target, "/sse");
  await env.cancelled;
});

Deno.test("SIGTERM: with only a short request in flight the gate drains it and exits 0 at once", async () => {
  await using env = await startAll("20s");
  const token = await env.issuer.mint();
  const slowReq = fetch(`${env.origin}/slow`, {
    headers: { authorization: `Bearer ${token}` },
  });
  await env.upstream.request(0);
  const t0 = performance.now();
  env.gate.kill("SIGTERM");
  const res = await slowReq;
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "slow done");
  const status = await env.gate.exited(5000);
  assert.equal(status.code, 0, env.gate.stderr());
  assert.ok(performance.now() - t0 < 5000, "it waited for the timeout with nothing left");
  assert.equal(env.gate.logs().find((l) => l.msg === "stopped")?.drained, true);
});

Deno.test("SIGINT with nothing in flight: exit 0 promptly", async () => {
  await using env = await startAll("20s");
  const t0 = performance.now();
  env.gate.kill("SIGINT");
  const status = await env.gate.exited(5000);
  assert.equal(status.code, 0, env.gate.stderr());
  assert.ok(performance.now() - t0 < 3000);
  assert.equal(env.gate.logs().find((l) => l.msg === "stopped")?.drained, true);
});

Deno.test("a second signal during the drain ends the process at once: 130 after SIGINT, 143 after SIGTERM", async (t) => {
  for (
    const [first, second, code] of [["SIGTERM", "SIGINT", 130], ["SIGINT", "SIGTERM", 143]] as const
  ) {
    await t.step(`${first} then ${second}: exit ${code}`, async () => {
      await using env = await startAll("60s");
      const token = await env.issuer.mint();
      // A stream that would hold the drain for the whole SHUTDOWN_TIMEOUT.
      const stream = await fetch(`${env.origin}/sse`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const reader = stream.body!.getReader();
      await reader.read();
      env.gate.kill(first);
      await env.gate.waitForLog((l) => l.msg === "signal received, draining");
      const t0 = performance.now();
      env.gate.kill(second);
      const status = await env.gate.exited(5000);
      assert.equal(status.code, code, env.gate.stderr());
      assert.ok(performance.now() - t0 < 5000);
      const logs = env.gate.logs();
      assert.ok(
        logs.some((l) =>
          l.msg === "second signal received, stopping without waiting for the drain" &&
          l.signal === second
        ),
        env.gate.stdout(),
      );
      assert.ok(!logs.some((l) => l.msg === "stopped"), "the drain did not finish");
      await reader.cancel().catch(() => {});
    });
  }
});
