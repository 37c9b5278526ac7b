/**
 * The network half of the shared rate limiter: one Redis/Valkey connection (node-redis's
 * @redis/client) and, over it, the per-IP and per-subject limiters the handler consults when
 * RATE_LIMIT_REDIS_URL is set (docs/controls.md, "Rate limiting across replicas").
 *
 * Failure never refuses a request: a call that has not answered within RATE_LIMIT_REDIS_TIMEOUT,
 * fails, or finds the connection down admits the request and is counted (fail open). The
 * connection is made in the background and re-made with backoff, so Redis being down at start
 * stops nothing and readiness does not depend on it. The URL's password is never logged.
 */
import { createClient, ErrorReply } from "@redis/client";
import type { Config } from "../config/mod.ts";
import { redactSecrets } from "../errors.ts";
import type { Logger } from "../ops/mod.ts";
import {
  BUCKET_SCRIPT,
  BUCKET_SCRIPT_SHA1,
  bucketArgs,
  bucketKey,
  type BucketKind,
  type BucketReply,
  parseBucketReply,
  retryAfterSeconds,
} from "./bucket_script.ts";

/** What the handler needs of a limiter; the in-memory one (src/http/rate_limit.ts) fits it too. */
export interface SharedLimiter {
  /** One token from `id`'s bucket: 0 to admit, else whole seconds for Retry-After. */
  take(id: string): Promise<number>;
  /**
   * Whether `id` is known to be empty, from this replica's last answers (no round trip): the
   * seconds until it refills, or 0.
   */
  peek(id: string): number;
}

/** Options for {@linkcode connectRedisBuckets}. */
export interface RedisBucketsOptions {
  /** redis:// or rediss:// URL (RATE_LIMIT_REDIS_URL). */
  url: string;
  log: Logger;
  /** Delay before reconnect attempt `n` (0-based), in ms; default 100 ms doubling to 5 s. */
  backoffMs?: (attempt: number) => number;
}

/** One connection to the bucket store, made and re-made in the background. */
export interface RedisBuckets {
  /** Whether the connection is up now (commands are not queued while it is down). */
  readonly ready: boolean;
  /**
   * Runs the bucket script on `key` once. `nowUs` replaces the server's clock (tests only).
   * Rejects when the connection is down or the server refuses.
   */
  take(key: string, rps: number, burst: number, nowUs?: number): Promise<BucketReply>;
  /** Closes the connection at once; pending calls reject. */
  close(): Promise<void>;
}

/** First reconnect delay; doubles per failed attempt up to {@linkcode MAX_BACKOFF_MS}. */
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;
/** At most one "unavailable" log line per this interval; the line counts the errors since. */
const ERROR_LOG_INTERVAL_MS = 10_000;

/** Connects to the store in the background; never throws for an unreachable server. */
export function connectRedisBuckets(options: RedisBucketsOptions): RedisBuckets {
  const { log } = options;
  const shownUrl = redactSecrets(options.url);
  const secret = passwordOf(options.url);
  // An error message could quote what the server was sent; the password never goes in the log.
  const scrub = (err: unknown) => {
    const text = redactSecrets(String(err));
    return secret ? text.replaceAll(secret, "[redacted]") : text;
  };
  const backoff = options.backoffMs ??
    ((n: number) => Math.min(MIN_BACKOFF_MS * 2 ** n, MAX_BACKOFF_MS));
  const client = createClient({
    url: options.url,
    // A command sent while the connection is down fails at once instead of waiting in a queue:
    // the request it belongs to is admitted now, not after its budget.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 5_000,
      // Reconnecting is done below: the client's own backoff sleeps on a timer that closing it
      // does not cancel, which would hold a stopping process (and fail the test sanitizers).
      reconnectStrategy: false,
    },
  });

  let closed = false;
  let wasReady = false;
  let lastErrorLog = -Infinity;
  let errorsSince = 0;
  const reportError = (msg: string, err: unknown) => {
    errorsSince++;
    const now = performance.now();
    if (now - lastErrorLog < ERROR_LOG_INTERVAL_MS) return;
    lastErrorLog = now;
    log.warn(msg, { redis: shownUrl, error: scrub(err), count: errorsSince });
    errorsSince = 0;
  };
  client.on("error", (err: unknown) => {
    if (closed) return;
    if (wasReady) {
      wasReady = false;
      lastErrorLog = -Infinity;
    }
    reportError("rate limit store unavailable, admitting requests", err);
  });
  client.on("ready", () => {
    wasReady = true;
    log.info("rate limit store connected", { redis: shownUrl });
  });
  let attempt = 0;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const connect = () => {
    retry = undefined;
    if (closed || client.isOpen) return;
    client.connect().then(() => (attempt = 0), schedule);
  };
  const schedule = () => {
    if (closed || retry !== undefined) return;
    // Jitter spreads the replicas' reconnects after a Redis restart.
    retry = setTimeout(connect, backoff(attempt++) + Math.floor(Math.random() * 100));
  };
  // A connection that drops (or an attempt that fails) ends the client; it is opened again.
  client.on("terminated", schedule);
  connect();

  const run = async (key: string, args: string[]): Promise<unknown> => {
    try {
      return await client.evalSha(BUCKET_SCRIPT_SHA1, { keys: [key], arguments: args });
    } catch (err) {
      // A server that has not seen the script yet (new, restarted, SCRIPT FLUSH) loads it once.
      if (err instanceof ErrorReply && err.message.startsWith("NOSCRIPT")) {
        return await client.eval(BUCKET_SCRIPT, { keys: [key], arguments: args });
      }
      throw err;
    }
  };

  return {
    get ready() {
      return client.isReady;
    },
    async take(key, rps, burst, nowUs) {
      const args = bucketArgs(rps, burst);
      const reply = await run(key, nowUs === undefined ? args : [...args, String(nowUs)]);
      return parseBucketReply(reply);
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      clearTimeout(retry);
      client.destroy();
      return Promise.resolve();
    },
  };
}

/** Options for {@linkcode createSharedLimiter}. */
export interface SharedLimiterOptions {
  store: RedisBuckets;
  kind: BucketKind;
  /** What keeps this gate's buckets apart from other gates' on one server (RESOURCE_URI). */
  scope: string;
  rps: number;
  burst: number;
  /** Budget of one call in ms (RATE_LIMIT_REDIS_TIMEOUT). */
  timeoutMs: number;
  log: Logger;
  /** Called for each request admitted because the store did not answer in time or at all. */
  onFailOpen?: () => void;
  /** Most calls waiting for an answer at once; past it, requests are admitted without one. */
  maxPending?: number;
  /** Most ids remembered as empty for {@linkcode SharedLimiter.peek} (default 10000). */
  maxEmpty?: number;
  /** Monotonic clock in ms (default `performance.now`). */
  now?: () => number;
}

const TIMED_OUT = Symbol("timed out");

/**
 * A limiter whose buckets live in the store: one script call per take, within the time budget,
 * failing open. `peek` answers from the empty buckets this replica was told about, so the check
 * before signature work costs no round trip; a bucket emptied through another replica is learnt
 * at this replica's next take for that id.
 */
export function createSharedLimiter(options: SharedLimiterOptions): SharedLimiter {
  const { store, kind, scope, rps, burst, timeoutMs, log } = options;
  const maxPending = options.maxPending ?? 1_000;
  const maxEmpty = options.maxEmpty ?? 10_000;
  const now = options.now ?? (() => performance.now());
  /** id -> clock reading until which its bucket holds no whole token (oldest first). */
  const emptyUntil = new Map<string, number>();
  let pending = 0;

  const failOpen = (why: string, err?: unknown) => {
    options.onFailOpen?.();
    if (log.enabled("debug")) {
      log.debug("rate limit store did not answer, request admitted", {
        limiter: kind,
        why,
        ...(err === undefined ? {} : { error: String(err) }),
      });
    }
    return 0;
  };
  const remember = (id: string, waitUs: number) => {
    emptyUntil.delete(id);
    if (waitUs <= 0) return;
    if (emptyUntil.size >= maxEmpty) emptyUntil.delete(emptyUntil.keys().next().value!);
    emptyUntil.set(id, now() + waitUs / 1000);
  };

  return {
    async take(id) {
      if (!store.ready) return failOpen("disconnected");
      if (pending >= maxPending) return failOpen("too many pending calls");
      pending++;
      const call = store.take(bucketKey(scope, kind, id), rps, burst);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<typeof TIMED_OUT>((resolve) => {
        timer = setTimeout(() => resolve(TIMED_OUT), timeoutMs);
      });
      // Settles the count whoever wins the race; a late answer is dropped.
      call.then(() => pending--, () => pending--);
      try {
        const reply = await Promise.race([call, late]);
        if (reply === TIMED_OUT) return failOpen("timeout");
        remember(id, reply.waitUs);
        return reply.allowed ? 0 : retryAfterSeconds(reply.waitUs);
      } catch (err) {
        return failOpen("error", err);
      } finally {
        clearTimeout(timer);
      }
    },
    peek(id) {
      const until = emptyUntil.get(id);
      if (until === undefined) return 0;
      const left = until - now();
      if (left <= 0) {
        emptyUntil.delete(id);
        return 0;
      }
      return Math.max(1, Math.ceil(left / 1000));
    },
  };
}

/** The shared limiters of a gate and the connection under them. */
export interface RedisRateLimiting {
  readonly ip: SharedLimiter;
  readonly subject: SharedLimiter;
  readonly store: RedisBuckets;
  close(): Promise<void>;
}

/**
 * The per-IP and per-subject limiters for RATE_LIMIT_REDIS_URL, or undefined when the buckets stay
 * in memory (no URL, or RATE_LIMIT_RPS=0: then no connection is made at all).
 */
export function createRedisRateLimiting(
  config: Config,
  deps: { log: Logger; onFailOpen?: () => void },
): RedisRateLimiting | undefined {
  if (config.rateLimitRedisUrl === undefined || config.rateLimitRps <= 0) return undefined;
  const store = connectRedisBuckets({ url: config.rateLimitRedisUrl, log: deps.log });
  const limiter = (kind: BucketKind) =>
    createSharedLimiter({
      store,
      kind,
      scope: config.resourceUri,
      rps: config.rateLimitRps,
      burst: config.rateLimitBurst,
      timeoutMs: config.rateLimitRedisTimeoutMs,
      log: deps.log,
      onFailOpen: deps.onFailOpen,
    });
  return { ip: limiter("ip"), subject: limiter("sub"), store, close: () => store.close() };
}

/** The password of a URL's user info, or "" (nothing to scrub). */
function passwordOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).password);
  } catch {
    return "";
  }
}
