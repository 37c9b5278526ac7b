/**
 * The JS load generator, run as its own process so it never shares an event loop with the gate:
 * `deno run --allow-net --allow-read bench/loadgen.ts '<LoadConfig JSON>'`.
 *
 * Closed loop: each of `connections` clients sends a request, waits for the whole response, and
 * sends the next. Two phases: a warm-up, after which it prints `READY` and waits for a line on
 * stdin (the caller samples the gate's CPU time then), and the measured phase, after which it
 * prints one {@linkcode LoadResult} JSON line. Connections opened in the warm-up are kept.
 */
import { buildRequest, RawConnection } from "./http_client.ts";

/** How bearer tokens are picked. */
export type TokenMode =
  /** The first token for every request. */
  | "single"
  /** Round robin over all tokens. */
  | "rotate"
  /** Each token once, then stop: every request is a never-seen token. */
  | "once";

/** What the load generator is asked to do. */
export interface LoadConfig {
  hostname: string;
  port: number;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
  connections: number;
  warmupMs: number;
  durationMs: number;
  tokenMode: TokenMode;
  /** One token per line. */
  tokensFile?: string;
  /** Tokens for the warm-up in "once" mode, so the measured tokens stay unseen. */
  warmupTokensFile?: string;
  /** Open a new connection for every request (`Connection: close`). */
  newConnection: boolean;
}

/** The measured phase's outcome. */
export interface LoadResult {
  requests: number;
  /** 2xx responses. */
  ok: number;
  /** Other statuses, by code. */
  statuses: Record<string, number>;
  errors: number;
  elapsedMs: number;
  p50Ms: number;
  p99Ms: number;
}

interface Phase {
  requests: Uint8Array[];
  mode: TokenMode;
  next: number;
  stop: boolean;
  latencies: number[];
  ok: number;
  statuses: Record<string, number>;
  errors: number;
}

async function readTokens(path?: string): Promise<string[]> {
  if (!path) return [""];
  return (await Deno.readTextFile(path)).split("\n").filter((t) => t !== "");
}

function prepare(config: LoadConfig, tokens: string[]): Uint8Array[] {
  const host = `${config.hostname}:${config.port}`;
  return tokens.map((token) => {
    const headers: Record<string, string> = { ...config.headers };
    if (token !== "") headers.Authorization = `Bearer ${token}`;
    if (config.newConnection) headers.Connection = "close";
    return buildRequest({
      method: config.method,
      path: config.path,
      host,
      headers,
      body: config.body,
    });
  });
}

function take(phase: Phase): Uint8Array | undefined {
  if (phase.stop) return undefined;
  const { requests } = phase;
  if (phase.mode === "single") return requests[0];
  if (phase.mode === "rotate") return requests[phase.next++ % requests.length];
  return phase.next < requests.length ? requests[phase.next++] : undefined;
}

async function client(
  config: LoadConfig,
  slot: { conn?: RawConnection },
  phase: Phase,
): Promise<void> {
  for (let req = take(phase); req; req = take(phase)) {
    const t0 = performance.now();
    try {
      slot.conn ??= await RawConnection.open(config.hostname, config.port);
      await slot.conn.send(req);
      const res = await slot.conn.readResponse();
      phase.latencies.push(performance.now() - t0);
      if (res.status >= 200 && res.status < 300) phase.ok++;
      else phase.statuses[res.status] = (phase.statuses[res.status] ?? 0) + 1;
      if (!res.keepAlive || config.newConnection) {
        slot.conn.close();
        slot.conn = undefined;
      }
    } catch {
      phase.errors++;
      slot.conn?.close();
      slot.conn = undefined;
      // Do not spin on a refused or reset connection.
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

async function runPhase(
  config: LoadConfig,
  slots: { conn?: RawConnection }[],
  requests: Uint8Array[],
  mode: TokenMode,
  durationMs: number,
): Promise<LoadResult> {
  const phase: Phase = {
    requests,
    mode,
    next: 0,
    stop: false,
    latencies: [],
    ok: 0,
    statuses: {},
    errors: 0,
  };
  const t0 = performance.now();
  const timer = setTimeout(() => phase.stop = true, durationMs);
  await Promise.all(slots.map((slot) => client(config, slot, phase)));
  clearTimeout(timer);
  const elapsedMs = performance.now() - t0;
  const sorted = Float64Array.from(phase.latencies).sort();
  const pct = (p: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN;
  return {
    requests: sorted.length,
    ok: phase.ok,
    statuses: phase.statuses,
    errors: phase.errors,
    elapsedMs,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
  };
}

async function waitForLine(): Promise<void> {
  const buf = new Uint8Array(64);
  for (;;) {
    const n = await Deno.stdin.read(buf);
    if (n === null || buf.subarray(0, n).includes(10)) return;
  }
}

async function main(): Promise<void> {
  const config = JSON.parse(Deno.args[0]) as LoadConfig;
  const requests = prepare(config, await readTokens(config.tokensFile));
  const warmup = config.tokenMode === "once" && config.warmupTokensFile
    ? prepare(config, await readTokens(config.warmupTokensFile))
    : requests;
  const slots = Array.from({ length: config.connections }, () => ({} as { conn?: RawConnection }));
  if (config.warmupMs > 0) {
    await runPhase(
      config,
      slots,
      warmup,
      config.tokenMode === "once" ? "once" : "rotate",
      config.warmupMs,
    );
  }
  console.log("READY");
  await waitForLine();
  const result = await runPhase(config, slots, requests, config.tokenMode, config.durationMs);
  for (const slot of slots) slot.conn?.close();
  console.log(JSON.stringify(result));
}

if (import.meta.main) await main();
