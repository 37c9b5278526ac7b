/**
 * Wires the stages together and owns the listeners: Deno.serve for the gate (and the metrics
 * listener), TLS, signals and the graceful drain (docs/contract.md §1 SHUTDOWN_TIMEOUT). A
 * listener whose accept loop dies (out of file descriptors) is re-created: load never ends the
 * process.
 */
import {
  type Config,
  type Env,
  formatListenAddr,
  introspectionEnabled,
  invalidValue,
  issuersOf,
  type ListenAddr,
  redactedConfig,
  startupWarnings,
} from "./config/mod.ts";
import { ConfigError, ListenError } from "./errors.ts";
import {
  createMetrics,
  createProcessStatsReader,
  createTracing,
  type ListenerName,
  type Logger,
  type Metrics,
  METRICS_CONTENT_TYPE,
  type Tracing,
} from "./ops/mod.ts";
import {
  type AsMetadataSource,
  createAsMetadataSource,
  createIntrospector,
  createKeyStores,
  createVerifier,
  type Introspector,
  type KeyStores,
  withIntrospection,
} from "./auth/mod.ts";
import {
  createForwarder,
  isUpstreamStreamError,
  type StreamingForwarder,
  upstreamMapping,
} from "./proxy/mod.ts";
import { healthResponse, internalErrorResponse } from "./http/mod.ts";
import { createRedisRateLimiting, type RedisRateLimiting } from "./ratelimit/mod.ts";
import { createHandler, type Handler } from "./handler.ts";
import { buildInfo } from "./version.ts";

/** Options for {@linkcode startServer}. */
export interface ServerDeps {
  log: Logger;
  /** Install SIGTERM/SIGINT handlers that drain and stop (the CLI does; tests usually don't). */
  handleSignals?: boolean;
  /** PEM text of the certificate chain and key, read by the CLI from TLS_*_FILE. */
  tls?: { cert: string; key: string };
  /** Used for discovery and key set fetches. */
  fetch?: typeof fetch;
  /** CA certificates (PEM) trusted for an https upstream, for tests. */
  upstreamCaCerts?: string[];
  /** The environment the config was parsed from: unknown variables in it are warned about. */
  env?: Env;
}

/** How the gate stopped. */
export interface Stopped {
  /** The second SIGTERM or SIGINT, received while draining after the first. */
  readonly interrupted?: Deno.Signal;
}

/** A started gate. */
export interface RunningServer {
  /** The bound address of the gate listener (port 0 resolved). */
  readonly addr: ListenAddr;
  /** The bound address of the metrics listener, when enabled. */
  readonly metricsAddr?: ListenAddr;
  /**
   * Resolves once the gate has stopped, or at once when a second signal arrived during the drain
   * (`interrupted`; the drain goes on until the process exits).
   */
  readonly finished: Promise<Stopped>;
  /** Stops accepting, lets in-flight exchanges finish up to SHUTDOWN_TIMEOUT, then closes the rest. */
  shutdown(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts the gate. Listens at once; the key set loads in the background (docs/contract.md §4:
 * startup never blocks on the authorization server).
 * @throws {ConfigError} when TLS refuses the certificate or key (TLS_CERT_FILE, TLS_KEY_FILE).
 * @throws {ListenError} naming LISTEN_ADDR or METRICS_ADDR when a listener cannot bind.
 */
export function startServer(config: Config, deps: ServerDeps): Promise<RunningServer> {
  const { log } = deps;
  const build = buildInfo();
  log.info("starting", {
    version: build.version,
    revision: build.revision,
    deno: build.deno,
    config: redactedConfig(config),
  });
  // What `mcp-gate check` reports, once, where the operator reads the start (docs/contract.md §6).
  const { from, to } = upstreamMapping(config);
  log.info("upstream mapping", { mapping: `${from} → ${to}` });
  for (const w of startupWarnings(config, deps.env ?? {})) {
    log.warn("configuration warning", { warning: w.id, variable: w.variable, reason: w.message });
  }
  for (const w of runtimeLimits(config, Deno.version.deno)) {
    log.warn("setting not fully applied", { variable: w.variable, detail: w.detail });
  }
  // OTEL_EXPORTER_OTLP_ENDPOINT: the gate's own spans, at run time (src/ops/tracing.ts); the SDK
  // is loaded only then.
  if (config.otelEndpoint === undefined) return startStages(config, deps, undefined);
  return createTracing({
    endpoint: config.otelEndpoint,
    serviceName: config.otelServiceName,
    sampleRate: config.otelSampleRate,
    version: build.version,
    onExportError: (error) => log.warn("trace export failed", { error }),
  }).then((tracing) => startStages(config, deps, tracing));
}

/** {@linkcode startServer} once the tracer, if any, is built. */
function startStages(
  config: Config,
  deps: ServerDeps,
  tracing: Tracing | undefined,
): Promise<RunningServer> {
  const { log } = deps;
  const stages = buildStages(config, deps, tracing);
  const { keys, forwarder, metrics, introspector, asMetadata, rateLimiting } = stages;
  const onError = unexpectedErrorHandler(log);
  const supervision = { log, metrics };
  let gate: Listener;
  try {
    gate = startGateListener(config, {
      handler: stages.handler,
      onError,
      tls: deps.tls,
      supervision,
    });
  } catch (err) {
    forwarder.close();
    void rateLimiting?.close();
    void tracing?.shutdown();
    return Promise.reject(
      (deps.tls ? tlsConfigError(config, err) : undefined) ??
        new ListenError("LISTEN_ADDR", formatListenAddr(config.listen), err),
    );
  }
  let metricsServer: Listener | undefined;
  try {
    metricsServer = startMetricsListener(config, {
      keys,
      metrics,
      onError,
      supervision,
      healthDetails: stages.healthDetails,
    });
  } catch (err) {
    forwarder.close();
    void rateLimiting?.close();
    void tracing?.shutdown();
    const named = new ListenError("METRICS_ADDR", formatListenAddr(config.metricsListen!), err);
    return gate.shutdown().then(() => Promise.reject(named));
  }

  const addr = { hostname: gate.addr.hostname, port: gate.addr.port };
  const metricsAddr = metricsServer
    ? { hostname: metricsServer.addr.hostname, port: metricsServer.addr.port }
    : undefined;
  log.info("listening", {
    addr: formatListenAddr(addr),
    tls: deps.tls !== undefined,
    ...(metricsAddr ? { metrics_addr: formatListenAddr(metricsAddr) } : {}),
  });
  keys.start();

  const { shutdown, finished } = createShutdown(config, {
    log,
    keys,
    introspector,
    asMetadata,
    tracing,
    forwarder,
    rateLimiting,
    gate,
    metricsServer,
    handleSignals: deps.handleSignals === true,
  });
  return Promise.resolve({
    addr,
    metricsAddr,
    finished,
    shutdown,
    [Symbol.asyncDispose]: shutdown,
  });
}

/** What the listeners serve and the drain stops, built once from the configuration. */
interface Stages {
  keys: KeyStores;
  forwarder: StreamingForwarder;
  metrics: Metrics;
  handler: Handler;
  /** Token introspection (INTROSPECTION_CLIENT_ID set, or INTROSPECTION_FORMAT=google_tokeninfo). */
  introspector?: Introspector;
  /** The authorization server's metadata, for the mirror or a discovered introspection endpoint. */
  asMetadata?: AsMetadataSource;
  /** What `/readyz` adds to its body on both listeners. */
  healthDetails?: () => Readonly<Record<string, unknown>>;
  /** The shared buckets' connection (RATE_LIMIT_REDIS_URL), closed after the drain. */
  rateLimiting?: RedisRateLimiting;
  /** The gate's own tracer (OTEL_EXPORTER_OTLP_ENDPOINT set). */
  tracing?: Tracing;
}

/** Builds the key store, verifier, forwarder, metrics and the request handler over them. */
function buildStages(config: Config, deps: ServerDeps, tracing: Tracing | undefined): Stages {
  const { log } = deps;
  const keys = createKeyStores(config, { log, fetch: deps.fetch });
  const introspecting = introspectionEnabled(config);
  const asMetadata =
    config.asMetadataMirror || (introspecting && config.introspectionUrl === undefined)
      ? createAsMetadataSource(config, { log, fetch: deps.fetch })
      : undefined;
  // Introspection serves the first issuer (docs/identity-providers.md, several issuers), known
  // from configuration before discovery answers: a good opaque token is never refused for an
  // issuer that is merely not discovered yet.
  const firstIssuer = issuersOf(config)[0].issuer;
  const introspector = introspecting
    ? createIntrospector(config, {
      log,
      fetch: deps.fetch,
      issuer: () => keys.stores[0].issuer ?? firstIssuer,
      metadata: asMetadata,
    })
    : undefined;
  const jwtVerifier = createVerifier(config, keys, { log });
  const verifier = introspector
    ? withIntrospection(jwtVerifier, introspector, { all: config.introspectAll })
    : jwtVerifier;
  const forwarder = createForwarder(config, { log, caCerts: deps.upstreamCaCerts });
  const build = buildInfo();
  const metrics = createMetrics({
    version: build.version,
    revision: build.revision,
    deno: build.deno,
    keyStats: () => keys.stats(),
    introspectionStats: introspector ? () => introspector.stats() : undefined,
    processStats: createProcessStatsReader(),
  });
  const rateLimiting = createRedisRateLimiting(config, {
    log,
    onFailOpen: () => metrics.rateLimitFailOpen(),
  });
  // Reported, never deciding readiness: a gate whose Redis is down still serves (fail open).
  const healthDetails = introspector || rateLimiting
    ? () => ({
      ...(introspector ? { introspection: introspector.status().state } : {}),
      ...(rateLimiting
        ? { rate_limit_store: rateLimiting.store.ready ? "connected" : "unavailable" }
        : {}),
    })
    : undefined;
  const handler = createHandler({
    config,
    keys,
    verifier,
    forwarder,
    log,
    metrics,
    tracing,
    tls: deps.tls !== undefined,
    asMetadata,
    healthDetails,
    rateLimiters: rateLimiting,
  });
  return {
    keys,
    forwarder,
    metrics,
    handler,
    introspector,
    asMetadata,
    healthDetails,
    rateLimiting,
    tracing,
  };
}

/** Deno.serve's `onError` for both listeners: logs, then answers the fixed 500. */
function unexpectedErrorHandler(log: Logger): (err: unknown) => Response {
  return (err) => {
    // A response body that broke off (upstream reset mid-stream, or cut by the drain) is an
    // expected event, already in the exchange's log line: not a crash.
    if (isUpstreamStreamError(err) || err instanceof DrainCut) {
      log.debug("response body ended early", { error: String(err) });
    } else log.error("unhandled error", { error: String(err) });
    return internalErrorResponse();
  };
}

/** The context a listener is supervised with (see {@linkcode superviseListener}). */
type Supervision = { log: Logger; metrics: Metrics };

/**
 * Binds LISTEN_ADDR (with TLS when configured) and serves the request handler.
 * @throws when it cannot bind, or TLS refuses the material (raw; the caller names the file).
 */
function startGateListener(
  config: Config,
  ctx: {
    handler: Stages["handler"];
    onError: (err: unknown) => Response;
    tls: ServerDeps["tls"];
    supervision: Supervision;
  },
): Listener {
  // Bodies pass through unchanged: the runtime must never re-encode them. Deno 2.9 does not by
  // default; the option is spelled out for that, and is not a literal so that older runtimes'
  // types (which lack it) still check. Deno 2.7 ignores it and compresses compressible bodies
  // the client accepts gzip for, unless they are already encoded or say no-transform.
  const gateOptions = {
    hostname: config.listen.hostname,
    port: config.listen.port,
    automaticCompression: false,
    onListen: () => {},
    onError: ctx.onError,
    ...(ctx.tls ? { cert: ctx.tls.cert, key: ctx.tls.key } : {}),
  };
  return superviseListener(
    "gate",
    config.listen,
    ({ hostname, port }) => Deno.serve({ ...gateOptions, hostname, port }, ctx.handler),
    ctx.supervision,
  );
}

/**
 * Binds METRICS_ADDR and serves `/metrics` and the health paths; undefined when it is disabled.
 * @throws when it cannot bind.
 */
function startMetricsListener(
  config: Config,
  ctx: {
    keys: KeyStores;
    metrics: Metrics;
    onError: (err: unknown) => Response;
    supervision: Supervision;
    healthDetails?: () => Readonly<Record<string, unknown>>;
  },
): Listener | undefined {
  if (!config.metricsListen) return undefined;
  const { keys, metrics, onError } = ctx;
  const metricsHandler = (req: Request) =>
    metricsEndpoint(req, keys.ready, () => metrics.render(), ctx.healthDetails);
  return superviseListener(
    "metrics",
    config.metricsListen,
    ({ hostname, port }) =>
      Deno.serve({ hostname, port, onListen: () => {}, onError }, metricsHandler),
    ctx.supervision,
  );
}

/**
 * The stop sequence, run once however often it is asked for: the key store stops, both listeners
 * drain under SHUTDOWN_TIMEOUT ({@linkcode drainListeners}), the forwarder closes, the clients
 * that outlive the drain close under {@linkcode AFTER_DRAIN_LIMIT_MS} ({@linkcode closeAfterDrain}),
 * `finished` resolves. The exit so takes at most SHUTDOWN_TIMEOUT + FORCED_CLOSE_GRACE_MS +
 * AFTER_DRAIN_LIMIT_MS (docs/contract.md §1).
 * With `handleSignals`, SIGTERM and SIGINT start it, and a second one during the drain resolves
 * `finished` at once with `interrupted` (an operator pressing Ctrl-C twice means "now"; the CLI
 * then exits without waiting for open streams).
 */
function createShutdown(
  config: Config,
  ctx: {
    log: Logger;
    keys: KeyStores;
    introspector?: Introspector;
    asMetadata?: AsMetadataSource;
    tracing?: Tracing;
    forwarder: StreamingForwarder;
    rateLimiting: RedisRateLimiting | undefined;
    gate: Listener;
    metricsServer: Listener | undefined;
    handleSignals: boolean;
  },
): { shutdown: () => Promise<void>; finished: Promise<Stopped> } {
  const { log, keys, forwarder, gate, metricsServer } = ctx;
  let resolveFinished!: (stopped: Stopped) => void;
  const finished = new Promise<Stopped>((r) => (resolveFinished = r));
  let stopping: Promise<void> | undefined;

  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const listeners = signals.map((signal) => {
    const listener = () => {
      if (stopping !== undefined) {
        log.warn("second signal received, stopping without waiting for the drain", { signal });
        log.flush();
        resolveFinished({ interrupted: signal });
        return;
      }
      log.info("signal received, draining", { signal, timeout_ms: config.shutdownTimeoutMs });
      void shutdown();
    };
    return [signal, listener] as const;
  });
  if (ctx.handleSignals) { for (const [s, l] of listeners) Deno.addSignalListener(s, l); }

  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      const t0 = performance.now();
      keys.close();
      const clean = await drainListeners(gate, metricsServer, {
        forwarder,
        log,
        timeoutMs: config.shutdownTimeoutMs,
      });
      forwarder.close();
      // After the drain: exchanges still in flight may need an introspection answer, and the
      // spans of the drained exchanges are exported before the process goes.
      await closeAfterDrain(log, [
        ["introspection", () => ctx.introspector?.[Symbol.asyncDispose]()],
        ["as_metadata", () => ctx.asMetadata?.[Symbol.asyncDispose]()],
        ["rate_limit_redis", () => ctx.rateLimiting?.close()],
        ["tracing", () => ctx.tracing?.shutdown()],
      ]);
      if (ctx.handleSignals) { for (const [s, l] of listeners) Deno.removeSignalListener(s, l); }
      log.info("stopped", { drained: clean, duration_ms: Math.round(performance.now() - t0) });
      log.flush();
      resolveFinished({});
    })();
    return stopping;
  };
  return { shutdown, finished };
}

/**
 * Stops the gate accepting and waits up to `timeoutMs` for its exchanges to end; then the metrics
 * listener, which served scrapes and probes through the drain, stops under what is left of the
 * same deadline: Deno's shutdown() waits for every exchange in flight, so one client of
 * METRICS_ADDR that never finishes its request would otherwise hold the exit for good. Past the
 * deadline the streams still open are cut and both get a short grace. Resolves true when
 * everything ended in time.
 */
async function drainListeners(
  gate: Listener,
  metricsServer: Listener | undefined,
  ctx: { forwarder: StreamingForwarder; log: Logger; timeoutMs: number },
): Promise<boolean> {
  const { forwarder, log } = ctx;
  const deadline = performance.now() + ctx.timeoutMs;
  const gateDrained = gate.shutdown();
  await within(gateDrained, ctx.timeoutMs, undefined);
  const drained = Promise.all([gateDrained, metricsServer?.shutdown()]).then(() => true);
  if (await within(drained, Math.max(0, deadline - performance.now()), false)) return true;
  // Cut what is still streaming (Deno's shutdown() waits for open bodies forever): the forwarder
  // errors each proxied body, which ends the client's response, aborts the upstream request and
  // writes the exchange's log line (forwarder.close() alone only closes idle connections). Only
  // proxied bodies stream; the gate's own and the metrics listener's are whole. What still hangs
  // after a short grace (a request waiting for upstream headers, a metrics client that never
  // finishes its request body) is left to process exit (the CLI exits).
  log.warn("shutdown timeout reached, closing open exchanges", {
    streams: forwarder.streamingCount,
  });
  forwarder.cutStreams(new DrainCut());
  await within(drained, FORCED_CLOSE_GRACE_MS, false);
  return false;
}

/** `p`'s value, or `fallback` when `p` has not settled within `ms`; the timer is always cleared. */
async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<F>((r) => (timer = setTimeout(() => r(fallback), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Closes the clients that outlive the drain, together, for at most AFTER_DRAIN_LIMIT_MS: a peer
 * that never answers (an OTLP collector whose exporter waits its own 10 s, a Redis server gone
 * silent) must not hold the exit. What is cut is named in one warn line and left to process exit.
 */
async function closeAfterDrain(
  log: Logger,
  closes: [name: string, close: () => PromiseLike<void> | void][],
): Promise<void> {
  const pending = new Set<string>();
  const all = Promise.all(closes.map(async ([name, close]) => {
    pending.add(name);
    try {
      await close();
    } catch { /* a failed close has nothing left to wait for */ }
    pending.delete(name);
  }));
  if (await within(all.then(() => true), AFTER_DRAIN_LIMIT_MS, false)) return;
  log.warn("close after the drain cut at its limit", {
    pending: [...pending],
    limit_ms: AFTER_DRAIN_LIMIT_MS,
  });
}

/** A listener that outlives its accept loop: see {@linkcode superviseListener}. */
interface Listener {
  /** The bound address (port 0 resolved); a re-created listener binds the same one. */
  readonly addr: Deno.NetAddr;
  /** Stops accepting (and re-creating), then waits for the exchanges of every generation. */
  shutdown(): Promise<void>;
}

/** First wait before re-creating a listener whose accept loop died; doubles per failure. */
const RELISTEN_MIN_MS = 100;
/** Longest wait between attempts: the listener is back within this once descriptors free up. */
const RELISTEN_MAX_MS = 2_000;
/** A listener that accepted this long before failing starts the backoff over. */
const RELISTEN_RESET_MS = 10_000;
/** At most one log line per listener and kind of event per interval; the line counts the rest. */
const FAILURE_LOG_INTERVAL_MS = 10_000;

/**
 * Serves with `serve(addr)` and keeps serving when the accept loop dies.
 *
 * Deno.serve's accept loop ends at the first failing accept (measured with Deno 2.9.6 under
 * `ulimit -n 64`: EMFILE, "Too many open files (os error 24)"): `finished` rejects, the listening
 * socket is closed, and nothing else notices, so the rejection went unhandled and the process
 * exited 1. Connections already accepted keep being served by that server. So on a rejection
 * the dead server is shut down gracefully (its exchanges in flight, streams included, run to
 * their end; its idle keep-alive, never-used and half-sent-head connections are closed, which
 * gives their descriptors back) and a new server is bound to the same address, retried with
 * backoff while descriptors are still short.
 * @throws when the first `serve` throws (address in use, TLS material refused).
 */
function superviseListener(
  name: ListenerName,
  first: ListenAddr,
  serve: (addr: ListenAddr) => Deno.HttpServer<Deno.NetAddr>,
  ctx: { log: Logger; metrics: Metrics },
): Listener {
  const { log, metrics } = ctx;
  let current: Deno.HttpServer<Deno.NetAddr> | undefined = serve(first);
  const addr = current.addr;
  const bound = { hostname: addr.hostname, port: addr.port };
  const retiring = new Set<Promise<void>>();
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let delay = RELISTEN_MIN_MS;
  let upSince = performance.now();
  const failures = rateLimitedLog(log, "error");
  const restored = rateLimitedLog(log, "info");

  const retire = (server: Deno.HttpServer<Deno.NetAddr>) => {
    const done: Promise<void> = server.shutdown().catch(() => {}).finally(() =>
      retiring.delete(done)
    );
    retiring.add(done);
  };
  const schedule = () => {
    timer = setTimeout(attempt, delay);
    delay = Math.min(delay * 2, RELISTEN_MAX_MS);
  };
  const watch = (server: Deno.HttpServer<Deno.NetAddr>) => {
    // Always handled: an unhandled rejection here is what used to end the process.
    server.finished.catch((err) => {
      if (stopped) return;
      metrics.listenerFailed(name);
      if (current === server) current = undefined;
      retire(server);
      if (performance.now() - upSince > RELISTEN_RESET_MS) delay = RELISTEN_MIN_MS;
      failures("listener stopped accepting, re-creating it", {
        listener: name,
        addr: formatListenAddr(bound),
        error: String(err),
        retry_ms: delay,
      });
      schedule();
    });
  };
  const attempt = () => {
    timer = undefined;
    if (stopped) return;
    try {
      current = serve(bound);
    } catch (err) {
      failures("listener could not be re-created, retrying", {
        listener: name,
        addr: formatListenAddr(bound),
        error: String(err),
        retry_ms: delay,
      });
      schedule();
      return;
    }
    upSince = performance.now();
    watch(current);
    restored("listener accepting again", { listener: name, addr: formatListenAddr(bound) });
  };
  watch(current);

  return {
    addr,
    shutdown() {
      stopped = true;
      clearTimeout(timer);
      return Promise.all([current?.shutdown(), ...retiring]).then(() => {});
    },
  };
}

/**
 * A log function that writes at most one line per FAILURE_LOG_INTERVAL_MS, with `count`: the
 * events since the previous line, this one included (a flood of accept failures is one line).
 */
function rateLimitedLog(
  log: Logger,
  level: "error" | "info",
): (msg: string, fields: Record<string, unknown>) => void {
  let last = -Infinity;
  let count = 0;
  return (msg, fields) => {
    count++;
    const now = performance.now();
    if (now - last < FAILURE_LOG_INTERVAL_MS) return;
    last = now;
    log[level](msg, { ...fields, count });
    count = 0;
  };
}

/** The error a response body is ended with when the drain times out. */
class DrainCut extends Error {
  constructor() {
    super("Shutdown timeout reached");
    this.name = "DrainCut";
  }
}

/**
 * A ConfigError naming TLS_CERT_FILE or TLS_KEY_FILE when Deno.serve refused the TLS material
 * (the CLI only checked that the files hold PEM blocks), else undefined.
 */
function tlsConfigError(config: Config, err: unknown): ConfigError | undefined {
  const text = err instanceof Error ? err.message : String(err);
  const cert = config.tlsCertFile ?? "";
  const key = config.tlsKeyFile ?? "";
  if (/KeyMismatch|not be consistent/i.test(text)) {
    return new ConfigError([
      invalidValue("TLS_KEY_FILE", "expected the key of TLS_CERT_FILE", key),
    ]);
  }
  if (/private key/i.test(text)) {
    return new ConfigError([
      invalidValue("TLS_KEY_FILE", `expected a usable private key (${text})`, key),
    ]);
  }
  if (/certificate/i.test(text)) {
    return new ConfigError([
      invalidValue("TLS_CERT_FILE", `expected a usable certificate (${text})`, cert),
    ]);
  }
  return undefined;
}

/**
 * The metrics listener: `/metrics`, and the health paths answered as the gate answers them
 * ({@linkcode healthResponse}), except `/healthz`: there it is a liveness probe, 200 while the
 * process serves, as on the original Go gate's metrics port (docs/contract.md §8), so a probe
 * carried over from it does not restart a gate that waits for its key set.
 */
function metricsEndpoint(
  req: Request,
  ready: boolean,
  render: () => string,
  healthDetails?: () => Readonly<Record<string, unknown>>,
): Response {
  const path = new URL(req.url).pathname;
  const health = healthResponse(
    req.method,
    path === "/healthz" ? "/livez" : path,
    ready,
    healthDetails,
  );
  if (health) return health;
  const headers = { "cache-control": "no-store", "x-content-type-options": "nosniff" };
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response(null, { status: 405, headers: { ...headers, allow: "GET, HEAD" } });
  }
  if (path === "/metrics") {
    return new Response(render(), {
      headers: { ...headers, "content-type": METRICS_CONTENT_TYPE },
    });
  }
  return new Response('{"error":"not_found"}', {
    status: 404,
    headers: { ...headers, "content-type": "application/json" },
  });
}

/** A setting the runtime cannot honour as configured (logged once at start, naming it). */
export interface RuntimeLimit {
  variable: string;
  detail: string;
}

/**
 * The largest request head Deno.serve 2.9 accepts: measured 65540 bytes with Deno 2.9.6; a longer
 * one gets 400 before any handler runs. (Deno 2.7.11, the offline-built binary's runtime, takes
 * heads of several hundred KiB, and answers 431 itself to more than 100 fields.)
 */
export const RUNTIME_HEAD_LIMIT_2_9 = 65540;

/**
 * What the runtime `denoVersion` cannot honour of `config`, one entry per variable: the gate says
 * so at start rather than silently (docs/contract.md §1).
 */
export function runtimeLimits(config: Config, denoVersion: string): RuntimeLimit[] {
  const out: RuntimeLimit[] = [];
  if (config.idleTimeoutMs !== undefined) {
    out.push({
      variable: "IDLE_TIMEOUT",
      detail: "Deno.serve has no keep-alive idle timeout setting, so it is not applied: an idle " +
        "client connection stays open until the client or a proxy in front closes it",
    });
  }
  const [major, minor] = denoVersion.split(".").map(Number);
  if (
    (major > 2 || (major === 2 && minor >= 9)) && config.maxHeaderBytes > RUNTIME_HEAD_LIMIT_2_9
  ) {
    out.push({
      variable: "MAX_HEADER_BYTES",
      detail: `Deno.serve ${denoVersion} refuses request heads over ${RUNTIME_HEAD_LIMIT_2_9} ` +
        "bytes with 400 before the gate sees them, so the effective limit is that",
    });
  }
  return out;
}

/** How long open exchanges get to end after being cut at SHUTDOWN_TIMEOUT. */
const FORCED_CLOSE_GRACE_MS = 500;
/**
 * How long the closes after the drain (introspection, AS metadata, the Redis client, the trace
 * flush) get together: the exit takes at most SHUTDOWN_TIMEOUT + FORCED_CLOSE_GRACE_MS + this
 * (docs/contract.md §1; deploy/kubernetes/mcp-gate.yaml's grace period allows for it).
 */
const AFTER_DRAIN_LIMIT_MS = 2_000;
