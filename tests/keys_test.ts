/**
 * Discovery and key-set lifecycle over real sockets, against the test issuer: discovery of root
 * and path issuers, rotation, the unknown-kid refetch under load, and stale-on-error.
 */
import { deepStrictEqual as assertEquals, equal, ok as assert, rejects } from "node:assert/strict";
import type { Config } from "../src/config/mod.ts";
import { GateError } from "../src/errors.ts";
import { createKeyStore, createVerifier, type KeyStoreDeps } from "../src/auth/mod.ts";
import { createLogger, createMemorySink } from "../src/ops/mod.ts";
import {
  configFor,
  generateTestKey,
  manualTimers,
  startTestIssuer,
  type TestIssuer,
} from "./helpers/issuer.ts";

function gate(config: Config, deps: Partial<KeyStoreDeps> = {}) {
  const sink = createMemorySink();
  const log = createLogger({ sink, level: "debug" });
  const keys = createKeyStore(config, { log, ...deps });
  const verifier = createVerifier(config, keys, { now: deps.now, log });
  const lines = () => sink.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { keys, verifier, lines, sink };
}

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    assert(e instanceof GateError);
    return `${e.code}/${e.reason}`;
  }
}

Deno.test("key store discovers a root issuer over RFC 8414 and verifies its tokens", async () => {
  await using as = await startTestIssuer();
  const g = gate(configFor(as.issuer));
  await using keys = g.keys;
  keys.start();
  equal(keys.ready, false, "start() does not block");
  await keys.whenReady();
  equal(keys.issuer, as.issuer);
  equal(keys.jwksUri, as.jwksUri);
  assertEquals(as.requests.slice(0, 2), [
    "/.well-known/oauth-authorization-server",
    new URL(as.jwksUri).pathname,
  ]);
  const v = await g.verifier.verify(await as.mint({ scope: "read" }));
  equal(v.sub, "user-1");
  const loaded = g.lines().find((l) => l.msg === "key set loaded")!;
  assertEquals([loaded.level, loaded.keys, loaded.kids, loaded.jwks_uri], [
    "info",
    1,
    [as.current.kid],
    as.jwksUri,
  ]);
});

Deno.test("key store discovers a Keycloak-style path issuer through each metadata form", async (t) => {
  const forms = ["rfc8414", "oidc", "oidc-inserted"] as const;
  for (const discovery of forms) {
    await t.step(discovery, async () => {
      await using as = await startTestIssuer({ path: "/realms/test", discovery, alg: "ES256" });
      const g = gate(configFor(as.issuer));
      await using keys = g.keys;
      await keys.refresh();
      equal(keys.issuer, `${as.origin}/realms/test`);
      equal((await g.verifier.verify(await as.mint())).sub, "user-1");
      equal(as.discoveryFetchCount, 1);
    });
  }
});

Deno.test("key store stays not ready when the metadata issuer differs, logs what to set, and retries", async () => {
  await using as = await startTestIssuer({
    path: "/realms/test",
    publishedIssuer: "https://elsewhere.example/realms/test",
  });
  const timers = manualTimers();
  const g = gate(configFor(as.issuer), { timers, random: () => 0.5 });
  await using keys = g.keys;
  keys.start();
  await timers.fire();
  equal(keys.ready, false);
  equal(keys.issuer, undefined);
  const line = g.lines().find((l) => l.msg === "key set load failed")!;
  equal(line.level, "error");
  const text = line.reason as string;
  assert(text.includes('has issuer "https://elsewhere.example/realms/test"'), text);
  assert(text.includes('set AUTHORIZATION_SERVER="https://elsewhere.example/realms/test"'), text);
  await timers.fire();
  equal(keys.ready, false);
  assertEquals(timers.delays, [0, 500, 1000]);
  equal(as.discoveryFetchCount, 2);
  equal(as.jwksFetchCount, 0);
});

Deno.test("key store accepts a rotated key without restart", async (t) => {
  await using as = await startTestIssuer();
  const clock = { now: Date.now() };
  const g = gate(configFor(as.issuer, { jwksMinRefreshIntervalMs: 30_000 }), {
    now: () => clock.now,
  });
  await using keys = g.keys;
  await keys.refresh();
  const oldToken = await as.mint();
  equal((await g.verifier.verify(oldToken)).sub, "user-1");

  await t.step("new kid published alongside the old one", async () => {
    await as.rotate({ keepOld: true });
    clock.now += 30_000;
    equal((await g.verifier.verify(await as.mint())).sub, "user-1");
    equal(as.jwksFetchCount, 2);
    equal((await g.verifier.verify(oldToken)).sub, "user-1");
  });
  await t.step("old key withdrawn: its cached token is rejected", async () => {
    await as.rotate();
    clock.now += 30_000;
    equal((await g.verifier.verify(await as.mint())).sub, "user-1");
    equal(as.jwksFetchCount, 3);
    equal(await reason(g.verifier.verify(oldToken)), "invalid_token/unknown_kid");
  });
  await t.step("to another key type", async () => {
    await as.rotate({ alg: "EdDSA" });
    clock.now += 30_000;
    equal((await g.verifier.verify(await as.mint())).sub, "user-1");
  });
});

Deno.test("200 concurrent tokens with random unknown kids cause at most one refetch", async () => {
  await using as = await startTestIssuer();
  const clock = { now: Date.now() };
  const g = gate(configFor(as.issuer), { now: () => clock.now });
  await using keys = g.keys;
  await keys.refresh();
  clock.now += 60_000;
  const strangers = await Promise.all(
    Array.from({ length: 4 }, () => generateTestKey("ES256")),
  );
  const tokens = await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      as.mint({}, {
        key: strangers[i % 4],
        header: { kid: crypto.randomUUID() },
      })),
  );
  const results = await Promise.all(tokens.map((t) => reason(g.verifier.verify(t))));
  assert(results.every((r) => r === "invalid_token/unknown_kid"));
  assert(as.jwksFetchCount <= 2, `fetched ${as.jwksFetchCount} times`);
  equal(as.jwksFetchCount, 2);
});

async function warm(as: TestIssuer) {
  const timers = manualTimers();
  const g = gate(configFor(as.issuer), { timers, random: () => 0.5, fetchTimeoutMs: 1000 });
  g.keys.start();
  await timers.fire();
  equal(g.keys.ready, true);
  return { ...g, timers };
}

Deno.test("key store keeps its keys when the authorization server goes away", async (t) => {
  for (const mode of ["refused", "503"] as const) {
    await t.step(mode, async () => {
      await using as = await startTestIssuer();
      const g = await warm(as);
      await using _keys = g.keys;
      const token = await as.mint();
      await as.down(mode);
      await g.timers.fire();
      equal(g.keys.ready, true);
      equal((await g.verifier.verify(token)).sub, "user-1");
      equal((await g.verifier.verify(await as.mint())).sub, "user-1");
      const failed = g.lines().filter((l) => l.msg === "key set refresh failed");
      equal(failed.length, 1);
      equal(failed[0].level, "warn");
      equal(failed[0].keys, 1);
      assert(
        mode === "503"
          ? failed[0].reason === `HTTP 503 fetching key set "${as.jwksUri}"`
          : (failed[0].reason as string).startsWith(`Failed fetching key set "${as.jwksUri}"`),
        failed[0].reason as string,
      );
      equal(g.keys.stats().refreshErrors, 1);
      await as.up();
      await g.timers.fire();
      equal(g.keys.stats().keys, 1);
      assertEquals(g.timers.delays, [0, 600_000, 5000, 600_000]);
    });
  }
});

Deno.test("key store keeps its keys when the key set turns bad", async (t) => {
  const cases = [
    ["garbage", (as: TestIssuer) => as.serveGarbage(), "Invalid JSON in key set"],
    ["oversized", (as: TestIssuer) => as.serveOversized(), "Response too large ("],
    [
      "oversized without Content-Length",
      (as: TestIssuer) => as.jwksMode("oversized-chunked"),
      "Response too large (over 1048576 bytes)",
    ],
    [
      "no usable key",
      (as: TestIssuer) => as.setJwks({ keys: [{ kty: "oct", k: "AA" }] }),
      "Invalid key set",
    ],
  ] as const;
  for (const [name, spoil, message] of cases) {
    await t.step(name, async () => {
      await using as = await startTestIssuer({ alg: "PS256" });
      const g = await warm(as);
      await using _keys = g.keys;
      spoil(as);
      await g.timers.fire();
      const failed = g.lines().find((l) => l.msg === "key set refresh failed")!;
      assert((failed.reason as string).startsWith(message), failed.reason as string);
      equal((await g.verifier.verify(await as.mint())).sub, "user-1");
    });
  }
});

Deno.test("key store is not ready until the first load, and retries with backoff", async (t) => {
  for (const mode of ["503", "refused"] as const) {
    await t.step(mode, async () => {
      await using as = await startTestIssuer();
      const timers = manualTimers();
      const g = gate(configFor(as.issuer, { jwksUri: as.jwksUri }), {
        timers,
        random: () => 0.5,
      });
      await using keys = g.keys;
      await as.down(mode);
      keys.start();
      await timers.fire();
      await timers.fire();
      await timers.fire();
      equal(keys.ready, false);
      equal(keys.stats().keys, 0);
      assertEquals(timers.delays, [0, 500, 1000, 2000]);
      equal(g.lines().filter((l) => l.msg === "key set load failed").length, 3);
      await as.up();
      const ready = keys.whenReady();
      await timers.fire();
      await ready;
      equal(keys.ready, true);
      equal(timers.delays.at(-1), 600_000);
      equal((await g.verifier.verify(await as.mint())).sub, "user-1");
    });
  }
});

Deno.test("key store gives up on a stalled key set fetch after its deadline", async () => {
  await using as = await startTestIssuer();
  as.jwksMode("stall");
  const g = gate(configFor(as.issuer, { jwksUri: as.jwksUri }), { fetchTimeoutMs: 100 });
  await using keys = g.keys;
  await rejects(keys.refresh(), { message: `Timed out fetching key set "${as.jwksUri}"` });
  equal(keys.ready, false);
});
