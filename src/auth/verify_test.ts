import { deepStrictEqual as assertEquals, equal, ok as assert } from "node:assert/strict";
import { ASYMMETRIC_ALGS, claimRef, type Config, parseRequiredClaims } from "../config/mod.ts";
import { GateError } from "../errors.ts";
import type { KeyStore, VerificationKey } from "./jwks.ts";
import { createVerifier, MAX_TOKEN_BYTES, type TokenVerifier } from "./verify.ts";
import {
  b64url,
  configFor,
  createInMemoryKeyStore,
  generateTestKey,
  hmacJws,
  type InMemoryKeyStore,
  mintToken,
  publicKeyPem,
  signJws,
  type TestAlg,
  type TestKey,
  unsecuredJws,
} from "../../tests/helpers/issuer.ts";

const ISS = "https://auth.example.com/realms/test";
const AUD = "https://mcp.example.com/mcp";

/**
 * Counts signature checks by wrapping the keys a store hands out: the verifier takes a key's
 * CryptoKey exactly once per jose verification.
 */
function countingKeys(keys: KeyStore): { store: KeyStore; readonly count: number } {
  let count = 0;
  const wrapped = new Map<VerificationKey, VerificationKey>();
  const original = new Map<VerificationKey, VerificationKey>();
  const wrap = (k: VerificationKey) => {
    let w = wrapped.get(k);
    if (!w) {
      w = {
        kid: k.kid,
        kty: k.kty,
        algs: k.algs,
        cryptoKey: (alg) => (count++, k.cryptoKey(alg)),
      };
      wrapped.set(k, w);
      original.set(w, k);
    }
    return w;
  };
  const store = Object.create(keys, {
    keysFor: { value: (kid: string | undefined) => keys.keysFor(kid).map(wrap) },
    hasKey: { value: (k: VerificationKey) => keys.hasKey(original.get(k) ?? k) },
  }) as KeyStore;
  return {
    store,
    get count() {
      return count;
    },
  };
}

interface Setup {
  key: TestKey;
  published: TestKey[];
  config: Config;
  keys: InMemoryKeyStore;
  counted: { store: KeyStore; readonly count: number };
  verifier: TokenVerifier;
  clock: { now: number };
  mint(
    claims?: Record<string, unknown>,
    options?: { header?: Record<string, unknown>; key?: TestKey },
  ): Promise<string>;
}

async function setup(
  options: { alg?: TestAlg; config?: Partial<Config>; key?: TestKey; cache?: false } = {},
): Promise<Setup> {
  const key = options.key ?? await generateTestKey(options.alg ?? "RS256");
  const published = [key];
  const clock = { now: Date.now() };
  const config = configFor(ISS, { jwksUri: "https://as.example/jwks", ...options.config });
  const keys = await createInMemoryKeyStore({
    config,
    jwks: () => ({ keys: published.map((k) => k.publicJwk) }),
    now: () => clock.now,
  });
  const counted = countingKeys(keys);
  const verifier = createVerifier(config, counted.store, {
    now: () => clock.now,
    ...(options.cache === false ? { cache: false as const } : {}),
  });
  return {
    key,
    published,
    config,
    keys,
    counted,
    verifier,
    clock,
    mint: (claims = {}, o = {}) =>
      mintToken({
        issuer: ISS,
        key: o.key ?? key,
        claims,
        header: o.header,
        nowMs: clock.now,
      }),
  };
}

/** Awaits a rejection and checks it is a GateError with this code and reason. */
async function rejects(p: Promise<unknown>, want: string): Promise<GateError> {
  try {
    await p;
  } catch (e) {
    assert(e instanceof GateError, `expected a GateError, got ${e}`);
    equal(`${e.code}/${e.reason}`, want);
    return e;
  }
  throw new Error(`expected a rejection with ${want}, got success`);
}

Deno.test("verify() accepts a valid token for every default algorithm", async (t) => {
  for (const alg of ASYMMETRIC_ALGS as readonly TestAlg[]) {
    await t.step(alg, async () => {
      const s = await setup({ alg });
      const token = await s.mint({ scope: "a" });
      const v = await s.verifier.verify(token);
      equal(v.sub, "user-1");
      equal(v.claims.iss, ISS);
      equal(v.claims.scope, "a");
      equal(v.expMs, (v.claims.exp as number) * 1000);
      assert(Object.isFrozen(v) && Object.isFrozen(v.claims));
    });
  }
});

Deno.test("verify() rejects tokens that are not a compact JWS as malformed", async (t) => {
  const s = await setup();
  const good = await s.mint();
  const [h, p, sig] = good.split(".");
  const cases: [string, string][] = [
    ["empty", ""],
    ["random bytes", crypto.getRandomValues(new Uint8Array(64)).toBase64()],
    ["opaque token", "ya29.a0AfH6SMBx3"],
    ["one dot", `${h}.${p}`],
    ["four segments", `${h}.${p}.${sig}.x`],
    ["JWE (five segments)", `${h}.eA.eA.eA.eA`],
    ["padding in a segment", `${h}=.${p}.${sig}`],
    ["standard base64 characters", `${h}.${p}+/.${sig}`],
    ["whitespace", `${h}.${p} .${sig}`],
    ["empty header", `.${p}.${sig}`],
    ["empty payload", `${h}..${sig}`],
    ["header not JSON", `${b64url("{alg")}.${p}.${sig}`],
    ["header a JSON array", `${b64url('["RS256"]')}.${p}.${sig}`],
    ["header not UTF-8", `${b64url(new Uint8Array([0xff, 0xfe]))}.${p}.${sig}`],
    ["header without alg", `${b64url('{"kid":"x"}')}.${p}.${sig}`],
    ["kid not a string", `${b64url(JSON.stringify({ alg: "RS256", kid: 7 }))}.${p}.${sig}`],
    ["too large", `${h}.${"A".repeat(MAX_TOKEN_BYTES)}.${sig}`],
  ];
  for (const [name, token] of cases) {
    await t.step(name, async () => {
      const e = await rejects(s.verifier.verify(token), "invalid_token/malformed");
      if (name.startsWith("JWE")) equal(e.detail, "token is a JWE, not a JWS");
    });
  }
  equal(s.counted.count, 0, "no signature work for malformed tokens");
});

Deno.test("verify() maps what jose refuses after key selection to the gate's reasons", async (t) => {
  const s = await setup({ cache: false });
  const [h, p, sig] = (await s.mint()).split(".");
  const cases: [string, string, string][] = [
    // 4n+1 base64url characters decode to no byte string (RFC 4648 §5).
    ["signature that does not decode", `${h}.${p}.${sig}AAA`, "invalid_token/malformed"],
    ["signature one byte short", `${h}.${p}.${sig.slice(0, -3)}`, "invalid_token/signature"],
    ["signature of zeros", `${h}.${p}.${"A".repeat(sig.length)}`, "invalid_token/signature"],
  ];
  for (const [name, token, want] of cases) {
    await t.step(name, async () => {
      const e = await rejects(s.verifier.verify(token), want);
      assert(!`${e.detail}`.includes(sig.slice(0, 16)));
    });
  }
  equal(s.counted.count, cases.length, "one jose verification each");
});

Deno.test("verify() rejects a token whose payload is not a JSON object after a good signature", async (t) => {
  const s = await setup();
  for (const payload of ["[1,2]", '"str"', "not json"]) {
    await t.step(payload, async () => {
      const token = await signJws({
        header: { alg: "RS256", kid: s.key.kid },
        payload,
        key: s.key,
      });
      await rejects(s.verifier.verify(token), "invalid_token/malformed");
    });
  }
});

Deno.test("verify() rejects alg none, HS256 keyed with the public key, and algs not allowed", async (t) => {
  const s = await setup({ config: { allowedAlgs: ["RS256", "ES256"] } });
  const payload = {
    iss: ISS,
    aud: AUD,
    sub: "attacker",
    exp: Math.floor(s.clock.now / 1000) + 60,
  };
  await t.step("alg none", async () => {
    const token = unsecuredJws({ header: { kid: s.key.kid }, payload });
    await rejects(s.verifier.verify(token), "invalid_token/alg");
  });
  await t.step("alg None (case variant)", async () => {
    const token = unsecuredJws({ header: { alg: "None", kid: s.key.kid }, payload });
    await rejects(s.verifier.verify(token), "invalid_token/alg");
  });
  await t.step("HS256 with the SPKI PEM as secret", async () => {
    const pem = new TextEncoder().encode(await publicKeyPem(s.key));
    const token = await hmacJws({ header: { alg: "HS256", kid: s.key.kid }, payload, secret: pem });
    await rejects(s.verifier.verify(token), "invalid_token/alg");
  });
  await t.step("HS256 with the JWK JSON as secret", async () => {
    const secret = new TextEncoder().encode(JSON.stringify(s.key.publicJwk));
    const token = await hmacJws({ header: { alg: "HS256", kid: s.key.kid }, payload, secret });
    await rejects(s.verifier.verify(token), "invalid_token/alg");
  });
  await t.step("HS256 even when ALLOWED_ALGS lists it", async () => {
    const s2 = await setup({ key: s.key, config: { allowedAlgs: ["RS256", "HS256"] } });
    const pem = new TextEncoder().encode(await publicKeyPem(s.key));
    const token = await hmacJws({ header: { alg: "HS256", kid: s.key.kid }, payload, secret: pem });
    await rejects(s2.verifier.verify(token), "invalid_token/alg");
  });
  await t.step("RS512 not in ALLOWED_ALGS, though the RSA key could verify it", async () => {
    const key512 = await generateTestKey("RS512", s.key.kid);
    const token = await s.mint({}, { key: key512 });
    await rejects(s.verifier.verify(token), "invalid_token/alg");
  });
  equal(s.counted.count, 0);
});

Deno.test("verify() rejects an alg that does not match the key", async (t) => {
  await t.step("ES256 header on an RSA key", async () => {
    const s = await setup();
    const ec = await generateTestKey("ES256", s.key.kid);
    await rejects(s.verifier.verify(await s.mint({}, { key: ec })), "invalid_token/alg");
  });
  await t.step("ES384 header on a P-256 key", async () => {
    const s = await setup({ alg: "ES256" });
    const ec = await generateTestKey("ES384", s.key.kid);
    await rejects(s.verifier.verify(await s.mint({}, { key: ec })), "invalid_token/alg");
  });
  await t.step("PS256 with the RSA key whose JWK says alg RS256", async () => {
    const s = await setup();
    const ps = await generateTestKey("PS256");
    // Publish the PS key's public JWK but pinned to RS256, then sign PS256 with its private key.
    s.published.splice(0, 1, { ...ps, publicJwk: { ...ps.publicJwk, alg: "RS256" } });
    await s.keys.refresh();
    await rejects(s.verifier.verify(await s.mint({}, { key: ps })), "invalid_token/alg");
  });
  await t.step("PS256 with an RSA key without its own alg is accepted", async () => {
    const s = await setup();
    const ps = await generateTestKey("PS256");
    const { alg: _alg, ...jwk } = ps.publicJwk;
    s.published.splice(0, 1, { ...ps, publicJwk: jwk });
    await s.keys.refresh();
    equal((await s.verifier.verify(await s.mint({}, { key: ps }))).sub, "user-1");
  });
});

Deno.test("verify() uses only key-set keys: jku, x5u, jwk and x5c headers are ignored", async (t) => {
  const s = await setup();
  const attacker = await generateTestKey("RS256", "attacker-kid");
  const header = {
    jwk: attacker.publicJwk,
    jku: "https://evil.example/jwks",
    x5u: "https://evil.example/cert",
    x5c: ["MIIB"],
  };
  await t.step("attacker key with its own kid and embedded jwk -> unknown_kid", async () => {
    const token = await s.mint({}, { key: attacker, header });
    await rejects(s.verifier.verify(token), "invalid_token/unknown_kid");
  });
  await t.step("attacker key reusing the known kid -> signature", async () => {
    const token = await s.mint({}, { key: attacker, header: { ...header, kid: s.key.kid } });
    await rejects(s.verifier.verify(token), "invalid_token/signature");
  });
  await t.step("the real key with the same headers is accepted", async () => {
    const token = await s.mint({}, { header });
    equal((await s.verifier.verify(token)).sub, "user-1");
  });
});

Deno.test("verify() rejects a tampered token with reason signature", async (t) => {
  const s = await setup({ alg: "ES256" });
  const good = await s.mint();
  const [h, p, sig] = good.split(".");
  const forged = b64url(
    JSON.stringify({ ...JSON.parse(atob(p.replace(/-/g, "+").replace(/_/g, "/"))), sub: "admin" }),
  );
  const cases: [string, string][] = [
    ["payload changed", `${h}.${forged}.${sig}`],
    ["signature truncated", `${h}.${p}.${sig.slice(0, -4)}`],
    ["signature of another token", `${h}.${p}.${(await s.mint()).split(".")[2]}`],
    ["empty signature", `${h}.${p}.`],
  ];
  for (const [name, token] of cases) {
    await t.step(name, async () => {
      await rejects(s.verifier.verify(token), "invalid_token/signature");
    });
  }
});

Deno.test("verify() refuses any crit header and b64 false", async (t) => {
  const s = await setup();
  const cases: [string, Record<string, unknown>][] = [
    ["crit with an unknown extension", {
      crit: ["http://example.com/ext"],
      "http://example.com/ext": 1,
    }],
    ["crit listing exp", { crit: ["exp"], exp: 1 }],
    ["empty crit", { crit: [] }],
    ["b64 false", { b64: false, crit: ["b64"] }],
    ["b64 false without crit", { b64: false }],
  ];
  for (const [name, header] of cases) {
    await t.step(name, async () => {
      await rejects(s.verifier.verify(await s.mint({}, { header })), "invalid_token/crit");
    });
  }
});

Deno.test("verify() checks the header typ", async (t) => {
  const s = await setup();
  const cases: [unknown, string][] = [
    [undefined, "ok"],
    ["JWT", "ok"],
    ["at+jwt", "ok"],
    ["application/at+JWT", "ok"],
    ["dpop+jwt", "invalid_token/typ"],
    ["logout+jwt", "invalid_token/typ"],
  ];
  for (const [typ, want] of cases) {
    await t.step(`typ ${JSON.stringify(typ)} -> ${want}`, async () => {
      const token = await s.mint({}, { header: { typ } });
      if (want === "ok") equal((await s.verifier.verify(token)).sub, "user-1");
      else await rejects(s.verifier.verify(token), want);
    });
  }
});

Deno.test("verify() checks exp, nbf and iat with CLOCK_SKEW", async (t) => {
  const s = await setup({ config: { clockSkewMs: 30_000 } });
  const nowS = Math.floor(s.clock.now / 1000);
  const cases: [string, Record<string, unknown>, string][] = [
    ["no exp", { exp: undefined }, "invalid_token/missing_exp"],
    ["exp not a number", { exp: "soon" }, "invalid_token/malformed"],
    ["expired beyond the skew", { exp: nowS - 31 }, "invalid_token/expired"],
    ["expired within the skew", { exp: nowS - 20 }, "ok"],
    ["nbf beyond the skew", { nbf: nowS + 40 }, "invalid_token/not_yet_valid"],
    ["nbf within the skew", { nbf: nowS + 20 }, "ok"],
    ["iat beyond the skew", { iat: nowS + 40 }, "invalid_token/iat_in_future"],
    ["iat within the skew", { iat: nowS + 20 }, "ok"],
    ["no iat and no nbf", { iat: undefined, nbf: undefined }, "ok"],
  ];
  for (const [name, claims, want] of cases) {
    await t.step(`${name} -> ${want}`, async () => {
      const token = await s.mint(claims);
      if (want === "ok") equal((await s.verifier.verify(token)).sub, "user-1");
      else await rejects(s.verifier.verify(token), want);
    });
  }
});

Deno.test("verify() wants the exact issuer of the key store", async (t) => {
  const s = await setup();
  const cases: [unknown, string][] = [
    [ISS, "ok"],
    [`${ISS}/`, "invalid_token/issuer"],
    ["https://auth.example.com/realms/other", "invalid_token/issuer"],
    [undefined, "invalid_token/issuer"],
  ];
  for (const [iss, want] of cases) {
    await t.step(`${JSON.stringify(iss)} -> ${want}`, async () => {
      const token = await s.mint({ iss });
      if (want === "ok") equal((await s.verifier.verify(token)).sub, "user-1");
      else await rejects(s.verifier.verify(token), want);
    });
  }
  await t.step("EXPECTED_ISSUER overrides AUTHORIZATION_SERVER", async () => {
    const s2 = await setup({
      key: s.key,
      config: { expectedIssuer: "https://sts.windows.net/t/" },
    });
    equal(s2.keys.issuer, "https://sts.windows.net/t/");
    await rejects(s2.verifier.verify(await s.mint()), "invalid_token/issuer");
    const e = await rejects(
      s2.verifier.verify(await s.mint({ iss: "https://x" })),
      "invalid_token/issuer",
    );
    equal(e.detail, 'expected iss "https://sts.windows.net/t/", got "https://x"');
    equal(
      (await s2.verifier.verify(await s.mint({ iss: "https://sts.windows.net/t/" }))).sub,
      "user-1",
    );
  });
});

Deno.test("verify() wants aud to contain an EXPECTED_AUDIENCE value", async (t) => {
  const s = await setup();
  const cases: [unknown, string][] = [
    [AUD, "ok"],
    [`${AUD}/`, "ok"],
    [["account", AUD], "ok"],
    ["account", "invalid_token/audience"],
    [["account"], "invalid_token/audience"],
    [undefined, "invalid_token/audience"],
    ["https://mcp.example.com", "invalid_token/audience"],
  ];
  for (const [aud, want] of cases) {
    await t.step(`${JSON.stringify(aud)} -> ${want}`, async () => {
      const token = await s.mint({ aud });
      if (want === "ok") equal((await s.verifier.verify(token)).sub, "user-1");
      else await rejects(s.verifier.verify(token), want);
    });
  }
});

Deno.test("verify() requires a non-empty sub", async (t) => {
  const s = await setup();
  for (const sub of [undefined, "", 12]) {
    await t.step(JSON.stringify(sub) ?? "undefined", async () => {
      await rejects(s.verifier.verify(await s.mint({ sub })), "invalid_token/sub");
    });
  }
});

Deno.test("verify() answers insufficient_scope for a missing scope or required claim", async (t) => {
  const s = await setup({
    config: {
      requiredScopes: ["mcp:read", "mcp:write"],
      scopeClaims: [claimRef("scope"), claimRef("scp")],
      requiredClaims: parseRequiredClaims('{"tenant":"acme"}', () => {})!,
    },
  });
  const cases: [Record<string, unknown>, string][] = [
    [{ scope: "mcp:read mcp:write", tenant: "acme" }, "ok"],
    [{ scp: ["mcp:write", "mcp:read"], tenant: "acme" }, "ok"],
    [{ scope: "mcp:read", tenant: "acme" }, "insufficient_scope/scope"],
    [{ tenant: "acme" }, "insufficient_scope/scope"],
    [{ scope: "mcp:read mcp:write", tenant: "other" }, "insufficient_scope/claim"],
    [{ scope: "mcp:read mcp:write" }, "insufficient_scope/claim"],
    // Invalid tokens are invalid_token even when they also lack scopes.
    [{ aud: "x" }, "invalid_token/audience"],
  ];
  for (const [claims, want] of cases) {
    await t.step(`${JSON.stringify(claims)} -> ${want}`, async () => {
      const token = await s.mint(claims);
      if (want === "ok") equal((await s.verifier.verify(token)).sub, "user-1");
      else await rejects(s.verifier.verify(token), want);
    });
  }
});

Deno.test("verify() refetches once on an unknown kid, then rejects with unknown_kid", async () => {
  const s = await setup({ config: { jwksMinRefreshIntervalMs: 30_000 } });
  equal(s.keys.fetchCount, 1);
  const stranger = await generateTestKey("RS256");
  await rejects(
    s.verifier.verify(await s.mint({}, { key: stranger })),
    "invalid_token/unknown_kid",
  );
  // The initial load was at the same instant: the rate limit holds the refetch back.
  equal(s.keys.fetchCount, 1);
  s.clock.now += 30_000;
  await rejects(
    s.verifier.verify(await s.mint({}, { key: stranger })),
    "invalid_token/unknown_kid",
  );
  equal(s.keys.fetchCount, 2);
  await rejects(
    s.verifier.verify(await s.mint({}, { key: stranger })),
    "invalid_token/unknown_kid",
  );
  equal(s.keys.fetchCount, 2);
});

Deno.test("verify() accepts a token signed by a newly published key after the unknown-kid refetch", async () => {
  const s = await setup({ config: { jwksMinRefreshIntervalMs: 30_000 } });
  const next = await generateTestKey("ES256");
  s.published.push(next);
  s.clock.now += 30_000;
  const v = await s.verifier.verify(await s.mint({}, { key: next }));
  equal(v.sub, "user-1");
  equal(s.keys.fetchCount, 2);
});

Deno.test("verify() accepts a token without kid by trying the keys that fit its alg", async () => {
  const s = await setup();
  const other = await generateTestKey("RS256");
  s.published.unshift(other);
  await s.keys.refresh();
  const v = await s.verifier.verify(await s.mint({}, { header: { kid: undefined } }));
  equal(v.sub, "user-1");
});

Deno.test("verify() rejection details never contain token bytes", async () => {
  const s = await setup({ config: { requiredScopes: ["x"] } });
  const tokens = [
    await s.mint({ aud: "nope" }),
    await s.mint({ scope: "y" }),
    await s.mint({ exp: 1 }),
    (await s.mint()).slice(0, -3) + "AAA",
  ];
  for (const token of tokens) {
    const [h, p, sig] = token.split(".");
    try {
      await s.verifier.verify(token);
      assert(false, "expected a rejection");
    } catch (e) {
      const text = `${(e as Error).message} ${(e as GateError).detail}`;
      for (const part of [h, p, sig]) assert(!text.includes(part.slice(0, 16)));
    }
  }
});

Deno.test("verify() serves a verified token from the cache without another signature check", async () => {
  const s = await setup();
  const token = await s.mint();
  const first = await s.verifier.verify(token);
  const second = await s.verifier.verify(token);
  equal(s.counted.count, 1);
  equal(second, first);
});

Deno.test("verify() without the cache checks the signature every time", async () => {
  const s = await setup({ cache: false });
  const token = await s.mint();
  await s.verifier.verify(token);
  await s.verifier.verify(token);
  equal(s.counted.count, 2);
});

Deno.test("verify() re-checks time on a cache hit", async (t) => {
  await t.step("expired since it was cached", async () => {
    const s = await setup({ config: { clockSkewMs: 0 } });
    const token = await s.mint({ exp: Math.floor(s.clock.now / 1000) + 10 });
    await s.verifier.verify(token);
    s.clock.now += 10_000;
    await rejects(s.verifier.verify(token), "invalid_token/expired");
  });
  await t.step("expired within the skew: still accepted, not served from the cache", async () => {
    const s = await setup({ config: { clockSkewMs: 30_000 } });
    const token = await s.mint({ exp: Math.floor(s.clock.now / 1000) + 10 });
    await s.verifier.verify(token);
    s.clock.now += 15_000;
    equal((await s.verifier.verify(token)).sub, "user-1");
    equal(s.counted.count, 2, "the entry must not outlive exp");
    s.clock.now += 30_000;
    await rejects(s.verifier.verify(token), "invalid_token/expired");
  });
  await t.step("clock stepped back before nbf", async () => {
    const s = await setup({ config: { clockSkewMs: 0 } });
    const token = await s.mint({ nbf: Math.floor(s.clock.now / 1000) });
    await s.verifier.verify(token);
    s.clock.now -= 60_000;
    await rejects(s.verifier.verify(token), "invalid_token/not_yet_valid");
  });
});

Deno.test("verify() drops a cached token when its key leaves the key set", async () => {
  const s = await setup({ config: { jwksMinRefreshIntervalMs: 0 } });
  const token = await s.mint();
  await s.verifier.verify(token);
  s.published.splice(0, 1, await generateTestKey("RS256"));
  await s.keys.refresh();
  await rejects(s.verifier.verify(token), "invalid_token/unknown_kid");
});

Deno.test("verify() keeps cached tokens across a refresh that leaves the key unchanged", async () => {
  const s = await setup();
  const token = await s.mint();
  await s.verifier.verify(token);
  await s.keys.refresh();
  await s.verifier.verify(token);
  equal(s.counted.count, 1);
});

Deno.test("verify() caches only tokens that passed: a garbage flood cannot evict them", async () => {
  const key = await generateTestKey("EdDSA");
  const clock = { now: Date.now() };
  const config = configFor(ISS, { jwksUri: "https://as.example/jwks", requiredScopes: ["x"] });
  const keys = await createInMemoryKeyStore({
    config,
    jwks: () => ({ keys: [key.publicJwk] }),
    now: () => clock.now,
  });
  const counted = countingKeys(keys);
  const verifier = createVerifier(config, counted.store, {
    now: () => clock.now,
    cache: { maxEntries: 2 },
  });
  const mint = (claims: Record<string, unknown>) =>
    mintToken({ issuer: ISS, key, claims, nowMs: clock.now });
  const good = await mint({ scope: "x" });
  await verifier.verify(good);
  equal(counted.count, 1);
  const good2 = await mint({ scope: "x" });
  await verifier.verify(good2);
  for (let i = 0; i < 50; i++) {
    const bad = await mint({ scope: "x", aud: `nope-${i}` });
    await rejects(verifier.verify(bad), "invalid_token/audience");
    const forged = `${bad.split(".").slice(0, 2).join(".")}.${good.split(".")[2]}`;
    await rejects(verifier.verify(forged), "invalid_token/signature");
  }
  const before = counted.count;
  await verifier.verify(good);
  await verifier.verify(good2);
  equal(counted.count, before, "both good tokens still cached");
  await t_insufficient(verifier, mint, counted);
});

/** insufficient_scope results are not cached: each use checks the signature again. */
async function t_insufficient(
  verifier: TokenVerifier,
  mint: (c: Record<string, unknown>) => Promise<string>,
  counted: { readonly count: number },
) {
  const token = await mint({ scope: "y" });
  const before = counted.count;
  await rejects(verifier.verify(token), "insufficient_scope/scope");
  await rejects(verifier.verify(token), "insufficient_scope/scope");
  equal(counted.count, before + 2);
}

Deno.test("verify() does not cache tokens larger than 8 KiB", async () => {
  const s = await setup();
  const token = await s.mint({ pad: "p".repeat(9000) });
  assert(token.length > 8192 && token.length < MAX_TOKEN_BYTES);
  await s.verifier.verify(token);
  await s.verifier.verify(token);
  equal(s.counted.count, 2);
});

Deno.test("verify() rejects only with GateError, for any input", async () => {
  const s = await setup();
  const inputs = ["a.b.c", "..", "e30.e30.e30", `${b64url('{"alg":"RS256"}')}.e30.AAAA`, "\u0000"];
  for (const input of inputs) {
    try {
      await s.verifier.verify(input);
      assert(false);
    } catch (e) {
      assert(e instanceof GateError);
      assert(e.code === "invalid_token");
    }
  }
  assertEquals(s.counted.count, 1);
});
