/**
 * The command line (docs/contract.md §6): subcommands in one table, each returning an exit code.
 * Never exits and never reads Deno.args or Deno.env: main.ts passes them in, so tests call
 * runCli().
 */
import {
  type Config,
  type Env,
  type EnvFile,
  invalidValue,
  mergeEnvFile,
  parseConfig,
  parseEnvFile,
  VARIABLES,
} from "../config/mod.ts";
import { ConfigError, type ConfigProblem } from "../errors.ts";
import { createLogger } from "../ops/mod.ts";
import { startServer } from "../server.ts";
import { runCheck } from "./check.ts";
import { runHealthcheck } from "./healthcheck.ts";
import { VERSION, versionLine } from "../version.ts";

/** Where the CLI writes; text is written as given (callers end lines with "\n"). */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Standard input as text, for `check --token`; absent where there is none. */
  readStdin?(): Promise<string>;
}

/** Exit codes (docs/contract.md §6). */
export const EXIT = Object.freeze({ ok: 0, failure: 1, config: 2 });

/**
 * Exit codes when a second signal cut the drain short: 128 + the signal's number, what a shell
 * reports for a process that signal ended.
 */
export const SIGNAL_EXIT: Readonly<Partial<Record<Deno.Signal, number>>> = Object.freeze({
  SIGINT: 130,
  SIGTERM: 143,
});

/** What a command gets: the arguments after its name, the environment and the output. */
export interface CommandContext {
  readonly args: readonly string[];
  readonly env: Env;
  readonly io: CliIo;
}

/** One row of the command table. */
export interface Command {
  /** The first name is the one shown; the rest are aliases (`--version`, `-V`). */
  readonly names: readonly string[];
  /** Shown in help, e.g. `mcp-gate [serve]`. */
  readonly usage: string;
  readonly summary: string;
  run(ctx: CommandContext): Promise<number>;
}

/** Writes to the process's stdout and stderr, synchronously so nothing is lost before exit. */
export const stdio: CliIo = {
  stdout: (text) => writeAll(Deno.stdout, text),
  stderr: (text) => writeAll(Deno.stderr, text),
  readStdin: () => new Response(Deno.stdin.readable).text(),
};

/**
 * Runs one command and returns its exit code. No arguments means `serve`.
 * @param args the command line without the program name (Deno.args).
 * @param env the environment (Deno.env.toObject()).
 */
export async function runCli(args: string[], env: Env, io: CliIo = stdio): Promise<number> {
  const [name = "serve", ...rest] = args;
  const command = COMMANDS.find((c) => c.names.includes(name));
  if (!command) {
    const what = name.startsWith("-") ? "option" : "command";
    io.stderr(`mcp-gate: unknown ${what} ${JSON.stringify(name)}\n${HELP_HINT}\n`);
    return EXIT.config;
  }
  return await command.run({ args: rest, env, io });
}

const HELP_HINT = 'Run "mcp-gate --help" for usage.';

const serve: Command = {
  names: ["serve"],
  usage: "mcp-gate [serve]",
  summary: "verify bearer tokens and proxy to UPSTREAM_URL (the default)",
  async run(ctx) {
    if (!noArguments(ctx, "serve")) return EXIT.config;
    const config = loadConfig(ctx);
    if (!config) return EXIT.config;
    let tls: { cert: string; key: string } | undefined;
    try {
      tls = await readTlsFiles(config);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      reportConfigError(ctx.io, err);
      return EXIT.config;
    }
    const log = createLogger({ level: config.logLevel });
    let server;
    try {
      server = await startServer(config, { log, handleSignals: true, tls, env: ctx.env });
    } catch (err) {
      log.flush();
      // TLS material that Deno refuses (bad encoding, key/certificate mismatch) is bad config.
      if (err instanceof ConfigError) {
        reportConfigError(ctx.io, err);
        return EXIT.config;
      }
      // Typically a listener that cannot bind: ListenError names LISTEN_ADDR or METRICS_ADDR.
      ctx.io.stderr(`mcp-gate: failed to start: ${oneLine(err)}\n`);
      return EXIT.failure;
    }
    try {
      const stopped = await server.finished;
      if (stopped.interrupted) return SIGNAL_EXIT[stopped.interrupted] ?? EXIT.failure;
    } catch (err) {
      ctx.io.stderr(`mcp-gate: stopped on an error: ${oneLine(err)}\n`);
      return EXIT.failure;
    } finally {
      log.flush();
    }
    return EXIT.ok;
  },
};

const check: Command = {
  names: ["check"],
  usage: "mcp-gate check [options]",
  summary: "validate config, probe the upstream and key set, print warnings",
  async run(ctx) {
    const options = parseCheckArgs(ctx);
    if (!options) return EXIT.config;
    let env = ctx.env;
    let envFile;
    if (options.envFile !== undefined) {
      envFile = await readEnvFile(ctx.io, options.envFile);
      if (!envFile) return EXIT.config;
      env = mergeEnvFile(ctx.env, envFile.file);
    }
    let token: string | undefined;
    if (options.token) {
      token = await readToken(ctx.io);
      if (token === undefined) return EXIT.config;
    }
    const config = loadConfig({ ...ctx, env });
    if (!config) return EXIT.config;
    try {
      await readTlsFiles(config);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      reportConfigError(ctx.io, err);
      return EXIT.config;
    }
    return await runCheck(config, { io: ctx.io, env, envFile, token });
  },
};

/** `check [--env-file PATH | --env-file=PATH] [--token]`; undefined after reporting misuse. */
function parseCheckArgs(
  ctx: CommandContext,
): { envFile?: string; token: boolean } | undefined {
  const out: { envFile?: string; token: boolean } = { token: false };
  const args = [...ctx.args];
  const misuse = (what: string) => {
    ctx.io.stderr(`mcp-gate: check: ${what}\n${HELP_HINT}\n`);
    return undefined;
  };
  while (args.length > 0) {
    const arg = args.shift()!;
    if (arg === "--token") out.token = true;
    else if (arg.startsWith("--token=")) {
      // A token in argv lands in shell history and the process list.
      return misuse("--token takes no value: the token is read from stdin");
    } else if (arg === "--env-file" || arg.startsWith("--env-file=")) {
      const path = arg === "--env-file" ? args.shift() : arg.slice("--env-file=".length);
      if (path === undefined || path === "") return misuse("--env-file needs a path");
      out.envFile = path;
    } else if (arg.startsWith("-")) return misuse(`unknown option ${JSON.stringify(arg)}`);
    else return misuse(`unexpected argument ${JSON.stringify(arg)}`);
  }
  return out;
}

/** Reads and parses a systemd EnvironmentFile=, or reports why not and returns undefined. */
async function readEnvFile(
  io: CliIo,
  path: string,
): Promise<{ path: string; file: EnvFile } | undefined> {
  let text: string;
  try {
    // systemd refuses a file that is not UTF-8, so a strict decoder.
    // ignoreBOM: systemd's parser has no byte-order-mark rule, so a BOM stays part of the first
    // name ("\uFEFFLOG_LEVEL", which the service never sees as LOG_LEVEL); check must read it so.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      await Deno.readFile(path),
    );
  } catch (err) {
    const why = err instanceof TypeError ? "not UTF-8" : fsReason(err);
    io.stderr(`mcp-gate: check: cannot read env file ${JSON.stringify(path)}: ${why}\n`);
    return undefined;
  }
  return { path, file: parseEnvFile(text) };
}

/** The token from stdin (surrounding blanks and a "Bearer " prefix removed), or undefined. */
async function readToken(io: CliIo): Promise<string | undefined> {
  const text = io.readStdin ? await io.readStdin() : "";
  const token = text.trim().replace(/^bearer\s+/i, "");
  if (token === "") {
    io.stderr("mcp-gate: check: --token reads the token from stdin, and stdin was empty\n");
    return undefined;
  }
  return token;
}

const healthcheck: Command = {
  // -health / --health: the Go gate's flag (Go's flag package takes one dash or two).
  names: ["healthcheck", "-health", "--health"],
  usage: "mcp-gate healthcheck [URL]",
  summary: "probe /readyz (local or URL): exit 0 if ready",
  run: (ctx) => runHealthcheck(ctx.args, ctx.env, { io: ctx.io }),
};

const version: Command = {
  // -version: the Go gate's flag.
  names: ["version", "--version", "-V", "-version"],
  usage: "mcp-gate version",
  summary: "print version, revision, Deno version",
  run(ctx) {
    if (!noArguments(ctx, "version")) return Promise.resolve(EXIT.config);
    ctx.io.stdout(`${versionLine()}\n`);
    return Promise.resolve(EXIT.ok);
  },
};

const help: Command = {
  names: ["help", "--help", "-h"],
  usage: "mcp-gate help",
  summary: "print this help",
  run(ctx) {
    if (!noArguments(ctx, "help")) return Promise.resolve(EXIT.config);
    ctx.io.stdout(helpText());
    return Promise.resolve(EXIT.ok);
  },
};

/** The command table: help lists it in this order. */
const COMMANDS: readonly Command[] = [serve, check, healthcheck, version, help];

/** The `--help` text: commands, every variable with its default (from VARIABLES), exit codes. */
export function helpText(): string {
  const width = Math.max(...COMMANDS.map((c) => c.usage.length)) + 2;
  const commands = COMMANDS.map((c) => {
    const aliases = c.names.slice(1);
    const also = aliases.length > 0 ? ` (also ${aliases.join(", ")})` : "";
    return `  ${c.usage.padEnd(width)}${c.summary}${also}`;
  });
  const variables = VARIABLES.map((v) => {
    const shown = v.default === "required" ? "(required)" : `(default: ${v.default})`;
    return `  ${v.name} ${shown}\n${wrap(v.description, "      ", 80)}`;
  });
  return [
    `mcp-gate ${VERSION}: OAuth bearer-token gate for MCP servers`,
    "",
    "Usage:",
    ...commands,
    "",
    "Configuration comes from the environment only. Unset or empty means the default",
    "(an empty METRICS_ADDR disables the metrics listener).",
    "Durations: Go syntax (500ms, 30s, 10m, 1h30m) or plain seconds (30, 0.5).",
    "Sizes: bytes or KiB, MiB, GiB. Lists: comma-separated (scopes also space-separated).",
    "Booleans: true/false, 1/0, yes/no.",
    "",
    "Environment:",
    ...variables,
    "",
    "Options of check:",
    "  --env-file PATH  read a systemd EnvironmentFile= first; its values win over the",
    "                   environment, as they do for the service",
    "  --token          explain rule by rule whether the token on stdin would be accepted",
    "",
    "Exit codes:",
    "  0  ok",
    "  1  runtime failure (e.g. the listen address is in use), or a failed check",
    "  2  bad configuration or usage",
    "  130, 143  a second SIGINT or SIGTERM ended the drain early",
    "",
  ].join("\n");
}

/** Wraps `text` at spaces into lines of at most `width` characters after `indent`. */
function wrap(text: string, indent: string, width: number): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  lines.push(indent + line);
  return lines.join("\n");
}

/**
 * Parses the configuration, or prints the one-line error (docs/contract.md §1) and returns
 * undefined.
 */
function loadConfig(ctx: CommandContext): Config | undefined {
  try {
    return parseConfig(ctx.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    reportConfigError(ctx.io, err);
    return undefined;
  }
}

function reportConfigError(io: CliIo, err: ConfigError): void {
  io.stderr(`mcp-gate: invalid configuration: ${oneLine(err)}\n`);
}

/** Commands without operands refuse stray words, so a typo is not silently ignored. */
function noArguments(ctx: CommandContext, name: string): boolean {
  if (ctx.args.length === 0) return true;
  ctx.io.stderr(
    `mcp-gate: ${name} takes no arguments, got ${JSON.stringify(ctx.args[0])}\n${HELP_HINT}\n`,
  );
  return false;
}

/**
 * Reads the PEM files named by TLS_CERT_FILE and TLS_KEY_FILE. parseConfig stays pure, so an
 * unreadable file is found here, and reported like any other bad variable.
 * @throws {ConfigError} naming each file that cannot be read or holds no PEM block.
 */
async function readTlsFiles(config: Config): Promise<{ cert: string; key: string } | undefined> {
  if (config.tlsCertFile === undefined || config.tlsKeyFile === undefined) return undefined;
  // Sequential, so the problems come out in a fixed order (certificate first).
  const problems: ConfigProblem[] = [];
  const read = async (variable: string, path: string, pem: RegExp, what: string) => {
    try {
      const text = await Deno.readTextFile(path);
      if (!pem.test(text)) problems.push(invalidValue(variable, `expected a PEM ${what}`, path));
      return text;
    } catch (err) {
      problems.push(invalidValue(variable, `expected a readable file (${fsReason(err)})`, path));
      return "";
    }
  };
  const cert = await read(
    "TLS_CERT_FILE",
    config.tlsCertFile,
    /-----BEGIN CERTIFICATE-----/,
    "certificate",
  );
  const key = await read(
    "TLS_KEY_FILE",
    config.tlsKeyFile,
    /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/,
    "private key",
  );
  if (problems.length > 0) throw new ConfigError(problems);
  return { cert, key };
}

function fsReason(err: unknown): string {
  if (err instanceof Deno.errors.NotFound) return "not found";
  if (err instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (err instanceof Deno.errors.IsADirectory) return "a directory";
  return oneLine(err);
}

/** An error's message on one line: the CLI's errors are one stderr line each. */
function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*[\r\n]+\s*/g, " ").trim();
}

function writeAll(out: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = new TextEncoder().encode(text);
  let off = 0;
  while (off < bytes.length) off += out.writeSync(bytes.subarray(off));
}
