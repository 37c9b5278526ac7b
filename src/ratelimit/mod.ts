/**
 * Rate limit buckets shared by every replica of a gate, in Redis or Valkey
 * (RATE_LIMIT_REDIS_URL; docs/controls.md). The in-memory limiter stays in src/http/rate_limit.ts.
 * This file is the folder's public face (scripts/check_imports.ts).
 */
export {
  BUCKET_KEY_PREFIX,
  BUCKET_SCRIPT,
  bucketArgs,
  bucketKey,
  type BucketKind,
  type BucketReply,
  parseBucketReply,
  retryAfterSeconds,
} from "./bucket_script.ts";
export {
  connectRedisBuckets,
  createRedisRateLimiting,
  createSharedLimiter,
  type RedisBuckets,
  type RedisBucketsOptions,
  type RedisRateLimiting,
  type SharedLimiter,
  type SharedLimiterOptions,
} from "./redis_store.ts";
