import assert from "node:assert/strict";
import fc from "fast-check";
import { createInflightLimits, type InflightLimits, type InflightRelease } from "./inflight.ts";

/** Enters and asserts a slot was given. */
function take(limits: InflightLimits, ip: string): InflightRelease {
  const slot = limits.enter(ip);
  assert.equal(typeof slot, "function", `expected a slot for ${ip}, got ${JSON.stringify(slot)}`);
  return slot as InflightRelease;
}

Deno.test("createInflightLimits() refuses the per-IP cap with scope ip, other IPs still enter", () => {
  const limits = createInflightLimits({ perIp: 2, total: 10 });
  const a1 = take(limits, "203.0.113.1");
  take(limits, "203.0.113.1");
  assert.deepEqual(limits.enter("203.0.113.1"), { scope: "ip" });
  take(limits, "203.0.113.2");
  assert.equal(limits.total, 3);
  a1();
  take(limits, "203.0.113.1");
  assert.equal(limits.count("203.0.113.1"), 2);
});

Deno.test("createInflightLimits() refuses the total cap with scope total", () => {
  const limits = createInflightLimits({ perIp: 5, total: 2 });
  take(limits, "a");
  const b = take(limits, "b");
  assert.deepEqual(limits.enter("c"), { scope: "total" });
  b();
  take(limits, "c");
});

Deno.test("createInflightLimits() tells a client at its own cap 429 even when the gate is full", () => {
  const limits = createInflightLimits({ perIp: 1, total: 1 });
  take(limits, "a");
  assert.deepEqual(limits.enter("a"), { scope: "ip" });
  assert.deepEqual(limits.enter("b"), { scope: "total" });
});

Deno.test("createInflightLimits() counts a release once however often it is called", () => {
  const limits = createInflightLimits({ perIp: 3, total: 3 });
  const a = take(limits, "a");
  take(limits, "a");
  a();
  a();
  a();
  assert.equal(limits.total, 1);
  assert.equal(limits.count("a"), 1);
});

Deno.test("createInflightLimits() keeps only IPs with a request in flight", () => {
  const limits = createInflightLimits({ perIp: 2, total: 0 });
  const releases = Array.from(
    { length: 1000 },
    (_, i) => take(limits, `10.0.${i >> 8}.${i & 255}`),
  );
  assert.equal(limits.trackedIps, 1000);
  for (const r of releases) r();
  assert.equal(limits.trackedIps, 0);
  assert.equal(limits.total, 0);
});

Deno.test("createInflightLimits() with 0 is unlimited and keeps no per-IP map", () => {
  const limits = createInflightLimits({ perIp: 0, total: 0 });
  const releases = Array.from({ length: 5000 }, () => take(limits, "a"));
  assert.equal(limits.total, 5000);
  assert.equal(limits.trackedIps, 0);
  for (const r of releases) r();
  assert.equal(limits.total, 0);
});

Deno.test("createInflightLimits() refuses caps that are not whole numbers, 0 or more", async (t) => {
  for (const [perIp, total] of [[-1, 0], [0, 1.5], [NaN, 1], [1, Infinity]]) {
    await t.step(`perIp ${perIp}, total ${total}`, () => {
      assert.throws(() => createInflightLimits({ perIp, total }), RangeError);
    });
  }
});

type Op = { kind: "enter"; ip: number } | { kind: "release"; pick: number };

Deno.test("createInflightLimits() never goes negative, never exceeds a cap, and returns to zero", () => {
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant("enter" as const), ip: fc.nat(5) }),
    // `pick` may land on an already released slot: a repeated release must change nothing.
    fc.record({ kind: fc.constant("release" as const), pick: fc.nat(200) }),
  );
  fc.assert(
    fc.property(fc.nat(4), fc.nat(8), fc.array(opArb, { maxLength: 300 }), (perIp, cap, ops) => {
      const limits = createInflightLimits({ perIp, total: cap });
      const slots: { ip: string; release: InflightRelease; live: boolean }[] = [];
      const model = new Map<string, number>();
      let live = 0;
      for (const op of ops) {
        if (op.kind === "enter") {
          const ip = `198.51.100.${op.ip}`;
          const n = model.get(ip) ?? 0;
          const slot = limits.enter(ip);
          if (perIp > 0 && n >= perIp) assert.deepEqual(slot, { scope: "ip" });
          else if (cap > 0 && live >= cap) assert.deepEqual(slot, { scope: "total" });
          else {
            assert.equal(typeof slot, "function");
            slots.push({ ip, release: slot as InflightRelease, live: true });
            model.set(ip, n + 1);
            live++;
          }
        } else if (slots.length > 0) {
          const s = slots[op.pick % slots.length];
          s.release();
          if (s.live) {
            s.live = false;
            live--;
            const n = model.get(s.ip)! - 1;
            if (n === 0) model.delete(s.ip);
            else model.set(s.ip, n);
          }
        }
        assert.equal(limits.total, live);
        assert.ok(limits.total >= 0);
        if (cap > 0) assert.ok(limits.total <= cap);
        if (perIp > 0) {
          assert.equal(limits.trackedIps, model.size);
          for (const [ip, n] of model) {
            assert.equal(limits.count(ip), n);
            assert.ok(n > 0 && n <= perIp);
          }
        } else assert.equal(limits.trackedIps, 0);
      }
      for (const s of slots) s.release();
      assert.equal(limits.total, 0);
      assert.equal(limits.trackedIps, 0);
    }),
  );
});
