/**
 * The gate's own tracer on the OpenTelemetry JS SDK, loaded by `createTracing()` in tracing.ts
 * only when OTEL_EXPORTER_OTLP_ENDPOINT is set (see there for what it records and why).
 */
import {
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { setAuth, type TraceContextField, type Tracing, type TracingOptions } from "./tracing.ts";

/** OTLP ExportResultCode.SUCCESS (@opentelemetry/core): anything else failed. */
const EXPORT_SUCCESS = 0;
const EXPORT_ERROR_LOG_INTERVAL_MS = 60_000;

/** Builds the tracer provider and exporter once; `start` is the per-request cost. */
export function createSdkTracing(opts: TracingOptions): Tracing {
  const inner = new OTLPTraceExporter({ url: `${opts.endpoint}/v1/traces` });
  let lastError = -Infinity;
  const exporter: SpanExporter = {
    export(spans: ReadableSpan[], done) {
      inner.export(spans, (result) => {
        const now = performance.now();
        if (result.code !== EXPORT_SUCCESS && now - lastError >= EXPORT_ERROR_LOG_INTERVAL_MS) {
          lastError = now;
          opts.onExportError?.(String(result.error ?? "export failed"));
        }
        done(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush(),
  };
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      "service.name": opts.serviceName,
      "service.version": opts.version,
    }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(opts.sampleRate) }),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  const tracer: Tracer = provider.getTracer("mcp-gate", opts.version);
  const propagator = new W3CTraceContextPropagator();

  return {
    start(req) {
      const carrier: Record<string, string> = {};
      if (req.traceparent !== null) carrier.traceparent = req.traceparent;
      if (req.tracestate !== null) carrier.tracestate = req.tracestate;
      const parent = req.traceparent === null
        ? ROOT_CONTEXT
        : propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
      const attributes: Record<string, string> = {
        "http.request.method": req.method,
        "url.path": req.path,
        "client.address": req.clientIp,
        "mcpgate.request_id": req.requestId,
      };
      if (req.userAgent !== null) attributes["user_agent.original"] = req.userAgent;
      const span = tracer.startSpan(req.method, { kind: SpanKind.SERVER, attributes }, parent);
      const out: Record<string, string> = {};
      propagator.inject(trace.setSpan(ROOT_CONTEXT, span), out, defaultTextMapSetter);
      const propagate: TraceContextField[] = [];
      if (out.traceparent !== undefined) propagate.push(["traceparent", out.traceparent]);
      // W3C Trace Context §3.3: an empty tracestate is not sent (every inbound member may have
      // been invalid and dropped).
      if (out.tracestate) propagate.push(["tracestate", out.tracestate]);
      return {
        propagate,
        annotate: (a) => setAuth(span, a),
        end(status, reason) {
          span.setAttribute("http.response.status_code", status);
          if (reason !== undefined) span.setAttribute("mcpgate.reason", reason);
          if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
          span.end();
        },
      };
    },
    shutdown: () => provider.shutdown(),
  };
}
