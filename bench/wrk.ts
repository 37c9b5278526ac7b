/**
 * Running wrk (Debian package `wrk`) with {@link ./wrk_tokens.lua} and reading its result.
 * wrk takes whole seconds and has no pause between warm-up and measurement, so the caller runs it
 * twice: once to warm up, once to measure, sampling the gate's CPU time in between.
 */
import type { LoadResult } from "./loadgen.ts";
import { onCpus } from "./proc.ts";

const SCRIPT = new URL("./wrk_tokens.lua", import.meta.url).pathname;

/** wrk's version line, or undefined when wrk is not installed. */
export async function wrkVersion(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("wrk", { args: ["-v"], stdout: "piped", stderr: "piped" })
      .output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return /^wrk (\S+)/m.exec(text)?.[1];
  } catch {
    return undefined;
  }
}

/** Options for {@linkcode runWrk}. */
export interface WrkOptions {
  url: string;
  body: string;
  connections: number;
  /** wrk threads; capped at `connections`. */
  threads: number;
  /** Whole seconds, at least 1. */
  seconds: number;
  tokensFile: string;
  newConnection: boolean;
  /** Run wrk on these CPUs (a taskset list). */
  cpus?: string;
  /** Called with the child process so the caller can stop it on Ctrl-C. */
  track?: (child: Deno.ChildProcess) => () => void;
}

/** Runs wrk once and converts its summary to a {@linkcode LoadResult}. */
export async function runWrk(options: WrkOptions): Promise<LoadResult> {
  const threads = Math.max(1, Math.min(options.threads, options.connections));
  const args = [
    `-t${threads}`,
    `-c${options.connections}`,
    `-d${Math.max(1, Math.round(options.seconds))}s`,
    "--timeout",
    "10s",
    "-s",
    SCRIPT,
  ];
  if (options.newConnection) args.push("-H", "Connection: close");
  args.push(options.url);
  const [cmd, cmdArgs] = onCpus(options.cpus, "wrk", args);
  const child = new Deno.Command(cmd, {
    args: cmdArgs,
    env: { BENCH_TOKENS: options.tokensFile, BENCH_BODY: options.body },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const untrack = options.track?.(child) ?? (() => {});
  const out = await child.output();
  untrack();
  const text = new TextDecoder().decode(out.stdout);
  const line = text.split("\n").find((l) => l.startsWith("BENCH_JSON "));
  if (!line) {
    throw new Error(
      `wrk gave no result (exit ${out.code}): ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  const r = JSON.parse(line.slice("BENCH_JSON ".length));
  return {
    requests: r.requests,
    // wrk only counts statuses above 399 separately.
    ok: r.requests - r.status_errors,
    statuses: r.status_errors ? { "4xx/5xx": r.status_errors } : {},
    errors: r.socket_errors,
    elapsedMs: r.duration_us / 1000,
    p50Ms: r.p50_us / 1000,
    p99Ms: r.p99_us / 1000,
  };
}
