/**
 * `mcp-gate check` (docs/contract.md §6): what an operator runs before the first start, and when a
 * client "silently fails" to connect. It runs discovery and fetches the key set exactly as the
 * server would, then prints the effective configuration (no secrets: Config holds none), the
 * metadata document clients will read, the key set, and warnings about settings that validate
 * but are known to break real clients (docs/specs.md §8, §10).
 *
 * Exit codes: 0 ok (warnings do not fail), 1 discovery or key set fetch failed. A bad
 * configuration (2) is reported by the CLI before this runs.
 */
import { type Config, issuersOf, redactedConfig } from "../config/mod.ts";
import { describeError, redactSecrets } from "../errors.ts";
import { createKeyStores, type KeyStore } from "../auth/mod.ts";
import { isLoopbackHost } from "../net/mod.ts";
import { createLogger, type LogSink } from "../ops/mod.ts";
import { createMetadata } from "../http/mod.ts";

/** Where the check writes; text is written as given. */
export interface CheckIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Options for {@linkcode runCheck}. */
export interface CheckDeps {
  io: CheckIo;
  /** Used for discovery and the key set fetch. */
  fetch?: typeof fetch;
  /** Deadline of each fetch (discovery, key set). Default 10 s. */
  fetchTimeoutMs?: number;
}

/** One warning: a stable id for tests and scripts, and the text for people. */
export interface CheckWarning {
  readonly id:
    | "resource_trailing_slash"
    | "resource_not_https"
    | "authorization_server_not_https"
    | "no_scopes_supported"
    | "required_scope_not_advertised"
    | "audience_without_resource"
    | "issuer_differs_from_authorization_server";
  readonly message: string;
}

/**
 * Warnings that follow from the configuration alone. Each names what real clients do with the
 * setting, since the gate itself would run.
 */
export function configWarnings(config: Config): CheckWarning[] {
  const warnings: CheckWarning[] = [];
  const resource = new URL(config.resourceUri);
  if (config.resourceUri.endsWith("/")) {
    // docs/specs.md §0.4, §8.3 items 4 and 6.
    warnings.push({
      id: "resource_trailing_slash",
      message: `RESOURCE_URI "${config.resourceUri}" ends with "/": the Claude UI strips a ` +
        "trailing slash from connector URLs, the TypeScript SDK rejects metadata whose resource " +
        "is longer than the URL it connected to, and one Claude client looped on such a resource; " +
        "publish the exact MCP endpoint URL without it",
    });
  }
  if (resource.protocol === "http:" && !isLoopbackHost(resource.hostname)) {
    warnings.push({
      id: "resource_not_https",
      message: `RESOURCE_URI "${config.resourceUri}" uses http on a non-loopback host: MCP ` +
        "clients require https for remote servers, and bearer tokens would cross the network " +
        "in clear text",
    });
  }
  for (const entry of config.authorizationServers) {
    const as = new URL(entry);
    if (as.protocol === "http:" && !isLoopbackHost(as.hostname)) {
      warnings.push({
        id: "authorization_server_not_https",
        message: `AUTHORIZATION_SERVER "${entry}" uses http: Claude and the ` +
          "MCP SDKs require an https issuer (RFC 8414 §2)",
      });
    }
  }
  if (config.scopesSupported.length === 0) {
    // docs/specs.md §8.3 item 2.
    warnings.push({
      id: "no_scopes_supported",
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
      message: `REQUIRED_SCOPES ${JSON.stringify(missing.join(" "))} not in SCOPES_SUPPORTED: ` +
        "clients are not told to request it, so their tokens get 403 insufficient_scope, and " +
        "Claude cannot step up at run time",
    });
  }
  const bare = config.resourceUri.replace(/\/$/, "");
  const audienceSets = new Map<string, string>();
  for (const { authorizationServer, audiences } of issuersOf(config)) {
    const own = config.issuerAudiences.some((e) => e.issuer === authorizationServer);
    const name = own ? `ISSUER_AUDIENCES for "${authorizationServer}"` : "EXPECTED_AUDIENCE";
    if (!audiences.some((a) => a === bare || a === bare + "/")) {
      audienceSets.set(name, audiences.join(","));
    }
  }
  for (const [name, audiences] of audienceSets) {
    // MCP authorization spec: tokens must be issued for this resource (RFC 8707, RFC 9068 §4).
    warnings.push({
      id: "audience_without_resource",
      message: `${name} ${JSON.stringify(audiences)} does not ` +
        `contain RESOURCE_URI "${config.resourceUri}": tokens issued for another audience are ` +
        "accepted (e.g. a client ID, which ID tokens also carry); the MCP authorization spec " +
        "wants tokens bound to this resource, so use an audience dedicated to this server",
    });
  }
  return warnings;
}

/** The warning that needs discovery: the issuer tokens must carry differs from the one published. */
function issuerWarning(keys: KeyStore): CheckWarning[] {
  const { issuer } = keys;
  const as = keys.source.authorizationServer;
  if (issuer === undefined || issuer === as) return [];
  return [{
    id: "issuer_differs_from_authorization_server",
    message: `the expected token issuer "${issuer}" differs from AUTHORIZATION_SERVER ` +
      `"${as}": clients check that the authorization server metadata's ` +
      "issuer equals the published authorization_servers entry exactly (RFC 8414 §3.3), and " +
      "tokens must carry the issuer the gate expects",
  }];
}

/**
 * Runs the check: prints the report on stdout (key set fetch failures on stderr) and returns the
 * exit code, 0 or 1 (1 when any issuer's discovery or key set fails).
 */
export async function runCheck(config: Config, deps: CheckDeps): Promise<number> {
  const { io } = deps;
  const metadata = createMetadata(config);
  const out: string[] = [];
  out.push("Effective configuration:\n");
  out.push(indent(JSON.stringify(redactedConfig(config), null, 2)) + "\n\n");
  out.push(`Protected resource metadata (RFC 9728), served at ${metadata.url}:\n`);
  out.push(indent(JSON.stringify(metadata.document, null, 2)) + "\n\n");
  io.stdout(out.join(""));

  // The key store's own log lines (discovery, failures) go to stderr at the configured level.
  const sink: LogSink = { write: (line) => io.stderr(line), flush: () => {} };
  const log = createLogger({ level: config.logLevel === "debug" ? "debug" : "warn", sink });
  const set = createKeyStores(config, {
    log,
    fetch: deps.fetch,
    fetchTimeoutMs: deps.fetchTimeoutMs,
  });
  const failures: string[] = [];
  const report: string[] = [];
  try {
    const several = set.stores.length > 1;
    const results = await Promise.allSettled(set.stores.map((k) => k.refresh()));
    results.forEach((result, i) => {
      const keys = set.stores[i];
      let failure: string | undefined;
      if (result.status === "rejected") {
        failure = describeError(result.reason);
      } else if (keys.stats().keys === 0) {
        failure =
          `the key set at "${
            redactSecrets(keys.jwksUri ?? "")
          }" holds no key usable with ALLOWED_ALGS ` +
          `(${config.allowedAlgs.join(",")})`;
      }
      if (failure !== undefined) failures.push(failure);
      const issuer = keys.issuer ?? config.expectedIssuer;
      report.push(
        several
          ? `Authorization server "${keys.source.authorizationServer}":\n`
          : "Authorization server:\n",
      );
      report.push(`  issuer tokens must carry: ${issuer ?? "(unknown: discovery failed)"}\n`);
      report.push(
        `  jwks_uri:                 ${
          keys.jwksUri !== undefined ? redactSecrets(keys.jwksUri) : "(unknown: discovery failed)"
        }\n`,
      );
      if (failure === undefined) {
        const list = keys.keysFor(undefined).map((k) =>
          `    kid ${JSON.stringify(k.kid ?? null)} ${k.kty} ${[...k.algs].join(",")}\n`
        );
        report.push(`  keys:                     ${list.length} usable\n`, ...list);
      }
    });
  } finally {
    await set[Symbol.asyncDispose]();
  }

  const warnings = [...configWarnings(config), ...set.stores.flatMap(issuerWarning)];
  report.push("\n");
  if (warnings.length === 0) report.push("Warnings: none\n");
  else {
    report.push(`Warnings (${warnings.length}):\n`);
    for (const w of warnings) report.push(`  - [${w.id}] ${w.message}\n`);
  }
  io.stdout(report.join(""));

  if (failures.length > 0) {
    for (const failure of failures) {
      io.stderr(`mcp-gate: check failed: ${failure.replace(/\s*[\r\n]+\s*/g, " ")}\n`);
    }
    return 1;
  }
  io.stdout("\nOK: configuration valid, key set loaded\n");
  return 0;
}

function indent(text: string): string {
  return text.replace(/^/gm, "  ");
}
