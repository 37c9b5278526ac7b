import assert from "node:assert/strict";
import fc from "fast-check";
import { createLogger, createMemorySink } from "../ops/mod.ts";
import {
  announceSkip,
  redisUnavailable,
  startRedis,
  type TestRedis,
} from "../../tests/helpers/redis.ts";
import {
  BUCKET_KEY_PREFIX,
  bucketArgs,
  bucketKey,
  connectRedisBuckets,
  type RedisBuckets,
} from "./mod.ts";

const skip = announceSkip("src/ratelimit/bucket_script_test.ts");

Deno.test("bucketKey() is the prefix, the kind and a fixed-size hash, whatever the id holds", () => {
  const seen = new Map<string, string>();
  fc.assert(
    fc.property(
      fc.string({ unit: "binary", maxLength: 300 }),
      fc.constantFrom("ip" as const, "sub" as const),
      (id, kind) => {
        const key = bucketKey("https://mcp.example.com/mcp", kind, id);
        // Nothing of the id reaches the key: no separator, space, newline or glob character.
        assert.match(key, new RegExp(`^${BUCKET_KEY_PREFIX}${kind}:[A-Za-z0-9_-]{43}$`));
        const before = seen.get(key);
        if (before !== undefined) assert.equal(before, `${kind}\0${id}`, "two ids share a key");
        seen.set(key, `${kind}\0${id}`);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("bucketKey() keeps the buckets of gates for different resources apart", () => {
  const a = bucketKey("https://a.example/mcp", "sub", "alice");
  assert.notEqual(a, bucketKey("https://b.example/mcp", "sub", "alice"));
  assert.equal(a, bucketKey("https://a.example/mcp", "sub", "alice"));
  assert.notEqual(a, bucketKey("https://a.example/mcp", "ip", "alice"));
});

Deno.test("bucketArgs() keeps the capacity exact (below 2^53) and the refill at least one unit", () => {
  fc.assert(
    fc.property(
      fc.double({ min: 1e-9, max: 1e7, noNaN: true }),
      fc.integer({ min: 1, max: 1e9 }),
      (rps, burst) => {
        const [rate, cap, unit] = bucketArgs(rps, burst).map(Number);
        assert.ok(Number.isSafeInteger(cap) && cap === burst * unit);
        assert.ok(Number.isSafeInteger(rate) && rate >= 1);
        if (burst <= 9007) assert.equal(unit, 1e12);
      },
    ),
  );
});

/**
 * The oracle: an exact token bucket in rational arithmetic. With rps = p / 10^k, tokens are kept
 * as a BigInt numerator over Q = 10^k * 10^6, so a refill of `e` microseconds adds exactly e * p.
 */
class ExactBucket {
  readonly q: bigint;
  readonly p: bigint;
  readonly cap: bigint;
  tokens: bigint;
  at: bigint;
  constructor(p: number, k: number, burst: number, now: bigint) {
    this.p = BigInt(p);
    this.q = 10n ** BigInt(k) * 1_000_000n;
    this.cap = BigInt(burst) * this.q;
    this.tokens = this.cap;
    this.at = now;
  }
  take(now: bigint): { allowed: boolean; waitUs: number; ttlMs: number } {
    const elapsed = now > this.at ? now - this.at : 0n;
    const refilled = this.tokens + elapsed * this.p;
    this.tokens = refilled < this.cap ? refilled : this.cap;
    this.at += elapsed;
    let allowed = false;
    if (this.tokens >= this.q) {
      this.tokens -= this.q;
      allowed = true;
    }
    // Microseconds until full, then milliseconds, each rounded up, plus 1.
    const toFullUs = ceilDiv(this.cap - this.tokens, this.p);
    const ttlMs = Number(ceilDiv(toFullUs, 1000n)) + 1;
    const waitUs = this.tokens >= this.q ? 0 : Number(ceilDiv(this.q - this.tokens, this.p));
    return { allowed, waitUs, ttlMs };
  }
}

function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}

/** A store connected to `redis`, for one test. */
async function connected(redis: TestRedis): Promise<RedisBuckets & AsyncDisposable> {
  const store = connectRedisBuckets({
    url: redis.url,
    log: createLogger({ sink: createMemorySink() }),
  });
  const deadline = Date.now() + 10_000;
  while (!store.ready) {
    if (Date.now() > deadline) throw new Error("the store did not connect");
    await new Promise((r) => setTimeout(r, 20));
  }
  return Object.assign(store, { [Symbol.asyncDispose]: () => store.close() });
}

Deno.test({
  name: "the bucket script answers every generated sequence of takes as an exact token bucket",
  ignore: skip,
  async fn() {
    await using redis = await startRedis();
    await using store = await connected(redis);
    // Keys no earlier run (on a shared server) can have left behind.
    const prefix = `test:${crypto.randomUUID()}`;
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        // rps = p / 10^k: from 10^-6 to 10^6 per second, every value exact in the model.
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.integer({ min: 0, max: 6 }),
        // Small bursts often, so refusals (and what follows them) are common.
        fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 9000 })),
        fc.array(
          fc.record({
            key: fc.constantFrom("a", "b", "c"),
            // Mostly small steps (bursts), some long idles, some clock steps backwards.
            dtUs: fc.oneof(
              fc.integer({ min: 0, max: 2_000 }),
              fc.integer({ min: 0, max: 5_000_000_000 }),
              fc.integer({ min: -1_000_000, max: 0 }),
            ),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        async (p, k, burst, ops) => {
          run++;
          const rps = p / 10 ** k;
          // Around today's server clock in µs (≈ 2^50.6): the script's time values are this big.
          let now = 1_780_000_000_000_000n;
          const models = new Map<string, ExactBucket>();
          for (const [i, op] of ops.entries()) {
            now += BigInt(op.dtUs);
            const key = `${prefix}:${run}:${op.key}`;
            let model = models.get(op.key);
            if (!model) models.set(op.key, model = new ExactBucket(p, k, burst, now));
            const want = model.take(now);
            const got = await store.take(key, rps, burst, Number(now));
            assert.deepEqual(got, want, `take ${i} of ${key} at rps ${rps}, burst ${burst}`);
          }
        },
      ),
      { numRuns: 300 },
    );
    await redis.command("FLUSHALL");
  },
});

Deno.test({
  name: "the bucket script uses the server's clock and the key expires once the bucket is full",
  ignore: skip,
  async fn() {
    await using redis = await startRedis();
    await using store = await connected(redis);
    const key = `${BUCKET_KEY_PREFIX}test:expiry:${crypto.randomUUID()}`;
    // 5 rps, burst 1: one take, then empty for 200 ms; the key lives 200 ms + 1.
    const first = await store.take(key, 5, 1);
    assert.deepEqual(first, { allowed: true, waitUs: 200_000, ttlMs: 201 });
    const pttl = Number((await redis.command("PTTL", key)).slice(1));
    assert.ok(pttl > 0 && pttl <= 201, `PTTL ${pttl}`);
    const second = await store.take(key, 5, 1);
    assert.equal(second.allowed, false);
    assert.ok(second.waitUs > 0 && second.waitUs <= 200_000, `waitUs ${second.waitUs}`);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(await redis.command("EXISTS", key), ":0\r\n", "an idle bucket is gone");
    assert.equal((await store.take(key, 5, 1)).allowed, true, "and starts full");
  },
});

Deno.test({
  name: "the bucket script is loaded again after the server forgets it (SCRIPT FLUSH)",
  ignore: skip,
  async fn() {
    await using redis = await startRedis();
    await using store = await connected(redis);
    const key = `${BUCKET_KEY_PREFIX}test:flush:${crypto.randomUUID()}`;
    assert.equal((await store.take(key, 1, 2)).allowed, true);
    assert.equal(await redis.command("SCRIPT", "FLUSH"), "+OK\r\n");
    assert.equal((await store.take(key, 1, 2)).allowed, true);
    assert.equal((await store.take(key, 1, 2)).allowed, false);
    await redis.command("DEL", key);
  },
});

if (redisUnavailable()) {
  Deno.test("bucket script tests against a real server", { ignore: true }, () => {});
}
