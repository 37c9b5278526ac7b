/**
 * The one translation from a {@linkcode GateError} to what the client is told: status,
 * `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9728 §5.1), JSON body, plus the log outcome and
 * metric label. The reason behind an error goes to the log only, never into a response.
 */
import type { Config } from "../config/mod.ts";
import type { GateError, GateErrorCode, RejectReason } from "../errors.ts";
import { resourceMetadataUrl } from "./metadata.ts";

/** The `auth` field of the request log line (docs/contract.md §5). */
export type AuthOutcome =
  | "ok"
  | "none"
  | "invalid_token"
  | "insufficient_scope"
  | "invalid_request"
  | "forbidden"
  | "not_ready"
  | "rate_limited"
  | "overloaded"
  | "exempt";

/** How one error code is answered and recorded. */
export interface ErrorRule {
  readonly status: number;
  /** Log `auth` value. Errors raised after authentication passed are "ok". */
  readonly outcome: AuthOutcome;
  /** JSON body `error`. */
  readonly error: string;
  /** JSON body `error_description`: fixed text, RFC 6750 §3 characters only. */
  readonly description: string;
  /** `Retry-After` seconds when the error carries none; undefined = no header. */
  readonly retryAfter?: number;
  /**
   * Whose rate-limit bucket the refusal is charged to: failed authentication to the client IP,
   * a verified token refused with 403 to its subject (docs/security.md, "Abuse costs the abuser").
   */
  readonly charge?: "ip" | "subject";
  /** The upstream error this code counts as in the metrics, if any. */
  readonly upstreamError?: "unreachable" | "timeout";
}

/**
 * Every code's answer in one table. The `no_token` body: RFC 6750 §3.1 says the challenge for a
 * request without credentials SHOULD NOT carry an error code, so the header has none; the body
 * says `unauthorized` (as the original Go mcp-gate did) rather than an RFC 6750 code that the
 * header deliberately leaves out. Clients act on the status and the header, not this body.
 */
export const ERROR_RULES: Readonly<Record<GateErrorCode, ErrorRule>> = {
  no_token: {
    status: 401,
    outcome: "none",
    error: "unauthorized",
    description: "Bearer token required",
    charge: "ip",
  },
  bad_request: {
    status: 400,
    outcome: "invalid_request",
    error: "invalid_request",
    description: "The request is malformed",
  },
  not_implemented: {
    status: 501,
    outcome: "invalid_request",
    error: "not_implemented",
    description: "Only the chunked transfer coding is supported",
  },
  invalid_request: {
    status: 400,
    outcome: "invalid_request",
    error: "invalid_request",
    description: "The request is malformed",
    charge: "ip",
  },
  invalid_token: {
    status: 401,
    outcome: "invalid_token",
    error: "invalid_token",
    description: "The access token is invalid",
    charge: "ip",
  },
  insufficient_scope: {
    status: 403,
    outcome: "insufficient_scope",
    error: "insufficient_scope",
    description: "The access token does not grant the required scope",
    charge: "subject",
  },
  forbidden: {
    status: 403,
    outcome: "forbidden",
    error: "forbidden",
    description: "Origin not allowed",
  },
  claim_unrepresentable: {
    status: 403,
    outcome: "forbidden",
    error: "forbidden",
    description: "A claim of the access token cannot be passed to the service",
    charge: "subject",
  },
  not_ready: {
    status: 503,
    outcome: "not_ready",
    error: "temporarily_unavailable",
    description: "The service is starting, try again shortly",
    retryAfter: 5,
  },
  introspection_unavailable: {
    status: 503,
    outcome: "not_ready",
    error: "temporarily_unavailable",
    description: "The authorization server cannot check the token now, try again shortly",
    retryAfter: 5,
  },
  rate_limited: {
    status: 429,
    outcome: "rate_limited",
    error: "rate_limited",
    description: "Too many requests",
    retryAfter: 1,
  },
  overloaded: {
    status: 503,
    outcome: "overloaded",
    error: "temporarily_unavailable",
    description: "The service is overloaded, try again shortly",
    retryAfter: 1,
  },
  payload_too_large: {
    status: 413,
    outcome: "ok",
    error: "payload_too_large",
    description: "The request body is too large",
  },
  request_timeout: {
    status: 408,
    outcome: "ok",
    error: "request_timeout",
    description: "The request body did not arrive in time",
  },
  header_too_large: {
    status: 431,
    outcome: "invalid_request",
    error: "request_header_fields_too_large",
    description: "The request header fields are too large",
  },
  upstream_error: {
    status: 502,
    outcome: "ok",
    error: "upstream_error",
    description: "The upstream service is unavailable",
    upstreamError: "unreachable",
  },
  upstream_timeout: {
    status: 504,
    outcome: "ok",
    error: "upstream_timeout",
    description: "The upstream service did not respond in time",
    upstreamError: "timeout",
  },
};

/**
 * `invalid_request` descriptions per reason: telling the client which rule it broke costs nothing
 * (neither reveals anything about a token) and saves a support round trip.
 */
const INVALID_REQUEST_DESCRIPTIONS: Partial<Record<RejectReason, string>> = {
  multiple_authorization: "Only one Authorization header is allowed",
  token_in_query: "The access token was sent by more than one method",
};

/** `bad_request` descriptions per reason: which part of the request is malformed. */
const BAD_REQUEST_DESCRIPTIONS: Partial<Record<RejectReason, string>> = {
  invalid_target: "The request target is not a valid URI path and query",
  invalid_host: "The Host header or request authority is not a valid host",
  invalid_header: "A header field value cannot be forwarded",
};

/** Logged (not sent) when the client left before the upstream answered, as nginx does. */
export const CLIENT_CLOSED_STATUS = 499;

/**
 * The status the log line records for `err` answered with `status`: 499 when the client went
 * away first (nobody gets the answer), else the status sent.
 */
export function loggedStatusOf(err: GateError, status: number): number {
  return err.reason === "client_closed" ? CLIENT_CLOSED_STATUS : status;
}

/** The upstream error `err` counts as in the metrics; a client that left is not one. */
export function upstreamErrorOf(err: GateError): "unreachable" | "timeout" | undefined {
  return err.reason === "client_closed" ? undefined : ERROR_RULES[err.code].upstreamError;
}

/** Whose rate-limit bucket a refusal with `code` is charged to, if anyone's. */
export function chargeOf(code: GateErrorCode): "ip" | "subject" | undefined {
  return ERROR_RULES[code].charge;
}

/** The log `auth` value for a code (docs/contract.md §5). */
export function outcomeOf(code: GateErrorCode): AuthOutcome {
  return ERROR_RULES[code].outcome;
}

/** Turns gate errors into responses; every header string and body is built at construction. */
export interface Responder {
  /** The `resource_metadata` URL every challenge carries. */
  readonly resourceMetadataUrl: string;
  /**
   * The response for `err`. Every response has `Content-Type: application/json`,
   * `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`. `extra` headers are set on
   * top (a `Vary` is appended); the returned headers are the caller's to change.
   */
  respond(err: GateError, extra?: Headers | [string, string][]): Response;
}

interface Prepared {
  readonly status: number;
  readonly headers: readonly [string, string][];
  readonly body: string;
  readonly retryAfter?: number;
}

/**
 * Builds the responder for a configuration.
 * @throws {TypeError} when a configured value cannot go into a header (config validates first).
 */
export function createResponder(config: Config): Responder {
  const url = resourceMetadataUrl(config.resourceUri);
  const metadataParam = `resource_metadata=${quote(url)}`;
  const supported = config.scopesSupported.join(" ");
  const required = config.requiredScopes.join(" ");

  const challenge = (code: GateErrorCode, description: string): string | undefined => {
    switch (code) {
      // RFC 6750 §3.1: no error code when the request carried no credentials; RFC 6750 §3
      // `scope` tells the client what to ask for (docs/contract.md §3.5).
      case "no_token":
        return `Bearer ${metadataParam}` + (supported ? `, scope=${quote(supported)}` : "");
      case "invalid_token":
      case "invalid_request":
        return `Bearer error="${code}", error_description=${quote(description)}, ${metadataParam}`;
      case "insufficient_scope":
        // Bearer first, one header, every value quoted: what the TS and Python SDKs parse
        // (docs/specs.md §3 item 7). Omit scope when the failure was a required claim only.
        return `Bearer error="insufficient_scope"` +
          (required ? `, scope=${quote(required)}` : "") +
          `, error_description=${quote(description)}, ${metadataParam}`;
      default:
        return undefined;
    }
  };

  const prepare = (code: GateErrorCode, description: string): Prepared => {
    const rule = ERROR_RULES[code];
    const headers: [string, string][] = [
      ["content-type", "application/json"],
      ["x-content-type-options", "nosniff"],
      ["cache-control", "no-store"],
    ];
    const wwwAuthenticate = challenge(code, description);
    if (wwwAuthenticate !== undefined) headers.push(["www-authenticate", wwwAuthenticate]);
    new Headers(headers); // throws now, at start-up, rather than on the first rejection
    return {
      status: rule.status,
      headers,
      body: JSON.stringify({ error: rule.error, error_description: description }),
      retryAfter: rule.retryAfter,
    };
  };

  const byCode = new Map<GateErrorCode, Prepared>();
  for (const code of Object.keys(ERROR_RULES) as GateErrorCode[]) {
    byCode.set(code, prepare(code, ERROR_RULES[code].description));
  }
  const invalidRequestByReason = new Map<RejectReason, Prepared>();
  for (const [reason, description] of Object.entries(INVALID_REQUEST_DESCRIPTIONS)) {
    invalidRequestByReason.set(reason as RejectReason, prepare("invalid_request", description!));
  }
  const badRequestByReason = new Map<RejectReason, Prepared>();
  for (const [reason, description] of Object.entries(BAD_REQUEST_DESCRIPTIONS)) {
    badRequestByReason.set(reason as RejectReason, prepare("bad_request", description!));
  }

  return {
    resourceMetadataUrl: url,
    respond(err, extra) {
      const byReason = err.code === "invalid_request"
        ? invalidRequestByReason
        : err.code === "bad_request"
        ? badRequestByReason
        : undefined;
      const prepared = (byReason !== undefined && err.reason !== undefined &&
        byReason.get(err.reason)) || byCode.get(err.code);
      if (prepared === undefined) {
        // Only reachable when a caller builds a GateError with a code outside the union.
        throw new TypeError(`Unknown gate error code "${String(err.code)}"`);
      }
      const headers = new Headers(prepared.headers);
      if (prepared.retryAfter !== undefined) {
        headers.set(
          "retry-after",
          String(retryAfterSeconds(err.retryAfterSeconds, prepared.retryAfter)),
        );
      }
      if (extra !== undefined) {
        for (const [name, value] of extra) {
          if (name.toLowerCase() === "vary") headers.append(name, value);
          else headers.set(name, value);
        }
      }
      return new Response(prepared.body, { status: prepared.status, headers });
    },
  };
}

/** RFC 9110 §5.6.4 quoted-string: escape `"` and `\` (config values are not ours to trust). */
function quote(value: string): string {
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/** `Retry-After` delay-seconds (RFC 9110 §10.2.3): a whole number, at least 1. */
function retryAfterSeconds(seconds: number | undefined, fallback: number): number {
  return seconds !== undefined && Number.isFinite(seconds) && seconds > 0
    ? Math.ceil(seconds)
    : fallback;
}
