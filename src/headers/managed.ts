/**
 * The names of the request fields the gate manages, and the spelling they are matched in: the one
 * owner of these lists (docs/security.md, "No spelling of a managed header survives"). The
 * forwarder drops inbound copies of them; the configuration refuses a CLAIM_HEADERS name among
 * them.
 */

/**
 * Hop-by-hop fields, never forwarded in either direction: RFC 9110 §7.6.1 (Connection and the
 * fields it names; Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade), §6.6.2
 * (Trailer), §11.7.1 and §11.7.2 (Proxy-Authenticate, Proxy-Authorization, consumed by the
 * proxy they are meant for).
 */
export const HOP_BY_HOP_HEADERS: readonly string[] = Object.freeze([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
]);

/**
 * Request fields the gate sets itself, so inbound copies are dropped: Host (rewritten unless
 * PRESERVE_HOST), Content-Length (re-emitted with the body framing), the X-Forwarded-* trio,
 * X-Real-IP and X-Request-Id, and `Forwarded` (RFC 7239), which would otherwise let a client
 * claim any address past the X-Forwarded-For the gate computed (Go's ReverseProxy drops it too).
 */
export const GATE_SET_HEADERS: readonly string[] = Object.freeze([
  "host",
  "content-length",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "x-real-ip",
  "x-request-id",
  "forwarded",
]);

/**
 * Request fields the gate's side of the exchange consumes. `Expect: 100-continue` was already
 * answered to the client by Deno.serve, and the gate sends the body right after the head; an
 * upstream told to expect it could answer early without reading the body and then parse that
 * body as the next request on the connection (RFC 9110 §10.1.1).
 */
export const CONSUMED_HEADERS: readonly string[] = Object.freeze(["expect"]);

/**
 * Fields through which proxies and CDNs tell an application who the client is, or which URL it
 * asked for. The gate is the proxy in front of the upstream: a client's own copy would be a
 * forgery, so they are dropped (docs/security.md lists them). The gate sends its own answer in
 * X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and X-Real-IP.
 */
export const CLIENT_ADDRESS_HEADERS: readonly string[] = Object.freeze([
  "true-client-ip",
  "x-client-ip",
  "cf-connecting-ip",
  "fastly-client-ip",
  "x-cluster-client-ip",
  "x-forwarded",
  "forwarded-for",
  "x-forwarded-port",
  "x-forwarded-prefix",
  "x-forwarded-server",
  "x-forwarded-ssl",
  "x-forwarded-scheme",
  "x-forwarded-uri",
  "x-forwarded-path",
  "x-original-url",
  "x-original-uri",
  "x-rewrite-url",
  "x-original-host",
  "x-original-forwarded-for",
  "x-envoy-external-address",
]);

/**
 * The W3C Trace Context fields (W3C Trace Context §3.2, §3.3). One rule: when the gate exports a
 * span for the request (OTEL_EXPORTER_OTLP_ENDPOINT set), the inbound copies are dropped and the
 * upstream gets the gate's span's context instead (its parent being the inbound one), so the
 * upstream's spans hang under the gate's; otherwise they pass through unchanged, like any
 * end-to-end field. Never a claim header name.
 */
export const TRACE_CONTEXT_HEADERS: readonly string[] = Object.freeze([
  "traceparent",
  "tracestate",
]);

/**
 * A field name as CGI, WSGI, Rack and PHP see it: they map `-` and `_` both to `_`, so
 * `X_Auth_Email` reaches them as the same variable as `X-Auth-Email`. The managed set is matched
 * on this spelling.
 */
export function managedKey(name: string): string {
  return name.includes("_") ? name.replaceAll("_", "-") : name;
}

/** Every name the gate manages whatever the configuration, in {@linkcode managedKey} spelling. */
export const MANAGED_HEADERS: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP_HEADERS,
  ...GATE_SET_HEADERS,
  ...CONSUMED_HEADERS,
  ...CLIENT_ADDRESS_HEADERS,
]);

/** Prefixes of names the gate or the MCP transport own: a claim header may not start with one. */
export const MANAGED_PREFIXES: readonly string[] = Object.freeze([
  "x-forwarded-",
  "content-",
  "mcp-",
]);

/**
 * Whether a CLAIM_HEADERS name would collide with a field the gate manages, in any spelling:
 * a managed name, `authorization` or `cookie` (which FORWARD_AUTHORIZATION may pass on), or a
 * managed prefix.
 */
export function isReservedForClaims(name: string): boolean {
  const key = managedKey(name.toLowerCase());
  return MANAGED_HEADERS.has(key) || key === "authorization" || key === "cookie" ||
    TRACE_CONTEXT_HEADERS.includes(key) ||
    MANAGED_PREFIXES.some((p) => key.startsWith(p));
}
