/**
 * REQUIRED_CLAIMS' claim=a|b form on a single-valued claim.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../config/mod.ts";
import { TEST_ENV } from "../../tests/helpers/config.ts";
import { checkRequiredClaims } from "./policy.ts";

Deno.test("REQUIRED_CLAIMS email=a|b refuses an email claim that merely holds an allowed address as a word", () => {
  // docs/identity-providers.md (Google, "Named users"): `email=alice@example.com|bob@example.com`
  // "admits exactly those verified addresses" and "compares whole values". An address with a
  // quoted local part may hold spaces (RFC 5321 §4.1.2): `"x alice@example.com y"@evil.example`
  // is one address, the attacker's own, and not alice's.
  const { requiredClaims } = parseConfig({
    ...TEST_ENV,
    REQUIRED_CLAIMS: "email_verified=true,email=alice@example.com|bob@example.com",
  });
  const policy = { requiredClaims };
  assert.equal(
    checkRequiredClaims({ email_verified: "true", email: "alice@example.com" }, policy),
    undefined,
  );
  const err = checkRequiredClaims(
    { email_verified: "true", email: '"x alice@example.com y"@evil.example' },
    policy,
  );
  assert.ok(err, "an email claim holding alice@example.com as a word passes the allow-list");
});
