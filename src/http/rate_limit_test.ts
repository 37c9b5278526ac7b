import assert from "node:assert/strict";
import fc from "fast-check";
import { createRateLimiter } from "./rate_limit.ts";

/** A clock the test moves by hand, in milliseconds. */
function manualClock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

Deno.test("createRateLimiter() allows a burst, then asks the client to wait", () => {
  const clock = manualClock();
  const limiter = createRateLimiter({ rps: 1, burst: 3, now: clock.now });
  assert.deepEqual([1, 2, 3, 4].map(() => limiter.take("a")), [0, 0, 0, 1]);
});

Deno.test("createRateLimiter() refills at rps tokens per second", async (t) => {
  const cases: [string, { rps: number; burst: number }, number, number[]][] = [
    // [name, options, ms advanced after draining the burst, results of the next takes]
    ["one token after one interval", { rps: 2, burst: 2 }, 500, [0, 1]],
    ["nothing before one interval", { rps: 2, burst: 2 }, 499, [1]],
    ["refill stops at burst", { rps: 10, burst: 2 }, 60_000, [0, 0, 1]],
    ["fractional rps", { rps: 0.5, burst: 1 }, 2_000, [0, 2]],
  ];
  for (const [name, options, ms, want] of cases) {
    await t.step(name, () => {
      const clock = manualClock();
      const limiter = createRateLimiter({ ...options, now: clock.now });
      for (let i = 0; i < options.burst; i++) assert.equal(limiter.take("k"), 0);
      clock.advance(ms);
      assert.deepEqual(want.map(() => limiter.take("k")), want);
    });
  }
});

Deno.test("createRateLimiter() returns whole seconds of at least 1 for Retry-After", async (t) => {
  const cases: [string, number, number][] = [
    ["fast refill rounds up to 1", 100, 1],
    ["1 rps", 1, 1],
    ["one token every 2.5 s", 0.4, 3],
    ["one token a minute", 1 / 60, 60],
  ];
  for (const [name, rps, want] of cases) {
    await t.step(name, () => {
      const clock = manualClock();
      const limiter = createRateLimiter({ rps, burst: 1, now: clock.now });
      assert.equal(limiter.take("k"), 0);
      assert.equal(limiter.take("k"), want);
    });
  }
});

Deno.test("createRateLimiter() keeps a separate bucket per key", () => {
  const clock = manualClock();
  const limiter = createRateLimiter({ rps: 1, burst: 1, now: clock.now });
  assert.equal(limiter.take("a"), 0);
  assert.equal(limiter.take("a"), 1);
  assert.equal(limiter.take("b"), 0);
});

Deno.test("createRateLimiter() refuses a burst below one request (Config resolves the default)", () => {
  for (const burst of [0, 0.5, -1, NaN, Infinity]) {
    assert.throws(() => createRateLimiter({ rps: 2.5, burst }), RangeError, String(burst));
  }
});

Deno.test("createRateLimiter() does not refill when the clock steps back", () => {
  const clock = manualClock(10_000);
  const limiter = createRateLimiter({ rps: 1, burst: 1, now: clock.now });
  assert.equal(limiter.take("k"), 0);
  clock.advance(-5_000);
  assert.equal(limiter.take("k"), 1);
  clock.advance(5_000); // back where it started: still no full second since the first take
  assert.equal(limiter.take("k"), 1);
  clock.advance(1_000);
  assert.equal(limiter.take("k"), 0);
});

Deno.test("createRateLimiter() never holds more than maxKeys buckets", () => {
  const clock = manualClock();
  const limiter = createRateLimiter({ rps: 1, burst: 1, maxKeys: 100, now: clock.now });
  for (let i = 0; i < 10_000; i++) {
    limiter.take(`flood-${i}`);
    assert.ok(limiter.size <= 100);
  }
  assert.equal(limiter.size, 100);
});

Deno.test("createRateLimiter() evicts the least recently used bucket first", () => {
  const clock = manualClock();
  const limiter = createRateLimiter({ rps: 1, burst: 1, maxKeys: 2, now: clock.now });
  assert.equal(limiter.take("a"), 0);
  assert.equal(limiter.take("b"), 0);
  assert.equal(limiter.take("a"), 1); // a is now more recent than b
  assert.equal(limiter.take("c"), 0); // evicts b, not a
  assert.equal(limiter.take("a"), 1, "a kept its empty bucket");
  assert.equal(limiter.take("b"), 0, "b was evicted and starts full");
});

Deno.test("createRateLimiter() rejects bad options when built", async (t) => {
  const cases: [string, { rps: number; burst: number; maxKeys?: number }][] = [
    ["zero rps", { rps: 0, burst: 1 }],
    ["negative rps", { rps: -1, burst: 1 }],
    ["NaN rps", { rps: NaN, burst: 1 }],
    ["infinite rps", { rps: Infinity, burst: 1 }],
    ["zero maxKeys", { rps: 1, burst: 1, maxKeys: 0 }],
    ["fractional maxKeys", { rps: 1, burst: 1, maxKeys: 1.5 }],
  ];
  for (const [name, options] of cases) {
    await t.step(name, () => assert.throws(() => createRateLimiter(options), RangeError));
  }
});

Deno.test("createRateLimiter() admits at most burst + rps × elapsed requests per key", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 50 }),
      fc.integer({ min: 1, max: 20 }),
      fc.array(fc.integer({ min: 0, max: 700 }), { minLength: 1, maxLength: 200 }),
      (rps, burst, gaps) => {
        const clock = manualClock();
        const limiter = createRateLimiter({ rps, burst, now: clock.now });
        let admitted = 0;
        let elapsed = 0;
        for (const gap of gaps) {
          clock.advance(gap);
          elapsed += gap;
          const wait = limiter.take("k");
          assert.ok(wait === 0 || (Number.isInteger(wait) && wait >= 1));
          if (wait === 0) admitted++;
        }
        assert.ok(admitted <= burst + (rps * elapsed) / 1000 + 1e-9);
      },
    ),
  );
});

Deno.test("peek() says what take() would, taking nothing and creating no bucket", () => {
  let t = 0;
  const limiter = createRateLimiter({ rps: 1, burst: 2, now: () => t });
  assert.equal(limiter.peek("a"), 0);
  assert.equal(limiter.size, 0, "no bucket for a peek");
  assert.equal(limiter.take("a"), 0);
  assert.equal(limiter.take("a"), 0);
  assert.equal(limiter.peek("a"), 1);
  assert.equal(limiter.peek("a"), 1, "peeking again takes nothing");
  t = 1000;
  assert.equal(limiter.peek("a"), 0);
  assert.equal(limiter.take("a"), 0);
  assert.equal(limiter.peek("a"), 1);
});
