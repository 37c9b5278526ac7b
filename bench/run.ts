/**
 * `deno task bench`: one run, one markdown table. Starts a fast local upstream (its own process),
 * a local issuer (JWKS + discovery on 127.0.0.1:0), the gate (`deno run main.ts`, or the binary
 * in `MCP_GATE_BIN`) and a load generator (wrk when installed, else bench/loadgen.ts in its own
 * process), then measures each scenario through the gate and directly to the upstream.
 *
 * The gate's CPU time per request comes from /proc/PID/stat (utime + stime over all threads),
 * sampled after a warm-up and after the measured phase, divided by the requests completed in
 * between: the figure that stays stable on a noisy machine. Requests per second and latency share
 * the machine's cores with the load generator and the upstream.
 *
 * Usage: deno task bench [--quick] [--direct-only] [--loadgen=auto|wrk|js] [--only=a,b]
 *                        [--log-level=info] [--cpu-prof=DIR] [--json=FILE]
 * Numbers are printed, never asserted.
 */
import { buildRequest, RawConnection, SseCounter } from "./http_client.ts";
import { newestProfile, renderSummary, summarise } from "./cpuprof.ts";
import {
  createKeys,
  type Issuer,
  MintPool,
  mintTokens,
  SIGNER_KID,
  startIssuer,
} from "./issuer.ts";
import type { LoadConfig, LoadResult, TokenMode } from "./loadgen.ts";
import {
  cpuMicros,
  type CpuPlan,
  cpuPlan,
  initClockTicks,
  machine,
  memory,
  onCpus,
  pin,
} from "./proc.ts";
import { mib, ms, renderTable, type Row } from "./table.ts";
import { runWrk, wrkVersion } from "./wrk.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const HOST = "127.0.0.1";
const RESOURCE_URI = "https://mcp.bench.test/mcp";
const MCP_PATH = "/mcp";
const MCP_BODY = '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}';
const MCP_HEADERS = {
  "Content-Type": "application/json",
  "Accept": "application/json, text/event-stream",
};
const KEY_SET_SIZES = [1, 10, 100];
const SCENARIOS = [
  "keepalive",
  "cold",
  "rotating",
  "newconn",
  "connections",
  "sse",
  "idle-sse",
  "memory",
  "startup",
  "keys",
  "introspect",
] as const;
type Scenario = typeof SCENARIOS[number];

/** Command-line options. */
interface Options {
  quick: boolean;
  directOnly: boolean;
  loadgen: "auto" | "wrk" | "js";
  /** Pin the process under test to one CPU and everything else to the others (taskset). */
  pin: boolean;
  only?: Set<Scenario>;
  logLevel: string;
  cpuProfDir?: string;
  jsonFile?: string;
  /** Extra gate variables (`--gate-env`), e.g. to bench with the rate limiter on. */
  gateEnv: Record<string, string>;
}

/** Sizes that differ between the default run and `--quick`. */
interface Budget {
  /** Warm-up of each scenario, excluded from its figures. */
  warmupMs: number;
  measureMs: number;
  /** Keep-alive load on every freshly started gate before its first scenario, so JIT warm-up
   * does not land on whichever scenario comes first. */
  gateWarmupMs: number;
  connections: number;
  coldTokens: number;
  coldWarmupTokens: number;
  keySetTokens: number;
  rotatingTokens: number;
  sseSamples: number;
  sseEvents: number;
  idleStreams: number;
  startups: number;
}

const DEFAULT_BUDGET: Budget = {
  warmupMs: 1000,
  measureMs: 5000,
  gateWarmupMs: 2000,
  connections: 32,
  coldTokens: 2000,
  coldWarmupTokens: 300,
  keySetTokens: 1000,
  rotatingTokens: 1000,
  sseSamples: 20,
  sseEvents: 100,
  idleStreams: 1000,
  startups: 5,
};

const QUICK_BUDGET: Budget = {
  ...DEFAULT_BUDGET,
  measureMs: 1000,
  gateWarmupMs: 1000,
  coldTokens: 1000,
  keySetTokens: 500,
  sseSamples: 5,
  startups: 1,
};

const USAGE = `Usage: deno task bench [options]
  --quick              about 45 s instead of about 2 min: a smoke test, its figures run high
  --direct-only        measure only the upstream directly (no gate)
  --loadgen=auto|wrk|js  load generator for throughput scenarios (auto: wrk when installed)
  --no-pin             do not pin the process under test to its own CPU (taskset)
  --only=LIST          comma-separated scenarios: ${SCENARIOS.join(",")}
  --log-level=LEVEL    the gate's LOG_LEVEL (default info; its stdout goes to /dev/null)
  --cpu-prof=DIR       run the gate with deno's --cpu-prof, profiles written to DIR
  --json=FILE          also write the raw results as JSON
  --gate-env=NAME=VALUE  one more variable for the gate (repeatable), e.g.
                       --gate-env=RATE_LIMIT_RPS=1000000 --gate-env=RATE_LIMIT_REDIS_URL=redis://...
Environment: MCP_GATE_BIN=path benches a compiled binary instead of \`deno run main.ts\`.`;

function parseOptions(args: string[]): Options {
  const options: Options = {
    quick: false,
    directOnly: false,
    loadgen: "auto",
    pin: true,
    logLevel: "info",
    gateEnv: {},
  };
  for (const arg of args) {
    const [name, value] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, ""];
    if (name === "--quick") options.quick = true;
    else if (name === "--direct-only") options.directOnly = true;
    else if (name === "--no-pin") options.pin = false;
    else if (name === "--loadgen" && ["auto", "wrk", "js"].includes(value)) {
      options.loadgen = value as Options["loadgen"];
    } else if (name === "--only") {
      const list = value.split(",").filter(Boolean);
      const bad = list.filter((s) => !SCENARIOS.includes(s as Scenario));
      if (bad.length) throw new Error(`Invalid "--only": unknown scenario "${bad.join('", "')}"`);
      options.only = new Set(list as Scenario[]);
    } else if (name === "--log-level" && value) options.logLevel = value;
    else if (name === "--cpu-prof" && value) {
      options.cpuProfDir = value.startsWith("/") ? value : `${Deno.cwd()}/${value}`;
    } else if (name === "--json" && value) options.jsonFile = value;
    else if (name === "--gate-env" && /^[A-Z_][A-Z0-9_]*=/.test(value)) {
      options.gateEnv[value.slice(0, value.indexOf("="))] = value.slice(value.indexOf("=") + 1);
    } else if (name === "--help" || name === "-h") {
      console.log(USAGE);
      Deno.exit(0);
    } else throw new Error(`Invalid argument "${arg}"\n${USAGE}`);
  }
  return options;
}

function progress(msg: string): void {
  console.error(`bench: ${msg}`);
}

function delay(msValue: number): Promise<void> {
  return new Promise((r) => setTimeout(r, msValue));
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))] : NaN;
}

/** The 1-minute load average: other work on the machine shows up here. */
async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ")[0];
  } catch {
    return "?";
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Reads a child's stdout line by line. */
function lineReader(stream: ReadableStream<Uint8Array>): () => Promise<string | undefined> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return async () => {
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) return buffered === "" ? undefined : buffered;
      buffered += value;
    }
  };
}

/** Every child process the bench started, so Ctrl-C and errors stop them all. */
class Children {
  readonly #live = new Set<Deno.ChildProcess>();

  track(child: Deno.ChildProcess): () => void {
    this.#live.add(child);
    child.status.finally(() => this.#live.delete(child));
    return () => this.#live.delete(child);
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(child: Deno.ChildProcess, graceMs = 3000): Promise<void> {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, graceMs);
    await child.status;
    clearTimeout(timer);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#live].map((c) => this.stop(c, 1000)));
  }
}

/** A process the bench talks to: its pid (for /proc) and port. */
interface Target {
  name: "gate" | "direct";
  port: number;
  pid: number;
}

/** A running gate. */
interface Gate extends Target {
  child: Deno.ChildProcess;
  /** Milliseconds from spawn to the first proxied 200. */
  startupMs: number;
  stderrTail: () => string;
}

/** Everything one run shares. */
interface Context {
  options: Options;
  budget: Budget;
  children: Children;
  useWrk: boolean;
  /** CPU pinning, when enabled and possible. */
  cpus?: CpuPlan;
  tmp: string;
  upstream: Target;
  issuer: Issuer;
  singleTokenFile: string;
  singleToken: string;
  rotatingFile: string;
  coldFile: string;
  coldWarmupFile: string;
  keySetFile: string;
}

async function startUpstream(
  children: Children,
): Promise<Target & { child: Deno.ChildProcess }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", new URL("./upstream.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  children.track(child);
  const line = await lineReader(child.stdout)();
  if (!line) throw new Error("The upstream exited before listening");
  return { name: "direct", port: JSON.parse(line).port, pid: child.pid, child };
}

/** Sends one request on a fresh connection and returns its status, or 0 when it failed. */
async function probe(port: number, request: Uint8Array): Promise<number> {
  let conn: RawConnection | undefined;
  try {
    conn = await RawConnection.open(HOST, port);
    await conn.send(request);
    return (await conn.readResponse()).status;
  } catch {
    return 0;
  } finally {
    conn?.close();
  }
}

/**
 * Starts a gate and waits for its first proxied 200; `profile` adds `--cpu-prof` when asked;
 * `extraEnv` adds variables (introspection).
 */
async function startGate(
  ctx: Context,
  keySetSize = 1,
  profile = false,
  extraEnv: Record<string, string> = {},
): Promise<Gate> {
  const port = freePort();
  const env: Record<string, string> = {
    ...extraEnv,
    UPSTREAM_URL: `http://${HOST}:${ctx.upstream.port}`,
    RESOURCE_URI,
    AUTHORIZATION_SERVER: ctx.issuer.url,
    EXPECTED_ISSUER: ctx.issuer.url,
    JWKS_URI: ctx.issuer.jwksUri(keySetSize),
    LISTEN_ADDR: `${HOST}:${port}`,
    METRICS_ADDR: "",
    LOG_LEVEL: ctx.options.logLevel,
    SHUTDOWN_TIMEOUT: "1s",
    ...ctx.options.gateEnv,
  };
  // A clean environment, so gate variables set in the caller's shell do not leak in.
  for (const name of ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR", "NO_COLOR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const bin = Deno.env.get("MCP_GATE_BIN");
  // The flags of `deno task start` (and of the compiled binary, scripts/compile.sh).
  const denoArgs = [
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--v8-flags=--max-semi-space-size=16",
  ];
  if (profile && ctx.options.cpuProfDir) {
    denoArgs.push("--cpu-prof", `--cpu-prof-dir=${ctx.options.cpuProfDir}`);
  }
  const [cmd, args] = onCpus(
    ctx.cpus?.sut,
    bin ?? Deno.execPath(),
    bin ? [] : [...denoArgs, "main.ts"],
  );
  const t0 = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  ctx.children.track(child);
  let stderr = "";
  (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr = (stderr + chunk).slice(-4000);
    }
  })().catch(() => {});
  let exited = false;
  child.status.then(() => exited = true);
  const request = buildRequest({
    method: "POST",
    path: MCP_PATH,
    host: `${HOST}:${port}`,
    headers: { ...MCP_HEADERS, Authorization: `Bearer ${ctx.singleToken}` },
    body: MCP_BODY,
  });
  let status = 0;
  while (status !== 200) {
    if (exited) throw new Error(`The gate exited during start-up: ${stderr.trim()}`);
    if (performance.now() - t0 > 30_000) {
      await ctx.children.stop(child);
      throw new Error(`The gate gave no 200 within 30 s (last status ${status}): ${stderr.trim()}`);
    }
    status = await probe(port, request);
    if (status !== 200) await delay(2);
  }
  const startupMs = performance.now() - t0;
  return { name: "gate", port, pid: child.pid, child, startupMs, stderrTail: () => stderr };
}

/** Unmeasured keep-alive load with the single token: JIT-compiles the request path and lets
 * the heap grow to its working size. */
async function warmUp(ctx: Context, target: Target): Promise<void> {
  const spec: LoadSpec = {
    connections: ctx.budget.connections,
    tokenMode: "single",
    tokensFile: ctx.singleTokenFile,
    newConnection: false,
  };
  await runJsLoad(ctx, target, spec, () => Promise.resolve(), {
    warmupMs: 0,
    durationMs: ctx.budget.gateWarmupMs,
  });
}

/** What to send in one measured scenario. */
interface LoadSpec {
  connections: number;
  tokenMode: TokenMode;
  tokensFile: string;
  warmupTokensFile?: string;
  newConnection: boolean;
  /** Force the JS load generator (wrk cannot use each token exactly once). */
  js?: boolean;
}

/** One side of a scenario. */
interface Measured {
  result: LoadResult;
  rps: number;
  /** CPU µs per request of the measured process (the gate, or the upstream when direct). */
  cpuUs: number;
  generator: "wrk" | "js";
}

async function runJsLoad(
  ctx: Context,
  target: Target,
  spec: LoadSpec,
  onMeasureStart: () => Promise<void>,
  phases?: { warmupMs: number; durationMs: number },
): Promise<LoadResult> {
  const config: LoadConfig = {
    hostname: HOST,
    port: target.port,
    method: "POST",
    path: MCP_PATH,
    headers: MCP_HEADERS,
    body: MCP_BODY,
    connections: spec.connections,
    warmupMs: phases?.warmupMs ?? ctx.budget.warmupMs,
    // "once" on the gate ends when the tokens run out.
    durationMs: phases?.durationMs ??
      (spec.tokenMode === "once" && target.name === "gate" ? 120_000 : ctx.budget.measureMs),
    tokenMode: spec.tokenMode,
    tokensFile: spec.tokensFile,
    warmupTokensFile: spec.warmupTokensFile,
    newConnection: spec.newConnection,
  };
  const [cmd, args] = onCpus(ctx.cpus?.rest, Deno.execPath(), [
    "run",
    "--allow-net",
    "--allow-read",
    new URL("./loadgen.ts", import.meta.url).pathname,
    JSON.stringify(config),
  ]);
  const child = new Deno.Command(cmd, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const untrack = ctx.children.track(child);
  try {
    const next = lineReader(child.stdout);
    if ((await next()) !== "READY") throw new Error("The load generator failed in its warm-up");
    await onMeasureStart();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("GO\n"));
    await writer.close();
    const line = await next();
    if (!line) throw new Error("The load generator gave no result");
    return JSON.parse(line) as LoadResult;
  } finally {
    await child.status;
    untrack();
  }
}

async function measure(ctx: Context, target: Target, spec: LoadSpec): Promise<Measured> {
  let cpu0 = 0;
  const sample = async () => {
    cpu0 = await cpuMicros(target.pid);
  };
  let result: LoadResult;
  const wrk = ctx.useWrk && !spec.js && spec.tokenMode !== "once";
  if (wrk) {
    const common = {
      url: `http://${HOST}:${target.port}${MCP_PATH}`,
      body: MCP_BODY,
      connections: spec.connections,
      tokensFile: spec.tokensFile,
      newConnection: spec.newConnection,
      threads: ctx.cpus ? ctx.cpus.rest.split(",").length : navigator.hardwareConcurrency || 2,
      cpus: ctx.cpus?.rest,
      track: (c: Deno.ChildProcess) => ctx.children.track(c),
    };
    await runWrk({ ...common, seconds: Math.max(1, ctx.budget.warmupMs / 1000) });
    await sample();
    result = await runWrk({ ...common, seconds: Math.max(1, ctx.budget.measureMs / 1000) });
  } else {
    result = await runJsLoad(ctx, target, spec, sample);
  }
  const cpu1 = await cpuMicros(target.pid);
  if (result.errors || result.ok < result.requests) {
    progress(
      `${target.name}: ${result.errors} socket errors, ${result.requests - result.ok} non-2xx ${
        JSON.stringify(result.statuses)
      }`,
    );
  }
  return {
    result,
    rps: result.requests / (result.elapsedMs / 1000),
    cpuUs: result.requests ? (cpu1 - cpu0) / result.requests : NaN,
    generator: wrk ? "wrk" : "js",
  };
}

function errorNote(m?: Measured): string {
  if (!m) return "";
  const bad = m.result.requests - m.result.ok;
  if (m.result.requests === 0) return "no response completed in the measured phase";
  return [
    bad ? `${bad} non-2xx ${JSON.stringify(m.result.statuses)}` : "",
    m.result.errors ? `${m.result.errors} socket errors` : "",
  ].filter(Boolean).join(", ");
}

/** Measures one scenario through the gate (when there is one) and directly. */
async function pair(
  ctx: Context,
  gate: Gate | undefined,
  scenario: string,
  spec: LoadSpec,
  directSpec: LoadSpec = spec,
): Promise<Row> {
  progress(scenario);
  // Measured directly, the upstream is the process under test and gets the gate's CPU.
  if (ctx.cpus) await pin(ctx.upstream.pid, ctx.cpus.sut);
  const direct = await measure(ctx, ctx.upstream, directSpec);
  if (ctx.cpus) await pin(ctx.upstream.pid, ctx.cpus.rest);
  const through = gate ? await measure(ctx, gate, spec) : undefined;
  const rss = gate ? (await memory(gate.pid)).rss : undefined;
  const notes = [
    `upstream ${direct.cpuUs.toFixed(0)} µs/req`,
    rss ? `gate RSS after ${mib(rss)}` : "",
    through && through.generator !== direct.generator
      ? `load: ${through.generator} / ${direct.generator}`
      : `load: ${direct.generator}`,
    errorNote(through),
    errorNote(direct),
  ];
  return {
    scenario,
    gateRps: through?.rps,
    directRps: direct.rps,
    gateLatency: through ? [through.result.p50Ms, through.result.p99Ms] : undefined,
    directLatency: [direct.result.p50Ms, direct.result.p99Ms],
    gateCpuUs: through?.cpuUs,
    notes: notes.filter(Boolean).join("; "),
  };
}

/** Time to the first and the n-th SSE event on a fresh connection. */
async function sseSample(ctx: Context, port: number, events: number): Promise<[number, number]> {
  const request = buildRequest({
    method: "GET",
    path: `/sse?n=${events}&gap_ms=1`,
    host: `${HOST}:${port}`,
    headers: { Accept: "text/event-stream", Authorization: `Bearer ${ctx.singleToken}` },
  });
  const t0 = performance.now();
  const conn = await RawConnection.open(HOST, port);
  try {
    await conn.send(request);
    const counter = new SseCounter();
    let first = NaN;
    let last = NaN;
    const res = await conn.readResponse({
      onBody: (bytes) => {
        const n = counter.feed(bytes);
        const now = performance.now() - t0;
        if (n >= 1 && Number.isNaN(first)) first = now;
        if (n >= events) {
          last = now;
          return true;
        }
      },
    });
    if (res.status !== 200) throw new Error(`SSE request got ${res.status}`);
    return [first, last];
  } finally {
    conn.close();
  }
}

async function sseRows(ctx: Context, gate: Gate | undefined): Promise<Row[]> {
  progress("SSE time to first and last event");
  const { sseSamples, sseEvents } = ctx.budget;
  const samples = { gate: [] as [number, number][], direct: [] as [number, number][] };
  // Alternate gate and direct so drift on the machine hits both alike; the first of each warms up.
  for (let i = 0; i <= sseSamples; i++) {
    const d = await sseSample(ctx, ctx.upstream.port, sseEvents);
    const g = gate ? await sseSample(ctx, gate.port, sseEvents) : undefined;
    if (i === 0) continue;
    samples.direct.push(d);
    if (g) samples.gate.push(g);
  }
  const stats = (s: [number, number][], k: 0 | 1): [number, number] | undefined =>
    s.length ? [median(s.map((x) => x[k])), percentile(s.map((x) => x[k]), 0.99)] : undefined;
  const row = (k: 0 | 1, label: string): Row => {
    const g = stats(samples.gate, k);
    const d = stats(samples.direct, k)!;
    return {
      scenario: label,
      gateLatency: g,
      directLatency: d,
      compare: g ? `${g[0] >= d[0] ? "+" : "−"}${ms(Math.abs(g[0] - d[0]))} ms` : undefined,
      notes:
        `ratio column: gate − direct at p50; ${sseSamples} streams each, new connection, events 1 ms apart, p99 = max`,
    };
  };
  return [row(0, "SSE: time to first event"), row(1, `SSE: time to event ${sseEvents}`)];
}

/** Opens `count` idle SSE streams to `port`, each read up to its first event. */
async function openIdleStreams(
  ctx: Context,
  port: number,
  count: number,
): Promise<RawConnection[]> {
  const request = buildRequest({
    method: "GET",
    path: "/idle",
    host: `${HOST}:${port}`,
    headers: { Accept: "text/event-stream", Authorization: `Bearer ${ctx.singleToken}` },
  });
  const conns: RawConnection[] = [];
  const open = async () => {
    const conn = await RawConnection.open(HOST, port);
    conns.push(conn);
    await conn.send(request);
    const counter = new SseCounter();
    const res = await conn.readResponse({ onBody: (b) => counter.feed(b) >= 1 });
    if (res.status !== 200) throw new Error(`Idle stream got ${res.status}`);
  };
  try {
    // 64 at a time: a burst of 1000 SYNs could overflow the listen backlog and add 1 s retries.
    for (let i = 0; i < count; i += 64) {
      await Promise.all(Array.from({ length: Math.min(64, count - i) }, open));
    }
  } catch (e) {
    for (const c of conns) c.close();
    throw e;
  }
  return conns;
}

/**
 * Fresh processes, warmed up like every gate, for the memory per stream: the main gate has heap
 * room to spare after 1024 connections, and a process that never served a request would count
 * its young generation growing as stream memory.
 */
async function idleStreamsRow(ctx: Context, haveGate: boolean): Promise<Row> {
  const n = ctx.budget.idleStreams;
  progress(`${n} idle SSE streams (fresh gate and fresh upstream)`);
  const perStream = async (target: Target) => {
    await delay(500);
    const before = (await memory(target.pid)).rss;
    const t0 = performance.now();
    const conns = await openIdleStreams(ctx, target.port, n);
    const openMs = performance.now() - t0;
    await delay(500);
    const during = (await memory(target.pid)).rss;
    for (const c of conns) c.close();
    await delay(500);
    const after = (await memory(target.pid)).rss;
    return { perStream: (during - before) / n, openMs, during, after, before };
  };
  const upstream = await startUpstream(ctx.children);
  let direct;
  try {
    if (ctx.cpus) await pin(upstream.pid, ctx.cpus.sut);
    await warmUp(ctx, upstream);
    direct = await perStream(upstream);
  } finally {
    await ctx.children.stop(upstream.child);
  }
  let through;
  if (haveGate) {
    const gate = await startGate(ctx);
    try {
      await warmUp(ctx, gate);
      through = await perStream(gate);
    } finally {
      await ctx.children.stop(gate.child);
    }
  }
  const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
  return {
    scenario: `${n} idle SSE streams: RSS per stream`,
    compare: through ? `${kib(through.perStream)} / stream` : undefined,
    notes: [
      through
        ? `fresh warmed-up gate RSS ${mib(through.before)} → ${mib(through.during)} open → ${
          mib(through.after)
        } closed; opened in ${through.openMs.toFixed(0)} ms`
        : "",
      `upstream alone ${kib(direct.perStream)} / stream`,
    ].filter(Boolean).join("; "),
  };
}

async function startupRow(ctx: Context): Promise<Row> {
  const n = ctx.budget.startups;
  progress(`start-up to first proxied 200 (${n}×)`);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const gate = await startGate(ctx);
    times.push(gate.startupMs);
    await ctx.children.stop(gate.child);
  }
  const bin = Deno.env.get("MCP_GATE_BIN");
  return {
    scenario: "start-up to first proxied 200",
    compare: `${median(times).toFixed(0)} ms`,
    notes: `median of ${n} (min ${Math.min(...times).toFixed(0)}, max ${
      Math.max(...times).toFixed(0)
    } ms); ${bin ? "compiled binary" : "`deno run main.ts`"}; includes the JWKS fetch`,
  };
}

async function keySetRows(ctx: Context): Promise<Row[]> {
  const rows: Row[] = [];
  for (const size of KEY_SET_SIZES) {
    progress(`cold tokens with ${size} key(s) in the key set`);
    const gate = await startGate(ctx, size);
    try {
      await warmUp(ctx, gate);
      const m = await measure(ctx, gate, {
        connections: ctx.budget.connections,
        tokenMode: "once",
        tokensFile: ctx.keySetFile,
        warmupTokensFile: ctx.coldWarmupFile,
        newConnection: false,
        js: true,
      });
      rows.push({
        scenario: `cold token, key set of ${size}`,
        gateRps: m.rps,
        gateLatency: [m.result.p50Ms, m.result.p99Ms],
        gateCpuUs: m.cpuUs,
        notes: [
          `fresh gate; first 200 after ${
            gate.startupMs.toFixed(0)
          } ms; ${m.result.requests} tokens`,
          errorNote(m),
        ]
          .filter(Boolean).join("; "),
      });
    } finally {
      await ctx.children.stop(gate.child);
    }
  }
  return rows;
}

/** Rounds of the introspection scenario, each measuring both tokens. */
const INTROSPECT_ROUNDS = 4;

/** The opaque token of the introspection scenario (never a JWS: it goes to introspection). */
const OPAQUE_TOKEN = "bench-opaque-token-0123456789abcdefghijklmnopqrstuv";

/**
 * An RFC 7662 endpoint in the harness: every token is active for the bench resource for an hour.
 * Warm requests never reach it (the gate caches the answer); `calls` shows that.
 */
function startIntrospectionEndpoint() {
  let calls = 0;
  const server = Deno.serve({ hostname: HOST, port: 0, onListen() {} }, async (req) => {
    await req.body?.cancel();
    calls++;
    const now = Math.floor(Date.now() / 1000);
    return Response.json({
      active: true,
      sub: "bench-user",
      aud: RESOURCE_URI,
      scope: "mcp:tools",
      exp: now + 3600,
      iat: now,
      token_type: "Bearer",
    });
  });
  return {
    url: `http://${HOST}:${server.addr.port}/introspect`,
    get calls() {
      return calls;
    },
    close: () => server.shutdown(),
  };
}

/**
 * A warm opaque token (its introspection answer cached) against a warm JWT (its verification
 * cached), same gate, same load, alternated round by round so drift on the machine hits both alike: what
 * introspection adds to a request once the answer is known (hashing the token for the cache key).
 */
async function introspectionRows(ctx: Context): Promise<Row[]> {
  progress("introspection: warm opaque token against warm JWT, one gate");
  const endpoint = startIntrospectionEndpoint();
  try {
    const gate = await startGate(ctx, 1, false, {
      INTROSPECTION_CLIENT_ID: "bench",
      INTROSPECTION_CLIENT_SECRET: "bench-secret",
      INTROSPECTION_URL: endpoint.url,
    });
    try {
      await warmUp(ctx, gate);
      const jwtSpec: LoadSpec = {
        connections: ctx.budget.connections,
        tokenMode: "single",
        tokensFile: ctx.singleTokenFile,
        newConnection: false,
      };
      const opaqueFile = `${ctx.tmp}/opaque.txt`;
      await writeTokens(opaqueFile, [OPAQUE_TOKEN]);
      const opaqueSpec: LoadSpec = { ...jwtSpec, tokensFile: opaqueFile };
      const jwt: Measured[] = [];
      const opaque: Measured[] = [];
      // Which goes first alternates too: a gate still settling would favour the second.
      for (let round = 0; round < INTROSPECT_ROUNDS; round++) {
        if (round % 2 === 0) {
          jwt.push(await measure(ctx, gate, jwtSpec));
          opaque.push(await measure(ctx, gate, opaqueSpec));
        } else {
          opaque.push(await measure(ctx, gate, opaqueSpec));
          jwt.push(await measure(ctx, gate, jwtSpec));
        }
      }
      const summary = (m: Measured[]) => {
        const requests = m.reduce((n, x) => n + x.result.requests, 0);
        return {
          rps: median(m.map((x) => x.rps)),
          cpuUs: m.reduce((n, x) => n + x.cpuUs * x.result.requests, 0) / requests,
          latency: [median(m.map((x) => x.result.p50Ms)), median(m.map((x) => x.result.p99Ms))] as [
            number,
            number,
          ],
          notes: m.map(errorNote).filter(Boolean).join(", "),
        };
      };
      const j = summary(jwt);
      const o = summary(opaque);
      const pct = (a: number, b: number) =>
        `${a >= b ? "+" : "−"}${(Math.abs(a / b - 1) * 100).toFixed(1)} %`;
      return [
        {
          scenario: `introspection gate: keep-alive, 1 JWT (warm), ${ctx.budget.connections} conns`,
          gateRps: j.rps,
          gateLatency: j.latency,
          gateCpuUs: j.cpuUs,
          notes: [
            `${INTROSPECT_ROUNDS} runs alternated with the row below; CPU weighted by requests`,
            j.notes,
          ]
            .filter(Boolean).join("; "),
        },
        {
          scenario:
            `introspection gate: keep-alive, 1 opaque token (warm), ${ctx.budget.connections} conns`,
          gateRps: o.rps,
          gateLatency: o.latency,
          gateCpuUs: o.cpuUs,
          compare: `CPU/req ${pct(o.cpuUs, j.cpuUs)}, rps ${pct(o.rps, j.rps)} vs JWT`,
          notes: [
            `introspection calls: ${endpoint.calls}`,
            `CPU/req ratio per round ${
              opaque.map((m, i) => (m.cpuUs / jwt[i].cpuUs).toFixed(2)).join(", ")
            }`,
            o.notes,
          ].filter(Boolean).join("; "),
        },
      ];
    } finally {
      await ctx.children.stop(gate.child);
    }
  } finally {
    await endpoint.close();
  }
}

async function writeTokens(path: string, tokens: string[]): Promise<void> {
  await Deno.writeTextFile(path, tokens.join("\n") + "\n", { mode: 0o600 });
}

async function setup(options: Options, children: Children, tmp: string): Promise<Context> {
  const budget = options.quick ? QUICK_BUDGET : DEFAULT_BUDGET;
  await initClockTicks();
  const version = options.loadgen === "js" ? undefined : await wrkVersion();
  if (options.loadgen === "wrk" && !version) {
    throw new Error('Invalid "--loadgen=wrk": wrk is not installed');
  }
  progress("starting the upstream and generating RSA keys");
  const upstream = await startUpstream(children);
  const pool = new MintPool();
  try {
    const tKeys = performance.now();
    const keys = await createKeys({ pool, sizes: KEY_SET_SIZES });
    progress(
      `key sets of ${KEY_SET_SIZES.join(", ")} ready in ${
        (performance.now() - tKeys).toFixed(0)
      } ms`,
    );
    const issuer = await startIssuer(keys);
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: issuer.url,
      aud: RESOURCE_URI,
      iat: now,
      exp: now + 3600,
      scope: "mcp:tools",
    };
    const total = budget.coldTokens + budget.coldWarmupTokens + 1;
    const t0 = performance.now();
    const tokens = await mintTokens({ pool, signer: keys.signer, claims, count: total });
    progress(
      `minted ${total} RS256 tokens (kid ${SIGNER_KID}) in ${
        (performance.now() - t0).toFixed(0)
      } ms`,
    );
    const [singleToken] = tokens;
    const warm = tokens.slice(1, 1 + budget.coldWarmupTokens);
    const cold = tokens.slice(1 + budget.coldWarmupTokens);
    const file = (name: string) => `${tmp}/${name}.txt`;
    await writeTokens(file("single"), [singleToken]);
    await writeTokens(file("warmup"), warm);
    await writeTokens(file("cold"), cold);
    // Rotating tokens reuse cold ones (the cold scenario runs first; rotating warms them anyway).
    await writeTokens(file("rotating"), cold.slice(0, budget.rotatingTokens));
    // Key-set gates are fresh processes with empty caches, so these tokens are unseen by them.
    await writeTokens(file("keyset"), cold.slice(0, budget.keySetTokens));
    const cpus = options.pin ? await cpuPlan() : undefined;
    if (cpus) {
      await pin(upstream.pid, cpus.rest);
      await pin(Deno.pid, cpus.rest);
    }
    return {
      options,
      budget,
      children,
      cpus,
      useWrk: options.loadgen !== "js" && version !== undefined,
      tmp,
      upstream,
      issuer,
      singleToken,
      singleTokenFile: file("single"),
      rotatingFile: file("rotating"),
      coldFile: file("cold"),
      coldWarmupFile: file("warmup"),
      keySetFile: file("keyset"),
    };
  } finally {
    pool.close();
  }
}

/** What one run prints. */
interface Report {
  header: string[];
  rows: Row[];
  /** Summary of the main gate's CPU profile, with --cpu-prof. */
  profile?: string;
}

async function runScenarios(ctx: Context, report: Report): Promise<void> {
  const want = (s: Scenario) => !ctx.options.only || ctx.options.only.has(s);
  const haveGate = !ctx.options.directOnly;
  const { budget } = ctx;
  const c = budget.connections;
  const base: LoadSpec = {
    connections: c,
    tokenMode: "single",
    tokensFile: ctx.singleTokenFile,
    newConnection: false,
  };

  let gate: Gate | undefined;
  let idleRss: number | undefined;
  if (haveGate) {
    progress("starting the gate");
    gate = await startGate(ctx, 1, true);
    await delay(1000);
    idleRss = (await memory(gate.pid)).rss;
    await warmUp(ctx, gate);
  }
  try {
    if (want("keepalive") || want("connections")) {
      report.rows.push(await pair(ctx, gate, `keep-alive, 1 token, ${c} conns`, base));
    }
    if (want("cold")) {
      report.rows.push(
        await pair(
          ctx,
          gate,
          `keep-alive, never-seen token each request (cold), ${c} conns`,
          {
            ...base,
            tokenMode: "once",
            tokensFile: ctx.coldFile,
            warmupTokensFile: ctx.coldWarmupFile,
            js: true,
          },
          { ...base, tokenMode: "rotate", tokensFile: ctx.coldFile, js: true },
        ),
      );
    }
    if (want("rotating")) {
      report.rows.push(
        await pair(ctx, gate, `keep-alive, ${budget.rotatingTokens} rotating tokens, ${c} conns`, {
          ...base,
          tokenMode: "rotate",
          tokensFile: ctx.rotatingFile,
        }),
      );
    }
    if (want("newconn")) {
      report.rows.push(
        await pair(ctx, gate, `new connection per request, 1 token, ${c} conns`, {
          ...base,
          newConnection: true,
        }),
      );
    }
    if (want("connections")) {
      for (const conns of [256, 1024]) {
        report.rows.push(
          await pair(ctx, gate, `keep-alive, 1 token, ${conns} conns`, {
            ...base,
            connections: conns,
          }),
        );
      }
    }
    if (want("sse")) report.rows.push(...await sseRows(ctx, gate));
    if (gate && want("memory")) {
      const { peak } = await memory(gate.pid);
      report.rows.push({
        scenario: "gate resident memory: idle / peak",
        compare: `${mib(idleRss!)} / ${mib(peak)}`,
        notes: "idle: 1 s after the first 200; peak: VmHWM at the end of the scenarios above",
      });
    }
  } finally {
    if (gate) {
      const tail = gate.stderrTail().trim();
      await ctx.children.stop(gate.child);
      if (tail) progress(`gate stderr: ${tail.slice(-500)}`);
      if (ctx.options.cpuProfDir) {
        const path = await newestProfile(ctx.options.cpuProfDir);
        report.profile = path
          ? `CPU profile of the gate (${path}):\n\n${
            renderSummary(summarise(JSON.parse(await Deno.readTextFile(path))))
          }`
          : `No CPU profile was written to ${ctx.options.cpuProfDir}`;
      }
    }
  }
  if (want("idle-sse")) report.rows.push(await idleStreamsRow(ctx, haveGate));
  if (haveGate && want("startup")) report.rows.push(await startupRow(ctx));
  if (haveGate && want("keys")) report.rows.push(...await keySetRows(ctx));
  if (haveGate && want("introspect")) report.rows.push(...await introspectionRows(ctx));
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(Deno.args);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (!options.directOnly && !Deno.env.get("MCP_GATE_BIN")) {
    try {
      await Deno.stat(`${ROOT}main.ts`);
    } catch {
      progress("main.ts not found: measuring the upstream directly only (--direct-only)");
      options.directOnly = true;
    }
  }
  const children = new Children();
  let ctx: Context | undefined;
  // Token files live here; removed at the end, also on Ctrl-C.
  const tmp = await Deno.makeTempDir({ prefix: "mcp-gate-bench-" });
  const interrupt = () => {
    progress("interrupted: stopping every process started");
    children.stopAll().finally(async () => {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      Deno.exit(130);
    });
  };
  Deno.addSignalListener("SIGINT", interrupt);
  Deno.addSignalListener("SIGTERM", interrupt);
  const started = performance.now();
  const report: Report = { rows: [], header: [] };
  const loadBefore = await loadAverage();
  try {
    ctx = await setup(options, children, tmp);
    const { cpu, cores } = await machine();
    const wrk = ctx.useWrk
      ? `wrk ${await wrkVersion()} (JS for cold, SSE, idle streams)`
      : "bench/loadgen.ts (JS)";
    await runScenarios(ctx, report);
    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    const gateName = options.directOnly
      ? "none (direct only)"
      : Deno.env.get("MCP_GATE_BIN") ?? "`deno run main.ts`";
    const phases = `${ctx.budget.warmupMs / 1000} s warm-up (excluded) then ${
      ctx.budget.measureMs / 1000
    } s measured per side${options.quick ? " (--quick)" : ""}`;
    report.header = [
      `mcp-gate bench, ${new Date().toISOString().slice(0, 16)}Z, run took ${seconds} s`,
      "",
      `- machine: ${cpu}, ${cores} CPUs, Deno ${Deno.version.deno}; load average ${loadBefore} before, ${await loadAverage()} after`,
      `- gate: ${gateName}, LOG_LEVEL=${options.logLevel} (stdout to /dev/null)`,
      `- load: ${wrk}; ${phases}`,
      ctx.cpus
        ? `- CPUs (taskset): the process under test (the gate, or the upstream when direct) on CPU ${ctx.cpus.sut}; ` +
          `load generator, upstream behind the gate and the harness on CPU ${ctx.cpus.rest}`
        : "- CPUs: not pinned; every process shares every CPU",
      "- gate CPU µs/req: the gate's utime+stime (/proc/PID/stat) over the measured phase ÷ requests completed in it",
    ];
    console.log(`${report.header.join("\n")}\n\n${renderTable(report.rows)}`);
    if (report.profile) console.log(`\n${report.profile}`);
    if (options.jsonFile) {
      await Deno.writeTextFile(options.jsonFile, JSON.stringify(report, null, 2) + "\n");
    }
    return 0;
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    if (report.rows.length) console.log(renderTable(report.rows));
    return 1;
  } finally {
    await children.stopAll();
    if (ctx) await ctx.issuer[Symbol.asyncDispose]();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    Deno.removeSignalListener("SIGINT", interrupt);
    Deno.removeSignalListener("SIGTERM", interrupt);
  }
}

if (import.meta.main) Deno.exit(await main());
