/**
 * Traces. Two ways in, one set of attributes:
 *
 * - {@linkcode createTracing}: with OTEL_EXPORTER_OTLP_ENDPOINT set, the gate itself opens a server
 *   span per request (the OpenTelemetry JS SDK, loaded only then: src/ops/otel_sdk.ts; exported as OTLP/HTTP JSON to `<URL>/v1/traces`
 *   in batches). It works the same from source, in the compiled binary and in the image, where
 *   Deno's own export can only be baked in at compile time (docs/deploy.md). The parent is the
 *   request's W3C `traceparent` (W3C Trace Context §3.2); the sampler follows a parent's sampled
 *   flag and samples new traces at OTEL_TRACE_SAMPLE_RATE.
 * - {@linkcode annotateAuth}: with Deno's built-in OpenTelemetry (OTEL_DENO=true), Deno.serve
 *   opens the server span and makes it active inside the handler; `@opentelemetry/api` reaches it.
 *   Without either, the API's no-op context returns no span, so this costs one call.
 *
 * Attributes: `mcpgate.auth.outcome` (the log's `auth`), `mcpgate.auth.reason` on rejection, and
 * `enduser.id` (OpenTelemetry's semantic convention for the authenticated user) = the token's
 * `sub`. Never token bytes.
 */
import { type Span, trace } from "@opentelemetry/api";

/** What the gate decided about a request's credentials. */
export interface AuthAnnotation {
  /** As in the request log's `auth`: ok, none, invalid_token, insufficient_scope, ... */
  outcome: string;
  /** As in the request log's `reason`, on rejection. */
  reason?: string;
  /** The verified token's `sub`. */
  sub?: string;
}

/** Attribute names, exported for tests and dashboards. */
export const SPAN_ATTRIBUTES = Object.freeze({
  outcome: "mcpgate.auth.outcome",
  reason: "mcpgate.auth.reason",
  subject: "enduser.id",
});

/** Sets the auth attributes on the active span, if there is one (Deno's OpenTelemetry on). */
export function annotateAuth(a: AuthAnnotation): void {
  const span = trace.getActiveSpan();
  if (span === undefined) return;
  setAuth(span, a);
}

/** Sets the auth attributes on `span` (the gate's own, or Deno's). */
export function setAuth(span: Span, a: AuthAnnotation): void {
  span.setAttribute(SPAN_ATTRIBUTES.outcome, a.outcome);
  if (a.reason !== undefined) span.setAttribute(SPAN_ATTRIBUTES.reason, a.reason);
  if (a.sub !== undefined) span.setAttribute(SPAN_ATTRIBUTES.subject, a.sub);
}

/** The trace context fields the gate replaces when it traces a request (src/headers/managed.ts). */
export type TraceContextField = readonly [name: "traceparent" | "tracestate", value: string];

/** One request's server span. */
export interface RequestSpan {
  /**
   * `traceparent` (and `tracestate` when the parent had one) naming this span, for the upstream
   * request: the upstream's spans become its children (W3C Trace Context §3).
   */
  readonly propagate: readonly TraceContextField[];
  /** The auth decision, as {@linkcode annotateAuth} records it. */
  annotate(a: AuthAnnotation): void;
  /** Ends the span with the logged status (5xx marks it as an error) and the log's reason. */
  end(status: number, reason?: string): void;
}

/** What starts a request's span: the request line and the fields the trace needs. */
export interface SpanStart {
  method: string;
  path: string;
  clientIp: string;
  requestId: string;
  userAgent: string | null;
  traceparent: string | null;
  tracestate: string | null;
}

/** The gate's own tracer (see the module comment). */
export interface Tracing {
  start(req: SpanStart): RequestSpan;
  /** Exports what is buffered and stops (the drain at shutdown). */
  shutdown(): Promise<void>;
}

/** Options for {@linkcode createTracing}, from OTEL_* (docs/contract.md §1). */
export interface TracingOptions {
  /** OTLP/HTTP base URL, without a trailing slash; spans go to `<endpoint>/v1/traces`. */
  endpoint: string;
  serviceName: string;
  /** Share of new traces recorded, 0 to 1. */
  sampleRate: number;
  /** The gate's version: `service.version` and the instrumentation scope's version. */
  version: string;
  /** Told (at most once a minute) when a batch could not be exported. */
  onExportError?(error: string): void;
}

/**
 * Loads the OpenTelemetry SDK (src/ops/otel_sdk.ts) and builds the gate's tracer. A dynamic
 * import: a gate without OTEL_EXPORTER_OTLP_ENDPOINT never loads the SDK, which measured about
 * 17 MiB of resident memory and a slower start in the compiled binary.
 */
export async function createTracing(opts: TracingOptions): Promise<Tracing> {
  const sdk = await import("./otel_sdk.ts");
  return sdk.createSdkTracing(opts);
}
