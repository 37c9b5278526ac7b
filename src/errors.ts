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
  /** Token bucket empty, or too many requests in flight from the client IP. */
  | "rate_limited"
  /** Too many requests in flight in total (MAX_TOTAL_CONNECTIONS): 503 + Retry-After. */
  | "overloaded"
  /** Request body over MAX_REQUEST_BODY. */
  | "payload_too_large"
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
  | "client_closed";

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
  cause?: unknown;
}

/** An error the gate turns into an HTTP response; see challenge.ts. */
export class GateError extends Error {
  readonly code: GateErrorCode;
  readonly reason?: RejectReason;
  readonly detail?: string;
  readonly retryAfterSeconds?: number;
  readonly subject?: string;

  constructor(code: GateErrorCode, options: GateErrorOptions = {}) {
    super(options.detail ?? options.reason ?? code, { cause: options.cause });
    this.name = "GateError";
    this.code = code;
    this.reason = options.reason;
    this.detail = options.detail;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.subject = options.subject;
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
