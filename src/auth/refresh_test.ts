import assert from "node:assert/strict";
import { manualTimers } from "../../tests/helpers/issuer.ts";
import {
  INITIAL_BACKOFF_MS,
  REFRESH_RETRY_BASE_MS,
  refreshLoop,
  retryDelay,
  singleFlight,
  unknownKidRefetch,
} from "./refresh.ts";

const MID = () => 0.5; // jitter factor exactly 1

Deno.test("singleFlight() shares one run between concurrent callers and starts anew after it", async () => {
  let runs = 0;
  let release!: () => void;
  const flight = singleFlight(() => {
    runs++;
    return new Promise<void>((r) => (release = r));
  });
  const a = flight.run();
  const b = flight.run();
  assert.equal(a, b);
  assert.equal(flight.inflight, a);
  release();
  await a;
  assert.equal(flight.inflight, undefined);
  const c = flight.run();
  release();
  await c;
  assert.equal(runs, 2);
});

Deno.test("singleFlight() forgets a failed run, so the next call retries", async () => {
  let runs = 0;
  const flight = singleFlight(
    () => (runs++ === 0 ? Promise.reject(new Error("down")) : Promise.resolve()),
  );
  await assert.rejects(flight.run(), /down/);
  assert.equal(flight.inflight, undefined);
  await flight.run();
  assert.equal(runs, 2);
});

Deno.test("retryDelay() backs off from the initial base before a load, from the refresh base after", () => {
  const initial = [1, 2, 3].map((attempt) =>
    retryDelay({ loaded: false, attempt, refreshIntervalMs: 3_600_000, random: MID })
  );
  assert.deepEqual(initial, [INITIAL_BACKOFF_MS, 2 * INITIAL_BACKOFF_MS, 4 * INITIAL_BACKOFF_MS]);
  const refresh = [1, 2].map((attempt) =>
    retryDelay({ loaded: true, attempt, refreshIntervalMs: 3_600_000, random: MID })
  );
  assert.deepEqual(refresh, [REFRESH_RETRY_BASE_MS, 2 * REFRESH_RETRY_BASE_MS]);
  // Never longer than the refresh interval itself.
  assert.equal(
    retryDelay({ loaded: true, attempt: 30, refreshIntervalMs: 60_000, random: MID }),
    60_000,
  );
});

Deno.test("refreshLoop() loads at once, then every interval; after failures it retries with backoff", async () => {
  const timers = manualTimers();
  const outcomes = [true, false, false, true];
  const failures: [number, number][] = [];
  let loaded = false;
  const loop = refreshLoop({
    load: () => {
      const ok = outcomes.shift();
      if (!ok) return Promise.reject(new Error("down"));
      loaded = true;
      return Promise.resolve();
    },
    loaded: () => loaded,
    refreshIntervalMs: 60_000,
    random: MID,
    timers,
    onFailure: (_err, attempt, retryInMs) => failures.push([attempt, retryInMs]),
  });
  loop.start();
  for (let i = 0; i < 4; i++) await timers.fire();
  assert.deepEqual(timers.delays, [0, 60_000, 5_000, 10_000, 60_000]);
  assert.deepEqual(failures, [[1, 5_000], [2, 10_000]]);
  loop.close();
  assert.equal(timers.pending, 0);
});

Deno.test("refreshLoop() schedules nothing once closed, even when a load in flight settles", async () => {
  const timers = manualTimers();
  let release!: () => void;
  const loop = refreshLoop({
    load: () => new Promise<void>((r) => (release = r)),
    loaded: () => false,
    refreshIntervalMs: 60_000,
    random: MID,
    timers,
    onFailure: () => assert.fail("no failure expected"),
  });
  loop.start();
  const tick = timers.fire();
  loop.close();
  release();
  await tick;
  assert.equal(timers.pending, 0);
});

Deno.test("unknownKidRefetch() fetches at most once per interval, joins a fetch in flight, never rejects", async (t) => {
  const setup = (overrides: { active?: boolean; lastFetchStartMs?: number } = {}) => {
    const calls = { runs: 0, starts: [] as string[], failures: [] as unknown[] };
    let fail = false;
    const flight = singleFlight(() => {
      calls.runs++;
      return fail ? Promise.reject(new Error("down")) : Promise.resolve();
    });
    const refetch = unknownKidRefetch({
      flight,
      minIntervalMs: 1_000,
      now: () => 10_000,
      lastFetchStartMs: () => overrides.lastFetchStartMs ?? -Infinity,
      active: () => overrides.active ?? true,
      onStart: (kid) => calls.starts.push(kid),
      onFailure: (e) => calls.failures.push(e),
    });
    return { calls, refetch, flight, failNext: () => (fail = true) };
  };
  await t.step("fetches when the last fetch is older than the interval", async () => {
    const { calls, refetch } = setup({ lastFetchStartMs: 8_999 });
    await refetch("k1");
    assert.equal(calls.runs, 1);
    assert.deepEqual(calls.starts, ["k1"]);
  });
  await t.step("does nothing within the interval", async () => {
    const { calls, refetch } = setup({ lastFetchStartMs: 9_500 });
    await refetch("k1");
    assert.equal(calls.runs, 0);
  });
  await t.step("does nothing before the first load or after close", async () => {
    const { calls, refetch } = setup({ active: false });
    await refetch("k1");
    assert.equal(calls.runs, 0);
  });
  await t.step("reports a failure instead of rejecting", async () => {
    const { calls, refetch, failNext } = setup();
    failNext();
    await refetch("k1");
    assert.equal(calls.failures.length, 1);
  });
  await t.step("joins a fetch in flight without starting or reporting another", async () => {
    const { calls, refetch, flight } = setup();
    const running = flight.run();
    await refetch("k1");
    await running;
    assert.equal(calls.runs, 1);
    assert.deepEqual(calls.starts, []);
  });
});
