/**
 * The one hand-built {@linkcode Config} of the unit tests: what `parseConfig` gives for the
 * resource https://mcp.example.com/mcp (contract §1 defaults), but safe to start: the upstream is
 * the discard port nothing listens on, the gate listens on 127.0.0.1:0 and no metrics listener.
 *
 * ```ts
 * const cors = createCors(testConfig({ allowedOrigins: ["https://app.example.com"] }));
 * ```
 */
import { ASYMMETRIC_ALGS, type Config } from "../../src/config.ts";

/** The default resource (and token audience). */
export const TEST_RESOURCE = "https://mcp.example.com/mcp";

/** A complete Config for tests; `overrides` replace whole fields. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    upstream: {
      url: "http://127.0.0.1:9",
      protocol: "http:",
      hostname: "127.0.0.1",
      port: 9,
      host: "127.0.0.1:9",
      basePath: "",
    },
    resourceUri: TEST_RESOURCE,
    resourcePath: "/mcp",
    authorizationServer: "https://auth.example.com",
    listen: { hostname: "127.0.0.1", port: 0 },
    expectedAudience: [TEST_RESOURCE, `${TEST_RESOURCE}/`],
    requiredScopes: [],
    scopesSupported: [],
    scopeClaims: ["scope", "scp"],
    requiredClaims: {},
    allowedAlgs: ASYMMETRIC_ALGS,
    clockSkewMs: 30_000,
    jwksRefreshIntervalMs: 600_000,
    jwksMinRefreshIntervalMs: 30_000,
    upstreamTimeoutMs: 120_000,
    shutdownTimeoutMs: 30_000,
    maxRequestBodyBytes: 10 * 1024 * 1024,
    trustedProxies: [],
    allowedOrigins: [],
    forwardAuthorization: false,
    claimHeaders: [],
    preserveHost: false,
    rateLimitRps: 0,
    rateLimitBurst: 0,
    maxConcurrentRequests: 100,
    maxTotalConnections: 1000,
    logLevel: "info",
    ...overrides,
  };
}
