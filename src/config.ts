/**
 * Configuration: parsed once from the environment into a frozen {@linkcode Config}, or a
 * ConfigError naming every bad variable at once. Pure: the caller passes the environment.
 */
import { ConfigError, type ConfigProblem } from "./errors.ts";
import { type Cidr, isLoopbackHost, parseCidr, parseIp } from "./ip.ts";

export type { Cidr } from "./ip.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";

/** A listener address. `hostname` is "0.0.0.0", "::", "127.0.0.1", ...; `port` may be 0. */
export interface ListenAddr {
  readonly hostname: string;
  readonly port: number;
}

/** One `claim=Header-Name` pair of CLAIM_HEADERS. */
export interface ClaimHeader {
  readonly claim: string;
  /** Lower-case header name. */
  readonly header: string;
}

/** The upstream base URL, split once so the request path does no URL parsing. */
export interface Upstream {
  /** As configured. */
  readonly url: string;
  readonly protocol: "http:" | "https:";
  /** Host name or IP address; an IPv6 address without brackets ("::1"). */
  readonly hostname: string;
  /** Numeric port, defaulted from the scheme. */
  readonly port: number;
  /** `host[:port]` as it goes into the upstream `Host` header (port omitted when default). */
  readonly host: string;
  /** Base path without a trailing slash ("" for the root); the request path is appended. */
  readonly basePath: string;
}

/** The gate's whole configuration. Every duration is in milliseconds, every size in bytes. */
export interface Config {
  readonly upstream: Upstream;
  /** RESOURCE_URI verbatim: published as `resource`. */
  readonly resourceUri: string;
  /** The path of RESOURCE_URI without a trailing slash ("" when none), for RFC 9728 §3.1. */
  readonly resourcePath: string;
  /** AUTHORIZATION_SERVER verbatim: published in `authorization_servers`. */
  readonly authorizationServer: string;
  readonly listen: ListenAddr;
  /** JWKS_URI, or undefined to discover it from AUTHORIZATION_SERVER. */
  readonly jwksUri?: string;
  /** EXPECTED_ISSUER, or undefined to use the discovered issuer (else AUTHORIZATION_SERVER). */
  readonly expectedIssuer?: string;
  /** Non-empty; default RESOURCE_URI with and without one trailing slash. */
  readonly expectedAudience: readonly string[];
  readonly requiredScopes: readonly string[];
  readonly scopesSupported: readonly string[];
  readonly scopeClaims: readonly string[];
  /** REQUIRED_CLAIMS as parsed JSON object. */
  readonly requiredClaims: Readonly<Record<string, unknown>>;
  readonly resourceName?: string;
  readonly resourceDocumentation?: string;
  readonly allowedAlgs: readonly string[];
  readonly clockSkewMs: number;
  readonly jwksRefreshIntervalMs: number;
  readonly jwksMinRefreshIntervalMs: number;
  readonly upstreamTimeoutMs: number;
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

/** The environment as a plain record (main.ts passes `Deno.env.toObject()`). */
export type Env = Readonly<Record<string, string | undefined>>;

/** One environment variable as `--help` and the README list it. */
export interface Variable {
  readonly name: string;
  /** The default as shown to operators ("required", "none", or a value). */
  readonly default: string;
  readonly description: string;
}

/** The asymmetric JWS algorithms the gate can verify (RFC 7518 §3.1, RFC 8037). */
export const ASYMMETRIC_ALGS: readonly string[] = Object.freeze([
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
]);

/** Defaults that are values: parsed by the same code as the variable, so help and behaviour agree. */
const FALLBACK = {
  LISTEN_ADDR: "0.0.0.0:8080",
  SCOPE_CLAIMS: "scope,scp",
  ALLOWED_ALGS: ASYMMETRIC_ALGS.join(","),
  CLOCK_SKEW: "30s",
  JWKS_REFRESH_INTERVAL: "10m",
  JWKS_MIN_REFRESH_INTERVAL: "30s",
  UPSTREAM_TIMEOUT: "120s",
  SHUTDOWN_TIMEOUT: "30s",
  MAX_REQUEST_BODY: "10MiB",
  FORWARD_AUTHORIZATION: "false",
  PRESERVE_HOST: "false",
  RATE_LIMIT_RPS: "0",
  RATE_LIMIT_BURST: "0",
  MAX_CONCURRENT_REQUESTS: "100",
  MAX_TOTAL_CONNECTIONS: "1000",
  METRICS_ADDR: ":9090",
  LOG_LEVEL: "info",
} as const;

/**
 * Every environment variable, in the order `--help` and the README show them (CONTRACT.md §1).
 * Unset and blank values mean the default, except `METRICS_ADDR` where empty disables the listener.
 */
export const VARIABLES: readonly Variable[] = deepFreeze([
  {
    name: "UPSTREAM_URL",
    default: "required",
    description: "http(s) base URL of the MCP server; the request path and query are appended",
  },
  {
    name: "RESOURCE_URI",
    default: "required",
    description: "public URL of the MCP endpoint, e.g. https://mcp.example.com/mcp; " +
      "published verbatim as resource",
  },
  {
    name: "AUTHORIZATION_SERVER",
    default: "required",
    description: "issuer URL of the authorization server, published exactly as given",
  },
  {
    name: "LISTEN_ADDR",
    default: FALLBACK.LISTEN_ADDR,
    description: "gate listener: host:port, :port or [IPv6]:port",
  },
  {
    name: "JWKS_URI",
    default: "discovered",
    description: "key set URL (https unless the host is loopback); else read from the " +
      "authorization server metadata (RFC 8414, then OpenID Connect)",
  },
  {
    name: "EXPECTED_ISSUER",
    default: "discovered issuer, else AUTHORIZATION_SERVER",
    description: "exact iss value",
  },
  {
    name: "EXPECTED_AUDIENCE",
    default: "RESOURCE_URI with and without one trailing /",
    description: "accepted audiences, comma-separated; the token's aud must contain one",
  },
  {
    name: "REQUIRED_SCOPES",
    default: "none",
    description: "scopes that must all be granted (comma- or space-separated)",
  },
  {
    name: "SCOPES_SUPPORTED",
    default: "REQUIRED_SCOPES",
    description: "scopes published in the metadata and the 401 challenge; omitted when empty",
  },
  {
    name: "SCOPE_CLAIMS",
    default: FALLBACK.SCOPE_CLAIMS,
    description: "claims holding granted scopes (space-separated string or array)",
  },
  {
    name: "REQUIRED_CLAIMS",
    default: "none",
    description: 'JSON object, e.g. {"tenant":"acme"}; each claim must equal the value, ' +
      "or contain it when the claim is an array",
  },
  { name: "RESOURCE_NAME", default: "none", description: "resource_name in the metadata" },
  {
    name: "RESOURCE_DOCUMENTATION",
    default: "none",
    description: "resource_documentation URL in the metadata",
  },
  {
    name: "ALLOWED_ALGS",
    default: FALLBACK.ALLOWED_ALGS,
    description: "accepted JWS algorithms; none and HS* are always refused",
  },
  {
    name: "CLOCK_SKEW",
    default: FALLBACK.CLOCK_SKEW,
    description: "leeway for exp, nbf and iat",
  },
  {
    name: "JWKS_REFRESH_INTERVAL",
    default: FALLBACK.JWKS_REFRESH_INTERVAL,
    description: "key set max age (±10 % jitter); a failed refresh keeps the old keys",
  },
  {
    name: "JWKS_MIN_REFRESH_INTERVAL",
    default: FALLBACK.JWKS_MIN_REFRESH_INTERVAL,
    description: "at most one refetch per interval for an unknown kid",
  },
  {
    name: "UPSTREAM_TIMEOUT",
    default: FALLBACK.UPSTREAM_TIMEOUT,
    description: "wait for upstream response headers (then 504); streaming bodies are not cut",
  },
  {
    name: "SHUTDOWN_TIMEOUT",
    default: FALLBACK.SHUTDOWN_TIMEOUT,
    description: "drain time after SIGTERM or SIGINT",
  },
  {
    name: "MAX_REQUEST_BODY",
    default: FALLBACK.MAX_REQUEST_BODY,
    description: "largest request body, in bytes or KiB/MiB/GiB (binary only); larger gets 413",
  },
  {
    name: "TRUSTED_PROXIES",
    default: "none",
    description: "CIDRs or IPs whose X-Forwarded-For is believed for client_ip; /0 refused",
  },
  {
    name: "ALLOWED_ORIGINS",
    default: "none",
    description: "* or origins (scheme://host[:port]); a request with another Origin gets 403",
  },
  {
    name: "FORWARD_AUTHORIZATION",
    default: FALLBACK.FORWARD_AUTHORIZATION,
    description: "pass Authorization and Cookie on to the upstream",
  },
  {
    name: "CLAIM_HEADERS",
    default: "none",
    description: "claim=Header-Name pairs set from the token, e.g. sub=X-Auth-Subject; " +
      "inbound copies are removed",
  },
  {
    name: "PRESERVE_HOST",
    default: FALLBACK.PRESERVE_HOST,
    description: "send the client's Host to the upstream instead of the upstream's own",
  },
  {
    name: "RATE_LIMIT_RPS",
    default: FALLBACK.RATE_LIMIT_RPS,
    description:
      "requests per second per token subject; requests without a valid token count per client IP; 0 = off",
  },
  {
    name: "RATE_LIMIT_BURST",
    default: FALLBACK.RATE_LIMIT_BURST,
    description: "token bucket size; 0 = max(1, ceil(RATE_LIMIT_RPS))",
  },
  {
    name: "MAX_CONCURRENT_REQUESTS",
    default: FALLBACK.MAX_CONCURRENT_REQUESTS,
    description:
      "requests in flight per client IP (a stream until it ends); more get 429; 0 = unlimited",
  },
  {
    name: "MAX_TOTAL_CONNECTIONS",
    default: FALLBACK.MAX_TOTAL_CONNECTIONS,
    description: "requests in flight in total (not connections: Deno.serve exposes no count " +
      "of them); more get 503; 0 = unlimited",
  },
  {
    name: "METRICS_ADDR",
    default: FALLBACK.METRICS_ADDR,
    description: "listener for /metrics, /livez and /readyz; set it empty to disable",
  },
  {
    name: "TLS_CERT_FILE",
    default: "none",
    description: "PEM certificate chain; with TLS_KEY_FILE the gate serves HTTPS",
  },
  { name: "TLS_KEY_FILE", default: "none", description: "PEM private key for TLS_CERT_FILE" },
  {
    name: "LOG_LEVEL",
    default: FALLBACK.LOG_LEVEL,
    description: "debug, info, warn or error",
  },
]);

/** Reports a bad value; `got` defaults to the whole variable. */
type Fail = (detail: string, got?: string) => void;
/** Parses one value; calls `fail` for each problem (the returned value is then ignored). */
type Parser<T> = (text: string, fail: Fail) => T | undefined;

/**
 * Parses and validates the whole configuration (CONTRACT.md §1). Every variable is read, every
 * problem collected; the result is deep-frozen.
 * @throws {ConfigError} listing every bad variable.
 */
export function parseConfig(env: Env): Config {
  const problems: ConfigProblem[] = [];
  const given = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v;
  };
  const read = <T>(name: string, parse: Parser<T>, text = given(name)): T | undefined => {
    if (text === undefined) return undefined;
    const before = problems.length;
    const value = parse(text, (detail, got = text) => {
      problems.push(invalidValue(name, detail, got));
    });
    return problems.length === before ? value : undefined;
  };
  const required = <T>(name: string, parse: Parser<T>): T | undefined => {
    if (given(name) === undefined) {
      problems.push({ variable: name, message: `Missing "${name}": required` });
      return undefined;
    }
    return read(name, parse);
  };
  const withDefault = <T>(name: keyof typeof FALLBACK, parse: Parser<T>): T | undefined =>
    read(name, parse, given(name) ?? FALLBACK[name]);

  const upstream = required("UPSTREAM_URL", parseUpstream);
  const resource = required("RESOURCE_URI", (t, fail) => httpUrl(t, fail, { query: true }));
  const authorizationServer = required(
    "AUTHORIZATION_SERVER",
    // RFC 8414 §2: an issuer has no query or fragment.
    (t, fail) => httpUrl(t, fail, { query: false }) && t,
  );
  const listen = withDefault("LISTEN_ADDR", parseListenAddr);
  const jwksUri = read("JWKS_URI", parseJwksUri);
  const expectedIssuer = read("EXPECTED_ISSUER", (t, fail) => {
    // Compared byte for byte with `iss`: stray spaces would silently reject every token.
    if (t.trim() !== t) fail("expected no leading or trailing whitespace");
    return t;
  });
  const expectedAudience = read("EXPECTED_AUDIENCE", (t, fail) => nonEmpty(splitList(t), fail));
  const requiredScopes = read("REQUIRED_SCOPES", parseScopes);
  const scopesSupported = read("SCOPES_SUPPORTED", parseScopes);
  const scopeClaims = withDefault("SCOPE_CLAIMS", (t, fail) => nonEmpty(splitList(t), fail));
  const requiredClaims = read("REQUIRED_CLAIMS", parseJsonObject);
  const resourceName = read("RESOURCE_NAME", (t) => t.trim());
  const resourceDocumentation = read(
    "RESOURCE_DOCUMENTATION",
    (t, fail) => httpUrl(t, fail, { query: true }) && t,
  );
  const allowedAlgs = withDefault("ALLOWED_ALGS", parseAlgs);
  const clockSkewMs = withDefault("CLOCK_SKEW", duration({ zero: true }));
  const jwksRefreshIntervalMs = withDefault("JWKS_REFRESH_INTERVAL", duration({ zero: false }));
  const jwksMinRefreshIntervalMs = withDefault(
    "JWKS_MIN_REFRESH_INTERVAL",
    duration({ zero: false }),
  );
  const upstreamTimeoutMs = withDefault("UPSTREAM_TIMEOUT", duration({ zero: false }));
  const shutdownTimeoutMs = withDefault("SHUTDOWN_TIMEOUT", duration({ zero: true }));
  const maxRequestBodyBytes = withDefault("MAX_REQUEST_BODY", parseSize);
  const trustedProxies = read("TRUSTED_PROXIES", parseTrustedProxies);
  const allowedOrigins = read("ALLOWED_ORIGINS", parseOrigins);
  const forwardAuthorization = withDefault("FORWARD_AUTHORIZATION", parseBoolean);
  const claimHeaders = read("CLAIM_HEADERS", parseClaimHeaders);
  const preserveHost = withDefault("PRESERVE_HOST", parseBoolean);
  const rateLimitRps = withDefault("RATE_LIMIT_RPS", parseRate);
  const rateLimitBurst = withDefault("RATE_LIMIT_BURST", parseCount);
  const maxConcurrentRequests = withDefault("MAX_CONCURRENT_REQUESTS", parseCount);
  const maxTotalConnections = withDefault("MAX_TOTAL_CONNECTIONS", parseCount);
  // Set but empty disables the metrics listener; unset means the default.
  const metricsDisabled = env.METRICS_ADDR !== undefined && env.METRICS_ADDR.trim() === "";
  const metricsListen = metricsDisabled ? undefined : withDefault("METRICS_ADDR", parseListenAddr);
  const tlsCertFile = given("TLS_CERT_FILE");
  const tlsKeyFile = given("TLS_KEY_FILE");
  const logLevel = withDefault("LOG_LEVEL", parseLogLevel);

  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    const [missing, other] = tlsCertFile === undefined
      ? ["TLS_CERT_FILE", "TLS_KEY_FILE"]
      : ["TLS_KEY_FILE", "TLS_CERT_FILE"];
    problems.push({
      variable: missing,
      message: `Missing "${missing}": required when "${other}" is set`,
    });
  }
  if (listen && metricsListen && sameSocket(listen, metricsListen)) {
    problems.push(
      invalidValue(
        "METRICS_ADDR",
        "expected a port other than the one of LISTEN_ADDR",
        env.METRICS_ADDR ?? FALLBACK.METRICS_ADDR,
      ),
    );
  }
  if (problems.length > 0) throw new ConfigError(problems);

  // No problems: every required or defaulted value above is defined.
  const resourceUri = resource!.text;
  const rps = rateLimitRps!;
  return deepFreeze<Config>({
    upstream: upstream!,
    resourceUri,
    resourcePath: trimTrailingSlashes(resource!.url.pathname),
    authorizationServer: authorizationServer!,
    listen: listen!,
    jwksUri,
    expectedIssuer,
    expectedAudience: expectedAudience ?? defaultAudience(resourceUri),
    requiredScopes: requiredScopes ?? [],
    scopesSupported: scopesSupported ?? requiredScopes ?? [],
    scopeClaims: scopeClaims!,
    requiredClaims: requiredClaims ?? {},
    resourceName,
    resourceDocumentation,
    allowedAlgs: allowedAlgs!,
    clockSkewMs: clockSkewMs!,
    jwksRefreshIntervalMs: jwksRefreshIntervalMs!,
    jwksMinRefreshIntervalMs: jwksMinRefreshIntervalMs!,
    upstreamTimeoutMs: upstreamTimeoutMs!,
    shutdownTimeoutMs: shutdownTimeoutMs!,
    maxRequestBodyBytes: maxRequestBodyBytes!,
    trustedProxies: trustedProxies ?? [],
    allowedOrigins: allowedOrigins ?? [],
    forwardAuthorization: forwardAuthorization!,
    claimHeaders: claimHeaders ?? [],
    preserveHost: preserveHost!,
    rateLimitRps: rps,
    rateLimitBurst: rateLimitBurst! === 0 && rps > 0
      ? Math.max(1, Math.ceil(rps))
      : rateLimitBurst!,
    maxConcurrentRequests: maxConcurrentRequests!,
    maxTotalConnections: maxTotalConnections!,
    metricsListen,
    tlsCertFile,
    tlsKeyFile,
    logLevel: logLevel!,
  });
}

/**
 * One problem in the configuration's one voice: `Invalid "NAME": <detail>, got "<value>"`.
 * Also used by the CLI for problems found outside parseConfig (unreadable TLS files).
 */
export function invalidValue(variable: string, detail: string, got: string): ConfigProblem {
  const shown = got.length > 200 ? got.slice(0, 200) + "…" : got;
  return { variable, message: `Invalid "${variable}": ${detail}, got ${JSON.stringify(shown)}` };
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatListenAddr(addr: ListenAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/**
 * The effective configuration as a plain JSON-able object, for the start log line and
 * `mcp-gate check`. Config holds no credentials (URLs with user info are refused), so this only
 * turns values into readable text; `null` means not set.
 */
export function redactedConfig(config: Config): Record<string, unknown> {
  return {
    upstreamUrl: config.upstream.url,
    resourceUri: config.resourceUri,
    authorizationServer: config.authorizationServer,
    listen: formatListenAddr(config.listen),
    jwksUri: config.jwksUri ?? null,
    expectedIssuer: config.expectedIssuer ?? null,
    expectedAudience: [...config.expectedAudience],
    requiredScopes: [...config.requiredScopes],
    scopesSupported: [...config.scopesSupported],
    scopeClaims: [...config.scopeClaims],
    requiredClaims: config.requiredClaims,
    resourceName: config.resourceName ?? null,
    resourceDocumentation: config.resourceDocumentation ?? null,
    allowedAlgs: [...config.allowedAlgs],
    clockSkewMs: config.clockSkewMs,
    jwksRefreshIntervalMs: config.jwksRefreshIntervalMs,
    jwksMinRefreshIntervalMs: config.jwksMinRefreshIntervalMs,
    upstreamTimeoutMs: config.upstreamTimeoutMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    maxRequestBodyBytes: config.maxRequestBodyBytes,
    trustedProxies: config.trustedProxies.map((c) => c.text),
    allowedOrigins: [...config.allowedOrigins],
    forwardAuthorization: config.forwardAuthorization,
    claimHeaders: config.claimHeaders.map((c) => `${c.claim}=${c.header}`),
    preserveHost: config.preserveHost,
    rateLimitRps: config.rateLimitRps,
    rateLimitBurst: config.rateLimitBurst,
    maxConcurrentRequests: config.maxConcurrentRequests,
    maxTotalConnections: config.maxTotalConnections,
    metricsListen: config.metricsListen ? formatListenAddr(config.metricsListen) : null,
    tlsCertFile: config.tlsCertFile ?? null,
    tlsKeyFile: config.tlsKeyFile ?? null,
    logLevel: config.logLevel,
  };
}

// --- parsers -------------------------------------------------------------------------------

/** A parsed http(s) URL and the text it came from. */
interface HttpUrl {
  readonly text: string;
  readonly url: URL;
}

/**
 * An absolute http(s) URL with a host, no fragment, no user info, and no characters the WHATWG
 * parser would silently drop or rewrite (whitespace, controls, backslashes), so "verbatim" holds.
 */
function httpUrl(text: string, fail: Fail, rules: { query: boolean }): HttpUrl | undefined {
  if (/[\s\\\p{Cc}]/u.test(text)) {
    fail("expected a URL without whitespace, control characters or backslashes");
    return undefined;
  }
  let url: URL | undefined;
  try {
    if (/^https?:\/\/[^/?#]/i.test(text)) url = new URL(text);
  } catch { /* reported below */ }
  if (!url) {
    fail("expected an http or https URL");
    return undefined;
  }
  if (text.includes("#")) fail("expected a URL without a fragment");
  if (!rules.query && text.includes("?")) fail("expected a URL without a query");
  // "http://user:pw@h" and a stray "http://@h": credentials must not sit in config or logs.
  if (authority(text).includes("@")) fail("expected a URL without user info");
  return { text, url };
}

/** The text between "//" and the first "/", "?" or "#". */
function authority(text: string): string {
  const start = text.indexOf("//") + 2;
  const rest = text.slice(start);
  const end = rest.search(/[/?#]/);
  return end < 0 ? rest : rest.slice(0, end);
}

function parseUpstream(text: string, fail: Fail): Upstream | undefined {
  const parsed = httpUrl(text, fail, { query: false });
  if (!parsed) return undefined;
  const { url } = parsed;
  const protocol = url.protocol as "http:" | "https:";
  return {
    url: text,
    protocol,
    hostname: stripBrackets(url.hostname),
    port: url.port ? Number(url.port) : protocol === "https:" ? 443 : 80,
    host: url.host, // WHATWG already omits the scheme's default port
    basePath: trimTrailingSlashes(url.pathname),
  };
}

/** RFC 8725 §3.9 spirit: key material over plain http only where no network is crossed. */
function parseJwksUri(text: string, fail: Fail): string | undefined {
  const parsed = httpUrl(text, fail, { query: true });
  if (!parsed) return undefined;
  if (parsed.url.protocol === "http:" && !isLoopbackHost(parsed.url.hostname)) {
    fail("expected an https URL (http only for a loopback host)");
  }
  return text;
}

/** `host:port`, `:port` (all IPv4 interfaces), `[IPv6]:port`. */
function parseListenAddr(text: string, fail: Fail): ListenAddr | undefined {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    fail("expected host:port, :port or [IPv6]:port with a port from 0 to 65535");
    return undefined;
  }
  if (m[1] !== undefined) {
    if (parseIp(m[1])?.family !== 6) fail("expected an IPv6 address inside the brackets");
    return { hostname: m[1].toLowerCase(), port };
  }
  const host = m[2] === "" ? "0.0.0.0" : m[2];
  const valid = /^[\d.]+$/.test(host)
    ? parseIp(host) !== undefined
    : /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host);
  if (!valid) fail("expected a host name or IP address before the port");
  return { hostname: host, port };
}

/** RFC 6749 §3.3 scope-token: printable ASCII without space, '"' and '\' (it goes in a quoted header value). */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

function parseScopes(text: string, fail: Fail): readonly string[] {
  const scopes = unique(text.split(/[\s,]+/).filter((s) => s !== ""));
  for (const s of scopes) {
    if (!SCOPE_TOKEN.test(s)) {
      fail(`expected scope tokens of printable ASCII without '"' or '\\'`, s);
    }
  }
  return scopes;
}

function parseJsonObject(text: string, fail: Fail): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch { /* reported below */ }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail('expected a JSON object like {"tenant":"acme"}');
    return undefined;
  }
  return value as Record<string, unknown>;
}

/** RFC 8725 §3.1: never `none`, and never an HMAC secret shared with the authorization server. */
function parseAlgs(text: string, fail: Fail): readonly string[] | undefined {
  const algs = nonEmpty(splitList(text), fail);
  for (const alg of algs ?? []) {
    if (/^(none|HS\d*)$/i.test(alg)) {
      fail('symmetric and "none" algorithms are never allowed', alg);
    } else if (!ASYMMETRIC_ALGS.includes(alg)) {
      fail(`expected algorithms from ${ASYMMETRIC_ALGS.join(",")}`, alg);
    }
  }
  return algs;
}

/** Nanoseconds per Go duration unit (Go's time.ParseDuration). */
const UNIT_NS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  "µs": 1e3, // U+00B5 micro sign
  "μs": 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};
const NUMBER = String.raw`(?:\d+\.?\d*|\.\d+)`;
const PLAIN_SECONDS = new RegExp(`^${NUMBER}$`);
const GO_DURATION = new RegExp(`^(?:${NUMBER}(?:ns|us|µs|μs|ms|s|m|h))+$`);
const DURATION_PART = new RegExp(`(${NUMBER})(ns|us|µs|μs|ms|s|m|h)`, "g");
/** setTimeout's limit: longer delays fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Go duration (`1h30m`, `500ms`) or plain seconds (`30`, `0.5`), in milliseconds. */
function duration(rules: { zero: boolean }): Parser<number> {
  return (text, fail) => {
    const t = text.trim();
    let ns: number;
    if (PLAIN_SECONDS.test(t)) ns = Number(t) * 1e9;
    else if (GO_DURATION.test(t)) {
      ns = 0;
      for (const [, n, unit] of t.matchAll(DURATION_PART)) ns += Number(n) * UNIT_NS[unit];
    } else {
      fail(
        t.startsWith("-")
          ? "expected a duration that is not negative"
          : 'expected a duration like "30s", "1m30s", "500ms" or plain seconds like "30"',
      );
      return undefined;
    }
    const ms = Math.round(ns) / 1e6; // whole nanoseconds, so "1.1s" is exactly 1100
    if (!rules.zero && ms === 0) fail("expected a duration greater than zero");
    if (ms > MAX_TIMER_MS) fail("expected a duration of at most 596h");
    return ms;
  };
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
};

/** Bytes, or a number with a binary suffix. Decimal-looking suffixes (MB) are ambiguous: refused. */
function parseSize(text: string, fail: Fail): number | undefined {
  const m = new RegExp(`^(${NUMBER})\\s*([A-Za-z]*)$`).exec(text.trim());
  const unit = SIZE_UNITS[m?.[2].toLowerCase() ?? "?"];
  if (!m || unit === undefined) {
    fail('expected a size in bytes or with a KiB, MiB or GiB suffix, like "10MiB"');
    return undefined;
  }
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) fail("expected a positive whole number of bytes");
  return bytes;
}

function parseTrustedProxies(text: string, fail: Fail): readonly Cidr[] | undefined {
  const out: Cidr[] = [];
  for (const entry of nonEmpty(splitList(text), fail) ?? []) {
    const cidr = parseCidr(entry);
    if (!cidr) fail("expected an IP address or CIDR block like 10.0.0.0/8", entry);
    else if (cidr.prefix === 0) {
      fail("expected a block smaller than /0, which trusts every client", entry);
    } else out.push(cidr);
  }
  return out;
}

/** Exact origins (RFC 6454 §6.2 serialisation) or `*`; compared with the request's Origin as is. */
function parseOrigins(text: string, fail: Fail): readonly string[] | undefined {
  const out: string[] = [];
  for (const entry of nonEmpty(splitList(text), fail) ?? []) {
    if (entry === "*") {
      out.push(entry);
      continue;
    }
    if (entry.toLowerCase() === "null") {
      // Sandboxed frames and file: pages all send "null": allowing it allows them all.
      fail('expected a real origin, never "null"', entry);
      continue;
    }
    if (entry.includes("*")) {
      fail('expected "*" alone or an exact origin, not a pattern', entry);
      continue;
    }
    const origin = parseOrigin(entry);
    if (origin) out.push(origin);
    else {
      fail('expected "*" or an origin like "https://app.example.com" (no path)', entry);
    }
  }
  return unique(out);
}

function parseOrigin(entry: string): string | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#@\s\\]+)$/.exec(entry);
  if (!m) return undefined;
  const scheme = m[1].toLowerCase();
  if (scheme !== "http" && scheme !== "https") return `${scheme}://${m[2].toLowerCase()}`;
  try {
    return new URL(entry).origin; // lower-cases the host and drops a default port, as browsers send it
  } catch {
    return undefined;
  }
}

/** RFC 9110 §5.6.2 token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Headers the gate manages itself or that change how the message is framed or routed; a claim
 * must never set them. Hop-by-hop per RFC 9110 §7.6.1.
 */
const RESERVED_HEADERS = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "authorization",
  "cookie",
  "forwarded",
  "x-real-ip",
  "x-request-id",
]);
const RESERVED_PREFIXES = ["x-forwarded-", "content-", "mcp-"];

function parseClaimHeaders(text: string, fail: Fail): readonly ClaimHeader[] | undefined {
  const out: ClaimHeader[] = [];
  for (const entry of nonEmpty(splitList(text), fail) ?? []) {
    const eq = entry.indexOf("=");
    const claim = entry.slice(0, Math.max(eq, 0)).trim();
    const header = entry.slice(eq + 1).trim().toLowerCase();
    if (eq < 0 || claim === "" || header === "") {
      fail("expected claim=Header-Name pairs like sub=X-Auth-Subject", entry);
    } else if (!HEADER_NAME.test(header)) {
      fail("expected an HTTP header name", entry);
    } else if (
      RESERVED_HEADERS.has(header) || RESERVED_PREFIXES.some((p) => header.startsWith(p))
    ) {
      fail(
        "expected a header the gate does not manage (not hop-by-hop, Host, Authorization, " +
          "Cookie, Content-*, Forwarded, X-Forwarded-*, X-Real-IP, X-Request-Id or Mcp-*)",
        entry,
      );
    } else if (out.some((c) => c.header === header)) {
      fail("expected each header at most once", entry);
    } else out.push({ claim, header });
  }
  return out;
}

function parseBoolean(text: string, fail: Fail): boolean | undefined {
  const t = text.trim().toLowerCase();
  if (t === "true" || t === "1" || t === "yes") return true;
  if (t === "false" || t === "0" || t === "no") return false;
  fail("expected true, false, 1, 0, yes or no");
  return undefined;
}

function parseRate(text: string, fail: Fail): number | undefined {
  const t = text.trim();
  if (!PLAIN_SECONDS.test(t)) {
    fail("expected a number of requests per second, 0 or more");
    return undefined;
  }
  return Number(t);
}

function parseCount(text: string, fail: Fail): number | undefined {
  const t = text.trim();
  if (!/^\d+$/.test(t) || !Number.isSafeInteger(Number(t))) {
    fail("expected a whole number, 0 or more");
    return undefined;
  }
  return Number(t);
}

function parseLogLevel(text: string, fail: Fail): LogLevel | undefined {
  const t = text.trim().toLowerCase();
  if (t === "debug" || t === "info" || t === "warn" || t === "error") return t;
  fail("expected debug, info, warn or error");
  return undefined;
}

// --- helpers -------------------------------------------------------------------------------

/** Comma-separated entries, trimmed, empty ones dropped, duplicates removed. */
function splitList(text: string): string[] {
  return unique(text.split(",").map((s) => s.trim()).filter((s) => s !== ""));
}

/** A list variable that is set must name at least one entry (`","` is a mistake, not a default). */
function nonEmpty(list: string[], fail: Fail): string[] | undefined {
  if (list.length === 0) fail("expected at least one entry");
  return list.length === 0 ? undefined : list;
}

function unique<T>(list: T[]): T[] {
  return [...new Set(list)];
}

function trimTrailingSlashes(path: string): string {
  return path.replace(/\/+$/, "");
}

function stripBrackets(hostname: string): string {
  return hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
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
