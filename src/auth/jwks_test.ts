import { deepStrictEqual as assertEquals, equal, ok as assert, rejects } from "node:assert/strict";
import type { Config } from "../config/mod.ts";
import {
  backoffDelay,
  createKeyStore,
  createKeyStores,
  discoveryUrls,
  importKeySet,
  isAcceptableKeyUrl,
  jittered,
  type KeyStoreDeps,
} from "./jwks.ts";
import { createLogger, createMemorySink } from "../ops/mod.ts";
import {
  configFor,
  generateTestKey,
  manualTimers,
  type TestKey,
} from "../../tests/helpers/issuer.ts";

const AS = "https://auth.example.com/realms/test";
const JWKS = "https://auth.example.com/realms/test/certs";

Deno.test("discoveryUrls() inserts RFC 8414 well-known before the path, then tries OIDC forms", async (t) => {
  const cases: [string, string[]][] = [
    ["https://as.example", [
      "https://as.example/.well-known/oauth-authorization-server",
      "https://as.example/.well-known/openid-configuration",
    ]],
    ["https://as.example/", [
      "https://as.example/.well-known/oauth-authorization-server",
      "https://as.example/.well-known/openid-configuration",
    ]],
    ["https://as.example/realms/x", [
      "https://as.example/.well-known/oauth-authorization-server/realms/x",
      "https://as.example/realms/x/.well-known/openid-configuration",
      "https://as.example/.well-known/openid-configuration/realms/x",
    ]],
    ["https://as.example/application/o/app/", [
      "https://as.example/.well-known/oauth-authorization-server/application/o/app",
      "https://as.example/application/o/app/.well-known/openid-configuration",
      "https://as.example/.well-known/openid-configuration/application/o/app",
    ]],
    ["http://127.0.0.1:8080/t", [
      "http://127.0.0.1:8080/.well-known/oauth-authorization-server/t",
      "http://127.0.0.1:8080/t/.well-known/openid-configuration",
      "http://127.0.0.1:8080/.well-known/openid-configuration/t",
    ]],
  ];
  for (const [issuer, want] of cases) {
    await t.step(issuer, () => assertEquals(discoveryUrls(issuer), want));
  }
});

Deno.test("isAcceptableKeyUrl() wants https, or http on a loopback host", async (t) => {
  const cases: [string, boolean][] = [
    ["https://as.example/jwks", true],
    ["http://127.0.0.1:9000/jwks", true],
    ["http://127.1.2.3/jwks", true],
    ["http://localhost/jwks", true],
    ["http://[::1]:80/jwks", true],
    ["http://as.example/jwks", false],
    ["http://10.0.0.1/jwks", false],
    ["http://127.0.0.1.evil.example/jwks", false],
    ["ftp://as.example/jwks", false],
    ["file:///etc/jwks", false],
    ["not a url", false],
  ];
  for (const [url, want] of cases) {
    await t.step(`${url} -> ${want}`, () => equal(isAcceptableKeyUrl(url), want));
  }
});

Deno.test("jittered() stays within ±10 % of the base", async (t) => {
  const cases: [number, number][] = [[0, 540_000], [0.5, 600_000], [0.999999, 660_000]];
  for (const [r, want] of cases) {
    await t.step(`random ${r}`, () => equal(jittered(600_000, () => r), want));
  }
});

Deno.test("backoffDelay() doubles from the base up to the cap", () => {
  const delays = [1, 2, 3, 4, 5, 6, 7, 8, 100].map((attempt) =>
    backoffDelay({ attempt, baseMs: 500, maxMs: 30_000, random: () => 0.5 })
  );
  assertEquals(delays, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
});

let rsa: TestKey, ec: TestKey, ed: TestKey, small: CryptoKeyPair;
async function keys() {
  rsa ??= await generateTestKey("RS256");
  ec ??= await generateTestKey("ES256");
  ed ??= await generateTestKey("EdDSA");
  small ??= await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 1024,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  return { rsa, ec, ed, small };
}

const ALL_ALGS = configFor(AS).allowedAlgs;

Deno.test("importKeySet() skips keys it must not use and says why", async (t) => {
  const k = await keys();
  const smallJwk = await crypto.subtle.exportKey("jwk", k.small.publicKey);
  const cases: [string, Record<string, unknown>, string][] = [
    ["symmetric", { kty: "oct", k: "c2VjcmV0", kid: "s" }, "symmetric key"],
    ["encryption key", { ...k.rsa.publicJwk, use: "enc" }, '"use" is "enc"'],
    [
      "key_ops without verify",
      { ...k.rsa.publicJwk, key_ops: ["encrypt"] },
      '"key_ops" does not include "verify"',
    ],
    [
      "EC key claiming RS256",
      { ...k.ec.publicJwk, alg: "RS256" },
      'no allowed algorithm for kty "EC"',
    ],
    [
      "RSA key claiming HS256",
      { ...k.rsa.publicJwk, alg: "HS256" },
      'no allowed algorithm for kty "RSA"',
    ],
    ["unknown curve", { ...k.ec.publicJwk, crv: "secp256k1" }, 'no allowed algorithm for kty "EC"'],
    ["missing members", { kty: "RSA", n: "AQAB" }, "missing key members"],
    ["RSA 1024", { ...smallJwk, kid: "small" }, "RSA key shorter than 2048 bits"],
    ["broken EC point", { ...k.ec.publicJwk, x: "AAAA" }, "import failed"],
  ];
  for (const [name, jwk, reason] of cases) {
    await t.step(name, async () => {
      const out = await importKeySet({ keys: [jwk, k.ed.publicJwk] }, { allowedAlgs: ALL_ALGS });
      equal(out.keys.length, 1);
      equal(out.keys[0].kid, k.ed.kid);
      equal(out.skipped.length, 1);
      assert(out.skipped[0].reason.startsWith(reason), out.skipped[0].reason);
    });
  }
});

Deno.test("importKeySet() limits each key to the allowed algorithms that fit it", async () => {
  const k = await keys();
  const { alg: _a, ...bareRsa } = k.rsa.publicJwk;
  const out = await importKeySet(
    { keys: [bareRsa, k.rsa.publicJwk, k.ec.publicJwk] },
    { allowedAlgs: ["RS256", "PS256", "ES256", "HS256", "none"] },
  );
  assertEquals(out.keys.map((key) => [...key.algs]), [["RS256", "PS256"], ["RS256"], ["ES256"]]);
  const onlyRs = await importKeySet({ keys: [k.rsa.publicJwk, k.ec.publicJwk] }, {
    allowedAlgs: ["RS256"],
  });
  equal(onlyRs.keys.length, 1);
  equal(onlyRs.skipped[0].kid, k.ec.kid);
});

Deno.test("importKeySet() imports public members only, even when the JWK carries private ones", async () => {
  const k = await keys();
  const { key_ops: _ops, ...priv } = await crypto.subtle.exportKey("jwk", k.ec.privateKey);
  assert(typeof priv.d === "string");
  const out = await importKeySet({ keys: [{ ...priv, kid: "p" }] }, { allowedAlgs: ALL_ALGS });
  equal(out.keys.length, 1);
  equal(out.keys[0].kid, "p");
});

Deno.test("importKeySet() fails on a document without a usable key", async (t) => {
  const k = await keys();
  const cases: [string, unknown][] = [
    ["null", null],
    ["array", [k.rsa.publicJwk]],
    ["no keys member", { key: [] }],
    ["keys not an array", { keys: {} }],
    ["empty keys", { keys: [] }],
    ["only a symmetric key", { keys: [{ kty: "oct", k: "AA" }] }],
    ["only non-objects", { keys: [1, "x", null] }],
  ];
  for (const [name, doc] of cases) {
    await t.step(name, async () => {
      try {
        await importKeySet(doc, { allowedAlgs: ALL_ALGS });
        assert(false, "expected an error");
      } catch (e) {
        assert((e as Error).message.startsWith("Invalid key set"), (e as Error).message);
      }
    });
  }
});

Deno.test("importKeySet() reuses the previous key object when the JWK is unchanged", async () => {
  const k = await keys();
  const first = await importKeySet({ keys: [k.rsa.publicJwk, k.ec.publicJwk] }, {
    allowedAlgs: ALL_ALGS,
  });
  const second = await importKeySet({ keys: [k.ec.publicJwk, k.ed.publicJwk] }, {
    allowedAlgs: ALL_ALGS,
    previous: first.keys,
  });
  equal(second.keys[0], first.keys[1]);
  assert(!first.keys.includes(second.keys[1]));
});

/** A fake fetch: a handler per URL, every call recorded. */
function fakeFetch(routes: Record<string, (init?: RequestInit) => Response | Promise<Response>>) {
  const calls: { url: string; init?: RequestInit }[] = [];
  const fn = ((input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    calls.push({ url, init });
    const route = routes[url];
    return Promise.resolve(route ? route(init) : new Response("nope", { status: 404 }));
  }) as typeof fetch;
  return { fn, calls };
}

const json = (body: unknown, init: ResponseInit = {}) =>
  new Response(JSON.stringify(body), { headers: { "content-type": "application/json" }, ...init });

function store(
  config: Config,
  deps: Partial<KeyStoreDeps> & { fetch: typeof fetch },
) {
  const sink = createMemorySink();
  const keys = createKeyStore(config, { log: createLogger({ sink }), ...deps });
  const lines = () => sink.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { keys, sink, lines };
}

Deno.test("createKeyStore() fetches the key set with redirect manual and a deadline signal", async () => {
  const k = await keys();
  const f = fakeFetch({ [JWKS]: () => json({ keys: [k.rsa.publicJwk] }) });
  await using s = store(configFor(AS, { jwksUri: JWKS }), { fetch: f.fn }).keys;
  await s.refresh();
  equal(f.calls.length, 1);
  equal(f.calls[0].init?.redirect, "manual");
  assert(f.calls[0].init?.signal instanceof AbortSignal);
  equal(s.ready, true);
  equal(s.issuer, AS);
  equal(s.jwksUri, JWKS);
  equal(s.keysFor(k.rsa.kid).length, 1);
  equal(s.keysFor("other").length, 0);
  equal(s.keysFor(undefined).length, 1);
});

Deno.test("createKeyStore() uses EXPECTED_ISSUER over AUTHORIZATION_SERVER", async () => {
  const k = await keys();
  const f = fakeFetch({ [JWKS]: () => json({ keys: [k.rsa.publicJwk] }) });
  await using s = store(configFor(AS, { jwksUri: JWKS, expectedIssuer: "https://iss" }), {
    fetch: f.fn,
  }).keys;
  equal(s.issuer, "https://iss");
});

Deno.test("createKeyStore() refuses bad key set responses and keeps the old keys", async (t) => {
  const k = await keys();
  let respond: () => Response = () => json({ keys: [k.rsa.publicJwk] });
  const f = fakeFetch({ [JWKS]: () => respond() });
  await using s = store(configFor(AS, { jwksUri: JWKS }), {
    fetch: f.fn,
    maxBodyBytes: 1000,
  }).keys;
  await s.refresh();
  const cases: [string, () => Response, string][] = [
    [
      "redirect",
      () => new Response(null, { status: 302, headers: { location: "https://evil.example/" } }),
      "Refused redirect (HTTP 302)",
    ],
    ["HTTP 500", () => new Response("oops", { status: 500 }), "HTTP 500 fetching key set"],
    ["not JSON", () => new Response("<html>"), "Invalid JSON in key set"],
    ["not a key set", () => json({ hello: 1 }), "Invalid key set"],
    [
      "only unusable keys",
      () => json({ keys: [{ kty: "oct", k: "AA" }] }),
      "Invalid key set: no usable",
    ],
    [
      "too large by Content-Length",
      () => json({ keys: [k.rsa.publicJwk], pad: "x".repeat(2000) }),
      "Response too large (",
    ],
    [
      "too large while streaming",
      () =>
        new Response(
          new ReadableStream({
            pull(c) {
              c.enqueue(new Uint8Array(600).fill(32));
            },
          }),
        ),
      "Response too large (over 1000 bytes)",
    ],
  ];
  for (const [name, r, message] of cases) {
    await t.step(name, async () => {
      respond = r;
      await rejects(
        s.refresh(),
        (e: Error) => e.message.startsWith(message) || e.message.includes(message),
      );
      equal(s.ready, true);
      equal(s.keysFor(k.rsa.kid).length, 1);
    });
  }
});

Deno.test("createKeyStore() gives up on a key set fetch after the deadline", async () => {
  const f = fakeFetch({
    [JWKS]: (init) =>
      new Promise<Response>((_resolve, reject) => {
        init!.signal!.addEventListener("abort", () => reject(init!.signal!.reason));
      }),
  });
  await using s = store(configFor(AS, { jwksUri: JWKS }), {
    fetch: f.fn,
    fetchTimeoutMs: 50,
  }).keys;
  await rejects(s.refresh(), { message: `Timed out fetching key set "${JWKS}"` });
  equal(s.ready, false);
});

Deno.test("createKeyStore() discovers jwks_uri from RFC 8414 metadata", async () => {
  const k = await keys();
  const meta = "https://auth.example.com/.well-known/oauth-authorization-server/realms/test";
  const f = fakeFetch({
    [meta]: () => json({ issuer: AS, jwks_uri: JWKS }),
    [JWKS]: () => json({ keys: [k.rsa.publicJwk] }),
  });
  const { keys: s, lines } = store(configFor(AS), { fetch: f.fn });
  await using _s = s;
  equal(s.issuer, undefined);
  await s.refresh();
  assertEquals(f.calls.map((c) => c.url), [meta, JWKS]);
  equal(s.issuer, AS);
  equal(s.jwksUri, JWKS);
  const loaded = lines().find((l) => l.msg === "key set loaded")!;
  equal(loaded.keys, 1);
  assertEquals(loaded.kids, [k.rsa.kid]);
  equal(loaded.jwks_uri, JWKS);
  // Discovery is not repeated on a refresh.
  await s.refresh();
  assertEquals(f.calls.map((c) => c.url), [meta, JWKS, JWKS]);
});

Deno.test("createKeyStore() falls back to OIDC discovery when RFC 8414 metadata is missing", async () => {
  const k = await keys();
  const oidc = `${AS}/.well-known/openid-configuration`;
  const f = fakeFetch({
    [oidc]: () => json({ issuer: AS, jwks_uri: JWKS }),
    [JWKS]: () => json({ keys: [k.rsa.publicJwk] }),
  });
  await using s = store(configFor(AS), { fetch: f.fn }).keys;
  await s.refresh();
  equal(f.calls[1].url, oidc);
  equal(s.ready, true);
});

Deno.test("createKeyStore() refuses metadata whose issuer differs and says what to set", async () => {
  const meta = "https://auth.example.com/.well-known/oauth-authorization-server/realms/test";
  const f = fakeFetch({ [meta]: () => json({ issuer: `${AS}/`, jwks_uri: JWKS }) });
  const timers = manualTimers();
  const { keys: s, lines } = store(configFor(AS), { fetch: f.fn, timers, random: () => 0.5 });
  await using _s = s;
  s.start();
  await timers.fire();
  equal(s.ready, false);
  const line = lines().find((l) => l.msg === "key set load failed")!;
  equal(line.level, "error");
  assert(
    (line.reason as string).includes(`set AUTHORIZATION_SERVER="${AS}/" exactly`),
    line.reason as string,
  );
  // Still retrying, with backoff.
  assertEquals(timers.delays, [0, 500]);
  await timers.fire();
  equal(f.calls.filter((c) => c.url === meta).length, 2);
  assertEquals(timers.delays, [0, 500, 1000]);
});

Deno.test("createKeyStore() refuses a discovered jwks_uri that is plain http off loopback", async () => {
  const meta = "https://auth.example.com/.well-known/oauth-authorization-server/realms/test";
  const f = fakeFetch({
    [meta]: () => json({ issuer: AS, jwks_uri: "http://auth.example.com/certs" }),
  });
  await using s = store(configFor(AS), { fetch: f.fn }).keys;
  await rejects(s.refresh(), (e: Error) => e.message.startsWith('Invalid "jwks_uri"'));
  equal(f.calls.length, 1);
});

Deno.test("createKeyStore() reports every metadata URL tried when none exists", async () => {
  const f = fakeFetch({});
  await using s = store(configFor(AS), { fetch: f.fn }).keys;
  await rejects(
    s.refresh(),
    (e: Error) =>
      e.message.startsWith("No authorization server metadata found") &&
      e.message.includes("(HTTP 404)") && e.message.endsWith("set JWKS_URI"),
  );
  equal(f.calls.length, 3);
});

Deno.test("createKeyStore() retries the first load with backoff until it succeeds, then refreshes with jitter", async () => {
  const k = await keys();
  let up = false;
  const f = fakeFetch({
    [JWKS]: () => (up ? json({ keys: [k.rsa.publicJwk] }) : new Response("", { status: 503 })),
  });
  const timers = manualTimers();
  let r = 0.5;
  const { keys: s, lines } = store(
    configFor(AS, { jwksUri: JWKS, jwksRefreshIntervalMs: 600_000 }),
    { fetch: f.fn, timers, random: () => r },
  );
  await using _s = s;
  s.start();
  s.start(); // idempotent
  equal(timers.pending, 1);
  equal(s.ready, false);
  for (let i = 0; i < 8; i++) await timers.fire();
  equal(s.ready, false);
  assertEquals(timers.delays, [0, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  equal(s.stats().refreshErrors, 8);
  equal(lines().filter((l) => l.msg === "key set load failed").length, 8);
  up = true;
  r = 0;
  await timers.fire();
  equal(s.ready, true);
  equal(timers.delays.at(-1), 540_000);
  r = 0.999999;
  await timers.fire();
  equal(timers.delays.at(-1), 660_000);
  assertEquals(
    { ...s.stats(), lastRefreshMs: undefined },
    { keys: 1, refreshErrors: 8, fetches: 10, lastRefreshMs: undefined },
  );
});

Deno.test("createKeyStore() keeps the keys when a scheduled refresh fails, and retries sooner", async () => {
  const k = await keys();
  let up = true;
  const f = fakeFetch({
    [JWKS]: () => (up ? json({ keys: [k.rsa.publicJwk] }) : new Response("", { status: 503 })),
  });
  const timers = manualTimers();
  const { keys: s, lines } = store(configFor(AS, { jwksUri: JWKS }), {
    fetch: f.fn,
    timers,
    random: () => 0.5,
  });
  await using _s = s;
  s.start();
  await timers.fire();
  equal(s.ready, true);
  up = false;
  await timers.fire();
  await timers.fire();
  equal(s.ready, true);
  equal(s.keysFor(k.rsa.kid).length, 1);
  assertEquals(timers.delays, [0, 600_000, 5000, 10_000]);
  const failed = lines().filter((l) => l.msg === "key set refresh failed");
  equal(failed.length, 2);
  equal(failed[0].level, "warn");
  equal(failed[0].reason, `HTTP 503 fetching key set "${JWKS}"`);
  equal(failed[0].keys, 1);
  up = true;
  await timers.fire();
  equal(timers.delays.at(-1), 600_000);
});

Deno.test("createKeyStore().close() clears timers and stops scheduling", async () => {
  const k = await keys();
  const f = fakeFetch({ [JWKS]: () => json({ keys: [k.rsa.publicJwk] }) });
  const timers = manualTimers();
  const { keys: s } = store(configFor(AS, { jwksUri: JWKS }), { fetch: f.fn, timers });
  s.start();
  await timers.fire();
  equal(timers.pending, 1);
  s.close();
  equal(timers.pending, 0);
  s.start();
  equal(timers.pending, 0);
  await rejects(s.refresh());
});

Deno.test("createKeyStore().close() aborts a fetch in flight", async () => {
  let aborted = false;
  const f = fakeFetch({
    [JWKS]: (init) =>
      new Promise<Response>((_resolve, reject) => {
        init!.signal!.addEventListener("abort", () => {
          aborted = true;
          reject(init!.signal!.reason);
        });
      }),
  });
  const { keys: s } = store(configFor(AS, { jwksUri: JWKS }), { fetch: f.fn });
  const p = s.refresh();
  await s[Symbol.asyncDispose]();
  await rejects(p, { message: "Key store closed" });
  equal(aborted, true);
});

Deno.test("refetchForUnknownKid() is single-flight and at most once per JWKS_MIN_REFRESH_INTERVAL", async () => {
  const k = await keys();
  let release!: () => void;
  let gate = Promise.resolve();
  const f = fakeFetch({
    [JWKS]: async () => {
      await gate;
      return json({ keys: [k.rsa.publicJwk] });
    },
  });
  const clock = { now: 1_000_000 };
  const { keys: s, lines } = store(
    configFor(AS, { jwksUri: JWKS, jwksMinRefreshIntervalMs: 30_000 }),
    { fetch: f.fn, now: () => clock.now },
  );
  await using _s = s;
  await s.refetchForUnknownKid("x");
  equal(f.calls.length, 0, "no refetch before the first load");
  await s.refresh();
  equal(f.calls.length, 1);
  await s.refetchForUnknownKid("x");
  equal(f.calls.length, 1, "rate limited right after a load");
  clock.now += 30_000;
  gate = new Promise<void>((r) => (release = r));
  const all = Promise.all(Array.from({ length: 200 }, (_, i) => s.refetchForUnknownKid(`k${i}`)));
  release();
  await all;
  equal(f.calls.length, 2, "200 concurrent callers share one fetch");
  clock.now += 29_999;
  await s.refetchForUnknownKid("y");
  equal(f.calls.length, 2);
  clock.now += 1;
  await s.refetchForUnknownKid("y");
  equal(f.calls.length, 3);
  equal(lines().filter((l) => l.msg === "key set refetch for unknown kid").length, 2);
});

Deno.test("refetchForUnknownKid() never rejects and logs a failed refetch once", async () => {
  const k = await keys();
  let up = true;
  const f = fakeFetch({
    [JWKS]: () => (up ? json({ keys: [k.rsa.publicJwk] }) : new Response("", { status: 500 })),
  });
  const clock = { now: 0 };
  const { keys: s, lines } = store(
    configFor(AS, { jwksUri: JWKS, jwksMinRefreshIntervalMs: 10 }),
    { fetch: f.fn, now: () => clock.now },
  );
  await using _s = s;
  await s.refresh();
  up = false;
  clock.now = 100;
  await Promise.all(Array.from({ length: 50 }, () => s.refetchForUnknownKid("x")));
  equal(s.keysFor(k.rsa.kid).length, 1);
  const failed = lines().filter((l) => l.msg === "key set refresh failed");
  equal(failed.length, 1, "one line for one failed fetch");
  equal(failed[0].reason, `HTTP 500 fetching key set "${JWKS}"`);
  equal(s.stats().refreshErrors, 1);
});

Deno.test("createKeyStores(): one store per issuer; ready once one is loaded and every first load finished", async () => {
  const A = "https://a.example/realms/a";
  const B = "https://b.example/tenant/v2.0";
  const key = await generateTestKey("RS256");
  const requested: string[] = [];
  const fetchFake = ((input: string | URL | Request) => {
    const url = String(input instanceof Request ? input.url : input);
    requested.push(url);
    const json = (body: unknown) =>
      Promise.resolve(new Response(JSON.stringify(body), { status: 200 }));
    if (url === "https://a.example/.well-known/oauth-authorization-server/realms/a") {
      return json({ issuer: A, jwks_uri: "https://a.example/keys" });
    }
    if (url === "https://a.example/keys") return json({ keys: [key.publicJwk] });
    return Promise.resolve(new Response("down", { status: 503 }));
  }) as typeof fetch;
  const timers = manualTimers();
  const sink = createMemorySink();
  await using set = createKeyStores(configFor(A, { authorizationServers: [A, B] }), {
    log: createLogger({ sink }),
    fetch: fetchFake,
    timers,
    random: () => 0.5,
  });
  equal(set.stores.length, 2);
  assertEquals(set.stores.map((s) => s.source.issuer), [A, B]);
  equal(set.forIssuer(A), set.stores[0]);
  equal(set.forIssuer(B), set.stores[1]);
  equal(set.forIssuer(`${A}/`), undefined);
  equal(set.forIssuer(42), undefined);

  set.start();
  equal(set.ready, false);
  await timers.fire(); // A's first load
  equal(set.stores[0].ready, true);
  equal(set.ready, false, "B's first load has not finished");
  await timers.fire(); // B's first load fails
  equal(set.stores[1].ready, false);
  equal(set.ready, true, "A loaded, B tried");
  // B's requests never went to A's URLs and the other way round.
  assert(requested.some((u) => u.startsWith("https://b.example/")));
  assertEquals(set.stats().keys, 1);
  // B's log lines name it.
  const failed = sink.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "key set load failed");
  equal(failed?.authorization_server, B);
});
