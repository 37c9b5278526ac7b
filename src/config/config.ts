/**
 * Configuration as one table: each row names an environment variable, the {@linkcode Config}
 * field it fills, its default (raw text parsed like a set value, a fixed value, or one derived
 * from other fields), its parser, how the redacted view shows it and its description. From the
 * rows come `parseConfig`, the redacted start-up view, `--help` and the README table
 * ({@linkcode VARIABLES}); rules across variables are the named {@linkcode POST_CHECKS}.
 * Adding a variable is one row plus its Config field. Pure: the caller passes the environment.
 */
import { ConfigError, type ConfigProblem, redactSecrets } from "../errors.ts";
import { type Cidr, isLoopbackHost } from "../net/mod.ts";
import {
  ASYMMETRIC_ALGS,
  type ClaimHeader,
  type ClaimRef,
  duration,
  formatListenAddr,
  httpUrl,
  type IssuerAudiences,
  type ListenAddr,
  type LogLevel,
  nonEmpty,
  parseAlgs,
  parseBoolean,
  parseClaimHeaders,
  parseClaimRefs,
  parseCount,
  parseIssuerAudiences,
  parseIssuers,
  parseJwksUri,
  parseListenAddr,
  parseLogLevel,
  parseOrigins,
  type Parser,
  parseRate,
  parseRedisUrl,
  parseRequiredClaims,
  parseSampleRate,
  parseScopes,
  parseSize,
  parseTrustedProxies,
  parseUpstream,
  type RequiredClaim,
  splitList,
  trimTrailingSlashes,
  type Upstream,
} from "./config_parsers.ts";

export type { Cidr } from "../net/mod.ts";
export {
  ASYMMETRIC_ALGS,
  type ClaimHeader,
  type ClaimRef,
  formatListenAddr,
  type IssuerAudiences,
  type ListenAddr,
  type LogLevel,
  type RequiredClaim,
  type Upstream,
} from "./config_parsers.ts";

/** The gate's whole configuration. Every duration is in milliseconds, every size in bytes. */
export interface Config {
  readonly upstream: Upstream;
  /** RESOURCE_URI verbatim: published as `resource`. */
  readonly resourceUri: string;
  /** The path of RESOURCE_URI without a trailing slash ("" when none), for RFC 9728 §3.1. */
  readonly resourcePath: string;
  /**
   * AUTHORIZATION_SERVER's issuers, each verbatim, in order: published in `authorization_servers`
   * (RFC 9728 §2); each has its own key set (see {@linkcode issuersOf}).
   */
  readonly authorizationServers: readonly string[];
  readonly listen: ListenAddr;
  /** JWKS_URI, or undefined to discover it from AUTHORIZATION_SERVER (one issuer only). */
  readonly jwksUri?: string;
  /** EXPECTED_ISSUER, or undefined to use the discovered issuer (one issuer only). */
  readonly expectedIssuer?: string;
  /** Non-empty; default RESOURCE_URI with and without one trailing slash. */
  readonly expectedAudience: readonly string[];
  /** ISSUER_AUDIENCES: audiences for some issuers instead of EXPECTED_AUDIENCE. */
  readonly issuerAudiences: readonly IssuerAudiences[];
  readonly requiredScopes: readonly string[];
  readonly scopesSupported: readonly string[];
  /** SCOPE_CLAIMS: claim names or JSON Pointers. */
  readonly scopeClaims: readonly ClaimRef[];
  /** REQUIRED_CLAIMS, in either of its forms; empty when unset. */
  readonly requiredClaims: readonly RequiredClaim[];
  readonly resourceName?: string;
  readonly resourceDocumentation?: string;
  readonly allowedAlgs: readonly string[];
  readonly clockSkewMs: number;
  readonly jwksRefreshIntervalMs: number;
  readonly jwksMinRefreshIntervalMs: number;
  /**
   * INTROSPECTION_URL; with google_tokeninfo its default, Google's tokeninfo endpoint; else
   * undefined to use the discovered `introspection_endpoint`.
   */
  readonly introspectionUrl?: string;
  /**
   * What the introspection endpoint speaks: RFC 7662, or Google's tokeninfo (no client
   * authentication, its own answer shape; docs/identity-providers.md "Google").
   */
  readonly introspectionFormat: IntrospectionFormat;
  /** INTROSPECTION_CLIENT_ID: set = token introspection (RFC 7662) is on. */
  readonly introspectionClientId?: string;
  /** INTROSPECTION_CLIENT_SECRET: a credential, shown redacted. */
  readonly introspectionClientSecret?: string;
  /** How the gate authenticates to the introspection endpoint (RFC 6749 §2.3.1). */
  readonly introspectionAuthMethod: "client_secret_basic" | "client_secret_post";
  /** Every token is introspected, JWTs included (revocation bites at once). */
  readonly introspectAll: boolean;
  /** Longest time an introspection answer is reused (never past the token's `exp`). */
  readonly introspectionCacheTtlMs: number;
  /** Deadline of one introspection call. */
  readonly introspectionTimeoutMs: number;
  /** Serve the authorization server's RFC 8414 metadata at the gate's own origin. */
  readonly asMetadataMirror: boolean;
  readonly upstreamTimeoutMs: number;
  /** READ_TIMEOUT: from the request head to the body's last byte; 0 = none. */
  readonly readTimeoutMs: number;
  /** IDLE_TIMEOUT as set (Deno.serve cannot apply it: a start-up warning says so); else undefined. */
  readonly idleTimeoutMs?: number;
  /** SSE_IDLE_TIMEOUT: a streamed response silent this long is closed; 0 = never. */
  readonly streamIdleTimeoutMs: number;
  /** MAX_HEADER_BYTES: the request head as the gate sees it, request line included. */
  readonly maxHeaderBytes: number;
  /** OTEL_EXPORTER_OTLP_ENDPOINT: OTLP/HTTP base URL; undefined = the gate exports no traces. */
  readonly otelEndpoint?: string;
  readonly otelServiceName: string;
  /** OTEL_TRACE_SAMPLE_RATE, 0 to 1: the share of new traces recorded. */
  readonly otelSampleRate: number;
  readonly shutdownTimeoutMs: number;
  readonly maxRequestBodyBytes: number;
  readonly trustedProxies: readonly Cidr[];
  /** Exact origins, or "*" . Empty: no Origin check. */
  readonly allowedOrigins: readonly string[];
  readonly forwardAuthorization: boolean;
  readonly claimHeaders: readonly ClaimHeader[];
  readonly preserveHost: boolean;
  /** 0 = off. */
  readonly rateLimitRps: number;
  readonly rateLimitBurst: number;
  /**
   * RATE_LIMIT_REDIS_URL: where the buckets live when replicas share one limit; undefined keeps
   * them in memory. May hold a password: shown only through `redactSecrets` (src/errors.ts).
   */
  readonly rateLimitRedisUrl?: string;
  /** Budget of one shared-bucket call; past it the request is admitted (fail open). */
  readonly rateLimitRedisTimeoutMs: number;
  /** Requests in flight per client IP (MAX_CONCURRENT_REQUESTS); 0 = unlimited. */
  readonly maxConcurrentRequests: number;
  /**
   * Requests in flight in total (MAX_TOTAL_CONNECTIONS); 0 = unlimited. Requests, not connections:
   * Deno.serve exposes no connection count (see docs/controls.md).
   */
  readonly maxTotalConnections: number;
  /** undefined = disabled (METRICS_ADDR empty). */
  readonly metricsListen?: ListenAddr;
  readonly tlsCertFile?: string;
  readonly tlsKeyFile?: string;
  readonly logLevel: LogLevel;
}

/** INTROSPECTION_FORMAT's values. */
export type IntrospectionFormat = "rfc7662" | "google_tokeninfo";

/**
 * Google's tokeninfo endpoint: the default INTROSPECTION_URL with google_tokeninfo. It reads the
 * token from a POST form field, so the token never lands in a URL (nor in an access log).
 */
export const GOOGLE_TOKENINFO_URL = "https://oauth2.googleapis.com/tokeninfo";

/**
 * Whether opaque tokens are introspected: with an INTROSPECTION_CLIENT_ID (RFC 7662), or with
 * INTROSPECTION_FORMAT=google_tokeninfo, whose endpoint takes no client authentication.
 */
export function introspectionEnabled(
  config: Pick<Config, "introspectionClientId" | "introspectionFormat">,
): boolean {
  return config.introspectionClientId !== undefined ||
    config.introspectionFormat === "google_tokeninfo";
}

/** The environment as a plain record (main.ts passes `Deno.env.toObject()`). */
export type Env = Readonly<Record<string, string | undefined>>;

/** What a variable means when it is unset or blank. */
export type Default<T> =
  /** Unset is a problem: `Missing "NAME": required`. */
  | { readonly kind: "required" }
  /** Raw text, parsed by the row's own parser as if it had been set, so it is validated too. */
  | { readonly kind: "text"; readonly text: string }
  /** A value no text spells (an empty list, "not set"), shown to operators as `shown`. */
  | { readonly kind: "value"; readonly shown: string; readonly value: T }
  /** Computed from other fields once every row parsed cleanly; never from another derived one. */
  | {
    readonly kind: "derived";
    readonly shown: string;
    derive(config: Config): T;
  };

/**
 * How the redacted view (start log line, `mcp-gate check`) shows a field; unset is always null.
 * `"as-is"` copies the value, `"redacted"` hides it, `format` turns it into readable JSON under
 * `key` (default: the field name).
 */
export type Display<T> =
  | "as-is"
  | "redacted"
  | { readonly key?: string; format(value: NonNullable<T>): unknown };

/** One environment variable and the {@linkcode Config} field it fills. */
export interface Row<K extends keyof Config> {
  readonly name: string;
  readonly field: K;
  readonly default: Default<Config[K]>;
  /** Reports every problem through `fail` (`Invalid "NAME": <detail>, got "<value>"`). */
  readonly parse: Parser<Config[K]>;
  readonly display: Display<Config[K]>;
  /** One line for `--help` and the README. */
  readonly description: string;
  /** Set but blank means this value, not the default (METRICS_ADDR: empty disables). */
  readonly whenBlank?: { readonly value: Config[K] };
  /** Finishes a parsed value from other fields once every row parsed cleanly. */
  resolve?(value: Config[K], config: Config): Config[K];
}

/** Any row of the table, each checked against its own field's type. */
export type ConfigRow = { [K in keyof Config]-?: Row<K> }[keyof Config];

/** One environment variable as `--help` and the README list it. */
export interface Variable {
  readonly name: string;
  /** The default as shown to operators ("required", "none", or a value). */
  readonly default: string;
  readonly description: string;
}

const REQUIRED = { kind: "required" } as const;
/** A default written as the variable would be: parsed and validated like a set value. */
function text(raw: string): Default<never> {
  return { kind: "text", text: raw };
}
/** Unset means `value`; `--help` shows `shown`. */
function fixed<T>(value: T, shown = "none"): Default<T> {
  return { kind: "value", value, shown };
}
function derived<T>(shown: string, derive: (config: Config) => T): Default<T> {
  return { kind: "derived", shown, derive };
}
/** Checks a row against its own field's type where it is written. */
function row<K extends keyof Config>(r: Row<K>): Row<K> {
  return r;
}

const ROWS = deepFreeze([
  row({
    name: "UPSTREAM_URL",
    field: "upstream",
    default: REQUIRED,
    parse: parseUpstream,
    display: { key: "upstreamUrl", format: (u) => u.url },
    description: "http(s) base URL of the MCP server; the request path and query are appended",
  }),
  row({
    name: "RESOURCE_URI",
    field: "resourceUri",
    default: REQUIRED,
    parse: (t, fail) => httpUrl(t, fail, { query: true }) && t,
    display: "as-is",
    description: "public URL of the MCP endpoint, e.g. https://mcp.example.com/mcp; " +
      "published verbatim as resource",
  }),
  row({
    name: "AUTHORIZATION_SERVER",
    field: "authorizationServers",
    default: REQUIRED,
    parse: parseIssuers,
    display: { key: "authorizationServer", format: (list) => list.join(",") },
    description: "issuer URL of the authorization server, published exactly as given; " +
      "several, comma-separated, each with its own key set",
  }),
  row({
    name: "LISTEN_ADDR",
    field: "listen",
    default: text("0.0.0.0:8080"),
    parse: parseListenAddr,
    display: { format: formatListenAddr },
    description: "gate listener: host:port, :port or [IPv6]:port",
  }),
  row({
    name: "JWKS_URI",
    field: "jwksUri",
    default: fixed(undefined, "discovered"),
    parse: parseJwksUri,
    display: "as-is",
    description: "key set URL (https unless the host is loopback); else read from the " +
      "authorization server metadata (RFC 8414, then OpenID Connect)",
  }),
  row({
    name: "EXPECTED_ISSUER",
    field: "expectedIssuer",
    default: fixed(undefined, "discovered issuer, else AUTHORIZATION_SERVER"),
    parse: (t, fail) => {
      // Compared byte for byte with `iss`: stray spaces would silently reject every token.
      if (t.trim() !== t) fail("expected no leading or trailing whitespace");
      return t;
    },
    display: "as-is",
    description: "exact iss value",
  }),
  row({
    name: "EXPECTED_AUDIENCE",
    field: "expectedAudience",
    default: derived(
      "RESOURCE_URI with and without one trailing /",
      (c) => defaultAudience(c.resourceUri),
    ),
    parse: (t, fail) => nonEmpty(splitList(t), fail),
    display: "as-is",
    description: "accepted audiences, comma-separated; the token's aud must contain one",
  }),
  row({
    name: "ISSUER_AUDIENCES",
    field: "issuerAudiences",
    default: fixed([]),
    parse: parseIssuerAudiences,
    display: {
      format: (list) => list.map((e) => `${e.issuer}=${e.audiences.join("|")}`),
    },
    description: "issuer=aud|aud pairs, comma-separated: audiences for tokens of that " +
      "AUTHORIZATION_SERVER issuer instead of EXPECTED_AUDIENCE",
  }),
  row({
    name: "REQUIRED_SCOPES",
    field: "requiredScopes",
    default: fixed([]),
    parse: parseScopes,
    display: "as-is",
    description: "scopes that must all be granted (comma- or space-separated)",
  }),
  row({
    name: "SCOPES_SUPPORTED",
    field: "scopesSupported",
    default: derived("REQUIRED_SCOPES", (c) => c.requiredScopes),
    parse: parseScopes,
    display: "as-is",
    description: "scopes published in the metadata and the 401 challenge; omitted when empty",
  }),
  row({
    name: "SCOPE_CLAIMS",
    field: "scopeClaims",
    default: text("scope,scp"),
    parse: parseClaimRefs,
    display: { format: (list) => list.map((c) => c.text) },
    description: "claims holding granted scopes (space-separated string or array); a name, " +
      "or a JSON Pointer such as /realm_access/roles",
  }),
  row({
    name: "REQUIRED_CLAIMS",
    field: "requiredClaims",
    default: fixed([]),
    parse: parseRequiredClaims,
    display: { format: displayRequiredClaims },
    description:
      'JSON object, e.g. {"tenant":"acme"} (claim equals the value, or is an array holding it), ' +
      "or claim=value|value pairs, e.g. groups=admin|ops (claim holds one of the values); " +
      "claims by name or JSON Pointer",
  }),
  row({
    name: "RESOURCE_NAME",
    field: "resourceName",
    default: fixed(undefined),
    parse: (t) => t.trim(),
    display: "as-is",
    description: "resource_name in the metadata",
  }),
  row({
    name: "RESOURCE_DOCUMENTATION",
    field: "resourceDocumentation",
    default: fixed(undefined),
    parse: (t, fail) => httpUrl(t, fail, { query: true }) && t,
    display: "as-is",
    description: "resource_documentation URL in the metadata",
  }),
  row({
    name: "AS_METADATA_MIRROR",
    field: "asMetadataMirror",
    default: text("false"),
    parse: parseBoolean,
    display: "as-is",
    description: "serve the authorization server's metadata at /.well-known/" +
      "oauth-authorization-server, for clients older than RFC 9728 (one authorization server only)",
  }),
  row({
    name: "ALLOWED_ALGS",
    field: "allowedAlgs",
    default: text(ASYMMETRIC_ALGS.join(",")),
    parse: parseAlgs,
    display: "as-is",
    description: "accepted JWS algorithms; none and HS* are always refused",
  }),
  row({
    name: "CLOCK_SKEW",
    field: "clockSkewMs",
    default: text("30s"),
    parse: duration({ zero: true }),
    display: "as-is",
    description: "leeway for exp, nbf and iat",
  }),
  row({
    name: "JWKS_REFRESH_INTERVAL",
    field: "jwksRefreshIntervalMs",
    default: text("10m"),
    parse: duration({ zero: false }),
    display: "as-is",
    description: "key set max age (±10 % jitter); a failed refresh keeps the old keys",
  }),
  row({
    name: "JWKS_MIN_REFRESH_INTERVAL",
    field: "jwksMinRefreshIntervalMs",
    default: text("30s"),
    parse: duration({ zero: false }),
    display: "as-is",
    description: "at most one refetch per interval for an unknown kid",
  }),
  row({
    name: "INTROSPECTION_CLIENT_ID",
    field: "introspectionClientId",
    default: fixed(undefined, "none (introspection off)"),
    parse: (t) => t,
    display: "as-is",
    description: "client id for token introspection (RFC 7662); setting it turns " +
      "introspection on for tokens that are not JWTs",
  }),
  row({
    name: "INTROSPECTION_FORMAT",
    field: "introspectionFormat",
    default: text("rfc7662"),
    parse: (t, fail) => {
      const f = t.trim();
      if (f === "rfc7662" || f === "google_tokeninfo") return f;
      fail("expected rfc7662 or google_tokeninfo");
      return undefined;
    },
    display: "as-is",
    description: "rfc7662, or google_tokeninfo: Google's opaque access tokens checked at its " +
      "tokeninfo endpoint, every token (no client id or secret; EXPECTED_AUDIENCE = the OAuth " +
      "client ID)",
  }),
  row({
    name: "INTROSPECTION_CLIENT_SECRET",
    field: "introspectionClientSecret",
    default: fixed(undefined),
    parse: (t) => t,
    display: "redacted",
    description: "client secret for token introspection; required with INTROSPECTION_CLIENT_ID",
  }),
  row({
    name: "INTROSPECTION_URL",
    field: "introspectionUrl",
    default: derived(
      "discovered; Google's tokeninfo with google_tokeninfo",
      (c) => c.introspectionFormat === "google_tokeninfo" ? GOOGLE_TOKENINFO_URL : undefined,
    ),
    parse: parseJwksUri,
    display: "as-is",
    description: "introspection endpoint (https unless the host is loopback); else the " +
      `discovered introspection_endpoint, or ${GOOGLE_TOKENINFO_URL} with google_tokeninfo`,
  }),
  row({
    name: "INTROSPECTION_AUTH_METHOD",
    field: "introspectionAuthMethod",
    default: text("client_secret_basic"),
    parse: (t, fail) => {
      const m = t.trim();
      if (m === "client_secret_basic" || m === "client_secret_post") return m;
      fail("expected client_secret_basic or client_secret_post");
      return undefined;
    },
    display: "as-is",
    description: "client_secret_basic or client_secret_post",
  }),
  row({
    name: "INTROSPECT_ALL",
    field: "introspectAll",
    default: text("false"),
    parse: parseBoolean,
    display: "as-is",
    description: "introspect JWTs too, so that a revoked token is refused at once; always " +
      "on with google_tokeninfo",
    // Google's JWTs are ID tokens, never access tokens for a resource, and their `aud` is the
    // OAuth client ID that EXPECTED_AUDIENCE names: only tokeninfo may decide (it refuses them).
    resolve: (all, c) => all || c.introspectionFormat === "google_tokeninfo",
  }),
  row({
    name: "INTROSPECTION_CACHE_TTL",
    field: "introspectionCacheTtlMs",
    default: text("60s"),
    parse: duration({ zero: true }),
    display: "as-is",
    description: "longest reuse of an introspection answer (never past the token's exp); " +
      "0 = ask every time",
  }),
  row({
    name: "INTROSPECTION_TIMEOUT",
    field: "introspectionTimeoutMs",
    default: text("5s"),
    parse: duration({ zero: false }),
    display: "as-is",
    description: "deadline of one introspection call (then 503)",
  }),
  row({
    name: "UPSTREAM_TIMEOUT",
    field: "upstreamTimeoutMs",
    default: text("120s"),
    parse: duration({ zero: false }),
    display: "as-is",
    description: "wait for upstream response headers (then 504); streaming bodies are not cut",
  }),
  row({
    name: "READ_TIMEOUT",
    field: "readTimeoutMs",
    default: text("30s"),
    parse: duration({ zero: true }),
    display: "as-is",
    description: "deadline for a request body's last byte, from the request head; then 408 and " +
      "the upstream request is aborted; 0 = none",
  }),
  row({
    name: "IDLE_TIMEOUT",
    field: "idleTimeoutMs",
    default: fixed(undefined, "the runtime's"),
    parse: duration({ zero: true }),
    display: "as-is",
    description: "keep-alive idle time of client connections: accepted for Go gate env files, " +
      "but Deno.serve cannot set it (a start-up warning says so)",
  }),
  row({
    name: "SSE_IDLE_TIMEOUT",
    field: "streamIdleTimeoutMs",
    default: text("0"),
    parse: duration({ zero: true }),
    display: "as-is",
    description: "a streamed response (SSE or other) with no bytes for this long is closed " +
      "and counted; 0 = never",
  }),
  row({
    name: "MAX_HEADER_BYTES",
    field: "maxHeaderBytes",
    default: text("64KiB"),
    parse: parseSize,
    display: "as-is",
    description: "largest request head (request line and fields); larger gets 431. The runtime " +
      "may refuse a large head first (see docs/contract.md)",
  }),
  row({
    name: "SHUTDOWN_TIMEOUT",
    field: "shutdownTimeoutMs",
    default: text("30s"),
    parse: duration({ zero: true }),
    display: "as-is",
    description: "drain time after SIGTERM or SIGINT",
  }),
  row({
    name: "MAX_REQUEST_BODY",
    field: "maxRequestBodyBytes",
    default: text("10MiB"),
    parse: parseSize,
    display: "as-is",
    description: "largest request body, in bytes or KiB/MiB/GiB (binary only); larger gets 413",
  }),
  row({
    name: "TRUSTED_PROXIES",
    field: "trustedProxies",
    default: fixed([]),
    parse: parseTrustedProxies,
    display: { format: (list) => list.map((c) => c.text) },
    description: "CIDRs or IPs whose X-Forwarded-For is believed for client_ip; /0 refused",
  }),
  row({
    name: "ALLOWED_ORIGINS",
    field: "allowedOrigins",
    default: fixed([]),
    parse: parseOrigins,
    display: "as-is",
    description: "* or origins (scheme://host[:port]); a request with another Origin gets 403",
  }),
  row({
    name: "FORWARD_AUTHORIZATION",
    field: "forwardAuthorization",
    default: text("false"),
    parse: parseBoolean,
    display: "as-is",
    description: "pass Authorization and Cookie on to the upstream",
  }),
  row({
    name: "CLAIM_HEADERS",
    field: "claimHeaders",
    default: fixed([]),
    parse: parseClaimHeaders,
    display: { format: (list) => list.map((c) => `${c.claim.text}=${c.header}`) },
    description: "claim=Header-Name pairs set from the token, e.g. sub=X-Auth-Subject; " +
      "inbound copies are removed",
  }),
  row({
    name: "PRESERVE_HOST",
    field: "preserveHost",
    default: text("false"),
    parse: parseBoolean,
    display: "as-is",
    description: "send the client's Host to the upstream instead of the upstream's own",
  }),
  row({
    name: "RATE_LIMIT_RPS",
    field: "rateLimitRps",
    default: text("0"),
    parse: parseRate,
    display: "as-is",
    description:
      "requests per second per token subject; requests without a valid token count per client IP; 0 = off",
  }),
  row({
    name: "RATE_LIMIT_BURST",
    field: "rateLimitBurst",
    default: text("0"),
    parse: parseCount,
    resolve: (burst, c) =>
      burst === 0 && c.rateLimitRps > 0 ? Math.max(1, Math.ceil(c.rateLimitRps)) : burst,
    display: "as-is",
    description: "token bucket size; 0 = max(1, ceil(RATE_LIMIT_RPS))",
  }),
  row({
    name: "RATE_LIMIT_REDIS_URL",
    field: "rateLimitRedisUrl",
    default: fixed(undefined),
    parse: parseRedisUrl,
    // "as-is" shows a string through redactSecrets: the user info becomes "[redacted]".
    display: "as-is",
    description: "redis:// or rediss:// URL of a Redis or Valkey that holds the buckets, so " +
      "replicas share one limit; unset = in memory per process",
  }),
  row({
    name: "RATE_LIMIT_REDIS_TIMEOUT",
    field: "rateLimitRedisTimeoutMs",
    default: text("50ms"),
    parse: duration({ zero: false }),
    display: "as-is",
    description: "budget of one Redis call; past it, or with Redis down, the request is " +
      "admitted and counted in mcpgate_rate_limit_redis_failopen_total",
  }),
  row({
    name: "MAX_CONCURRENT_REQUESTS",
    field: "maxConcurrentRequests",
    default: text("100"),
    parse: parseCount,
    display: "as-is",
    description:
      "requests in flight per client IP (a stream until it ends); more get 429; 0 = unlimited",
  }),
  row({
    name: "MAX_TOTAL_CONNECTIONS",
    field: "maxTotalConnections",
    default: text("1000"),
    parse: parseCount,
    display: "as-is",
    description: "requests in flight in total (not connections: Deno.serve exposes no count " +
      "of them); more get 503; 0 = unlimited",
  }),
  row({
    name: "METRICS_ADDR",
    field: "metricsListen",
    default: text(":9090"),
    whenBlank: { value: undefined },
    parse: parseListenAddr,
    display: { format: formatListenAddr },
    description: "listener for /metrics, /livez and /readyz; set it empty to disable",
  }),
  row({
    name: "TLS_CERT_FILE",
    field: "tlsCertFile",
    default: fixed(undefined),
    parse: (t) => t,
    display: "as-is",
    description: "PEM certificate chain; with TLS_KEY_FILE the gate serves HTTPS",
  }),
  row({
    name: "TLS_KEY_FILE",
    field: "tlsKeyFile",
    default: fixed(undefined),
    parse: (t) => t,
    display: "as-is",
    description: "PEM private key for TLS_CERT_FILE",
  }),
  row({
    name: "OTEL_EXPORTER_OTLP_ENDPOINT",
    field: "otelEndpoint",
    default: fixed(undefined, "none (no traces)"),
    parse: (t, fail) => httpUrl(t, fail, { query: false }) && trimTrailingSlashes(t),
    display: "as-is",
    description: "OTLP/HTTP collector base URL; set, the gate sends a span per request to " +
      "<URL>/v1/traces (JSON)",
  }),
  row({
    name: "OTEL_SERVICE_NAME",
    field: "otelServiceName",
    default: text("mcp-gate"),
    parse: (t) => t.trim(),
    display: "as-is",
    description: "service.name of the exported spans",
  }),
  row({
    name: "OTEL_TRACE_SAMPLE_RATE",
    field: "otelSampleRate",
    default: text("1.0"),
    parse: parseSampleRate,
    display: "as-is",
    description: "share of new traces recorded, 0 to 1; a sampled parent traceparent is followed",
  }),
  row({
    name: "LOG_LEVEL",
    field: "logLevel",
    default: text("info"),
    parse: parseLogLevel,
    display: "as-is",
    description: "debug, info, warn or error",
  }),
]);

/**
 * Every environment variable, in the order `--help`, the README and the redacted view show them
 * (docs/contract.md §1). Unset and blank values mean the default, except where `whenBlank` says.
 */
export const CONFIG_ROWS: readonly ConfigRow[] = ROWS;
/** The same rows, seen generically: what parseConfig and the redacted view walk. */
const TABLE: readonly Row<keyof Config>[] = ROWS;

/** Config fields no variable sets directly, each computed from the finished rows. */
export const DERIVED_FIELDS: {
  readonly [K in "resourcePath"]: (config: Omit<Config, K>) => Config[K];
} = Object.freeze({
  /** RFC 9728 §3.1: the metadata URL is built from the resource's path. */
  resourcePath: (c) => trimTrailingSlashes(new URL(c.resourceUri).pathname),
});

/**
 * Fails to compile, naming the field, when a Config field has neither a row nor a derivation.
 * (That no field has two is checked by config_test.ts.)
 */
export type UnfilledConfigFields = MustBeNever<
  Exclude<keyof Config, (typeof ROWS)[number]["field"] | keyof typeof DERIVED_FIELDS>
>;
type MustBeNever<T extends never> = T;

/** The variables as `--help` and the README list them, read off {@linkcode CONFIG_ROWS}. */
export const VARIABLES: readonly Variable[] = deepFreeze(
  CONFIG_ROWS.map((r) => ({
    name: r.name,
    default: shownDefault(r.default),
    description: r.description,
  })),
);

/** A default as operators read it: "required", the default text, or what stands for the value. */
function shownDefault(d: Default<unknown>): string {
  if (d.kind === "required") return "required";
  return d.kind === "text" ? d.text : d.shown;
}

/** What the post-checks see: the rows' values and the text each variable was parsed from. */
export interface Parsed {
  /** Each field whose row parsed cleanly; absent after a problem, or when still to derive. */
  readonly values: Partial<Config>;
  /** Per variable: the text parsed (set or default); undefined when unset without a text default. */
  readonly texts: Readonly<Record<string, string | undefined>>;
}

/** A rule across variables, run after every row, its problems reported with theirs. */
export interface PostCheck {
  readonly name: string;
  check(parsed: Parsed): ConfigProblem[];
}

/** The cross-variable rules, in the order their problems are reported. */
export const POST_CHECKS: readonly PostCheck[] = Object.freeze([
  {
    name: "jwks-uri-and-expected-issuer-with-one-issuer",
    check({ values: { authorizationServers }, texts }) {
      // Each issuer's key set and iss come from its own discovery; one override cannot fit them all.
      if (!authorizationServers || authorizationServers.length < 2) return [];
      return (["JWKS_URI", "EXPECTED_ISSUER"] as const).flatMap((name) =>
        texts[name] === undefined ? [] : [
          invalidValue(
            name,
            "expected it unset when AUTHORIZATION_SERVER names several issuers " +
              "(each one's key set and issuer are discovered)",
            texts[name]!,
          ),
        ]
      );
    },
  },
  {
    name: "issuer-audiences-name-issuers",
    check({ values: { authorizationServers, issuerAudiences } }) {
      if (!authorizationServers || !issuerAudiences) return [];
      const seen = new Set<string>();
      const problems: ConfigProblem[] = [];
      for (const { issuer } of issuerAudiences) {
        if (!authorizationServers.includes(issuer)) {
          problems.push(invalidValue(
            "ISSUER_AUDIENCES",
            "expected issuers listed in AUTHORIZATION_SERVER, exactly as spelled there",
            issuer,
          ));
        } else if (seen.has(issuer)) {
          problems.push(
            invalidValue("ISSUER_AUDIENCES", "expected each issuer at most once", issuer),
          );
        }
        seen.add(issuer);
      }
      return problems;
    },
  },
  {
    name: "tls-files-in-pairs",
    check({ values }) {
      const cert = values.tlsCertFile !== undefined;
      if (cert === (values.tlsKeyFile !== undefined)) return [];
      const missing = cert ? "TLS_KEY_FILE" : "TLS_CERT_FILE";
      const other = cert ? "TLS_CERT_FILE" : "TLS_KEY_FILE";
      return [{
        variable: missing,
        message: `Missing "${missing}": required when "${other}" is set`,
      }];
    },
  },
  {
    // Introspection is on exactly when a client id is set; its other variables mean nothing
    // without one, and client_secret_basic/_post need the secret (RFC 6749 §2.3.1).
    name: "introspection-needs-credentials",
    check({ values, texts }) {
      const problems: ConfigProblem[] = [];
      if (values.introspectionFormat === "google_tokeninfo") return [];
      if (values.introspectionClientId === undefined) {
        const dependent = ["INTROSPECTION_CLIENT_SECRET", "INTROSPECTION_URL"].filter((n) =>
          texts[n] !== undefined
        );
        if (values.introspectAll === true) dependent.push("INTROSPECT_ALL");
        for (const name of dependent) {
          problems.push({
            variable: "INTROSPECTION_CLIENT_ID",
            message: `Missing "INTROSPECTION_CLIENT_ID": required when "${name}" is set`,
          });
        }
      } else if (values.introspectionClientSecret === undefined) {
        problems.push({
          variable: "INTROSPECTION_CLIENT_SECRET",
          message:
            'Missing "INTROSPECTION_CLIENT_SECRET": required when "INTROSPECTION_CLIENT_ID" is set',
        });
      }
      return problems;
    },
  },
  {
    // Google's tokeninfo (docs/identity-providers.md "Google") takes no client authentication:
    // a client id or secret would be sent nowhere, so setting one is a mistake to name, not to
    // ignore. Its tokens carry the OAuth client ID in `aud`, never RESOURCE_URI, so the default
    // audience would refuse every token. It serves Google alone: every token goes to it
    // (INTROSPECT_ALL), and another issuer's tokens must not be sent to Google.
    name: "google-tokeninfo-settings",
    check({ values, texts }) {
      if (values.introspectionFormat !== "google_tokeninfo") return [];
      const why = 'when "INTROSPECTION_FORMAT" is google_tokeninfo (tokeninfo takes no client ' +
        "authentication)";
      const problems: ConfigProblem[] = [];
      if (texts.INTROSPECTION_CLIENT_ID !== undefined) {
        problems.push(
          invalidValue(
            "INTROSPECTION_CLIENT_ID",
            `expected it unset ${why}`,
            texts.INTROSPECTION_CLIENT_ID,
          ),
        );
      }
      if (texts.INTROSPECTION_CLIENT_SECRET !== undefined) {
        // The secret itself is never echoed.
        problems.push(
          invalidValue("INTROSPECTION_CLIENT_SECRET", `expected it unset ${why}`, "[redacted]"),
        );
      }
      const method = texts.INTROSPECTION_AUTH_METHOD;
      if (method !== undefined && method.trim() !== "client_secret_basic") {
        problems.push(
          invalidValue("INTROSPECTION_AUTH_METHOD", `expected it unset ${why}`, method),
        );
      }
      const as = values.authorizationServers;
      const own = values.issuerAudiences?.some((e) => e.issuer === as?.[0]) ?? false;
      if (texts.EXPECTED_AUDIENCE === undefined && !own) {
        problems.push({
          variable: "EXPECTED_AUDIENCE",
          message: 'Missing "EXPECTED_AUDIENCE": required when "INTROSPECTION_FORMAT" is ' +
            "google_tokeninfo (the OAuth client ID, which Google puts in aud; RESOURCE_URI never is)",
        });
      }
      if (as !== undefined && as.length > 1) {
        problems.push(invalidValue(
          "INTROSPECTION_FORMAT",
          'expected rfc7662 when "AUTHORIZATION_SERVER" names several authorization servers ' +
            "(google_tokeninfo sends every token to Google)",
          texts.INTROSPECTION_FORMAT ?? "",
        ));
      }
      return problems;
    },
  },
  {
    // The mirror answers for one authorization server; with several, an old client could not
    // tell which one it is talking to.
    name: "mirror-needs-one-authorization-server",
    check({ values, texts }) {
      const as = values.authorizationServers;
      if (values.asMetadataMirror !== true || as === undefined || as.length < 2) return [];
      return [
        invalidValue(
          "AS_METADATA_MIRROR",
          'expected false when "AUTHORIZATION_SERVER" names several authorization servers',
          texts.AS_METADATA_MIRROR ?? "",
        ),
      ];
    },
  },
  {
    // OIDC Core §2: `sub` is unique only within its issuer. With several issuers a header that
    // carries `sub` alone would give the upstream one identity for two users (a partner
    // issuer's "alice" and the home issuer's "alice"); the issuer must travel with it.
    name: "subject-header-names-its-issuer",
    check({ values, texts }) {
      const as = values.authorizationServers;
      const headers = values.claimHeaders;
      if (as === undefined || as.length < 2 || headers === undefined) return [];
      const maps = (name: string) =>
        headers.some((h) => h.claim.path.length === 1 && h.claim.path[0] === name);
      if (!maps("sub") || maps("iss")) return [];
      return [
        invalidValue(
          "CLAIM_HEADERS",
          'expected "iss" mapped too when it maps "sub" and "AUTHORIZATION_SERVER" names several ' +
            "authorization servers (a sub is unique only within its issuer)",
          texts.CLAIM_HEADERS ?? "",
        ),
      ];
    },
  },
  {
    // Introspection serves the first issuer (an opaque token names none). INTROSPECT_ALL would
    // send every other issuer's tokens to the first one's endpoint: its users refused, their
    // bearer tokens handed to another trust domain.
    name: "introspect-all-needs-one-authorization-server",
    check({ values, texts }) {
      const as = values.authorizationServers;
      if (values.introspectAll !== true || as === undefined || as.length < 2) return [];
      return [
        invalidValue(
          "INTROSPECT_ALL",
          'expected false when "AUTHORIZATION_SERVER" names several authorization servers',
          texts.INTROSPECT_ALL ?? "",
        ),
      ];
    },
  },
  {
    // Discovery fetches the metadata from AUTHORIZATION_SERVER: over plain http only where no
    // network is crossed, the rule JWKS_URI follows (parseJwksUri). With JWKS_URI set nothing is
    // fetched from it; `check` still warns (clients want an https issuer, RFC 8414 §2).
    name: "discovery-over-https",
    check({ values: { authorizationServers }, texts }) {
      // Unset or invalid: reported by its row; JWKS_URI set (even if invalid): no discovery.
      if (!authorizationServers || texts.JWKS_URI !== undefined) return [];
      return authorizationServers.filter((entry) => {
        const url = new URL(entry);
        return url.protocol === "http:" && !isLoopbackHost(url.hostname);
      }).map((entry) =>
        invalidValue(
          "AUTHORIZATION_SERVER",
          "expected an https URL for discovery (http only for a loopback host, or set JWKS_URI)",
          entry,
        )
      );
    },
  },
  {
    name: "metrics-port-apart-from-listener",
    check({ values: { listen, metricsListen }, texts }) {
      if (!listen || !metricsListen || !sameSocket(listen, metricsListen)) return [];
      return [
        invalidValue(
          "METRICS_ADDR",
          "expected a port other than the one of LISTEN_ADDR",
          texts.METRICS_ADDR ?? "",
        ),
      ];
    },
  },
]);

/**
 * Parses and validates the whole configuration (docs/contract.md §1): every row of
 * {@linkcode CONFIG_ROWS} is read and every problem collected, then the
 * {@linkcode POST_CHECKS}; then derived defaults and fields are filled and the result deep-frozen.
 * @throws {ConfigError} listing every bad variable.
 */
export function parseConfig(env: Env): Config {
  const problems: ConfigProblem[] = [];
  const values: Record<string, unknown> = {};
  const texts: Record<string, string | undefined> = {};
  for (const r of TABLE) {
    const read = readRow(r, env[r.name], problems);
    texts[r.name] = read.text;
    if (read.ok) values[r.field] = read.value;
  }
  const parsed: Parsed = { values: values as Partial<Config>, texts };
  for (const rule of POST_CHECKS) problems.push(...rule.check(parsed));
  if (problems.length > 0) throw new ConfigError(problems);

  // No problems: every row has its value but a derived default, which may now read the others.
  const config = values as unknown as Config;
  for (const r of TABLE) {
    if (r.default.kind === "derived" && !(r.field in values)) {
      values[r.field] = r.default.derive(config);
    }
    if (r.resolve) values[r.field] = r.resolve(config[r.field], config);
  }
  for (const [field, derive] of Object.entries(DERIVED_FIELDS)) values[field] = derive(config);
  return deepFreeze(config);
}

/** One row read: its value when `ok`, and the text it was parsed from. */
interface Reading {
  readonly ok: boolean;
  readonly value?: unknown;
  readonly text?: string;
}

function readRow(
  r: Row<keyof Config>,
  raw: string | undefined,
  problems: ConfigProblem[],
): Reading {
  const blank = raw === undefined || raw.trim() === "";
  if (blank && raw !== undefined && r.whenBlank) return { ok: true, value: r.whenBlank.value };
  let text = blank ? undefined : raw;
  if (text === undefined) {
    switch (r.default.kind) {
      case "required":
        problems.push({ variable: r.name, message: `Missing "${r.name}": required` });
        return { ok: false };
      case "value":
        return { ok: true, value: r.default.value };
      case "derived":
        return { ok: false };
      case "text":
        text = r.default.text;
    }
  }
  const before = problems.length;
  const got = text;
  const value = r.parse(text, (detail, shown = got) => {
    problems.push(invalidValue(r.name, detail, shown));
  });
  return { ok: problems.length === before, value, text };
}

/**
 * One problem in the configuration's one voice: `Invalid "NAME": <detail>, got "<value>"`.
 * Also used by the CLI for problems found outside parseConfig (unreadable TLS files).
 */
export function invalidValue(variable: string, detail: string, got: string): ConfigProblem {
  // A refused URL may carry credentials (user info, `?token=`): they never reach stderr.
  const safe = redactSecrets(got);
  const shown = safe.length > 200 ? safe.slice(0, 200) + "…" : safe;
  return { variable, message: `Invalid "${variable}": ${detail}, got ${JSON.stringify(shown)}` };
}

/** One issuer the gate accepts tokens from, with what its tokens are checked against. */
export interface IssuerConfig {
  /** The AUTHORIZATION_SERVER entry, verbatim: discovered (RFC 8414 §3) and published. */
  readonly authorizationServer: string;
  /**
   * The exact `iss` its tokens carry: EXPECTED_ISSUER (one issuer only), else the entry, which
   * discovery requires to equal the metadata's `issuer` (RFC 8414 §3.3).
   */
  readonly issuer: string;
  /** JWKS_URI (one issuer only); else discovered. */
  readonly jwksUri?: string;
  /** Its ISSUER_AUDIENCES entry, else EXPECTED_AUDIENCE. */
  readonly audiences: readonly string[];
}

/** The issuers of a configuration, in AUTHORIZATION_SERVER order; the one owner of this view. */
export function issuersOf(
  config: Pick<
    Config,
    "authorizationServers" | "expectedIssuer" | "jwksUri" | "expectedAudience" | "issuerAudiences"
  >,
): readonly IssuerConfig[] {
  return config.authorizationServers.map((as) => ({
    authorizationServer: as,
    issuer: config.expectedIssuer ?? as,
    ...(config.jwksUri !== undefined && { jwksUri: config.jwksUri }),
    audiences: config.issuerAudiences.find((e) => e.issuer === as)?.audiences ??
      config.expectedAudience,
  }));
}

/**
 * The effective configuration as a plain JSON-able object, for the start log line and
 * `mcp-gate check`: one key per row of {@linkcode CONFIG_ROWS}, in table order, shown as the
 * row's `display` says; `null` means not set. The credentials are hidden: INTROSPECTION_CLIENT_SECRET
 * and the user info of RATE_LIMIT_REDIS_URL are shown as "[redacted]"; other URLs with user info
 * are refused.
 */
export function redactedConfig(config: Config): Record<string, unknown> {
  return Object.fromEntries(
    TABLE.map((r) => [
      displayKey(r),
      displayValue(r.display, config[r.field]),
    ]),
  );
}

/** The redacted view's key for a row: the field name unless the display names another. */
export function displayKey(r: Row<keyof Config>): string {
  return typeof r.display === "object" && r.display.key !== undefined ? r.display.key : r.field;
}

function redactText<T>(value: T): T {
  return (typeof value === "string" ? redactSecrets(value) : value) as T;
}

/** One value as the redacted view shows it. */
export function displayValue<T>(display: Display<T>, value: T): unknown {
  if (value === undefined || value === null) return null;
  if (display === "redacted") return "[redacted]";
  // URLs may carry credentials in a query (JWKS_URI?token=...): shown redacted, like every message.
  if (display === "as-is") return Array.isArray(value) ? value.map(redactText) : redactText(value);
  return display.format(value);
}

/**
 * RESOURCE_URI with and without one trailing slash: clients normalise differently (the TS SDK's
 * `URL.href` and pydantic add "/" to an origin-only URL), and the AS copies what they send into
 * `aud`. Not for a URI with a query, where a slash would land in the query.
 */
function defaultAudience(resourceUri: string): readonly string[] {
  if (resourceUri.includes("?")) return [resourceUri];
  const other = resourceUri.endsWith("/") ? resourceUri.slice(0, -1) : resourceUri + "/";
  return [resourceUri, other];
}

/** REQUIRED_CLAIMS as the redacted view shows it: the JSON object, or the `claim=a|b` entries. */
function displayRequiredClaims(list: readonly RequiredClaim[]): unknown {
  if (list.length === 0) return {};
  return list[0].kind === "equals"
    ? Object.fromEntries(list.map((r) => [r.claim.text, r.kind === "equals" ? r.value : null]))
    : list.map((r) => `${r.claim.text}=${r.kind === "anyOf" ? r.values.join("|") : ""}`);
}

/** Two listeners that would collide: same non-zero port on the same or a wildcard host. */
function sameSocket(a: ListenAddr, b: ListenAddr): boolean {
  const wildcard = (h: string) => h === "0.0.0.0" || h === "::";
  return a.port !== 0 && a.port === b.port &&
    (a.hostname === b.hostname || wildcard(a.hostname) || wildcard(b.hostname));
}

/** Freezes objects and arrays all the way down; typed arrays (Cidr bytes) cannot be frozen. */
function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !ArrayBuffer.isView(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
