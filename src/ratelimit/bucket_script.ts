/**
 * The shared token bucket as one Lua script run inside Redis or Valkey (EVALSHA), so that a take
 * is atomic across every replica and costs one round trip. The script reads the server's clock
 * (TIME), so the replicas' clocks never matter. Pure: the script text, how its arguments are
 * scaled, how a bucket's key is named, how its reply is read; the client is redis_store.ts.
 *
 * Exactness: Lua numbers are doubles. Tokens are counted in integer units (`unit` per token) and
 * time in integer microseconds, so every sum and product the script keeps stays an integer below
 * 2^53 and is exact; a refill product past 2^53 only ever exceeds the capacity, and is capped.
 * The same semantics as the in-memory bucket (src/http/rate_limit.ts): a new bucket is full, it
 * refills at `rps` up to `burst`, a clock that steps back refills nothing.
 */
import { createHash } from "node:crypto";

/**
 * KEYS[1]: the bucket. ARGV: refill in units per microsecond, capacity in units, units per token,
 * and (tests only) a time in microseconds that replaces TIME; the key then gets no expiry, since
 * that runs on the server's real clock.
 * Stored value: "<tokens>:<at>", tokens in units, at in microseconds; it expires when the bucket
 * would be full again, so an idle bucket costs nothing and its expiry changes no answer.
 * Reply: {allowed (1 or 0), microseconds until the bucket holds a whole token (0 if it does),
 * the expiry set in milliseconds}.
 */
export const BUCKET_SCRIPT = `
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local one = tonumber(ARGV[3])
local now
local fake = ARGV[4] ~= nil and ARGV[4] ~= ''
if fake then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tokens = cap
local at = now
local stored = redis.call('GET', KEYS[1])
if stored then
  local sep = string.find(stored, ':', 1, true)
  tokens = tonumber(string.sub(stored, 1, sep - 1))
  at = tonumber(string.sub(stored, sep + 1))
  local elapsed = now - at
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(cap, tokens + elapsed * rate)
  at = at + elapsed
end
local allowed = 0
if tokens >= one then
  tokens = tokens - one
  allowed = 1
end
-- Written on a refusal too: the refill so far is kept, should the clock step back next time.
local ttl = math.ceil(math.ceil((cap - tokens) / rate) / 1000) + 1
local value = string.format('%.0f:%.0f', tokens, at)
if fake then
  redis.call('SET', KEYS[1], value)
else
  redis.call('SET', KEYS[1], value, 'PX', string.format('%.0f', ttl))
end
local wait = 0
if tokens < one then wait = math.ceil((one - tokens) / rate) end
return {allowed, wait, ttl}
`;

/** The script's SHA-1, for EVALSHA (computed once). */
export const BUCKET_SCRIPT_SHA1: string = createHash("sha1").update(BUCKET_SCRIPT).digest("hex");

/** The script's answer to one take. */
export interface BucketReply {
  readonly allowed: boolean;
  /** Microseconds until the bucket holds a whole token again; 0 when it still does. */
  readonly waitUs: number;
  /** The key's expiry in ms: until the bucket is full again, plus 1. */
  readonly ttlMs: number;
}

/** A bucket's parameters as the script's first three arguments (integers, as text). */
export function bucketArgs(rps: number, burst: number): [string, string, string] {
  // The largest unit (a power of ten, at most 10^12) that keeps the capacity below 2^53: refill
  // resolution 10^-6 rps for bursts up to 9007, coarser for larger ones.
  let unit = 1e12;
  while (unit > 1 && burst * unit > Number.MAX_SAFE_INTEGER) unit /= 1000;
  // Units per microsecond: rps tokens per second = rps * unit / 10^6 units per µs, at least 1.
  const rate = Math.max(1, Math.round((rps * unit) / 1e6));
  return [String(rate), String(burst * unit), String(unit)];
}

/** Reads the script's reply; throws on anything else (a wrong script, a proxy in the way). */
export function parseBucketReply(reply: unknown): BucketReply {
  if (
    !Array.isArray(reply) || reply.length !== 3 || !reply.every((n) => typeof n === "number")
  ) {
    throw new TypeError(`Unexpected rate limit script reply ${JSON.stringify(reply)}`);
  }
  return { allowed: reply[0] === 1, waitUs: reply[1], ttlMs: reply[2] };
}

/** Which limiter a bucket belongs to: client addresses before auth, token subjects after it. */
export type BucketKind = "ip" | "sub";

/** Every bucket key starts with this (docs/controls.md). */
export const BUCKET_KEY_PREFIX = "mcpgate:rl:v1:";

/**
 * The Redis key of `id`'s bucket: the prefix, the kind, and the SHA-256 of the gate's resource and
 * the id (base64url). Hashing keeps client-chosen text (a subject claim, a forwarded address) out
 * of the key, so no id can name another key or grow it; the resource in the hash keeps gates for
 * different resources apart on one server while replicas of one gate share their buckets.
 */
export function bucketKey(scope: string, kind: BucketKind, id: string): string {
  const digest = createHash("sha256").update(scope).update("\n").update(id).digest("base64url");
  return `${BUCKET_KEY_PREFIX}${kind}:${digest}`;
}

/** Whole seconds for Retry-After (at least 1) from the script's microseconds. */
export function retryAfterSeconds(waitUs: number): number {
  return Math.max(1, Math.ceil(waitUs / 1e6));
}
