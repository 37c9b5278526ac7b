/**
 * REQUIRED_CLAIMS edge cases an independent review found.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../config/mod.ts";
import { TEST_ENV } from "../../tests/helpers/config.ts";
import { checkRequiredClaims } from "./policy.ts";

function requiredClaims(json: string) {
  return parseConfig({ ...TEST_ENV, REQUIRED_CLAIMS: json }).requiredClaims;
}

Deno.test('REQUIRED_CLAIMS {"tenant":"acme"} refuses a tenant claim that merely holds the word acme', () => {
  const policy = { requiredClaims: requiredClaims('{"tenant":"acme"}') };
  assert.equal(checkRequiredClaims({ tenant: "acme" }, policy), undefined);
  // A single-valued identity claim (tenant, org, hd, department) is not a scope list: a value the
  // user or another tenant's admin can shape ("Evil acme", a display-name style attribute) must
  // not pass for "acme". The claim=value|value form is where list membership belongs.
  const err = checkRequiredClaims({ tenant: "evil acme" }, policy);
  assert.ok(err, 'tenant "evil acme" satisfies {"tenant":"acme"}');
});

Deno.test("REQUIRED_CLAIMS with an empty array value is refused at start, not satisfied by every token", () => {
  let requiredClaimsOrProblem: unknown;
  try {
    requiredClaimsOrProblem = requiredClaims('{"roles":[]}');
  } catch (e) {
    requiredClaimsOrProblem = e;
  }
  if (requiredClaimsOrProblem instanceof Error) return; // refused at start: fixed
  const policy = { requiredClaims: requiredClaimsOrProblem as ReturnType<typeof requiredClaims> };
  // [].every(...) is true: a token with no roles claim at all passes the requirement.
  assert.ok(
    checkRequiredClaims({ sub: "anyone" }, policy),
    '{"roles":[]} admits a token without any roles claim',
  );
});
