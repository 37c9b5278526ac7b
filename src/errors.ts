/**
 * The gate's one error type. `code` decides what the client is told (see challenge.ts, the only
 * place that maps a code to a status, header and body); `reason` and `detail` go to the log only.
 */
export type GateErrorCode =
  /** No bearer token at all: 401 with a bare challenge (RFC 6750 §3.1, no `error`). */
  | "no_token"
  /**
   * A request the gate will not pass on as it is: a request target or Host that is not a valid
   * URI part (src/http/target.ts), refused before authentication with 400 and no challenge.
   */
  | "bad_request"
  /** A transfer coding other than chunked (RFC 9112 §6.1): 501, refused before authentication. */
  | "not_implemented"
  /** Malformed request: two Authorization headers, token in header and query (RFC 6750 §3.1). */
  | "invalid_request"
  /** The token failed a check of docs/contract.md §4 (RFC 6750 §3.1). */
  | "invalid_token"
  /** The token is valid but lacks a required scope or claim (RFC 6750 §3.1, MCP 2025-11-25). */
  | "insufficient_scope"
  /** A present `Origin` that is not allowed (MCP transport, DNS rebinding). */
  | "forbidden"
  /** A verified claim for CLAIM_HEADERS cannot be sent faithfully (403, never normalised). */
  | "claim_unrepresentable"
  /** No key set loaded yet. */
  | "not_ready"
  /**
   * An opaque token could not be introspected (RFC 7662): the endpoint is down, slow or answered
   * something that is not an introspection response. 503 + Retry-After, not 401: the token may
   * well be good.
   */
  | "introspection_unavailable"
  /** Token bucket empty, or too many requests in flight from the client IP. */
  | "rate_limited"
  /** Too many requests in flight in total (MAX_TOTAL_CONNECTIONS): 503 + Retry-After. */
  | "overloaded"
  /** Request body over MAX_REQUEST_BODY. */
  | "payload_too_large"
  /** The request body's last byte did not arrive within READ_TIMEOUT (RFC 9110 §15.5.9): 408. */
  | "request_timeout"
  /** The request head is larger than MAX_HEADER_BYTES (RFC 6585 §5): 431. */
  | "header_too_large"
  /** Upstream unreachable or broke before sending headers. */
  | "upstream_error"
  /** No upstream response headers within UPSTREAM_TIMEOUT. */
  | "upstream_timeout";

/**
 * Why a request was rejected, for the log and metrics only. Never sent to the client beyond the
 * RFC error code.
 */
export type RejectReason =
  | "expired"
  | "not_yet_valid"
  | "iat_in_future"
  | "missing_exp"
  | "signature"
  | "issuer"
  | "audience"
  | "alg"
  | "unknown_kid"
  | "malformed"
  | "typ"
  | "crit"
  | "sub"
  | "scope"
  | "claim"
  /** The introspection endpoint answered `"active": false` (RFC 7662 §2.2). */
  | "inactive"
  /** The introspection endpoint could not give an answer (see `introspection_unavailable`). */
  | "introspection_unavailable"
  | "multiple_authorization"
  | "token_in_query"
  /** The request target has a "%" that starts no valid escape, or is not a path. */
  | "invalid_target"
  /** Host, or an absolute-form or HTTP/2 authority, is not `uri-host [":" port]`. */
  | "invalid_host"
  /** An inbound field to forward cannot be serialised as it is. */
  | "invalid_header"
  /** Transfer-Encoding other than just `chunked`. */
  | "unsupported_transfer_coding"
  /** A CLAIM_HEADERS claim has a control character, surrounding space, or is too long. */
  | "claim_unrepresentable"
  /** MAX_CONCURRENT_REQUESTS: too many requests in flight from this client IP. */
  | "inflight_ip"
  /** MAX_TOTAL_CONNECTIONS: too many requests in flight in total. */
  | "inflight_total"
  | "origin"
  | "body_too_large"
  | "keys_not_loaded"
  | "rate_limit"
  | "upstream_unreachable"
  | "upstream_timeout"
  /** The serialiser refused the upstream head (nothing was sent). */
  | "head_unrepresentable"
  /** The client went away before the upstream answered (nginx logs these as 499). */
  | "client_closed"
  /** READ_TIMEOUT passed before the request body's last byte. */
  | "read_timeout"
  /** The request head is larger than MAX_HEADER_BYTES. */
  | "header_too_large"
  /** SSE_IDLE_TIMEOUT: the streamed response was silent too long and was closed. */
  | "stream_idle";

/** Options for {@linkcode GateError}. */
export interface GateErrorOptions {
  /** Machine-readable reason for the log. */
  reason?: RejectReason;
  /** Free text for the log (never for the client, never token bytes). */
  detail?: string;
  /** Seconds for a `Retry-After` header (503, 429). */
  retryAfterSeconds?: number;
  /**
   * The verified subject, when the token verified but was refused (403): the refusal is charged
   * to its rate-limit bucket and the log names it.
   */
  subject?: string;
  /** The verified `iss` beside `subject`: a subject is unique only within its issuer. */
  issuer?: string;
  cause?: unknown;
}

/** An error the gate turns into an HTTP response; see challenge.ts. */
export class GateError extends Error {
  readonly code: GateErrorCode;
  readonly reason?: RejectReason;
  readonly detail?: string;
  readonly retryAfterSeconds?: number;
  readonly subject?: string;
  readonly issuer?: string;

  constructor(code: GateErrorCode, options: GateErrorOptions = {}) {
    super(options.detail ?? options.reason ?? code, { cause: options.cause });
    this.name = "GateError";
    this.code = code;
    this.reason = options.reason;
    this.detail = options.detail;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.subject = options.subject;
    this.issuer = options.issuer;
  }
}

/** One bad environment variable. */
export interface ConfigProblem {
  variable: string;
  message: string;
}

/** Every configuration problem found, reported together (exit code 2). */
export class ConfigError extends Error {
  readonly code = "config" as const;
  readonly problems: readonly ConfigProblem[];

  constructor(problems: readonly ConfigProblem[]) {
    super(problems.map((p) => p.message).join("; "));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** What replaces a credential in a message or log line. */
export const REDACTED = "[redacted]";

/**
 * Query parameters whose values are credentials (OAuth 2.0 `access_token`, RFC 6750 §2.3; the
 * usual spellings of passwords, secrets and signed-URL signatures).
 */
const SECRET_QUERY_PARAMS =
  "access_token|refresh_token|id_token|token|password|passwd|pwd|pass|secret|client_secret|" +
  "api_key|apikey|key|sig|signature|auth|" +
  // Pre-signed object-store URLs (a key set or metadata document served from a bucket).
  "x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential";

/**
 * `scheme://userinfo@`: the user info runs to the last `@` before the path, query or fragment,
 * where WHATWG URL parsing splits it too, so a raw `@` inside a password stays hidden.
 */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#"<>\\]+@/gi;
/** `?name=value` / `&name=value` for a name of {@linkcode SECRET_QUERY_PARAMS}. */
const SECRET_QUERY = new RegExp(`([?&;](?:${SECRET_QUERY_PARAMS})=)[^&#\\s"<>\\\\]*`, "gi");

/**
 * The one owner of credential redaction in text the gate shows: the user info of every URL
 * (`https://user:pass@host` → `https://[redacted]@host`) and the values of credential query
 * parameters (`?token=…`, `password=`, `secret=`, …) become `[redacted]`. Every error message
 * that quotes a URL or an input goes through it ({@linkcode describeError}, config problems).
 */
export function redactSecrets(text: string): string {
  return text.replace(USERINFO, `$1${REDACTED}@`).replace(SECRET_QUERY, `$1${REDACTED}`);
}

/**
 * Wrapper messages that say nothing of the cause: Deno's fetch (2.9) throws `TypeError("fetch
 * failed")` and puts the reason in `cause`; its reqwest messages start with the URL and the
 * client stage.
 */
const NOISE = [
  /^error sending request for url \([^)]*\):\s*/i,
  /^error sending request:\s*/i,
  /^client error \((?:Connect|SendRequest)\):\s*/i,
];

/**
 * One line saying why a network operation failed, for every place that reports one (key set and
 * metadata fetches, `check`, `healthcheck`, the proxy's upstream errors).
 *
 * Deno 2.9's fetch rejects with just "fetch failed": the reason (connection refused, DNS, TLS,
 * timeout) is in `error.cause`, sometimes nested, and Node-style connects reject with an
 * AggregateError (one error per address tried). This walks `cause` and `errors`, keeps each
 * distinct message once, names the kind of failure first when it is a known one, and redacts
 * credentials ({@linkcode redactSecrets}).
 */
export function describeError(error: unknown): string {
  const messages: string[] = [];
  const names: string[] = [];
  const seen = new Set<unknown>();
  const walk = (e: unknown, depth: number) => {
    if (depth > 8 || seen.has(e)) return;
    seen.add(e);
    if (e instanceof Error) {
      names.push(e.name);
      const code = (e as { code?: unknown }).code;
      if (typeof code === "string") names.push(code);
      let text = e.message.replace(/\s*[\r\n]+\s*/g, " ").trim();
      for (const noise of NOISE) text = text.replace(noise, "");
      if (text !== "") messages.push(text);
      if (e instanceof AggregateError) { for (const inner of e.errors) walk(inner, depth + 1); }
      if (e.cause !== undefined) walk(e.cause, depth + 1);
    } else if (e !== undefined && e !== null) {
      messages.push(String(e));
    }
  };
  walk(error, 0);
  // A cause whose message its wrapper already ends with (reqwest's wrappers quote it) is not
  // repeated; the same message twice is kept once.
  const kept = messages.filter((m, i) =>
    messages.indexOf(m) === i && !messages.some((other) => other.endsWith(`: ${m}`))
  );
  const generic = /^(?:fetch failed|network error)$/i;
  const specific = kept.filter((m) => !generic.test(m));
  const text = (specific.length > 0 ? specific : kept).join(": ") || "unknown error";
  const kind = failureKind(names, text);
  return redactSecrets(
    kind !== undefined && !text.toLowerCase().startsWith(kind) ? `${kind} (${text})` : text,
  );
}

/** The kind of a network failure, from the error names and messages of the whole chain. */
function failureKind(names: readonly string[], text: string): string | undefined {
  const has = (name: string) => names.includes(name);
  if (has("ConnectionRefused") || has("ECONNREFUSED") || /connection refused/i.test(text)) {
    return "connection refused";
  }
  if (
    has("ENOTFOUND") || has("EAI_AGAIN") ||
    /dns error|failed to lookup address|name or service not known|nodename nor servname|no address associated|name resolution/i
      .test(text)
  ) {
    return "DNS lookup failed";
  }
  if (
    /certificate|UnknownIssuer|CaUsedAsEndEntity|NotValidForName|BadSignature|unknown ca|self[- ]signed/i
      .test(text)
  ) {
    return "TLS certificate rejected";
  }
  if (has("TimeoutError") || has("TimedOut") || has("ETIMEDOUT") || /timed out/i.test(text)) {
    return "timed out";
  }
  if (has("ConnectionReset") || has("ECONNRESET") || /connection reset/i.test(text)) {
    return "connection reset";
  }
  if (/tls|handshake/i.test(text)) return "TLS handshake failed";
  return undefined;
}

/**
 * A listener that could not bind (address in use, not local, a privileged port): names the
 * variable and the address, so the operator knows which of the two listeners to move.
 */
export class ListenError extends Error {
  readonly code = "listen" as const;
  /** `LISTEN_ADDR` or `METRICS_ADDR`. */
  readonly variable: string;
  /** The address as configured, `host:port`. */
  readonly addr: string;

  constructor(variable: string, addr: string, cause: unknown) {
    super(`Cannot listen on ${variable} "${addr}": ${describeError(cause)}`, { cause });
    this.name = "ListenError";
    this.variable = variable;
    this.addr = addr;
  }
}
