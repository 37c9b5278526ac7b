/**
 * What the gate's span propagates upstream.
 */
import assert from "node:assert/strict";
import { createTracing } from "./tracing.ts";

Deno.test("RequestSpan.propagate never holds an empty tracestate when the inbound one has no valid member", async () => {
  // OTEL_EXPORTER_OTLP_ENDPOINT on: the inbound tracestate is dropped and the span's own is sent.
  // An inbound tracestate whose every member the W3C rules refuse (a value over 256 chars here)
  // leaves an empty TraceState, which was serialised as a `tracestate: ` line with no value: a
  // field the client shaped, sent where the gate promises "the inbound tracestate" or nothing
  // (W3C Trace Context §3.3.1: vendors SHOULD avoid sending an empty tracestate).
  const tracing = await createTracing({
    endpoint: "http://127.0.0.1:9",
    serviceName: "review3",
    sampleRate: 1,
    version: "0",
  });
  try {
    for (const tracestate of ["a=" + "x".repeat(300), "BAD KEY=1", ","]) {
      const span = tracing.start({
        method: "GET",
        path: "/mcp",
        clientIp: "203.0.113.9",
        requestId: "r",
        userAgent: null,
        traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-01`,
        tracestate,
      });
      span.end(200);
      const sent = span.propagate.find(([name]) => name === "tracestate");
      assert.ok(
        sent === undefined || sent[1] !== "",
        `tracestate ${JSON.stringify(tracestate)} sent as ""`,
      );
    }
  } finally {
    await tracing.shutdown().catch(() => {});
  }
});
