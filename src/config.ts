/**
 * Configuration: parsed once from the environment into a frozen {@linkcode Config}, or a
 * ConfigError naming every bad variable at once. Pure: the caller passes the environment.
 */
import { ConfigError } from "./errors.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";

/** A listener address. `hostname` is "0.0.0.0", "::", "127.0.0.1", ...; `port` may be 0. */
export interface ListenAddr {
  readonly hostname: string;
  readonly port: number;
}

/** A parsed CIDR block, e.g. 10.0.0.0/8 or fd00::/8. */
export interface Cidr {
  /** 4 or 6. */
  readonly family: 4 | 6;
  /** Network address as bytes (4 or 16), already masked. */
  readonly bytes: Uint8Array;
  readonly prefix: number;
  /** As written, for logs. */
  readonly text: string;
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
  /** undefined = disabled (METRICS_ADDR empty). */
  readonly metricsListen?: ListenAddr;
  readonly tlsCertFile?: string;
  readonly tlsKeyFile?: string;
  readonly logLevel: LogLevel;
}

/** The environment as a plain record (main.ts passes `Deno.env.toObject()`). */
export type Env = Readonly<Record<string, string | undefined>>;

/**
 * Parses and validates the whole configuration.
 * @throws {ConfigError} listing every bad variable.
 */
export function parseConfig(_env: Env): Config {
  throw new ConfigError([{ variable: "*", message: "parseConfig is not implemented yet" }]);
}
