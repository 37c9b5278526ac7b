/**
 * Prometheus metrics in the text exposition format 0.0.4, with no dependency: a handful of
 * counters, one gauge and one histogram family are all the gate needs, and a library would cost
 * more start-up time and binary size than these few lines.
 *
 * Updates are on the request path, so they only look up precomputed series (objects, Maps) and
 * bump numbers; label strings are built once, when a series is first seen, and the exposition
 * text is built only by {@linkcode Metrics.render} when `/metrics` is scraped.
 *
 * Format: https://prometheus.io/docs/instrumenting/exposition_formats/ (text format 0.0.4).
 */

import type { ProcessStats } from "./process.ts";

/** Which part of the gate answered a request (a bounded label value). */
export type Route = "metadata" | "health" | "proxy" | "preflight" | "rejected";

/** Kinds of upstream failure counted by `mcpgate_upstream_errors_total`. */
export type UpstreamErrorKind = "unreachable" | "timeout" | "reset";

/** Which in-flight cap refused a request (see inflight.ts): the client's own or the gate's. */
export type InflightScope = "ip" | "total";

/** The gate's two listeners. */
export type ListenerName = "gate" | "metrics";

/** One finished request, as reported by the handler. */
export interface RequestSample {
  route: Route;
  /** The HTTP method as received; unknown methods are counted as "other". */
  method: string;
  status: number;
  durationMs: number;
}

/** Key set state read at scrape time (see jwks.ts). */
export interface KeyStats {
  keys: number;
  /** Unix epoch milliseconds of the last successful fetch; absent until one succeeded. */
  lastRefreshMs?: number;
  refreshErrors: number;
  fetches: number;
}

/** Token introspection state read at scrape time (see auth/introspect.ts). */
export interface IntrospectionStats {
  /** Calls the endpoint answered (active or not). */
  answered: number;
  /** Calls that got no answer (down, slow, an HTTP error, not JSON...). */
  failed: number;
  /** New tokens refused without a call: the wait queue was full, or a probe was in flight. */
  shed: number;
  /** Requests answered from the cache. */
  cacheHits: number;
  /** Answers held (positive and negative). */
  cacheEntries: number;
  /** 1 when the latest call was answered, 0 when it failed; absent before the first call. */
  up?: 0 | 1;
}

/** The gate's metrics registry. */
export interface Metrics {
  /** A request arrived: in-flight + 1. */
  requestStarted(): void;
  /** A request completed (for a stream: when it ended): in-flight - 1, count and duration. */
  requestFinished(f: RequestSample): void;
  /** One authentication decision: `mcpgate_auth_total{outcome,reason}`. */
  authOutcome(outcome: string, reason?: string): void;
  /** One upstream failure: `mcpgate_upstream_errors_total{kind}`. */
  upstreamError(kind: UpstreamErrorKind): void;
  /** A request refused by an in-flight cap: `mcpgate_inflight_rejected_total{scope}`. */
  inflightRejected(scope: InflightScope): void;
  /** A listener's accept loop died and the listener is re-created: `mcpgate_listener_failures_total`. */
  listenerFailed(listener: ListenerName): void;
  /** SSE_IDLE_TIMEOUT closed a silent response stream: `mcpgate_stream_idle_closed_total`. */
  streamIdleClosed(): void;
  /**
   * A request admitted because the shared rate limit store did not answer in time or at all:
   * `mcpgate_rate_limit_redis_failopen_total`.
   */
  rateLimitFailOpen(): void;
  /** The whole exposition text (ends with a newline). */
  render(): string;
}

/** Options for {@linkcode createMetrics}. */
export interface MetricsOptions {
  /** The gate's version, exposed as `mcpgate_build_info{version}`. */
  version: string;
  /** The git revision it was built from, `mcpgate_build_info{revision}` (default "unknown"). */
  revision?: string;
  /** The Deno runtime, `mcpgate_build_info{deno_version}` (default "unknown"). */
  deno?: string;
  /** Key set state, read on each scrape. */
  keyStats?: () => KeyStats;
  /** Token introspection state, read on each scrape (only when introspection is configured). */
  introspectionStats?: () => IntrospectionStats;
  /**
   * Upper bounds of the duration histogram in seconds, ascending. The default reaches 300 s
   * because MCP tool calls and SSE streams legitimately run for minutes (Claude.ai allows 300 s).
   */
  durationBucketsSeconds?: readonly number[];
  /**
   * The `process_*` figures, read on each scrape (see process.ts); the series are left out when
   * absent.
   */
  processStats?: () => ProcessStats;
}

/** The `Content-Type` of {@linkcode Metrics.render}'s output. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Default duration buckets (seconds). */
export const DEFAULT_DURATION_BUCKETS: readonly number[] = [
  0.001,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
];

const ROUTES: readonly Route[] = ["metadata", "health", "proxy", "preflight", "rejected"];
const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other"] as const;
const UPSTREAM_KINDS: readonly UpstreamErrorKind[] = ["unreachable", "timeout", "reset"];
const INFLIGHT_SCOPES: readonly InflightScope[] = ["ip", "total"];
const LISTENERS: readonly ListenerName[] = ["gate", "metrics"];

/**
 * Index of a method label; anything outside the known set is "other" so that a client cannot
 * grow the series count by inventing methods.
 */
function methodIndex(method: string): number {
  switch (method) {
    case "GET":
      return 0;
    case "HEAD":
      return 1;
    case "POST":
      return 2;
    case "PUT":
      return 3;
    case "DELETE":
      return 4;
    case "OPTIONS":
      return 5;
    case "PATCH":
      return 6;
    default:
      return 7;
  }
}

/** One `{route,method,status}` series of the request histogram. */
interface RequestSeries {
  /** `route="…",method="…",status="…"`, built once. */
  readonly labels: string;
  /** Non-cumulative counts per bucket; the last slot is the +Inf overflow. */
  readonly buckets: Float64Array;
  count: number;
  sumMs: number;
}

/** A counter series with its label text. */
interface CounterSeries {
  readonly labels: string;
  value: number;
}

/** Creates the metrics registry. Everything constant is computed here, once. */
export function createMetrics(opts: MetricsOptions): Metrics {
  const boundsSeconds = opts.durationBucketsSeconds ?? DEFAULT_DURATION_BUCKETS;
  for (let i = 0; i < boundsSeconds.length; i++) {
    const b = boundsSeconds[i];
    if (!Number.isFinite(b) || (i > 0 && b <= boundsSeconds[i - 1])) {
      throw new RangeError(
        `Invalid "durationBucketsSeconds": expected finite ascending bounds, got "${
          boundsSeconds.join(",")
        }"`,
      );
    }
  }
  // Compare in milliseconds so an update needs no division.
  const boundsMs = Float64Array.from(boundsSeconds, (s) => s * 1000);
  const leLabels = boundsSeconds.map((s) => `le="${formatNumber(s)}"`);
  const nBuckets = boundsMs.length;

  // requests[route][method] -> Map<status, series>, so an update is two array indexes and a get.
  const routeIndex: Record<string, number> = {};
  ROUTES.forEach((r, i) => routeIndex[r] = i);
  const requests: Map<number, RequestSeries>[][] = ROUTES.map(() => METHODS.map(() => new Map()));
  const seriesOrder: RequestSeries[] = [];

  const auth = new Map<string, Map<string, CounterSeries>>();
  const authOrder: CounterSeries[] = [];
  const upstream = new Map<UpstreamErrorKind, CounterSeries>(
    UPSTREAM_KINDS.map((k) => [k, { labels: `kind="${k}"`, value: 0 }]),
  );
  const inflightRejected = new Map<InflightScope, CounterSeries>(
    INFLIGHT_SCOPES.map((k) => [k, { labels: `scope="${k}"`, value: 0 }]),
  );
  const listenerFailures = new Map<ListenerName, CounterSeries>(
    LISTENERS.map((k) => [k, { labels: `listener="${k}"`, value: 0 }]),
  );
  let inFlight = 0;
  let rateLimitFailOpen = 0;
  let streamIdleClosed = 0;
  const buildInfo = `mcpgate_build_info{version="${escapeLabelValue(opts.version)}",` +
    `revision="${escapeLabelValue(opts.revision ?? "unknown")}",` +
    `deno_version="${escapeLabelValue(opts.deno ?? "unknown")}"} 1\n`;

  const newRequestSeries = (r: number, m: number, status: number): RequestSeries => {
    const s: RequestSeries = {
      labels: `route="${ROUTES[r]}",method="${METHODS[m]}",status="${status}"`,
      buckets: new Float64Array(nBuckets + 1),
      count: 0,
      sumMs: 0,
    };
    requests[r][m].set(status, s);
    seriesOrder.push(s);
    return s;
  };

  return {
    requestStarted() {
      inFlight++;
    },

    requestFinished(f) {
      inFlight--;
      // An unknown route is a programming error; count it as "rejected" rather than throw.
      const r = routeIndex[f.route] ?? 4;
      const m = methodIndex(f.method);
      const status = f.status | 0;
      const s = requests[r][m].get(status) ?? newRequestSeries(r, m, status);
      const ms = f.durationMs > 0 ? f.durationMs : 0;
      let b = 0;
      while (b < nBuckets && ms > boundsMs[b]) b++;
      s.buckets[b]++;
      s.count++;
      s.sumMs += ms;
    },

    authOutcome(outcome, reason) {
      let byReason = auth.get(outcome);
      if (byReason === undefined) auth.set(outcome, byReason = new Map());
      const key = reason ?? "";
      let s = byReason.get(key);
      if (s === undefined) {
        const labels = `outcome="${escapeLabelValue(outcome)}"` +
          (reason === undefined ? "" : `,reason="${escapeLabelValue(reason)}"`);
        byReason.set(key, s = { labels, value: 0 });
        authOrder.push(s);
      }
      s.value++;
    },

    upstreamError(kind) {
      const s = upstream.get(kind);
      if (s !== undefined) s.value++;
    },

    inflightRejected(scope) {
      const s = inflightRejected.get(scope);
      if (s !== undefined) s.value++;
    },

    listenerFailed(listener) {
      const s = listenerFailures.get(listener);
      if (s !== undefined) s.value++;
    },

    streamIdleClosed() {
      streamIdleClosed++;
    },

    rateLimitFailOpen() {
      rateLimitFailOpen++;
    },

    render() {
      const out: string[] = [];

      header(out, "mcpgate_build_info", "gauge", "Build information; the value is always 1");
      out.push(buildInfo);

      header(
        out,
        "mcpgate_in_flight_requests",
        "gauge",
        "Requests currently being served, streams until they end. Not a connection count: " +
          "Deno.serve exposes none, and idle or half-sent connections never reach the gate",
      );
      out.push(`mcpgate_in_flight_requests ${formatNumber(inFlight)}\n`);

      header(out, "mcpgate_http_requests_total", "counter", "Completed requests");
      for (const s of seriesOrder) {
        out.push(`mcpgate_http_requests_total{${s.labels}} ${formatNumber(s.count)}\n`);
      }

      const h = "mcpgate_http_request_duration_seconds";
      header(out, h, "histogram", "Time from request arrival to the end of the response body");
      for (const s of seriesOrder) {
        let cumulative = 0;
        for (let i = 0; i < nBuckets; i++) {
          cumulative += s.buckets[i];
          out.push(`${h}_bucket{${s.labels},${leLabels[i]}} ${formatNumber(cumulative)}\n`);
        }
        out.push(`${h}_bucket{${s.labels},le="+Inf"} ${formatNumber(s.count)}\n`);
        out.push(`${h}_sum{${s.labels}} ${formatNumber(s.sumMs / 1000)}\n`);
        out.push(`${h}_count{${s.labels}} ${formatNumber(s.count)}\n`);
      }

      header(
        out,
        "mcpgate_auth_total",
        "counter",
        "Authentication decisions by outcome and reason",
      );
      for (const s of authOrder) {
        out.push(`mcpgate_auth_total{${s.labels}} ${formatNumber(s.value)}\n`);
      }

      header(out, "mcpgate_upstream_errors_total", "counter", "Upstream failures by kind");
      for (const s of upstream.values()) {
        out.push(`mcpgate_upstream_errors_total{${s.labels}} ${formatNumber(s.value)}\n`);
      }

      header(
        out,
        "mcpgate_inflight_rejected_total",
        "counter",
        "Requests refused by MAX_CONCURRENT_REQUESTS (scope ip) or MAX_TOTAL_CONNECTIONS (scope total)",
      );
      for (const s of inflightRejected.values()) {
        out.push(`mcpgate_inflight_rejected_total{${s.labels}} ${formatNumber(s.value)}\n`);
      }

      header(
        out,
        "mcpgate_listener_failures_total",
        "counter",
        "Times a listener stopped accepting (e.g. out of file descriptors) and was re-created",
      );
      for (const s of listenerFailures.values()) {
        out.push(`mcpgate_listener_failures_total{${s.labels}} ${formatNumber(s.value)}\n`);
      }

      header(
        out,
        "mcpgate_stream_idle_closed_total",
        "counter",
        "Streamed responses closed by SSE_IDLE_TIMEOUT after no bytes from the upstream",
      );
      out.push(`mcpgate_stream_idle_closed_total ${formatNumber(streamIdleClosed)}\n`);

      header(
        out,
        "mcpgate_rate_limit_redis_failopen_total",
        "counter",
        "Requests admitted without a rate limit decision because RATE_LIMIT_REDIS_URL's server " +
          "did not answer within RATE_LIMIT_REDIS_TIMEOUT or was unreachable",
      );
      out.push(`mcpgate_rate_limit_redis_failopen_total ${formatNumber(rateLimitFailOpen)}\n`);

      if (opts.keyStats) {
        const k = opts.keyStats();
        header(out, "mcpgate_jwks_keys_loaded", "gauge", "Keys in the current key set");
        out.push(`mcpgate_jwks_keys_loaded ${formatNumber(k.keys)}\n`);
        if (k.lastRefreshMs !== undefined) {
          header(
            out,
            "mcpgate_jwks_last_refresh_timestamp_seconds",
            "gauge",
            "Unix time of the last successful key set fetch",
          );
          out.push(
            `mcpgate_jwks_last_refresh_timestamp_seconds ${formatNumber(k.lastRefreshMs / 1000)}\n`,
          );
        }
        header(out, "mcpgate_jwks_refresh_errors_total", "counter", "Failed key set fetches");
        out.push(`mcpgate_jwks_refresh_errors_total ${formatNumber(k.refreshErrors)}\n`);
        header(out, "mcpgate_jwks_fetches_total", "counter", "Key set fetch attempts");
        out.push(`mcpgate_jwks_fetches_total ${formatNumber(k.fetches)}\n`);
      }

      if (opts.introspectionStats) renderIntrospection(out, opts.introspectionStats());

      if (opts.processStats) renderProcess(out, opts.processStats());

      return out.join("");
    },
  };
}

/** The `mcpgate_introspection_*` families (RFC 7662 token introspection). */
function renderIntrospection(out: string[], i: IntrospectionStats): void {
  header(
    out,
    "mcpgate_introspection_calls_total",
    "counter",
    "Introspection calls by result: answered (active or not) or failed (no answer)",
  );
  out.push(`mcpgate_introspection_calls_total{result="answered"} ${formatNumber(i.answered)}\n`);
  out.push(`mcpgate_introspection_calls_total{result="failed"} ${formatNumber(i.failed)}\n`);
  header(
    out,
    "mcpgate_introspection_shed_total",
    "counter",
    "New tokens refused without an introspection call (queue full, or probing a failing endpoint)",
  );
  out.push(`mcpgate_introspection_shed_total ${formatNumber(i.shed)}\n`);
  header(
    out,
    "mcpgate_introspection_cache_hits_total",
    "counter",
    "Requests answered from the introspection cache",
  );
  out.push(`mcpgate_introspection_cache_hits_total ${formatNumber(i.cacheHits)}\n`);
  header(out, "mcpgate_introspection_cache_entries", "gauge", "Introspection answers held");
  out.push(`mcpgate_introspection_cache_entries ${formatNumber(i.cacheEntries)}\n`);
  if (i.up !== undefined) {
    header(
      out,
      "mcpgate_introspection_up",
      "gauge",
      "1 when the latest introspection call was answered, 0 when it failed",
    );
    out.push(`mcpgate_introspection_up ${i.up}\n`);
  }
}

/** The `process_*` families, named as the Prometheus client libraries name them. */
function renderProcess(out: string[], p: ProcessStats): void {
  const one = (name: string, type: string, help: string, value: number) => {
    header(out, name, type, help);
    out.push(`${name} ${formatNumber(value)}\n`);
  };
  one(
    "process_cpu_seconds_total",
    "counter",
    "Total user and system CPU time in seconds",
    p.cpuSeconds,
  );
  one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes", p.residentBytes);
  one(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since the Unix epoch in seconds",
    p.startTimeSeconds,
  );
  if (p.openFds !== undefined) {
    one("process_open_fds", "gauge", "Number of open file descriptors", p.openFds);
  }
  if (p.maxFds !== undefined) {
    one("process_max_fds", "gauge", "Maximum number of open file descriptors", p.maxFds);
  }
}

function header(out: string[], name: string, type: string, help: string): void {
  out.push(`# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`);
}

/** Escapes a label value: backslash, double quote and line feed (text format 0.0.4). */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : "\\" + c));
}

/** Escapes HELP text: backslash and line feed only (text format 0.0.4). */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

/** Formats a sample value as Go's ParseFloat reads it: `+Inf`, `-Inf`, `NaN`, else a number. */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}
