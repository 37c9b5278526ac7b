/**
 * Token-bucket rate limiting per key (client IP before auth, subject after it), in memory, with
 * a hard bound on the number of buckets kept.
 */

/** Options for {@linkcode createRateLimiter}. */
export interface RateLimiterOptions {
  /** Refill rate in tokens per second; must be positive. */
  rps: number;
  /** Bucket capacity, 1 or more (Config resolves RATE_LIMIT_BURST=0 to `max(1, ceil(rps))`). */
  burst: number;
  /** Most buckets kept at once (default 10000). */
  maxKeys?: number;
  /** Monotonic clock in milliseconds (default `performance.now`); injectable for tests. */
  now?: () => number;
}

/**
 * What the handler needs of a limiter: this in-memory one, or one whose buckets are shared by
 * the replicas (src/ratelimit/), whose `take` answers after a round trip.
 */
export interface Limiter {
  /** 0 to admit, else whole seconds (≥ 1) for `Retry-After`. */
  take(key: string): number | Promise<number>;
  /** What `take` would answer, taking nothing; never waits. */
  peek(key: string): number;
}

export interface RateLimiter extends Limiter {
  /**
   * Takes one token from `key`'s bucket. Returns 0 when the request may proceed, else the whole
   * number of seconds (≥ 1) until a token is available, for `Retry-After`.
   */
  take(key: string): number;
  /**
   * What {@linkcode RateLimiter.take} would return for `key`, taking nothing and creating no
   * bucket: lets a caller refuse a client with an empty bucket before doing costly work.
   */
  peek(key: string): number;
  /** Buckets currently held (≤ maxKeys). */
  readonly size: number;
}

interface Bucket {
  tokens: number;
  /** Clock reading when `tokens` was last brought up to date. */
  at: number;
}

/**
 * Creates a token-bucket limiter. Buckets live in a Map kept in least-recently-used order. At
 * `maxKeys` a new key first drops the least recently used bucket: a bucket idle for `burst/rps`
 * seconds is full again, so dropping it loses nothing; under a flood of more than `maxKeys`
 * active keys the oldest key starts over with a full bucket, and memory still never grows.
 *
 * @throws {RangeError} for a non-positive or non-finite `rps` or `maxKeys`, or a burst below 1.
 */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const { rps } = options;
  if (!(Number.isFinite(rps) && rps > 0)) {
    throw new RangeError(`Invalid rate limit "rps": expected a positive number, got "${rps}"`);
  }
  const maxKeys = options.maxKeys ?? 10_000;
  if (!(Number.isInteger(maxKeys) && maxKeys > 0)) {
    throw new RangeError(
      `Invalid rate limit "maxKeys": expected a positive integer, got "${maxKeys}"`,
    );
  }
  // The default for RATE_LIMIT_BURST=0 is the configuration's rule (config/config.ts), applied
  // once at start; here a burst must already be one request or more.
  const burst = options.burst;
  if (!(Number.isFinite(burst) && burst >= 1)) {
    throw new RangeError(`Invalid rate limit "burst": expected 1 or more, got "${burst}"`);
  }
  const now = options.now ?? (() => performance.now());
  const buckets = new Map<string, Bucket>();
  /** The bucket's tokens after `elapsed` ms of refill, capped at the burst. */
  const refilled = (bucket: Bucket, elapsed: number) =>
    Math.min(burst, bucket.tokens + (elapsed * rps) / 1000);
  /** Whole seconds (at least 1) until a bucket holding `tokens` has one. */
  const waitFor = (tokens: number) => Math.max(1, Math.ceil((1 - tokens) / rps));

  return {
    take(key) {
      const t = now();
      let bucket = buckets.get(key);
      if (bucket === undefined) {
        if (buckets.size >= maxKeys) {
          // Map iteration order is insertion order, and every take re-inserts: first = LRU.
          buckets.delete(buckets.keys().next().value!);
        }
        bucket = { tokens: burst, at: t };
      } else {
        buckets.delete(key);
        // max(0, ...): a clock that steps back must not drain the bucket.
        const elapsed = Math.max(0, t - bucket.at);
        bucket.tokens = refilled(bucket, elapsed);
        bucket.at += elapsed;
      }
      buckets.set(key, bucket);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return 0;
      }
      return waitFor(bucket.tokens);
    },
    peek(key) {
      const bucket = buckets.get(key);
      if (bucket === undefined) return 0;
      const tokens = refilled(bucket, Math.max(0, now() - bucket.at));
      return tokens >= 1 ? 0 : waitFor(tokens);
    },
    get size() {
      return buckets.size;
    },
  };
}
