/**
 * Settings that parse but are known to break real clients or the gate's own purpose. One list
 * for both places an operator looks: `mcp-gate check` prints them, `serve` logs them at start
 * (docs/contract.md §6). Pure functions of the parsed Config, the environment it came from, and
 * (for the issuer) what discovery found.
 */
import { isLoopbackHost } from "../net/mod.ts";
import { type Config, CONFIG_ROWS, type Env, issuersOf } from "./config.ts";

/** One warning: a stable id for tests and scripts, the variable it is about, text for people. */
export interface ConfigWarning {
  readonly id:
    | "resource_trailing_slash"
    | "resource_not_https"
    | "authorization_server_not_https"
    | "no_scopes_supported"
    | "required_scope_not_advertised"
    | "audience_without_resource"
    | "upstream_path_repeats_resource_path"
    | "unknown_variable"
    | "unsupported_go_variable"
    | "issuer_differs_from_authorization_server"
    | "expected_issuer_differs_from_discovered";
  /** The variable the warning is about. */
  readonly variable: string;
  readonly message: string;
}

/**
 * Variables of the Go mcp-gate (its `cmd/mcp-gate/main.go` loadConfig and `.env.example`; see
 * docs/identity-providers.md, "Migrating from the Go mcp-gate"). Those this gate
 * has no row for are ignored here, so an env file carried over gets a warning for each, not silence.
 * Which are unsupported is read off CONFIG_ROWS at run time: a row added later ends the warning.
 */
export const GO_MCP_GATE_VARIABLES: readonly string[] = Object.freeze([
  "LISTEN_ADDR",
  "UPSTREAM_URL",
  "RESOURCE_URI",
  "AUTHORIZATION_SERVER",
  "JWKS_URI",
  "EXPECTED_ISSUER",
  "EXPECTED_AUDIENCE",
  "REQUIRED_SCOPES",
  "SCOPES_SUPPORTED",
  "RESOURCE_NAME",
  "JWKS_REFRESH_INTERVAL",
  "SHUTDOWN_TIMEOUT",
  "MAX_REQUEST_BODY",
  "TRUSTED_PROXIES",
  "RATE_LIMIT_RPS",
  "RATE_LIMIT_BURST",
  "MAX_CONCURRENT_REQUESTS",
  "MAX_TOTAL_CONNECTIONS",
  "UPSTREAM_TIMEOUT",
  "READ_TIMEOUT",
  "IDLE_TIMEOUT",
  "MAX_HEADER_BYTES",
  "METRICS_ADDR",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_SERVICE_NAME",
  "OTEL_TRACE_SAMPLE_RATE",
  "LOG_LEVEL",
]);

/**
 * Every warning that follows from the configuration and the environment alone: what `check`
 * prints and `serve` logs at start, in this order.
 */
export function startupWarnings(config: Config, env: Env): ConfigWarning[] {
  return [...configWarnings(config), ...unknownVariableWarnings(env)];
}

/**
 * Warnings that follow from the configuration alone. Each names what real clients (or the
 * upstream) do with the setting, since the gate itself would run.
 */
export function configWarnings(config: Config): ConfigWarning[] {
  const warnings: ConfigWarning[] = [];
  const resource = new URL(config.resourceUri);
  if (config.resourceUri.endsWith("/")) {
    // docs/specs.md §0.4, §8.3 items 4 and 6.
    warnings.push({
      id: "resource_trailing_slash",
      variable: "RESOURCE_URI",
      message: `RESOURCE_URI "${config.resourceUri}" ends with "/": the Claude UI strips a ` +
        "trailing slash from connector URLs, the TypeScript SDK rejects metadata whose resource " +
        "is longer than the URL it connected to, and one Claude client looped on such a resource; " +
        "publish the exact MCP endpoint URL without it",
    });
  }
  if (resource.protocol === "http:" && !isLoopbackHost(resource.hostname)) {
    warnings.push({
      id: "resource_not_https",
      variable: "RESOURCE_URI",
      message: `RESOURCE_URI "${config.resourceUri}" uses http on a non-loopback host: MCP ` +
        "clients require https for remote servers, and bearer tokens would cross the network " +
        "in clear text",
    });
  }
  for (const entry of config.authorizationServers) {
    const as = new URL(entry);
    if (as.protocol === "http:" && !isLoopbackHost(as.hostname)) {
      // Only reachable with JWKS_URI set: without it, config refuses plain-http discovery.
      warnings.push({
        id: "authorization_server_not_https",
        variable: "AUTHORIZATION_SERVER",
        message: `AUTHORIZATION_SERVER "${entry}" uses http: Claude and the ` +
          "MCP SDKs require an https issuer (RFC 8414 §2)",
      });
    }
  }
  if (config.scopesSupported.length === 0) {
    // docs/specs.md §8.3 item 2.
    warnings.push({
      id: "no_scopes_supported",
      variable: "SCOPES_SUPPORTED",
      message: "SCOPES_SUPPORTED is empty: with no scope in the metadata or the 401 challenge, " +
        "Claude requests every scope the authorization server advertises, which some servers " +
        "refuse (invalid_scope); list the scopes clients should request",
    });
  }
  const missing = config.requiredScopes.filter((s) => !config.scopesSupported.includes(s));
  if (missing.length > 0) {
    // docs/specs.md §8.3 item 3: no step-up, a 403 only leads to the same consent again.
    warnings.push({
      id: "required_scope_not_advertised",
      variable: "REQUIRED_SCOPES",
      message: `REQUIRED_SCOPES ${JSON.stringify(missing.join(" "))} not in SCOPES_SUPPORTED: ` +
        "clients are not told to request it, so their tokens get 403 insufficient_scope, and " +
        "Claude cannot step up at run time",
    });
  }
  const bare = config.resourceUri.replace(/\/$/, "");
  const audienceSets = new Map<string, { variable: string; audiences: string }>();
  for (const { authorizationServer, audiences } of issuersOf(config)) {
    const own = config.issuerAudiences.some((e) => e.issuer === authorizationServer);
    const name = own ? `ISSUER_AUDIENCES for "${authorizationServer}"` : "EXPECTED_AUDIENCE";
    if (!audiences.some((a) => a === bare || a === bare + "/")) {
      audienceSets.set(name, {
        variable: own ? "ISSUER_AUDIENCES" : "EXPECTED_AUDIENCE",
        audiences: audiences.join(","),
      });
    }
  }
  for (const [name, { variable, audiences }] of audienceSets) {
    // MCP authorization spec: tokens must be issued for this resource (RFC 8707, RFC 9068 §4).
    warnings.push({
      id: "audience_without_resource",
      variable,
      message: `${name} ${JSON.stringify(audiences)} does not ` +
        `contain RESOURCE_URI "${config.resourceUri}": tokens issued for another audience are ` +
        "accepted (e.g. a client ID, which ID tokens also carry); the MCP authorization spec " +
        "wants tokens bound to this resource, so use an audience dedicated to this server",
    });
  }
  // The request path is appended to UPSTREAM_URL's path, so a base that already ends with the
  // resource path sends "/mcp" to "<base>/mcp/mcp" (docs/contract.md §1 UPSTREAM_URL).
  const base = config.upstream.basePath;
  if (config.resourcePath !== "" && base.endsWith(config.resourcePath)) {
    const { protocol, host } = config.upstream;
    const suggested = `${protocol}//${host}${base.slice(0, -config.resourcePath.length)}`;
    warnings.push({
      id: "upstream_path_repeats_resource_path",
      variable: "UPSTREAM_URL",
      message: `UPSTREAM_URL "${config.upstream.url}" ends with RESOURCE_URI's path ` +
        `"${config.resourcePath}": the request path is appended to UPSTREAM_URL, so requests for ` +
        `"${config.resourcePath}" reach the upstream at "${base}${config.resourcePath}"; ` +
        `set UPSTREAM_URL to the server's base URL ("${suggested}") unless the upstream ` +
        "really serves that doubled path",
    });
  }
  const issuer = issuerWarning(config);
  if (issuer) warnings.push(issuer);
  return warnings;
}

/**
 * Variables that are set, unknown to this gate, and look meant for it: a near miss of a known
 * name (Levenshtein distance at most 2, or equal once case and underscores are ignored) or a
 * variable of the Go mcp-gate this gate does not support. Known names are read off
 * {@linkcode CONFIG_ROWS}. One warning per variable, in name order.
 */
export function unknownVariableWarnings(env: Env): ConfigWarning[] {
  const known = CONFIG_ROWS.map((r) => r.name);
  const knownSet = new Set(known);
  const goOnly = new Set(GO_MCP_GATE_VARIABLES.filter((n) => !knownSet.has(n)));
  const warnings: ConfigWarning[] = [];
  for (const name of Object.keys(env).sort()) {
    if (env[name] === undefined || knownSet.has(name)) continue;
    if (goOnly.has(name)) {
      warnings.push({
        id: "unsupported_go_variable",
        variable: name,
        message: `${name} is a variable of the Go mcp-gate that this gate does not support: ` +
          "it is ignored (see docs/contract.md §1 for the variables this gate reads)",
      });
      continue;
    }
    const near = nearestKnown(name, known);
    if (near !== undefined) {
      warnings.push({
        id: "unknown_variable",
        variable: name,
        message: `${name} is not a variable of this gate and is ignored: did you mean ${near}?`,
      });
    }
  }
  return warnings;
}

/** The known name `name` most likely misspells, if any (the first of the closest). */
function nearestKnown(name: string, known: readonly string[]): string | undefined {
  const squash = (s: string) => s.toUpperCase().replace(/[_-]/g, "");
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = squash(k) === squash(name) ? 0 : editDistance(name.toUpperCase(), k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance (insertions, deletions, substitutions of UTF-16 code units). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        prev[j] + 1,
        row[j - 1] + 1,
        prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * What discovery found against what tokens must carry: EXPECTED_ISSUER that is not the issuer of
 * the discovered metadata rejects every token the authorization server issues (`iss` is compared
 * exactly, RFC 9068 §4). `serve` logs it at level error once discovery has run, and `check` fails.
 * Undefined when discovery did not run (JWKS_URI set) or the two agree.
 */
export function issuerMismatch(
  config: Config,
  discoveredIssuer: string | undefined,
): ConfigWarning | undefined {
  const expected = config.expectedIssuer;
  if (discoveredIssuer === undefined || expected === undefined) return undefined;
  if (expected === discoveredIssuer) return undefined;
  return {
    id: "expected_issuer_differs_from_discovered",
    variable: "EXPECTED_ISSUER",
    message: `EXPECTED_ISSUER "${expected}" differs from the issuer "${discoveredIssuer}" the ` +
      "authorization server's metadata names: every token it issues carries that issuer, so " +
      "every token is rejected (invalid_token, reason issuer); unset EXPECTED_ISSUER or set it " +
      "to the discovered issuer",
  };
}

/**
 * With JWKS_URI set nothing is discovered, so tokens must carry EXPECTED_ISSUER while clients
 * check the authorization server metadata against AUTHORIZATION_SERVER (RFC 8414 §3.3).
 */
function issuerWarning(config: Config): ConfigWarning | undefined {
  // JWKS_URI and EXPECTED_ISSUER are refused with several issuers: this is the one.
  const expected = config.expectedIssuer;
  const as = config.authorizationServers[0];
  if (config.jwksUri === undefined || expected === undefined) return undefined;
  if (expected === as) return undefined;
  return {
    id: "issuer_differs_from_authorization_server",
    variable: "EXPECTED_ISSUER",
    message: `the expected token issuer "${expected}" differs from AUTHORIZATION_SERVER ` +
      `"${as}": clients check that the authorization server metadata's ` +
      "issuer equals the published authorization_servers entry exactly (RFC 8414 §3.3), and " +
      "tokens must carry the issuer the gate expects",
  };
}
