/**
 * RATE_LIMIT_REDIS_URL against a real Redis/Valkey (docs/controls.md, "Rate limiting across
 * replicas"): gates sharing one server enforce one limit, a 429's Retry-After comes from the
 * shared bucket, a server that dies mid-load or is down at start never fails a request (fail
 * open, counted in /metrics) and is used again once back, and its password is never logged.
 * Skipped, with a message, where no server binary is installed (CI installs one).
 */
import assert from "node:assert/strict";
import { startTestIssuer, type TestIssuer } from "./helpers/issuer.ts";
import { startUpstream, type Upstream } from "./helpers/upstream.ts";
import { startGate, type TestGate } from "./helpers/gate.ts";
import { gateEnv, ready, RESOURCE } from "./helpers/rig.ts";
import { announceSkip, redisTlsFiles, startRedis } from "./helpers/redis.ts";
import { closedPort } from "./helpers/net.ts";
import { spawnGate } from "./helpers/process.ts";
import { HAVE_OPENSSL } from "./helpers/tls.ts";

const skip = announceSkip("tests/redis_rate_limit_test.ts");
const skipOwn = announceSkip("tests/redis_rate_limit_test.ts (tests that stop the server)", {
  own: true,
});
/**
 * The budget where a test needs Redis's decision: generous, so that a loaded test machine is not
 * mistaken for an outage (the default budget's fail-open has its own test).
 */
const BUDGET = { RATE_LIMIT_REDIS_TIMEOUT: "5s" };

/** An issuer and an upstream that several gates share. */
async function backends(): Promise<{ issuer: TestIssuer; upstream: Upstream } & AsyncDisposable> {
  const issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  const upstream = await startUpstream();
  return {
    issuer,
    upstream,
    async [Symbol.asyncDispose]() {
      await upstream.close();
      await issuer.close();
    },
  };
}

/** A ready gate in front of `b` with `env`. */
async function gateFor(
  b: { issuer: TestIssuer; upstream: Upstream },
  env: Record<string, string>,
): Promise<TestGate> {
  const gate = await startGate(gateEnv(b.issuer, b.upstream, env));
  try {
    await ready(gate);
  } catch (err) {
    await gate.close();
    throw err;
  }
  return gate;
}

/** GET /mcp with `token`: status and Retry-After, body read. */
async function call(
  gate: TestGate,
  token?: string,
): Promise<{ status: number; retryAfter: string | null }> {
  const res = await fetch(`${gate.origin}/mcp`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  await res.arrayBuffer();
  return { status: res.status, retryAfter: res.headers.get("retry-after") };
}

/** The gate's mcpgate_rate_limit_redis_failopen_total, read from its metrics listener. */
async function failOpens(gate: TestGate): Promise<number> {
  const listening = await gate.waitForLog((l) => l.msg === "listening");
  const res = await fetch(`http://${listening.metrics_addr}/metrics`);
  const m = /^mcpgate_rate_limit_redis_failopen_total (\d+)$/m.exec(await res.text());
  assert.ok(m, "the fail-open counter is exposed");
  return Number(m[1]);
}

/** Keys the shared limiter wrote. */
async function bucketKeys(redis: { command(...a: string[]): Promise<string> }): Promise<number> {
  const reply = await redis.command("KEYS", "mcpgate:rl:v1:*");
  return Number(/^\*(\d+)/.exec(reply)?.[1] ?? "0");
}

Deno.test({
  name: "redis rate limit: two gates sharing one server enforce one limit",
  ignore: skip,
  async fn() {
    await using redis = await startRedis();
    await redis.command("FLUSHALL");
    await using b = await backends();
    // 0.05 rps: no token comes back during the test, so the sequence is deterministic.
    const env = {
      ...BUDGET,
      RATE_LIMIT_RPS: "0.05",
      RATE_LIMIT_BURST: "4",
      RATE_LIMIT_REDIS_URL: redis.url,
    };
    await using one = await gateFor(b, env);
    await using two = await gateFor(b, env);
    const alice = await b.issuer.mint({ sub: "alice" });
    const statuses: number[] = [];
    for (const gate of [one, two, one, two, one, two]) {
      statuses.push((await call(gate, alice)).status);
    }
    // In memory, each gate would have let 4 through: 8 in all.
    assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429]);
    assert.equal(b.upstream.requests.length, 4);
    // Another subject has its own bucket.
    assert.equal((await call(two, await b.issuer.mint({ sub: "bob" }))).status, 200);
    assert.equal(await bucketKeys(redis), 2, "one key per subject, none per request");
  },
});

Deno.test({
  name: "redis rate limit: a 429's Retry-After comes from the shared bucket",
  ignore: skip,
  async fn() {
    await using redis = await startRedis();
    await redis.command("FLUSHALL");
    await using b = await backends();
    const env = {
      ...BUDGET,
      RATE_LIMIT_RPS: "0.1",
      RATE_LIMIT_BURST: "1",
      RATE_LIMIT_REDIS_URL: redis.url,
    };
    await using one = await gateFor(b, env);
    await using two = await gateFor(b, env);
    const carol = await b.issuer.mint({ sub: "carol" });
    assert.equal((await call(one, carol)).status, 200);
    // The second gate never saw carol: only the shared bucket knows she waits 10 s.
    const refused = await call(two, carol);
    assert.equal(refused.status, 429);
    const wait = Number(refused.retryAfter);
    assert.ok(wait >= 8 && wait <= 10, `Retry-After ${refused.retryAfter}`);

    // The client-address bucket is shared as well: failures through one gate drain it for both,
    // and a replica that learnt it is empty refuses before any signature work.
    const ipEnv = { ...env, RATE_LIMIT_BURST: "2" };
    await using three = await gateFor(b, ipEnv);
    await using four = await gateFor(b, ipEnv);
    assert.deepEqual([(await call(three)).status, (await call(three)).status], [401, 401]);
    const next = await call(four);
    assert.equal(next.status, 429);
    assert.ok(Number(next.retryAfter) >= 1);
    // Now four knows: even a valid token is refused at once.
    assert.equal((await call(four, await b.issuer.mint({ sub: "dave" }))).status, 429);
  },
});

Deno.test({
  name:
    "redis rate limit: the server killed mid-load fails no request, is counted, and is used again once back",
  ignore: skipOwn,
  async fn() {
    await using redis = await startRedis({ own: true });
    await using b = await backends();
    // Generous limits: every request should pass; what matters is that each one is answered.
    await using gate = await gateFor(b, {
      RATE_LIMIT_RPS: "1",
      RATE_LIMIT_BURST: "1000000",
      RATE_LIMIT_REDIS_URL: redis.url,
      ...BUDGET,
      METRICS_ADDR: "127.0.0.1:0",
    });
    await gate.waitForLog((l) => l.msg === "rate limit store connected", 20_000);
    const token = await b.issuer.mint({ sub: "loaded" });
    const statuses = new Map<number | string, number>();
    let stop = false;
    const worker = async () => {
      while (!stop) {
        let key: number | string;
        try {
          key = (await call(gate, token)).status;
        } catch (err) {
          key = String(err);
        }
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
      }
    };
    const workers = Array.from({ length: 6 }, worker);
    let before: number;
    try {
      await new Promise((r) => setTimeout(r, 700));
      before = await failOpens(gate);
      await redis.kill();
      await new Promise((r) => setTimeout(r, 1_200));
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    assert.equal(before, 0, "no fail-open while the server answers");
    assert.deepEqual([...statuses.keys()], [200], `every request answered 200: ${[...statuses]}`);
    const opened = await failOpens(gate);
    assert.ok(opened > 0, "requests admitted while the server was down are counted");
    await gate.waitForLog((l) => l.msg === "rate limit store unavailable, admitting requests");

    await redis.restart();
    // Reconnect backoff is at most 5 s; the second "connected" line is the reconnect.
    const deadline = Date.now() + 20_000;
    while (gate.logs().filter((l) => l.msg === "rate limit store connected").length < 2) {
      assert.ok(Date.now() < deadline, "the gate reconnected");
      await new Promise((r) => setTimeout(r, 100));
    }
    for (let i = 0; i < 20; i++) assert.equal((await call(gate, token)).status, 200);
    assert.equal(await failOpens(gate), opened, "no fail-open once the server is back");
    assert.equal(await bucketKeys(redis), 1, "the bucket lives in the restarted server");
  },
});

Deno.test({
  name: "redis rate limit: a server that stops answering costs a request its budget, no more",
  ignore: skipOwn,
  async fn() {
    await using redis = await startRedis({ own: true });
    await using b = await backends();
    await using gate = await gateFor(b, {
      RATE_LIMIT_RPS: "0.05",
      RATE_LIMIT_BURST: "1",
      RATE_LIMIT_REDIS_URL: redis.url,
      RATE_LIMIT_REDIS_TIMEOUT: "300ms",
      METRICS_ADDR: "127.0.0.1:0",
    });
    await gate.waitForLog((l) => l.msg === "rate limit store connected", 20_000);
    const gina = await b.issuer.mint({ sub: "gina" });
    assert.equal((await call(gate, gina)).status, 200);
    redis.pause();
    try {
      // The connection stays open but nothing answers: each request waits out the budget, then
      // is admitted although the bucket is empty.
      for (let i = 0; i < 2; i++) {
        const t0 = performance.now();
        assert.equal((await call(gate, gina)).status, 200);
        const ms = performance.now() - t0;
        assert.ok(ms >= 250 && ms < 5_000, `answered after ${Math.round(ms)} ms`);
      }
      assert.equal(await failOpens(gate), 2);
    } finally {
      redis.resume();
    }
    // Answers again: the bucket is still empty.
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (status !== 429 && Date.now() < deadline) status = (await call(gate, gina)).status;
    assert.equal(status, 429);
  },
});

Deno.test({
  name: "redis rate limit: a server down at start stops nothing, and limits once it is up",
  ignore: skipOwn,
  async fn() {
    const port = closedPort();
    await using b = await backends();
    await using gate = await gateFor(b, {
      RATE_LIMIT_RPS: "0.05",
      RATE_LIMIT_BURST: "2",
      RATE_LIMIT_REDIS_URL: `redis://127.0.0.1:${port}`,
      ...BUDGET,
      METRICS_ADDR: "127.0.0.1:0",
    });
    // Ready without the server (gateFor waited for /readyz), which /readyz reports without
    // deciding on it; requests pass, counted.
    const readyz = await fetch(`${gate.origin}/readyz`);
    assert.equal(readyz.status, 200);
    assert.deepEqual(await readyz.json(), { status: "ok", rate_limit_store: "unavailable" });
    const erin = await b.issuer.mint({ sub: "erin" });
    for (let i = 0; i < 4; i++) assert.equal((await call(gate, erin)).status, 200);
    assert.equal(await failOpens(gate), 4);

    await using redis = await startRedis({ own: true, port });
    await gate.waitForLog((l) => l.msg === "rate limit store connected", 20_000);
    const after = await fetch(`${gate.origin}/readyz`);
    assert.deepEqual(await after.json(), { status: "ok", rate_limit_store: "connected" });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await call(gate, erin)).status);
    assert.deepEqual(statuses, [200, 200, 429]);
    assert.equal(await failOpens(gate), 4);
    assert.equal(await bucketKeys(redis), 1);
  },
});

Deno.test({
  name: "redis rate limit: the URL's password never reaches the log, right or wrong",
  ignore: skipOwn,
  async fn() {
    const password = "pw-must-not-be-logged-7f3a";
    await using redis = await startRedis({ own: true, password });
    await using b = await backends();
    const env = { ...BUDGET, RATE_LIMIT_RPS: "0.05", RATE_LIMIT_BURST: "1" };
    await using good = await gateFor(b, {
      ...env,
      RATE_LIMIT_REDIS_URL: `redis://:${password}@127.0.0.1:${redis.port}`,
    });
    await good.waitForLog((l) => l.msg === "rate limit store connected", 20_000);
    const frank = await b.issuer.mint({ sub: "frank" });
    assert.deepEqual([(await call(good, frank)).status, (await call(good, frank)).status], [
      200,
      429,
    ]);
    const wrong = `${password}-wrong`;
    await using bad = await gateFor(b, {
      ...env,
      RATE_LIMIT_REDIS_URL: `redis://gate:${wrong}@127.0.0.1:${redis.port}`,
    });
    await bad.waitForLog(
      (l) => l.msg === "rate limit store unavailable, admitting requests",
      20_000,
    );
    // Refused by the server: fail open.
    assert.equal((await call(bad, frank)).status, 200);
    for (const gate of [good, bad]) {
      const text = gate.logText();
      assert.ok(!text.includes(password), "the password appears in the log");
      assert.ok(!text.includes("must-not-be-logged"), "part of the password appears in the log");
    }
    const start = good.logs().find((l) => l.msg === "starting") as {
      config: Record<string, unknown>;
    };
    assert.equal(start.config.rateLimitRedisUrl, `redis://[redacted]@127.0.0.1:${redis.port}`);
  },
});

Deno.test({
  name:
    "redis rate limit: rediss:// verifies the server against DENO_CERT and refuses one it does not trust",
  ignore: skipOwn || !HAVE_OPENSSL,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const tls = await redisTlsFiles(dir);
      await using redis = await startRedis({ own: true, tls });
      assert.match(redis.url, /^rediss:/);
      await using b = await backends();
      // A child process: DENO_CERT is read by the runtime at start, as an operator would set it.
      const env = {
        ...gateEnv(b.issuer, b.upstream, {
          ...BUDGET,
          RATE_LIMIT_RPS: "0.05",
          RATE_LIMIT_BURST: "1",
          RATE_LIMIT_REDIS_URL: redis.url,
        }),
        LOG_LEVEL: "info",
      };
      await using trusted = await spawnGate({ ...env, DENO_CERT: tls.ca });
      await trusted.waitForLog((l) => l.msg === "rate limit store connected", 20_000);
      await using untrusted = await spawnGate(env);
      const refused = await untrusted.waitForLog(
        (l) => l.msg === "rate limit store unavailable, admitting requests",
        20_000,
      );
      assert.match(String(refused.error), /certificate/i);
      const henry = await b.issuer.mint({ sub: "henry" });
      const get = async (port: number) => {
        const deadline = Date.now() + 20_000;
        while (true) {
          const res = await fetch(`http://127.0.0.1:${port}/mcp`, {
            headers: { authorization: `Bearer ${henry}` },
          });
          await res.arrayBuffer();
          if (res.status !== 503 || Date.now() > deadline) return res.status;
          await new Promise((r) => setTimeout(r, 100)); // key set still loading
        }
      };
      // Over TLS the bucket is shared and enforced; the gate that cannot verify the server
      // admits (fail open) rather than talk to it unverified.
      assert.deepEqual([await get(trusted.port), await get(trusted.port)], [200, 429]);
      assert.equal(await get(untrusted.port), 200);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
