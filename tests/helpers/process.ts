/**
 * The gate as a child process, for what only a process shows: signals, exit codes, TLS files read
 * by the CLI, resident memory. Runs `deno run --allow-net --allow-env --allow-read main.ts` (the
 * permissions of `deno task start`), or the executable named by MCP_GATE_BIN.
 */
import { GATE_BIN } from "./gate.ts";

const ROOT = new URL("../../", import.meta.url);
const MAIN = new URL("main.ts", ROOT).pathname;

/** Variables a `deno` child needs to find its cache; the gate itself reads none of them. */
const PASS_THROUGH = ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "DENO_NO_UPDATE_CHECK"];

/** A running (or finished) gate process. */
export interface GateProcess extends AsyncDisposable {
  readonly pid: number;
  /** Bound port, from the `listening` log line (0 until then). */
  readonly port: number;
  /** Every stdout line so far that parsed as JSON. */
  logs(): Record<string, unknown>[];
  /** Raw stdout so far (the newest `maxStdoutChars` of it, when set). */
  stdout(): string;
  /** Request log lines (`"msg":"request"`) written so far, also those no longer kept. */
  readonly requestLines: number;
  /** Raw stderr so far. */
  stderr(): string;
  /** Resolves with the first log line matching `pred`, or rejects after `timeoutMs`. */
  waitForLog(
    pred: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Sends a signal (ignored when the process is gone). */
  kill(signal?: Deno.Signal): void;
  /** The exit status, once the process ended and its output was read. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Resolves with the exit status, or kills the process (SIGKILL) after `timeoutMs` and rejects. */
  exited(timeoutMs: number): Promise<Deno.CommandStatus>;
}

/** Options for {@linkcode spawnGate}. */
export interface SpawnOptions {
  /** Wait for the `listening` line (default true); false for runs expected to fail at start. */
  waitListening?: boolean;
  /** Bound on the wait for `listening` (default 20 s: a cold `deno run` compiles first). */
  startTimeoutMs?: number;
  /**
   * Keep at most this many characters of stdout (the newest), for long runs that log every
   * request. Default: keep everything.
   */
  maxStdoutChars?: number;
  /** Run under `ulimit -n` of this many descriptors (bash sets it; Deno cannot). */
  fileLimit?: number;
}

/** Starts the gate with exactly `env` (plus what `deno` needs to run). */
export async function spawnGate(
  env: Record<string, string>,
  options: SpawnOptions = {},
): Promise<GateProcess> {
  const full: Record<string, string> = { LISTEN_ADDR: "127.0.0.1:0", METRICS_ADDR: "", ...env };
  if (!GATE_BIN) {
    for (const name of PASS_THROUGH) {
      const v = Deno.env.get(name);
      if (v !== undefined && full[name] === undefined) full[name] = v;
    }
  }
  const argv = GATE_BIN
    ? [GATE_BIN]
    : [Deno.execPath(), "run", "--allow-net", "--allow-env", "--allow-read", MAIN];
  const [cmd, ...args] = options.fileLimit === undefined
    ? argv
    : ["bash", "-c", `ulimit -n ${options.fileLimit} && exec "$@"`, "bash", ...argv];
  const child = new Deno.Command(cmd, {
    args,
    env: full,
    clearEnv: true,
    // deno.json (its "unstable" list) is found from the working directory.
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let out = "";
  let err = "";
  let requestLines = 0;
  let partial = "";
  const maxOut = options.maxStdoutChars ?? Infinity;
  const addOut = (s: string) => {
    const text = partial + s;
    const last = text.lastIndexOf("\n");
    const complete = text.slice(0, last + 1);
    partial = text.slice(last + 1);
    for (let i = complete.indexOf('"msg":"request",'); i !== -1;) {
      requestLines++;
      i = complete.indexOf('"msg":"request",', i + 1);
    }
    out += s;
    if (out.length > maxOut) out = out.slice(out.indexOf("\n", out.length - maxOut) + 1);
  };
  let waiters: (() => void)[] = [];
  const wake = () => {
    const ws = waiters;
    waiters = [];
    for (const w of ws) w();
  };
  const pump = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      add(decoder.decode(chunk, { stream: true }));
      wake();
    }
  };
  const pumps = Promise.all([
    pump(child.stdout, addOut),
    pump(child.stderr, (s) => (err += s)),
  ]);
  let ended = false;
  const status = (async () => {
    const s = await child.status;
    await pumps;
    ended = true;
    wake();
    return s;
  })();

  const logs = () =>
    out.split("\n").filter((l) => l.startsWith("{")).map((l) =>
      JSON.parse(l) as Record<
        string,
        unknown
      >
    );
  const waitForLog = async (
    pred: (line: Record<string, unknown>) => boolean,
    timeoutMs = 10_000,
  ) => {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const hit = logs().find(pred);
      if (hit) return hit;
      if (ended) throw new Error(`gate exited before the expected log line:\n${out}\n${err}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no matching log line within ${timeoutMs} ms:\n${out}\n${err}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        timer = setTimeout(resolve, Math.min(left, 250));
      });
      clearTimeout(timer);
    }
  };
  const kill = (signal: Deno.Signal = "SIGTERM") => {
    if (ended) return;
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  };
  const exited = async (timeoutMs: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), timeoutMs)));
    const first = await Promise.race([status, late]);
    clearTimeout(timer);
    if (first !== "late") return first;
    kill("SIGKILL");
    await status;
    throw new Error(`gate did not exit within ${timeoutMs} ms`);
  };

  let port = 0;
  const proc: GateProcess = {
    pid: child.pid,
    get port() {
      return port;
    },
    logs,
    stdout: () => out,
    get requestLines() {
      return requestLines;
    },
    stderr: () => err,
    waitForLog,
    kill,
    status,
    exited,
    async [Symbol.asyncDispose]() {
      kill("SIGKILL");
      await status;
    },
  };
  if (options.waitListening ?? true) {
    try {
      const line = await waitForLog((l) => l.msg === "listening", options.startTimeoutMs ?? 20_000);
      port = Number(String(line.addr).split(":").pop());
    } catch (e) {
      kill("SIGKILL");
      await status;
      throw e;
    }
  }
  return proc;
}

/**
 * Resident set size of process `pid` in bytes (Linux /proc), or NaN elsewhere. Deno reads another
 * process's /proc entries only with --allow-all, so without it `cat` (--allow-run) reads them.
 */
export async function rssBytes(pid: number): Promise<number> {
  const path = `/proc/${pid}/status`;
  let status: string;
  try {
    status = await Deno.readTextFile(path);
  } catch {
    try {
      const out = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" })
        .output();
      status = new TextDecoder().decode(out.stdout);
    } catch {
      return NaN;
    }
  }
  const kib = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  return kib === undefined ? NaN : Number(kib) * 1024;
}
