/**
 * Starts a real gate for black-box tests, on 127.0.0.1 port 0, and captures its log lines.
 *
 * By default the gate runs in-process (startServer). When `MCP_GATE_BIN` names an executable (a
 * `deno compile` output), the same tests run against that binary as a child process with only the
 * gate's variables in its environment; the bound port is read from its `listening` log line.
 */
import { parseConfig } from "../../src/config/mod.ts";
import { startServer } from "../../src/server.ts";
import { createLogger, type LogSink } from "../../src/ops/mod.ts";

/** A running gate. */
export interface TestGate extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  readonly origin: string;
  readonly port: number;
  /** Log lines so far, parsed. */
  logs(): Record<string, unknown>[];
  /** Raw log text so far. */
  logText(): string;
  /** Resolves with the first log line matching `pred` (bounded by `timeoutMs`). */
  waitForLog(
    pred: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** The request log lines (msg "request", health probes left out), once `count` exist. */
  requestLogs(count: number, timeoutMs?: number): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

/** Whether the black-box suite runs against a built executable. */
export const GATE_BIN = Deno.env.get("MCP_GATE_BIN") || undefined;

/** Starts a gate with `env` (LISTEN_ADDR and METRICS_ADDR default to loopback port 0 / off). */
export function startGate(env: Record<string, string>): Promise<TestGate> {
  const full = { LISTEN_ADDR: "127.0.0.1:0", METRICS_ADDR: "", LOG_LEVEL: "debug", ...env };
  return GATE_BIN ? startBinaryGate(GATE_BIN, full) : startInProcessGate(full);
}

const HEALTH = new Set(["/livez", "/readyz", "/healthz"]);

class LogCapture {
  text = "";
  #waiters: (() => void)[] = [];
  append(chunk: string) {
    this.text += chunk;
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }
  lines(): Record<string, unknown>[] {
    return this.text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  }
  async waitFor(
    pred: (line: Record<string, unknown>) => boolean,
    timeoutMs: number,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const hit = this.lines().find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching log line within ${timeoutMs} ms:\n${this.text}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, Math.min(left, 200));
      });
      clearTimeout(timer);
    }
  }
}

function api(
  capture: LogCapture,
  port: number,
  close: () => Promise<void>,
): TestGate {
  let closed: Promise<void> | undefined;
  const closeOnce = () => (closed ??= close());
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    logs: () => capture.lines(),
    logText: () => capture.text,
    waitForLog: (pred, timeoutMs = 5000) => capture.waitFor(pred, timeoutMs),
    async requestLogs(count, timeoutMs = 5000) {
      const requests = () =>
        capture.lines().filter((l) => l.msg === "request" && !HEALTH.has(String(l.path)));
      await capture.waitFor(() => requests().length >= count, timeoutMs);
      return requests();
    },
    close: closeOnce,
    [Symbol.asyncDispose]: closeOnce,
  };
}

async function startInProcessGate(env: Record<string, string>): Promise<TestGate> {
  const config = parseConfig(env);
  const capture = new LogCapture();
  const sink: LogSink = { write: (line) => capture.append(line), flush: () => {} };
  const log = createLogger({ level: config.logLevel, sink });
  const server = await startServer(config, { log, env });
  return api(capture, server.addr.port, () => server.shutdown());
}

async function startBinaryGate(bin: string, env: Record<string, string>): Promise<TestGate> {
  const child = new Deno.Command(bin, {
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const capture = new LogCapture();
  const decoder = new TextDecoder();
  const pump = (async () => {
    for await (const chunk of child.stdout) capture.append(decoder.decode(chunk, { stream: true }));
  })();
  const errText = new Response(child.stderr).text();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await pump;
    await errText;
  };
  try {
    const line = await capture.waitFor((l) => l.msg === "listening", 10_000);
    const port = Number(String(line.addr).split(":").pop());
    return api(capture, port, stop);
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Reads a response body as text (so sanitizers see no open body). */
export async function drain(res: Response): Promise<string> {
  return await res.text();
}
