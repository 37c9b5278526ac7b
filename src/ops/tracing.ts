/**
 * Puts the authentication decision on the request's trace span. Deno's built-in OpenTelemetry
 * (OTEL_DENO=true) opens a server span for every request Deno.serve handles and makes it the
 * active span inside the handler, across awaits; `@opentelemetry/api` is how a program reaches
 * it. Without OpenTelemetry the API's no-op context returns no span, so this costs one call.
 *
 * Attributes: `mcpgate.auth.outcome` (the log's `auth`), `mcpgate.auth.reason` on rejection, and
 * `enduser.id` (OpenTelemetry's semantic convention for the authenticated user) = the token's
 * `sub`. Never token bytes.
 */
import { trace } from "@opentelemetry/api";

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

/** Sets the auth attributes on the active span, if there is one (OpenTelemetry on). */
export function annotateAuth(a: AuthAnnotation): void {
  const span = trace.getActiveSpan();
  if (span === undefined) return;
  span.setAttribute(SPAN_ATTRIBUTES.outcome, a.outcome);
  if (a.reason !== undefined) span.setAttribute(SPAN_ATTRIBUTES.reason, a.reason);
  if (a.sub !== undefined) span.setAttribute(SPAN_ATTRIBUTES.subject, a.sub);
}
