/**
 * `mcp-gate check` (docs/contract.md §6): what an operator runs before the first start, and when a
 * client "silently fails" to connect. It knows what `serve` knows: the same configuration, the
 * same warnings (src/config/warnings.ts, which `serve` logs at start), the same mapping of the
 * resource path to the upstream (the forwarder's own joining), discovery and the key set exactly
 * as the server runs them, and, with a token, the verifier's own rules one by one.
 *
 * It prints the effective configuration by variable name (no secrets), the metadata document
 * clients will read, where the resource path lands upstream and whether the upstream answers a
 * connection, the authorization server and its keys, the token's rules, and then every warning.
 *
 * Exit codes: 0 ok (warnings do not fail; an unreachable upstream is a warning, since the gate may
 * start before its upstream and answers 502 meanwhile), 1 when discovery or the key set fetch
 * failed, EXPECTED_ISSUER contradicts the discovered issuer (every token would be rejected), or
 * the token given would be refused. A bad configuration (2) is reported by the CLI before this runs.
 */
import {
  type Config,
  CONFIG_ROWS,
  type ConfigWarning,
  displayValue,
  type Env,
  type EnvFile,
  introspectionEnabled,
  issuerMismatch,
  startupWarnings,
} from "../config/mod.ts";
import { describeError, redactSecrets } from "../errors.ts";
import {
  createKeyStores,
  explainToken,
  isJwsShaped,
  type KeyStore,
  type TokenExplanation,
} from "../auth/mod.ts";
import { createLogger, type LogSink } from "../ops/mod.ts";
import { createMetadata, ERROR_RULES } from "../http/mod.ts";
import { upstreamMapping } from "../proxy/mod.ts";
import { runtimeLimits } from "../server.ts";

/** Where the check writes; text is written as given. */
export interface CheckIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Options for {@linkcode runCheck}. */
export interface CheckDeps {
  io: CheckIo;
  /** The environment the config was parsed from (env file merged in): unknown variables, sources. */
  env?: Env;
  /** The env file read with `--env-file`, whose values override the process environment. */
  envFile?: { readonly path: string; readonly file: EnvFile };
  /** A token to explain (`--token`, read from stdin). Never printed. */
  token?: string;
  /** Used for discovery and the key set fetch. */
  fetch?: typeof fetch;
  /** Deadline of each fetch (discovery, key set). Default 10 s. */
  fetchTimeoutMs?: number;
  /** Deadline of the upstream connection probe. Default 3 s. */
  probeTimeoutMs?: number;
  /** CA certificates (PEM) trusted for an https upstream, for tests. */
  upstreamCaCerts?: string[];
  /** Clock for the token's time claims, in epoch ms. */
  now?: () => number;
}

/** One warning of the report: the configuration's, or one that only the check finds. */
export type CheckWarning =
  | ConfigWarning
  | {
    readonly id:
      | "upstream_unreachable"
      | "env_file_ignored"
      | "env_file_comment_continuation"
      | "setting_not_applied";
    readonly variable: string;
    readonly message: string;
  };

/**
 * Runs the check: prints the report on stdout (failures on stderr) and returns the exit code,
 * 0 or 1.
 */
export async function runCheck(config: Config, deps: CheckDeps): Promise<number> {
  const { io } = deps;
  const env = deps.env ?? {};
  const warnings: CheckWarning[] = [
    ...envFileWarnings(deps.envFile),
    ...startupWarnings(config, env),
    // What the runtime cannot apply, as `serve` logs it at start (one owner: runtimeLimits).
    ...runtimeLimits(config, Deno.version.deno).map((l): CheckWarning => ({
      id: "setting_not_applied",
      variable: l.variable,
      message: `${l.variable} is not fully applied: ${l.detail}`,
    })),
  ];
  const failures: string[] = [];

  const metadata = createMetadata(config);
  io.stdout(
    configurationSection(config, env, deps.envFile) +
      `Protected resource metadata (RFC 9728), served at ${metadata.url}:\n` +
      indent(JSON.stringify(metadata.document, null, 2)) + "\n\n",
  );

  const mapping = upstreamMapping(config);
  const probe = await probeUpstream(config, deps);
  io.stdout(
    "Upstream:\n" +
      `  ${mapping.from} → ${mapping.to}\n` +
      `  reachable: ${probe.ok ? "yes" : "no"} (${probe.detail})\n\n`,
  );
  if (!probe.ok) {
    warnings.push({
      id: "upstream_unreachable",
      variable: "UPSTREAM_URL",
      message: `UPSTREAM_URL "${config.upstream.url}" did not accept a connection ` +
        `(${probe.detail}): requests get 502 until it does; fine if the upstream starts later`,
    });
  }

  // The check reports what the key store finds itself; its log lines go to stderr only with
  // LOG_LEVEL=debug, for tracing discovery.
  const sink: LogSink = config.logLevel === "debug"
    ? { write: (line) => io.stderr(line), flush: () => {} }
    : { write: () => {}, flush: () => {} };
  const set = createKeyStores(config, {
    log: createLogger({ level: "debug", sink }),
    fetch: deps.fetch,
    fetchTimeoutMs: deps.fetchTimeoutMs,
  });
  let tokenReport: TokenExplanation | undefined;
  try {
    const several = set.stores.length > 1;
    const results = await Promise.allSettled(set.stores.map((k) => k.refresh()));
    let loaded = 0;
    results.forEach((result, i) => {
      const keys = set.stores[i];
      const before = failures.length;
      if (result.status === "rejected") failures.push(describeError(result.reason));
      else if (keys.stats().keys === 0) {
        failures.push(
          `the key set at "${redactSecrets(keys.jwksUri ?? "")}" holds no key usable with ` +
            `ALLOWED_ALGS (${config.allowedAlgs.join(",")})`,
        );
      }
      const ok = failures.length === before;
      if (ok) loaded++;
      io.stdout(authorizationServerSection(config, keys, { loaded: ok, several }));
      const mismatch = issuerMismatch(config, keys.discoveredIssuer);
      if (mismatch) failures.push(mismatch.message);
    });
    if (deps.token !== undefined) {
      const introspected = introspectionEnabled(config) &&
        (config.introspectAll || !isJwsShaped(deps.token));
      if (introspected) {
        // The answer is the authorization server's (RFC 7662), given per call: not judged here.
        io.stdout(
          "Token (read from stdin, never printed):\n  not checked: the introspection endpoint " +
            "decides this token at run time (INTROSPECTION_*" +
            (config.introspectAll ? ", INTROSPECT_ALL" : ", not a JWT") +
            "); check does not call it\n\n",
        );
      } else if (loaded > 0) {
        tokenReport = await explainToken(deps.token, { config, keys: set, now: deps.now });
        io.stdout(tokenSection(tokenReport));
        if (!tokenReport.verdict.ok) failures.push("the token would be refused (see above)");
      } else {
        io.stdout("Token (read from stdin, never printed):\n  not checked: no key set\n\n");
      }
    }
  } finally {
    await set[Symbol.asyncDispose]();
  }

  io.stdout(warningsSection(warnings));
  if (failures.length > 0) {
    for (const f of failures) {
      io.stderr(`mcp-gate: check failed: ${f.replace(/\s*[\r\n]+\s*/g, " ")}\n`);
    }
    return 1;
  }
  const token = tokenReport ? ", token accepted" : "";
  io.stdout(`\nOK: configuration valid, key set loaded${token}\n`);
  return 0;
}

/** Every variable by name with its effective value and where it came from. */
function configurationSection(
  config: Config,
  env: Env,
  envFile: CheckDeps["envFile"],
): string {
  const from = envFile
    ? `the environment and ${JSON.stringify(envFile.path)}, whose values win (as systemd's ` +
      "EnvironmentFile= does over Environment=)"
    : "the environment";
  const width = Math.max(...CONFIG_ROWS.map((r) => r.name.length)) + 2;
  const lines = CONFIG_ROWS.map((r) => {
    const value = displayValue(r.display, config[r.field]);
    // Durations in the unit operators write them in (Config holds milliseconds).
    const shown = r.field.endsWith("Ms") && typeof value === "number"
      ? formatDuration(value)
      : showValue(value);
    const set = env[r.name] !== undefined && env[r.name]!.trim() !== "";
    const source = envFile && r.name in envFile.file.vars
      ? "  (env file)"
      : set || (env[r.name] !== undefined && r.whenBlank)
      ? ""
      : "  (default)";
    return `  ${r.name.padEnd(width)}${shown}${source}\n`;
  });
  return `Configuration (from ${from}):\n${lines.join("")}\n`;
}

/** Milliseconds in Go duration syntax, the largest whole unit: 30000 → "30s", 600000 → "10m". */
function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function showValue(v: unknown): string {
  if (v === null || v === undefined) return "(not set)";
  if (typeof v === "string") return v === "" ? '""' : v;
  if (Array.isArray(v)) {
    return v.length === 0 ? "(none)" : v.map((x) => typeof x === "string" ? x : JSON.stringify(x))
      .join(",");
  }
  return JSON.stringify(v);
}

function authorizationServerSection(
  config: Config,
  keys: KeyStore,
  how: { loaded: boolean; several: boolean },
): string {
  const issuer = keys.issuer ?? config.expectedIssuer;
  const out = [
    how.several
      ? `Authorization server "${keys.source.authorizationServer}":\n`
      : "Authorization server:\n",
  ];
  out.push(`  issuer tokens must carry: ${issuer ?? "(unknown: discovery failed)"}\n`);
  if (keys.discoveredIssuer !== undefined) {
    out.push(`  discovered issuer:        ${keys.discoveredIssuer}\n`);
  }
  const jwksUri = keys.jwksUri !== undefined
    ? redactSecrets(keys.jwksUri)
    : "(unknown: discovery failed)";
  out.push(`  jwks_uri:                 ${jwksUri}\n`);
  if (how.loaded) {
    const list = keys.keysFor(undefined).map((k) =>
      `    kid ${JSON.stringify(k.kid ?? null)} ${k.kty} ${[...k.algs].join(",")}\n`
    );
    out.push(`  keys:                     ${list.length} usable\n`, ...list);
  }
  return out.join("") + "\n";
}

/** The token's rules, one line each. Never the token: only what the rules say about it. */
function tokenSection(report: TokenExplanation): string {
  const width = Math.max(...report.rules.map((r) => r.rule.length)) + 2;
  const mark = (ok: boolean | undefined) => ok === undefined ? "skip" : ok ? "pass" : "FAIL";
  const lines = report.rules.map((r) => `  [${mark(r.ok)}] ${r.rule.padEnd(width)}${r.detail}\n`);
  const v = report.verdict;
  const verdict = v.ok
    ? `accepted for sub ${JSON.stringify(v.sub)}`
    : `refused: ${ERROR_RULES[v.error.code].status} ${v.error.code}${
      v.error.reason ? ` (reason ${v.error.reason})` : ""
    }`;
  return `Token (read from stdin, never printed):\n${lines.join("")}  verdict: ${verdict}\n\n`;
}

function warningsSection(warnings: readonly CheckWarning[]): string {
  if (warnings.length === 0) return "Warnings: none\n";
  const lines = warnings.map((w) => `  - [${w.id}] ${w.message}\n`);
  return `Warnings (${warnings.length}):\n${lines.join("")}`;
}

/** What systemd would do differently from what the file seems to say. */
function envFileWarnings(envFile: CheckDeps["envFile"]): CheckWarning[] {
  if (!envFile) return [];
  const { path, file } = envFile;
  return [
    ...file.ignored.map((i): CheckWarning => ({
      id: "env_file_ignored",
      variable: i.name,
      message: `${path} line ${i.line}: ${JSON.stringify(i.name)} is not a valid variable ` +
        `name (${i.reason}); systemd ignores this assignment`,
    })),
    ...file.commentContinuations.map((line): CheckWarning => ({
      id: "env_file_comment_continuation",
      variable: "",
      message: `${path} line ${line}: a comment ends with "\\": systemd before 254 also treats ` +
        "the next line as comment, 254 and later do not; remove the backslash",
    })),
  ];
}

/**
 * Whether UPSTREAM_URL accepts a connection within the deadline: TCP for http, TCP and the TLS
 * handshake (the certificate verified as the forwarder verifies it) for https. Nothing is sent.
 */
async function probeUpstream(
  config: Config,
  deps: Pick<CheckDeps, "probeTimeoutMs" | "upstreamCaCerts">,
): Promise<{ ok: boolean; detail: string }> {
  const { hostname, port, protocol } = config.upstream;
  const ms = deps.probeTimeoutMs ?? 3000;
  const where = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  const what = protocol === "https:" ? "TLS handshake with" : "TCP connect to";
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  const t0 = performance.now();
  let conn: Deno.Conn | Deno.TlsConn | undefined;
  try {
    if (protocol === "https:") {
      const tls = await Deno.connectTls({
        hostname,
        port,
        caCerts: deps.upstreamCaCerts,
        signal: abort.signal,
      } as Deno.ConnectTlsOptions);
      conn = tls;
      const deadline = new Promise<never>((_, reject) =>
        abort.signal.addEventListener("abort", () => reject(new Error("timed out")), {
          once: true,
        })
      );
      await Promise.race([tls.handshake(), deadline]);
    } else {
      conn = await Deno.connect({ hostname, port, signal: abort.signal } as Deno.ConnectOptions);
    }
    return { ok: true, detail: `${what} ${where} in ${Math.round(performance.now() - t0)} ms` };
  } catch (err) {
    const why = abort.signal.aborted
      ? `no answer within ${ms} ms`
      : describeError(err).replace(/\s*[\r\n]+\s*/g, " ");
    return { ok: false, detail: `${what} ${where}: ${why}` };
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* already closed */ }
  }
}

function indent(text: string): string {
  return text.replace(/^/gm, "  ");
}
