/**
 * The one {@linkcode Config} builder of the unit tests: what `parseConfig` gives for the resource
 * https://mcp.example.com/mcp, so every other field is the configuration table's default (contract
 * §1), but safe to start: the upstream is the discard port nothing listens on, the gate listens on
 * 127.0.0.1:0 and no metrics listener.
 *
 * ```ts
 * const cors = createCors(testConfig({ allowedOrigins: ["https://app.example.com"] }));
 * ```
 */
import { type Config, type Env, parseConfig } from "../../src/config/mod.ts";

/** The default resource (and token audience). */
export const TEST_RESOURCE = "https://mcp.example.com/mcp";

/** The environment behind {@linkcode testConfig}: the required variables and the safe listeners. */
export const TEST_ENV: Env = Object.freeze({
  UPSTREAM_URL: "http://127.0.0.1:9",
  RESOURCE_URI: TEST_RESOURCE,
  AUTHORIZATION_SERVER: "https://auth.example.com",
  LISTEN_ADDR: "127.0.0.1:0",
  METRICS_ADDR: "",
});

/** A complete Config for tests; `overrides` replace whole fields. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return { ...parseConfig(TEST_ENV), ...overrides };
}
