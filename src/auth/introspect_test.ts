import assert from "node:assert/strict";
import fc from "fast-check";
import type { Config } from "../config/mod.ts";
import { GateError } from "../errors.ts";
import { createLogger, createMemorySink } from "../ops/mod.ts";
import {
  basicCredentials,
  createIntrospectionCache,
  createIntrospector,
  type IntrospectorDeps,
  isJwsShaped,
  MAX_RESPONSE_BYTES,
  tokenKey,
  withIntrospection,
} from "./introspect.ts";
import type { VerifiedToken } from "./verify.ts";
import { TEST_RESOURCE, testConfig } from "../../tests/helpers/config.ts";
import { closedPort } from "../../tests/helpers/net.ts";

const ISSUER = "https://auth.example.com";
const TENANT_ACME: Config["requiredClaims"] = [
  { claim: { text: "tenant", path: ["tenant"] }, kind: "equals", value: "acme" },
];

/** What the fake endpoint saw of one call. */
interface Seen {
  authorization: string | null;
  contentType: string | null;
  form: URLSearchParams;
}

/**
 * A controllable introspection endpoint on a real socket: `answer` decides each response;
 * `calls` records every request; `active`/`maxActive` count calls in flight.
 */
function startEndpoint(
  answer: (form: URLSearchParams, req: Request) => Response | Promise<Response>,
) {
  const calls: Seen[] = [];
  const stats = { active: 0, maxActive: 0 };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const form = new URLSearchParams(await req.text());
    calls.push({
      authorization: req.headers.get("authorization"),
      contentType: req.headers.get("content-type"),
      form,
    });
    stats.active++;
    stats.maxActive = Math.max(stats.maxActive, stats.active);
    try {
      return await answer(form, req);
    } finally {
      stats.active--;
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/introspect`,
    calls,
    stats,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

function json(body: unknown, init: ResponseInit = {}): Response {
  return new Response(JSON.stringify(body), {
    ...init,
    headers: { "content-type": "application/json; charset=utf-8", ...init.headers },
  });
}

/** A manual clock, so cache lifetimes are tested without waiting. */
function clock(start = Date.now()) {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => (t += ms),
    get seconds() {
      return Math.floor(t / 1000);
    },
  };
}

/** An active answer for the test resource; `extra` overrides members (undefined removes one). */
function activeBody(nowS: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const body: Record<string, unknown> = {
    active: true,
    iss: ISSUER,
    aud: TEST_RESOURCE,
    sub: "alice",
    scope: "mcp:tools openid",
    exp: nowS + 3600,
    iat: nowS,
    client_id: "app",
    token_type: "Bearer",
    ...extra,
  };
  for (const [k, v] of Object.entries(body)) if (v === undefined) delete body[k];
  return body;
}

function introspectorFor(
  url: string,
  overrides: Partial<Config> = {},
  deps: Partial<IntrospectorDeps> = {},
) {
  const sink = createMemorySink();
  const config = testConfig({
    introspectionClientId: "gate",
    introspectionClientSecret: "s3cret",
    introspectionUrl: url,
    introspectionTimeoutMs: 2_000,
    ...overrides,
  });
  const introspector = createIntrospector(config, {
    log: createLogger({ level: "debug", sink }),
    issuer: () => ISSUER,
    ...deps,
  });
  return { introspector, sink };
}

async function refusal(p: Promise<unknown>): Promise<GateError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof GateError, String(e));
    return e;
  }
  assert.fail("expected a refusal");
}

Deno.test("isJwsShaped() is true for three dot-separated parts only", async (t) => {
  const cases: [string, boolean][] = [
    ["a.b.c", true],
    ["eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", true],
    ["..", true],
    ["opaque-token_123", false],
    ["a.b", false],
    ["a.b.c.d.e", false],
    ["a.b.c.", false],
  ];
  for (const [token, want] of cases) {
    await t.step(JSON.stringify(token), () => assert.equal(isJwsShaped(token), want));
  }
});

Deno.test("withIntrospection() sends JWS-shaped tokens to the JWT verifier and the rest to introspection, all of them with INTROSPECT_ALL", async () => {
  const seen: string[] = [];
  const fake = (name: string) => ({
    verify: (token: string) => {
      seen.push(`${name}:${token}`);
      return Promise.resolve({ sub: name, claims: {}, expMs: 0 } as VerifiedToken);
    },
  });
  const some = withIntrospection(fake("jwt"), fake("introspect"), { all: false });
  await some.verify("a.b.c");
  await some.verify("opaque");
  await some.verify("a.b.c.d.e");
  const all = withIntrospection(fake("jwt"), fake("introspect"), { all: true });
  await all.verify("a.b.c");
  assert.deepEqual(seen, [
    "jwt:a.b.c",
    "introspect:opaque",
    "introspect:a.b.c.d.e",
    "introspect:a.b.c",
  ]);
});

Deno.test("basicCredentials() form-urlencodes client id and secret before base64 (RFC 6749 §2.3.1)", () => {
  assert.equal(basicCredentials("gate", "s3cret"), `Basic ${btoa("gate:s3cret")}`);
  assert.equal(
    basicCredentials("a:b c", "p@ss w:rd/é"),
    `Basic ${btoa("a%3Ab+c:p%40ss+w%3Ard%2F%C3%A9")}`,
  );
});

Deno.test("the introspector holds an active answer to the JWT rules, by the same reasons", async (t) => {
  const c = clock();
  let body: Record<string, unknown> = {};
  await using ep = startEndpoint(() => json(body));
  const cases: [string, Record<string, unknown>, Partial<Config>, string | undefined][] = [
    ["an active token for the resource passes", {}, {}, undefined],
    [
      "aud as an array containing the resource passes",
      { aud: ["other", TEST_RESOURCE] },
      {},
      undefined,
    ],
    ["no iss passes (RFC 7662 makes it optional)", { iss: undefined }, {}, undefined],
    ["no token_type passes", { token_type: undefined }, {}, undefined],
    ["no exp passes (cached for the TTL only)", { exp: undefined }, {}, undefined],
    ["inactive is refused", { active: false }, {}, "invalid_token/inactive"],
    ["another aud is refused", { aud: "https://other.example" }, {}, "invalid_token/audience"],
    ["no aud is refused", { aud: undefined }, {}, "invalid_token/audience"],
    ["another iss is refused", { iss: "https://evil.example" }, {}, "invalid_token/issuer"],
    ["an expired token is refused", { exp: c.seconds - 3600 }, {}, "invalid_token/expired"],
    [
      "a token not yet valid is refused",
      { nbf: c.seconds + 3600 },
      {},
      "invalid_token/not_yet_valid",
    ],
    ["a non-numeric exp is refused", { exp: "soon" }, {}, "invalid_token/malformed"],
    ["no sub is refused", { sub: undefined }, {}, "invalid_token/sub"],
    ["a refresh token type is refused", { token_type: "refresh_token" }, {}, "invalid_token/typ"],
    ["a missing scope is 403", {}, { requiredScopes: ["admin"] }, "insufficient_scope/scope"],
    ["a granted scope passes", {}, { requiredScopes: ["mcp:tools"] }, undefined],
    [
      "a required claim that differs is 403",
      { tenant: "other" },
      { requiredClaims: TENANT_ACME },
      "insufficient_scope/claim",
    ],
    ["a required claim that matches passes", { tenant: "acme" }, {
      requiredClaims: TENANT_ACME,
    }, undefined],
  ];
  let n = 0;
  for (const [name, extra, overrides, want] of cases) {
    await t.step(name, async () => {
      body = activeBody(c.seconds, extra);
      const { introspector } = introspectorFor(ep.url, overrides, { now: c.now });
      const token = `opaque-${n++}`;
      if (want === undefined) {
        const v = await introspector.verify(token);
        assert.equal(v.sub, "alice");
        assert.equal(v.claims.client_id, "app");
      } else {
        const err = await refusal(introspector.verify(token));
        assert.equal(`${err.code}/${err.reason}`, want);
        if (err.code === "insufficient_scope") assert.equal(err.subject, "alice");
      }
      await introspector[Symbol.asyncDispose]();
    });
  }
});

Deno.test("the introspector authenticates with client_secret_basic by default, or client_secret_post", async () => {
  const c = clock();
  await using ep = startEndpoint(() => json(activeBody(c.seconds)));
  const basic = introspectorFor(ep.url, { introspectionClientId: "my app:1" }).introspector;
  await basic.verify("tok-basic");
  const post = introspectorFor(ep.url, { introspectionAuthMethod: "client_secret_post" })
    .introspector;
  await post.verify("tok-post");
  const [b, p] = ep.calls;
  assert.equal(b.authorization, basicCredentials("my app:1", "s3cret"));
  assert.equal(b.contentType, "application/x-www-form-urlencoded");
  assert.deepEqual([...b.form], [["token", "tok-basic"], ["token_type_hint", "access_token"]]);
  assert.equal(p.authorization, null);
  assert.deepEqual(Object.fromEntries(p.form), {
    token: "tok-post",
    token_type_hint: "access_token",
    client_id: "gate",
    client_secret: "s3cret",
  });
});

Deno.test("an endpoint that cannot answer gives 503 introspection_unavailable naming the cause, never 401", async (t) => {
  const c = clock();
  const huge = JSON.stringify({ active: true, pad: "x".repeat(MAX_RESPONSE_BYTES) });
  const cases: [string, () => Response | Promise<Response>, RegExp][] = [
    [
      "HTTP 500",
      () => new Response("oops", { status: 500 }),
      /HTTP 500 from introspection endpoint/,
    ],
    [
      "HTTP 401 (wrong credentials)",
      () => json({ error: "invalid_client" }, { status: 401 }),
      /HTTP 401 .*INTROSPECTION_CLIENT_SECRET/,
    ],
    [
      "a redirect",
      () => new Response(null, { status: 302, headers: { location: "https://evil.example/" } }),
      /Refused redirect \(HTTP 302\)/,
    ],
    [
      "a non-JSON content type",
      () => new Response("<html>login</html>", { headers: { "content-type": "text/html" } }),
      /Content type "text\/html" .*expected application\/json/,
    ],
    [
      "invalid JSON",
      () => new Response("{active:", { headers: { "content-type": "application/json" } }),
      /Invalid JSON from introspection endpoint/,
    ],
    ["no boolean active", () => json({ active: "true" }), /has no boolean "active"/],
    ["a JSON array", () => json([true]), /is not a JSON object/],
    [
      "a huge body",
      () => new Response(huge, { headers: { "content-type": "application/json" } }),
      /Response too large/,
    ],
    [
      "a huge streamed body",
      () =>
        new Response(
          new ReadableStream({
            start(ctl) {
              for (let i = 0; i < 80; i++) ctl.enqueue(new TextEncoder().encode("x".repeat(1024)));
              ctl.close();
            },
          }),
          { headers: { "content-type": "application/json" } },
        ),
      /Response too large \(over/,
    ],
  ];
  let n = 0;
  for (const [name, answer, detail] of cases) {
    await t.step(name, async () => {
      await using ep = startEndpoint(answer);
      const { introspector, sink } = introspectorFor(ep.url, {}, { now: c.now });
      const err = await refusal(introspector.verify(`tok-${n++}`));
      assert.equal(err.code, "introspection_unavailable");
      assert.equal(err.reason, "introspection_unavailable");
      assert.match(err.detail ?? "", detail);
      assert.equal(introspector.status().state, "failing");
      assert.match(sink.text(), /introspection failing/);
      // A failure is not an answer: the next request asks again.
      await refusal(introspector.verify(`tok-${n - 1}`));
      assert.equal(ep.calls.length, 2);
      await introspector[Symbol.asyncDispose]();
    });
  }
});

Deno.test("a slow endpoint is cut at INTROSPECTION_TIMEOUT", async () => {
  await using ep = startEndpoint((_f, req) =>
    new Promise((resolve) => {
      const t = setTimeout(() => resolve(json({ active: false })), 5_000);
      req.signal.addEventListener("abort", () => {
        clearTimeout(t);
        resolve(new Response(null));
      });
    })
  );
  const { introspector } = introspectorFor(ep.url, { introspectionTimeoutMs: 300 });
  const t0 = performance.now();
  const err = await refusal(introspector.verify("slow"));
  const took = performance.now() - t0;
  assert.equal(err.code, "introspection_unavailable");
  assert.match(err.detail ?? "", /No answer within 300 ms from introspection endpoint/);
  assert.ok(took < 3_000, `took ${took} ms`);
  await introspector[Symbol.asyncDispose]();
});

Deno.test("a slow body is cut at INTROSPECTION_TIMEOUT too", async () => {
  let cancel: (() => void) | undefined;
  await using ep = startEndpoint(() =>
    new Response(
      new ReadableStream({
        start(ctl) {
          ctl.enqueue(new TextEncoder().encode('{"active":'));
          const t = setTimeout(() => ctl.close(), 5_000);
          cancel = () => clearTimeout(t);
        },
        cancel: () => cancel?.(),
      }),
      { headers: { "content-type": "application/json" } },
    )
  );
  const { introspector } = introspectorFor(ep.url, { introspectionTimeoutMs: 300 });
  const err = await refusal(introspector.verify("slow-body"));
  cancel?.();
  assert.equal(err.code, "introspection_unavailable");
  assert.match(err.detail ?? "", /Failed reading the body from introspection endpoint/);
  await introspector[Symbol.asyncDispose]();
});

Deno.test("an endpoint that is down: cached answers keep working, new tokens get 503, and it recovers", async () => {
  const c = clock();
  let up = true;
  await using ep = startEndpoint(() =>
    up ? json(activeBody(c.seconds)) : new Response("down", { status: 503 })
  );
  const { introspector, sink } = introspectorFor(ep.url, {}, { now: c.now });
  assert.equal(introspector.status().state, "unknown");
  await introspector.verify("known");
  assert.equal(introspector.status().state, "ok");
  up = false;
  c.advance(5_000);
  assert.equal((await introspector.verify("known")).sub, "alice");
  const err = await refusal(introspector.verify("new"));
  assert.equal(err.code, "introspection_unavailable");
  assert.deepEqual(introspector.status(), {
    state: "failing",
    error: `HTTP 503 from introspection endpoint "${ep.url}"`,
  });
  assert.deepEqual(introspector.stats(), {
    answered: 1,
    failed: 1,
    shed: 0,
    cacheHits: 1,
    cacheEntries: 1,
    up: 0,
  });
  up = true;
  await introspector.verify("new");
  assert.equal(introspector.status().state, "ok");
  assert.equal(introspector.stats().up, 1);
  assert.match(sink.text(), /introspection answering again/);
  await introspector[Symbol.asyncDispose]();
});

Deno.test("an unreachable endpoint gives 503 with the network error", async () => {
  const url = `http://127.0.0.1:${await closedPort()}/introspect`;
  const { introspector } = introspectorFor(url);
  const err = await refusal(introspector.verify("tok"));
  assert.equal(err.code, "introspection_unavailable");
  assert.match(err.detail ?? "", /Failed fetching introspection endpoint .*: /);
});

Deno.test("answers are cached until exp or INTROSPECTION_CACHE_TTL, whichever is sooner; refusals for 10 s", async (t) => {
  const c = clock();
  let body: Record<string, unknown> = {};
  await using ep = startEndpoint(() => json(body));
  await t.step("exp after the TTL: the TTL ends the entry", async () => {
    body = activeBody(c.seconds, { exp: c.seconds + 3600 });
    const { introspector } = introspectorFor(ep.url, { introspectionCacheTtlMs: 60_000 }, {
      now: c.now,
    });
    const before = ep.calls.length;
    await introspector.verify("a");
    c.advance(59_000);
    await introspector.verify("a");
    assert.equal(ep.calls.length - before, 1);
    c.advance(1_000);
    await introspector.verify("a");
    assert.equal(ep.calls.length - before, 2);
  });
  await t.step("exp before the TTL: exp ends the entry (and the token)", async () => {
    body = activeBody(c.seconds, { exp: c.seconds + 20 });
    const { introspector } = introspectorFor(ep.url, { introspectionCacheTtlMs: 60_000 }, {
      now: c.now,
    });
    const before = ep.calls.length;
    await introspector.verify("b");
    c.advance(19_000);
    await introspector.verify("b");
    assert.equal(ep.calls.length - before, 1);
    c.advance(2_000);
    body = { active: false };
    const err = await refusal(introspector.verify("b"));
    assert.equal(err.reason, "inactive");
    assert.equal(ep.calls.length - before, 2);
  });
  await t.step("no exp: the TTL alone", async () => {
    body = activeBody(c.seconds, { exp: undefined });
    const { introspector } = introspectorFor(ep.url, { introspectionCacheTtlMs: 30_000 }, {
      now: c.now,
    });
    const before = ep.calls.length;
    await introspector.verify("c");
    c.advance(29_000);
    await introspector.verify("c");
    c.advance(1_000);
    await introspector.verify("c");
    assert.equal(ep.calls.length - before, 2);
  });
  await t.step("TTL 0: every request asks", async () => {
    body = activeBody(c.seconds);
    const { introspector } = introspectorFor(ep.url, { introspectionCacheTtlMs: 0 }, {
      now: c.now,
    });
    const before = ep.calls.length;
    await introspector.verify("d");
    await introspector.verify("d");
    assert.equal(ep.calls.length - before, 2);
  });
  await t.step("a refusal is repeated for 10 s without asking", async () => {
    body = { active: false };
    const { introspector } = introspectorFor(ep.url, {}, { now: c.now });
    const before = ep.calls.length;
    for (let i = 0; i < 5; i++) await refusal(introspector.verify("garbage"));
    assert.equal(ep.calls.length - before, 1);
    c.advance(10_000);
    await refusal(introspector.verify("garbage"));
    assert.equal(ep.calls.length - before, 2);
  });
});

Deno.test("concurrent requests with one token share one introspection call", async () => {
  const c = clock();
  await using ep = startEndpoint(async () => {
    await new Promise((r) => setTimeout(r, 50));
    return json(activeBody(c.seconds));
  });
  const { introspector } = introspectorFor(ep.url, {}, { now: c.now });
  const results = await Promise.all(Array.from({ length: 20 }, () => introspector.verify("same")));
  assert.equal(ep.calls.length, 1);
  assert.ok(results.every((r) => r === results[0]));
});

Deno.test("introspection calls are capped in flight, and the queue behind the cap is bounded", async () => {
  const c = clock();
  await using ep = startEndpoint(async () => {
    await new Promise((r) => setTimeout(r, 100));
    return json(activeBody(c.seconds));
  });
  const { introspector } = introspectorFor(ep.url, {}, {
    now: c.now,
    maxConcurrentCalls: 2,
    maxWaitingCalls: 3,
  });
  const settled = await Promise.allSettled(
    Array.from({ length: 8 }, (_, i) => introspector.verify(`tok-${i}`)),
  );
  assert.equal(ep.stats.maxActive, 2);
  const refused = settled.filter((s) => s.status === "rejected");
  assert.equal(refused.length, 3);
  for (const r of refused) {
    const e = (r as PromiseRejectedResult).reason as GateError;
    assert.equal(e.code, "introspection_unavailable");
    assert.match(e.detail ?? "", /more than 3 introspection calls waiting/);
  }
  assert.equal(ep.calls.length, 5);
});

Deno.test("the cache never answers for another token and holds no token bytes (property)", () => {
  const result = (sub: string): VerifiedToken => ({ sub, claims: { sub }, expMs: 2e12 });
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 200, unit: "binary" }),
      fc.string({ minLength: 1, maxLength: 200, unit: "binary" }),
      (a, b) => {
        fc.pre(a !== b);
        const cache = createIntrospectionCache();
        cache.set(a, { ok: true, result: result("A"), time: { expMs: 2e12 } }, 2e12, 0);
        const hitA = cache.get(a, 1);
        assert.ok(hitA?.ok && hitA.result.sub === "A");
        assert.equal(cache.get(b, 1), undefined);
        cache.set(b, { ok: false, error: new GateError("invalid_token") }, 10, 0);
        const hitB = cache.get(b, 1);
        assert.ok(hitB && !hitB.ok);
        assert.ok(cache.get(a, 1)?.ok);
        // Keys are the tokens' SHA-256 and nothing else.
        assert.deepEqual(cache.keys().sort(), [tokenKey(a), tokenKey(b)].sort());
        for (const k of cache.keys()) {
          assert.match(k, /^[0-9a-f]{64}$/);
          if (a.length >= 4) assert.ok(!k.includes(a));
          if (b.length >= 4) assert.ok(!k.includes(b));
        }
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("tokenKey() is SHA-256, so distinct tokens never share an entry", async () => {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode("tok")),
  );
  assert.equal(tokenKey("tok"), digest.toHex());
});

Deno.test("the introspector's cache holds neither the token nor a member echoing it", async () => {
  const c = clock();
  const token = "secret-opaque-token-value-1234567890";
  await using ep = startEndpoint(() => json(activeBody(c.seconds, { jti: token })));
  const { introspector, sink } = introspectorFor(ep.url, {}, { now: c.now });
  const v = await introspector.verify(token);
  assert.equal(v.claims.jti, undefined);
  assert.deepEqual(introspector.cache.keys(), [tokenKey(token)]);
  assert.ok(!JSON.stringify(v).includes(token));
  await refusal(
    introspectorFor(`http://127.0.0.1:${await closedPort()}/x`).introspector.verify(token),
  )
    .then((e) => assert.ok(!String(e.detail).includes(token)));
  assert.ok(!sink.text().includes(token));
});

Deno.test("a failure names the endpoint with credentials in its URL redacted", async () => {
  await using ep = startEndpoint(() => new Response("no", { status: 500 }));
  const { introspector, sink } = introspectorFor(`${ep.url}?client_secret=hunter2`);
  const err = await refusal(introspector.verify("tok"));
  assert.match(err.detail ?? "", /HTTP 500 from introspection endpoint/);
  assert.ok(!String(err.detail).includes("hunter2"), err.detail);
  assert.ok(!sink.text().includes("hunter2"));
});

Deno.test("while the endpoint fails, one call at a time probes it and other new tokens get 503 at once", async () => {
  const c = clock();
  let failing = true;
  await using ep = startEndpoint(async () => {
    await new Promise((r) => setTimeout(r, 50));
    return failing ? new Response("down", { status: 500 }) : json(activeBody(c.seconds));
  });
  const { introspector } = introspectorFor(ep.url, {}, { now: c.now });
  await refusal(introspector.verify("first"));
  assert.equal(ep.calls.length, 1);
  const flood = await Promise.allSettled(
    Array.from({ length: 10 }, (_, i) => introspector.verify(`flood-${i}`)),
  );
  assert.equal(ep.calls.length, 2, "one probe, not ten calls");
  const details = flood.map((r) => ((r as PromiseRejectedResult).reason as GateError).detail);
  assert.equal(details.filter((d) => /one call at a time/.test(d ?? "")).length, 9);
  assert.equal(introspector.stats().shed, 9);
  failing = false;
  await introspector.verify("probe");
  const after = await Promise.all(
    Array.from({ length: 5 }, (_, i) => introspector.verify(`after-${i}`)),
  );
  assert.equal(after.length, 5);
  assert.equal(ep.calls.length, 8, "answering again: calls run side by side");
  assert.ok(ep.stats.maxActive > 1);
});
