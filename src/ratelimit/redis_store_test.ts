import assert from "node:assert/strict";
import { createLogger, createMemorySink } from "../ops/mod.ts";
import { announceSkip, startRedis } from "../../tests/helpers/redis.ts";
import { closedPort } from "../../tests/helpers/net.ts";
import { connectRedisBuckets, createSharedLimiter, type RedisBuckets } from "./mod.ts";

const skipOwn = announceSkip("src/ratelimit/redis_store_test.ts", { own: true });

async function waitReady(store: RedisBuckets): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!store.ready) {
    assert.ok(Date.now() < deadline, "the store connected");
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("createSharedLimiter() fails open at once, counted, while the store is unreachable", async () => {
  const sink = createMemorySink();
  const store = connectRedisBuckets({
    url: `redis://:secret-pw@127.0.0.1:${closedPort()}`,
    log: createLogger({ sink }),
  });
  try {
    let opened = 0;
    const limiter = createSharedLimiter({
      store,
      kind: "sub",
      scope: "https://mcp.example.com/mcp",
      rps: 0.01,
      burst: 1,
      timeoutMs: 10_000,
      log: createLogger({ sink }),
      onFailOpen: () => opened++,
    });
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) assert.equal(await limiter.take("alice"), 0);
    assert.ok(performance.now() - t0 < 1_000, "no wait for the budget on a closed connection");
    assert.equal(opened, 3);
    assert.equal(limiter.peek("alice"), 0);
  } finally {
    await store.close();
  }
  assert.ok(!sink.text().includes("secret-pw"), "the password reaches the log");
});

Deno.test({
  name:
    "createSharedLimiter(): peek() knows a bucket this replica emptied; waiting calls are capped",
  ignore: skipOwn,
  async fn() {
    await using redis = await startRedis({ own: true });
    const log = createLogger({ sink: createMemorySink() });
    const store = connectRedisBuckets({ url: redis.url, log });
    try {
      await waitReady(store);
      let opened = 0;
      const limiter = createSharedLimiter({
        store,
        kind: "ip",
        scope: "https://mcp.example.com/mcp",
        rps: 0.1,
        burst: 2,
        timeoutMs: 5_000,
        log,
        maxPending: 2,
        onFailOpen: () => opened++,
      });
      assert.equal(await limiter.take("192.0.2.1"), 0);
      assert.equal(limiter.peek("192.0.2.1"), 0, "one token left");
      assert.equal(await limiter.take("192.0.2.1"), 0);
      // The take that emptied it said for how long: 10 s at 0.1 rps.
      assert.equal(limiter.peek("192.0.2.1"), 10);
      assert.equal(await limiter.take("192.0.2.1"), 10);
      assert.equal(limiter.peek("192.0.2.2"), 0, "another address is unknown, so not refused");

      redis.pause();
      try {
        const waiting = [limiter.take("a"), limiter.take("b")];
        // A third call while two wait is admitted at once, without being sent.
        const t0 = performance.now();
        assert.equal(await limiter.take("c"), 0);
        assert.ok(performance.now() - t0 < 1_000);
        assert.equal(opened, 1);
        redis.resume();
        assert.deepEqual(await Promise.all(waiting), [0, 0]);
        assert.equal(opened, 1, "answered within the budget once resumed");
      } finally {
        redis.resume();
      }
    } finally {
      await store.close();
    }
  },
});
