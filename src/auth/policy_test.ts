import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { GateError } from "../errors.ts";
import { claimRef, parseRequiredClaims } from "../config/mod.ts";
import {
  checkAudience,
  checkClaims,
  checkIssuer,
  checkRequiredClaims,
  checkScopes,
  checkSubject,
  checkTime,
  checkTyp,
  createPolicy,
  grantedScopes,
  jsonEqual,
  readTimeClaims,
} from "./policy.ts";

/** The reason of a rejection, "ok" when the check passed. */
function outcome(r: unknown): string {
  if (r === undefined) return "ok";
  if (r instanceof GateError) return `${r.code}/${r.reason}`;
  return "ok";
}

Deno.test("checkTyp() accepts absent, JWT and at+jwt in any case, and refuses every other typ", async (t) => {
  const cases: [unknown, string][] = [
    [undefined, "ok"],
    ["JWT", "ok"],
    ["jwt", "ok"],
    ["at+jwt", "ok"],
    ["AT+JWT", "ok"],
    ["application/at+jwt", "ok"],
    ["Application/AT+JWT", "ok"],
    ["dpop+jwt", "invalid_token/typ"],
    ["logout+jwt", "invalid_token/typ"],
    ["secevent+jwt", "invalid_token/typ"],
    ["", "invalid_token/typ"],
    [null, "invalid_token/typ"],
    [1, "invalid_token/typ"],
    [["JWT"], "invalid_token/typ"],
  ];
  for (const [typ, want] of cases) {
    await t.step(`typ ${JSON.stringify(typ)} -> ${want}`, () => {
      assertEquals(outcome(checkTyp(typ)), want);
    });
  }
});

Deno.test("readTimeClaims() requires exp and rejects non-numeric time claims", async (t) => {
  const cases: [Record<string, unknown>, string][] = [
    [{ exp: 100 }, "ok"],
    [{ exp: 100, nbf: 1, iat: 1 }, "ok"],
    [{}, "invalid_token/missing_exp"],
    [{ nbf: 1 }, "invalid_token/missing_exp"],
    [{ exp: "100" }, "invalid_token/malformed"],
    [{ exp: null }, "invalid_token/malformed"],
    [{ exp: 100, nbf: "1" }, "invalid_token/malformed"],
    [{ exp: 100, iat: true }, "invalid_token/malformed"],
  ];
  for (const [claims, want] of cases) {
    await t.step(`${JSON.stringify(claims)} -> ${want}`, () => {
      assertEquals(outcome(readTimeClaims(claims)), want);
    });
  }
  assertEquals(readTimeClaims({ exp: 100, nbf: 5, iat: 7 }), {
    expMs: 100_000,
    nbfMs: 5_000,
    iatMs: 7_000,
  });
});

Deno.test("checkTime() applies the leeway to exp, nbf and iat", async (t) => {
  const now = 1_000_000;
  const skew = 30_000;
  const cases: [string, { expMs?: number; nbfMs?: number; iatMs?: number }, string][] = [
    ["exp in the future", { expMs: now + 1 }, "ok"],
    ["exp just passed, within leeway", { expMs: now - skew + 1 }, "ok"],
    ["exp passed by exactly the leeway", { expMs: now - skew }, "invalid_token/expired"],
    ["exp long passed", { expMs: now - 3_600_000 }, "invalid_token/expired"],
    ["no exp", {}, "invalid_token/missing_exp"],
    ["nbf in the past", { expMs: now + 1000, nbfMs: now - 1 }, "ok"],
    ["nbf ahead within leeway", { expMs: now + 1000, nbfMs: now + skew }, "ok"],
    [
      "nbf ahead beyond leeway",
      { expMs: now + 1000, nbfMs: now + skew + 1 },
      "invalid_token/not_yet_valid",
    ],
    ["iat now", { expMs: now + 1000, iatMs: now }, "ok"],
    ["iat ahead within leeway", { expMs: now + 1000, iatMs: now + skew }, "ok"],
    [
      "iat ahead beyond leeway",
      { expMs: now + 1000, iatMs: now + skew + 1 },
      "invalid_token/iat_in_future",
    ],
  ];
  for (const [name, time, want] of cases) {
    await t.step(`${name} -> ${want}`, () => {
      assertEquals(outcome(checkTime(time, now, skew)), want);
    });
  }
});

Deno.test("checkIssuer() wants the exact issuer, without slash or case normalisation", async (t) => {
  const iss = "https://auth.example.com/realms/x";
  const cases: [unknown, string | undefined, string][] = [
    [iss, iss, "ok"],
    [`${iss}/`, iss, "invalid_token/issuer"],
    ["https://AUTH.example.com/realms/x", iss, "invalid_token/issuer"],
    [undefined, iss, "invalid_token/issuer"],
    [[iss], iss, "invalid_token/issuer"],
    [iss, undefined, "invalid_token/issuer"],
  ];
  for (const [got, expected, want] of cases) {
    await t.step(`${JSON.stringify(got)} vs ${JSON.stringify(expected)} -> ${want}`, () => {
      assertEquals(outcome(checkIssuer(got, expected)), want);
    });
  }
  const err = checkIssuer("https://evil.example", iss)!;
  assert(err.detail!.includes(iss) && err.detail!.includes("https://evil.example"));
});

Deno.test("checkAudience() accepts a string or an array containing an expected audience", async (t) => {
  const auds = new Set(["https://mcp.example.com/mcp", "https://mcp.example.com/mcp/"]);
  const cases: [unknown, string][] = [
    ["https://mcp.example.com/mcp", "ok"],
    ["https://mcp.example.com/mcp/", "ok"],
    [["account", "https://mcp.example.com/mcp"], "ok"],
    ["account", "invalid_token/audience"],
    [["account", "https://other.example.com/mcp"], "invalid_token/audience"],
    ["https://mcp.example.com/mcp//", "invalid_token/audience"],
    ["https://mcp.example.com/MCP", "invalid_token/audience"],
    [undefined, "invalid_token/audience"],
    [[], "invalid_token/audience"],
    [[["https://mcp.example.com/mcp"]], "invalid_token/audience"],
    [{ aud: "https://mcp.example.com/mcp" }, "invalid_token/audience"],
  ];
  for (const [aud, want] of cases) {
    await t.step(`${JSON.stringify(aud)} -> ${want}`, () => {
      assertEquals(outcome(checkAudience(aud, auds)), want);
    });
  }
});

Deno.test("checkSubject() requires a non-empty string sub", async (t) => {
  const cases: [unknown, string][] = [
    ["user-1", "ok"],
    ["", "invalid_token/sub"],
    [undefined, "invalid_token/sub"],
    [42, "invalid_token/sub"],
    [["user-1"], "invalid_token/sub"],
  ];
  for (const [sub, want] of cases) {
    await t.step(`${JSON.stringify(sub)} -> ${want}`, () => {
      assertEquals(outcome(checkSubject(sub)), want);
    });
  }
});

Deno.test("grantedScopes() reads space-separated strings and arrays from every scope claim", () => {
  assertEquals(
    [...grantedScopes({ scope: "a  b", scp: ["c", "d"], roles: ["r"] }, refs("scope", "scp"))]
      .sort(),
    ["a", "b", "c", "d"],
  );
  assertEquals([...grantedScopes({ scope: { a: 1 } }, refs("scope"))], []);
  // An array holding a non-string is not a list of strings (claimStrings): nothing from it.
  assertEquals([...grantedScopes({ scp: ["c", 1] }, refs("scp"))], []);
  assertEquals(
    [...grantedScopes({ realm_access: { roles: ["x"] } }, refs("/realm_access/roles"))],
    ["x"],
  );
});

Deno.test("checkScopes() requires every REQUIRED_SCOPES entry, case-sensitively", async (t) => {
  const policy = { requiredScopes: ["mcp:read", "mcp:write"], scopeClaims: refs("scope", "scp") };
  const cases: [Record<string, unknown>, string][] = [
    [{ scope: "mcp:read mcp:write" }, "ok"],
    [{ scope: "openid mcp:write mcp:read" }, "ok"],
    [{ scp: ["mcp:read", "mcp:write"] }, "ok"],
    [{ scope: "mcp:read", scp: ["mcp:write"] }, "ok"],
    [{ scope: "mcp:read" }, "insufficient_scope/scope"],
    [{ scope: "MCP:READ MCP:WRITE" }, "insufficient_scope/scope"],
    [{ scope: "mcp:read,mcp:write" }, "insufficient_scope/scope"],
    [{ permissions: ["mcp:read", "mcp:write"] }, "insufficient_scope/scope"],
    [{}, "insufficient_scope/scope"],
  ];
  for (const [claims, want] of cases) {
    await t.step(`${JSON.stringify(claims)} -> ${want}`, () => {
      assertEquals(outcome(checkScopes(claims, policy)), want);
    });
  }
  assertEquals(outcome(checkScopes({}, { requiredScopes: [], scopeClaims: refs("scope") })), "ok");
  assertEquals(
    checkScopes({ scope: "mcp:read" }, policy)!.detail,
    'missing scope ["mcp:write"]',
  );
});

Deno.test("checkRequiredClaims() wants equality, or containment when the claim is an array", async (t) => {
  const policy = (required: Record<string, unknown>) => ({
    requiredClaims: parseRequiredClaims(JSON.stringify(required), () => {})!,
  });
  const cases: [string, Record<string, unknown>, Record<string, unknown>, string][] = [
    ["equal string", { tenant: "acme" }, { tenant: "acme" }, "ok"],
    ["different string", { tenant: "acme" }, { tenant: "evil" }, "insufficient_scope/claim"],
    ["missing claim", { tenant: "acme" }, {}, "insufficient_scope/claim"],
    ["equal boolean", { email_verified: true }, { email_verified: true }, "ok"],
    [
      "string vs boolean",
      { email_verified: true },
      { email_verified: "true" },
      "insufficient_scope/claim",
    ],
    ["array contains", { groups: "admins" }, { groups: ["users", "admins"] }, "ok"],
    [
      "space-separated string is one value",
      { groups: "admins" },
      { groups: "users admins" },
      "insufficient_scope/claim",
    ],
    ["pointer", { "/realm_access/roles": "mcp" }, { realm_access: { roles: ["mcp"] } }, "ok"],
    ["array lacks", { groups: "admins" }, { groups: ["users"] }, "insufficient_scope/claim"],
    ["array contains all", { groups: ["a", "b"] }, { groups: ["b", "c", "a"] }, "ok"],
    ["array lacks one", { groups: ["a", "b"] }, { groups: ["a"] }, "insufficient_scope/claim"],
    ["equal object", { org: { id: 1, n: "x" } }, { org: { n: "x", id: 1 } }, "ok"],
    ["different object", { org: { id: 1 } }, { org: { id: 2 } }, "insufficient_scope/claim"],
    [
      "string is not an array",
      { groups: "admins" },
      { groups: "admins,users" },
      "insufficient_scope/claim",
    ],
    ["two claims, one fails", { a: 1, b: 2 }, { a: 1, b: 3 }, "insufficient_scope/claim"],
  ];
  for (const [name, required, claims, want] of cases) {
    await t.step(`${name} -> ${want}`, () => {
      assertEquals(outcome(checkRequiredClaims(claims, policy(required))), want);
    });
  }
});

Deno.test("jsonEqual() compares JSON values structurally", () => {
  assert(jsonEqual([1, { a: [2] }], [1, { a: [2] }]));
  assert(!jsonEqual([1], { 0: 1 }));
  assert(!jsonEqual({ a: 1 }, { a: 1, b: undefined }));
  assert(!jsonEqual(null, {}));
});

Deno.test("checkClaims() runs the checks in contract order and returns the time claims", async (t) => {
  const policy = createPolicy({
    expectedAudience: ["https://mcp.example.com/mcp"],
    clockSkewMs: 0,
    requiredScopes: ["read"],
    scopeClaims: refs("scope"),
    requiredClaims: parseRequiredClaims('{"tenant":"acme"}', () => {})!,
  });
  const now = 1_000_000_000;
  const good = {
    iss: "https://as",
    aud: "https://mcp.example.com/mcp",
    sub: "u",
    exp: now / 1000 + 60,
    scope: "read",
    tenant: "acme",
  };
  const run = (claims: Record<string, unknown>) =>
    outcome(checkClaims(claims, { policy, issuer: "https://as", nowMs: now }));
  const cases: [string, Record<string, unknown>, string][] = [
    ["all good", good, "ok"],
    [
      "expired beats everything",
      { ...good, exp: 1, iss: "x", aud: "x", sub: "" },
      "invalid_token/expired",
    ],
    ["issuer before audience", { ...good, iss: "x", aud: "x" }, "invalid_token/issuer"],
    ["audience before sub", { ...good, aud: "x", sub: "" }, "invalid_token/audience"],
    ["sub before scope", { ...good, sub: "", scope: "" }, "invalid_token/sub"],
    ["scope before claim", { ...good, scope: "", tenant: "x" }, "insufficient_scope/scope"],
    ["claim last", { ...good, tenant: "x" }, "insufficient_scope/claim"],
  ];
  for (const [name, claims, want] of cases) {
    await t.step(`${name} -> ${want}`, () => assertEquals(run(claims), want));
  }
  assertEquals(checkClaims(good, { policy, issuer: "https://as", nowMs: now }), {
    expMs: now + 60_000,
  });
});

function refs(...names: string[]) {
  return names.map(claimRef);
}
