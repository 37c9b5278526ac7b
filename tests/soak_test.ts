/**
 * The short CI version of `deno task soak` (bench/soak.ts): the gate as a child process under 25
 * concurrent clients mixing valid and invalid tokens, metadata probes and SSE streams (some
 * dropped by the client) for 10 s. Every answer must be the expected one, every exchange must
 * have its log line, and resident memory must level off once warm and stay under a ceiling.
 */
import assert from "node:assert/strict";
import { renderReport, runSoak, type SoakOptions } from "../bench/soak.ts";

Deno.test("soak (10 s): zero unexpected statuses, one log line per exchange, memory levels off", async () => {
  const options: SoakOptions = {
    durationMs: 10_000,
    clients: 25,
    sseStreams: 3,
    // Ten seconds is mostly V8 sizing its heap to the load: judge only the second half, with a
    // wider allowance than the 60 s soak's 16 MiB (a slow CI machine warms up more slowly).
    warmupFraction: 0.5,
    maxGrowthMiB: 32,
  };
  const report = await runSoak(options);
  const text = renderReport(report, options);
  console.log(text);
  assert.deepEqual(report.unexpected, {}, text);
  assert.equal(report.sse.short, 0, text);
  assert.ok(report.sse.completed + report.sse.dropped >= 3, text);
  assert.ok(report.requests >= 1000, text);
  assert.equal(report.logLines, report.requests + report.sse.completed + report.sse.dropped, text);
  assert.ok(report.rss.flat, text);
  assert.ok(report.rss.peak < 384 * 1024 * 1024, text);
  assert.ok(report.ok, text);
});
