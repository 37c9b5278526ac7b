/**
 * What both listeners answer without auth or routing (docs/contract.md §2), from one place: the
 * health probes (`/livez` 200 while the process serves; `/readyz` and `/healthz` 200 once the key
 * set is loaded, 503 before; GET and HEAD only, else 405 with `Allow`, RFC 9110 §15.5.6) and the
 * 500 for an unexpected failure.
 */

/** The paths {@linkcode healthResponse} answers. */
export const HEALTH_PATHS: ReadonlySet<string> = new Set(["/livez", "/readyz", "/healthz"]);

const JSON_HEADERS = {
  "content-type": "application/json",
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
} as const;

const OK_BODY = '{"status":"ok"}';
const UNAVAILABLE_BODY = '{"status":"unavailable"}';

/**
 * The answer to a health probe, or undefined when `path` is not one of {@linkcode HEALTH_PATHS}.
 * `ready` is whether the key set is loaded; `/livez` ignores it. HEAD gets the GET status and
 * headers without a body; any other method gets 405 with `Allow: GET, HEAD`.
 *
 * `details` are members added to the `/readyz` and `/healthz` body after `status`, for what
 * is reported without deciding readiness (introspection: docs/identity-providers.md, "Opaque
 * tokens"): a failing introspection endpoint would take every replica out of the load balancer
 * at once, while cached tokens and JWTs still pass.
 */
export function healthResponse(
  method: string,
  path: string,
  ready: boolean,
  details?: () => Readonly<Record<string, unknown>>,
): Response | undefined {
  if (!HEALTH_PATHS.has(path)) return undefined;
  if (method !== "GET" && method !== "HEAD") {
    return new Response('{"error":"method_not_allowed"}', {
      status: 405,
      headers: { ...JSON_HEADERS, allow: "GET, HEAD" },
    });
  }
  const ok = path === "/livez" || ready;
  const body = method === "HEAD"
    ? null
    : details !== undefined && path !== "/livez"
    ? JSON.stringify({ status: ok ? "ok" : "unavailable", ...details() })
    : ok
    ? OK_BODY
    : UNAVAILABLE_BODY;
  return new Response(body, {
    status: ok ? 200 : 503,
    headers: JSON_HEADERS,
  });
}

/**
 * The 500 for a failure the gate did not expect (a bug, not the client's or the upstream's
 * doing), on either listener: a fixed body that says nothing of the cause, which goes to the log.
 * The headers are the health answers' (and every challenge's).
 */
export function internalErrorResponse(): Response {
  return new Response('{"error":"internal_error"}', { status: 500, headers: JSON_HEADERS });
}
