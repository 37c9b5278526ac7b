/**
 * explainToken() (`mcp-gate check --token`) against the verifier: the same named rules, so for
 * any token the first rule it marks failed carries the verifier's own reason, and a token with no
 * failed rule is exactly one the verifier accepts.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { explainToken } from "./verify.ts";
import { parseRequiredClaims } from "../config/mod.ts";
import {
  configFor,
  createInMemoryKeyStore,
  generateTestKey,
  mintToken,
  signJws,
  type TestKey,
} from "../../tests/helpers/issuer.ts";

const ISS = "https://auth.example.com/realms/test";
const AUD = "https://mcp.example.com/mcp";

Deno.test("explainToken() agrees with the verifier: first failed rule = its reason, none failed = accepted", async () => {
  const key = await generateTestKey("ES256");
  const other = await generateTestKey("ES256");
  const nowMs = Date.now();
  const config = configFor(ISS, {
    jwksUri: "https://as.example/jwks",
    requiredScopes: ["read"],
    requiredClaims: parseRequiredClaims('{"tenant":"acme"}', () => assert.fail())!,
  });
  await using keys = await createInMemoryKeyStore({
    config,
    jwks: () => ({ keys: [key.publicJwk] }),
    now: () => nowMs,
  });
  const nowS = Math.floor(nowMs / 1000);
  const claim = <T>(values: T[]) => fc.option(fc.constantFrom(...values), { nil: undefined });
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        iss: claim([ISS, `${ISS}/`, 42]),
        aud: claim([AUD, [AUD, "x"], "other"]),
        sub: claim(["u", ""]),
        exp: claim([nowS + 300, nowS - 3600, nowS - 10, "soon"]),
        nbf: claim([nowS + 3600, nowS - 10]),
        scope: claim(["read", "write", ["read"]]),
        tenant: claim(["acme", "other"]),
      }, { requiredKeys: [] }),
      fc.record({
        typ: claim(["at+jwt", "JWT", "dpop+jwt"]),
        alg: fc.constantFrom("ES256", "RS256", "HS256", "none"),
        kid: fc.constantFrom<"key" | "other" | "absent" | "number">(
          "key",
          "other",
          "absent",
          "number",
        ),
        crit: fc.boolean(),
      }),
      fc.constantFrom<"key" | "other">("key", "other"),
      async (claims, h, signer) => {
        const header: Record<string, unknown> = { alg: h.alg };
        if (h.typ !== undefined) header.typ = h.typ;
        if (h.kid === "key") header.kid = key.kid;
        if (h.kid === "other") header.kid = other.kid;
        if (h.kid === "number") header.kid = 7;
        if (h.crit) header.crit = ["exp"];
        const payload = Object.fromEntries(
          Object.entries(claims).filter(([, v]) => v !== undefined),
        );
        const signing: TestKey = signer === "key" ? key : other;
        const token = await signJws({ header, payload, key: signing });
        const { rules, verdict } = await explainToken(token, { config, keys, now: () => nowMs });
        const failed = rules.filter((r) => r.ok === false);
        if (verdict.ok) assert.deepEqual(failed, [], JSON.stringify(rules));
        else {
          assert.ok(failed.length > 0, `refused (${verdict.error.reason}) but no rule failed`);
          assert.equal(failed[0].error?.reason, verdict.error.reason, JSON.stringify(rules));
          assert.equal(failed[0].error?.code, verdict.error.code);
        }
        const text = JSON.stringify(rules.map((r) => [r.rule, r.detail]));
        assert.ok(!text.includes(token.split(".")[2]), "no signature in any detail");
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("explainToken() names every rule and says why each failed", async () => {
  const key = await generateTestKey("RS256");
  const nowMs = Math.floor(Date.now() / 1000) * 1000;
  const config = configFor(ISS, { jwksUri: "https://as.example/jwks", requiredScopes: ["read"] });
  await using keys = await createInMemoryKeyStore({
    config,
    jwks: () => ({ keys: [key.publicJwk] }),
    now: () => nowMs,
  });
  const token = await mintToken({
    issuer: ISS,
    key,
    audience: "https://other.example.com",
    claims: { scope: "write", exp: Math.floor(nowMs / 1000) - 600 },
    nowMs,
  });
  const { rules, verdict } = await explainToken(token, { config, keys, now: () => nowMs });
  assert.deepEqual(rules.map((r) => [r.rule, r.ok]), [
    ["form", true],
    ["alg allowed", true],
    ["crit", true],
    ["typ", true],
    ["kid", true],
    ["key", true],
    ["signature", true],
    ["exp/nbf/iat", false],
    ["iss", true],
    ["aud", false],
    ["sub", true],
    ["scopes", false],
    ["required claims", true],
  ]);
  assert.equal(verdict.ok, false);
  const detail = Object.fromEntries(rules.map((r) => [r.rule, r.detail]));
  assert.match(detail["exp/nbf/iat"], /^expired 600 s ago$/);
  assert.match(detail.aud, /^expected aud \[.*\], got "https:\/\/other\.example\.com"$/);
  assert.equal(detail.scopes, 'missing scope ["read"]');
  assert.equal(detail["alg allowed"], 'alg "RS256" is in ALLOWED_ALGS');
});
