/**
 * Pure token policy: header `typ`, the time claims, `iss`, `aud`, `sub`, scopes and required
 * claims. Each check is a small named function returning `undefined` (ok) or the GateError to
 * reject with; {@linkcode checkClaims} chains them in contract order. No clock, no I/O: the
 * caller passes the time and the expected issuer.
 */
import type { ClaimRef, Config, RequiredClaim } from "../config/mod.ts";
import { GateError } from "../errors.ts";
import { claimAt, claimStrings } from "./claims.ts";

/** `undefined` when the check passed, else the rejection. */
export type CheckResult = GateError | undefined;

/** What the claim checks need, derived once from Config. */
export interface Policy {
  readonly audiences: ReadonlySet<string>;
  readonly clockSkewMs: number;
  readonly requiredScopes: readonly string[];
  readonly scopeClaims: readonly ClaimRef[];
  readonly requiredClaims: readonly RequiredClaim[];
}

/** Builds the {@linkcode Policy} from the relevant Config fields. */
export function createPolicy(
  config: Pick<
    Config,
    "expectedAudience" | "clockSkewMs" | "requiredScopes" | "scopeClaims" | "requiredClaims"
  >,
): Policy {
  return Object.freeze({
    audiences: new Set(config.expectedAudience),
    clockSkewMs: config.clockSkewMs,
    requiredScopes: [...config.requiredScopes],
    scopeClaims: [...config.scopeClaims],
    requiredClaims: [...config.requiredClaims],
  });
}

function invalid(reason: GateError["reason"], detail: string): GateError {
  return new GateError("invalid_token", { reason, detail });
}

/** Header `typ` values accepted, compared case-insensitively (RFC 9068 §4, lenient: §4.3 of specs). */
const ACCEPTED_TYP: ReadonlySet<string> = new Set(["jwt", "at+jwt", "application/at+jwt"]);

/**
 * Header `typ`: absent, `JWT`, `at+jwt` or `application/at+jwt` (RFC 9068 §2.1, §4; RFC 8725
 * §3.11). Anything else (`dpop+jwt`, `logout+jwt`, an ID token's explicit type...) is refused.
 */
export function checkTyp(typ: unknown): CheckResult {
  if (typ === undefined) return undefined;
  if (typeof typ === "string" && ACCEPTED_TYP.has(typ.toLowerCase())) return undefined;
  return invalid("typ", `typ ${describe(typ)} is not accepted`);
}

/** The time claims as epoch milliseconds; `undefined` when absent. */
export interface TimeClaims {
  expMs?: number;
  nbfMs?: number;
  iatMs?: number;
}

/**
 * Reads `exp`, `nbf`, `iat` (RFC 7519 §4.1.4-6: NumericDate seconds). A present claim that is
 * not a finite number is malformed; a missing `exp` is `missing_exp` (RFC 9068 §2.2).
 */
export function readTimeClaims(claims: Readonly<Record<string, unknown>>): TimeClaims | GateError {
  const out: TimeClaims = {};
  for (const name of ["exp", "nbf", "iat"] as const) {
    const v = claims[name];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      return invalid("malformed", `${name} is not a number`);
    }
    out[`${name}Ms`] = v * 1000;
  }
  if (out.expMs === undefined) return invalid("missing_exp", "token has no exp");
  return out;
}

/**
 * `exp` (required), `nbf` and `iat` against `nowMs` with `skewMs` leeway (RFC 7519 §4.1.4-6,
 * RFC 9068 §4). Re-run on every verified-token cache hit.
 */
export function checkTime(time: TimeClaims, nowMs: number, skewMs: number): CheckResult {
  if (time.expMs === undefined) return invalid("missing_exp", "token has no exp");
  if (nowMs >= time.expMs + skewMs) {
    return invalid("expired", `expired ${Math.round((nowMs - time.expMs) / 1000)} s ago`);
  }
  if (time.nbfMs !== undefined && nowMs + skewMs < time.nbfMs) {
    return invalid("not_yet_valid", `nbf is ${Math.round((time.nbfMs - nowMs) / 1000)} s ahead`);
  }
  if (time.iatMs !== undefined && nowMs + skewMs < time.iatMs) {
    return invalid("iat_in_future", `iat is ${Math.round((time.iatMs - nowMs) / 1000)} s ahead`);
  }
  return undefined;
}

/** `iss` must be exactly the expected issuer: no slash or case normalisation (RFC 9068 §4). */
export function checkIssuer(iss: unknown, expected: string | undefined): CheckResult {
  if (expected !== undefined && iss === expected) return undefined;
  return invalid("issuer", `expected iss "${expected ?? "(unknown)"}", got ${describe(iss)}`);
}

/** `aud`, a string or an array of strings, must contain an expected audience (RFC 9068 §4). */
export function checkAudience(aud: unknown, audiences: ReadonlySet<string>): CheckResult {
  if (typeof aud === "string") {
    if (audiences.has(aud)) return undefined;
  } else if (Array.isArray(aud)) {
    for (const a of aud) if (typeof a === "string" && audiences.has(a)) return undefined;
  }
  return invalid(
    "audience",
    `expected aud ${describe([...audiences])}, got ${describe(aud)}`,
  );
}

/** `sub` must be a non-empty string (as in the original mcp-gate). */
export function checkSubject(sub: unknown): CheckResult {
  if (typeof sub === "string" && sub.length > 0) return undefined;
  return invalid("sub", sub === undefined ? "token has no sub" : "sub is not a non-empty string");
}

/**
 * Scopes granted by the token: the union over `scopeClaims` of each claim's list of strings
 * ({@linkcode claimStrings}: a space-delimited string, RFC 9068 §2.2.3, or an array of strings,
 * Okta `scp`, Entra `roles`).
 */
export function grantedScopes(
  claims: Readonly<Record<string, unknown>>,
  scopeClaims: readonly ClaimRef[],
): Set<string> {
  const granted = new Set<string>();
  for (const ref of scopeClaims) {
    for (const s of claimStrings(claimAt(claims, ref)) ?? []) granted.add(s);
  }
  return granted;
}

/** Every REQUIRED_SCOPES entry must be granted, case-sensitively (RFC 6750 §3.1). */
export function checkScopes(
  claims: Readonly<Record<string, unknown>>,
  policy: Pick<Policy, "requiredScopes" | "scopeClaims">,
): CheckResult {
  if (policy.requiredScopes.length === 0) return undefined;
  const granted = grantedScopes(claims, policy.scopeClaims);
  const missing = policy.requiredScopes.filter((s) => !granted.has(s));
  if (missing.length === 0) return undefined;
  return new GateError("insufficient_scope", {
    reason: "scope",
    detail: `missing scope ${describe(missing)}`,
  });
}

/**
 * Each REQUIRED_CLAIMS entry ({@linkcode RequiredClaim}): `equals`, the claim equals the value
 * (deep JSON equality) or, being an array, holds it (every element of it, when the value is an
 * array); `anyOf`, the claim holds one of the values. A string claim is one whole value here,
 * except a claim named in SCOPE_CLAIMS, whose string is a space-delimited list by definition
 * (RFC 6749 §3.3, RFC 9068 §2.2.3). Splitting other strings into words would let a value the
 * user can shape pass: `"x alice@example.com y"@evil.example` is an address, and not alice's;
 * "evil acme" is not the tenant "acme".
 */
export function checkRequiredClaims(
  claims: Readonly<Record<string, unknown>>,
  policy: Pick<Policy, "requiredClaims"> & { readonly scopeClaims?: readonly ClaimRef[] },
): CheckResult {
  for (const required of policy.requiredClaims) {
    const have = claimAt(claims, required.claim);
    const words = (policy.scopeClaims ?? []).some((c) => samePath(c.path, required.claim.path));
    if (claimSatisfies(have, required, words)) continue;
    return new GateError("insufficient_scope", {
      reason: "claim",
      detail: `claim "${required.claim.text.slice(0, 64)}" does not match the required value`,
    });
  }
  return undefined;
}

function samePath(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

/**
 * A claim as the list REQUIRED_CLAIMS tests: {@linkcode claimStrings} (arrays; a scope claim's
 * string as words), except that any other string is a one-element list.
 */
function requiredList(have: unknown, words: boolean): readonly string[] | undefined {
  return typeof have === "string" && !words ? [have] : claimStrings(have);
}

function claimSatisfies(have: unknown, required: RequiredClaim, words: boolean): boolean {
  if (required.kind === "anyOf") {
    const list = requiredList(have, words);
    return list !== undefined && required.values.some((v) => list.includes(v));
  }
  const want = required.value;
  if (jsonEqual(have, want)) return true;
  const holds = (w: unknown) =>
    (Array.isArray(have) && have.some((h) => jsonEqual(h, w))) ||
    (words && typeof w === "string" && (requiredList(have, words)?.includes(w) ?? false));
  if (Array.isArray(want)) return want.every(holds);
  return holds(want);
}

/** Structural equality of JSON values (objects compared by keys, not order). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((v, i) => jsonEqual(v, bb[i]));
  }
  const ak = Object.keys(a);
  const bo = b as Record<string, unknown>;
  if (ak.length !== Object.keys(bo).length) return false;
  return ak.every((k) =>
    Object.hasOwn(bo, k) && jsonEqual((a as Record<string, unknown>)[k], bo[k])
  );
}

/** What the claim checks are run against. */
export interface ClaimContext {
  readonly policy: Policy;
  readonly issuer: string | undefined;
  readonly nowMs: number;
}

/** One named claim check: `rule` and `passed` say what it accepted, for `mcp-gate check --token`. */
export interface ClaimRule {
  readonly rule: string;
  check(claims: Readonly<Record<string, unknown>>, ctx: ClaimContext): CheckResult;
  passed(claims: Readonly<Record<string, unknown>>, ctx: ClaimContext): string;
}

/**
 * The claim checks in docs/contract.md §4 order, after the signature: time, `iss`, `aud`, `sub`,
 * then scopes and required claims (403). The one list both {@linkcode checkClaims} (first failure
 * wins) and {@linkcode explainClaims} (every rule) walk.
 */
export const CLAIM_RULES: readonly ClaimRule[] = Object.freeze([
  {
    rule: "exp/nbf/iat",
    check(claims, ctx) {
      const time = readTimeClaims(claims);
      if (time instanceof GateError) return time;
      return checkTime(time, ctx.nowMs, ctx.policy.clockSkewMs);
    },
    passed(claims, ctx) {
      const left = Math.round(((claims.exp as number) * 1000 - ctx.nowMs) / 1000);
      const skew = `CLOCK_SKEW ${ctx.policy.clockSkewMs / 1000} s`;
      return left >= 0
        ? `expires in ${left} s (${skew})`
        : `expired ${-left} s ago, within ${skew}`;
    },
  },
  {
    rule: "iss",
    check: (claims, ctx) => checkIssuer(claims.iss, ctx.issuer),
    passed: (claims) => `iss ${describe(claims.iss)}`,
  },
  {
    rule: "aud",
    check: (claims, ctx) => checkAudience(claims.aud, ctx.policy.audiences),
    passed: (claims) => `aud ${describe(claims.aud)} names this resource`,
  },
  {
    rule: "sub",
    check: (claims) => checkSubject(claims.sub),
    passed: (claims) => `sub ${describe(claims.sub)}`,
  },
  {
    rule: "scopes",
    check: (claims, ctx) => checkScopes(claims, ctx.policy),
    passed: (_, ctx) =>
      ctx.policy.requiredScopes.length === 0
        ? "no REQUIRED_SCOPES"
        : `granted ${describe(ctx.policy.requiredScopes)}`,
  },
  {
    rule: "required claims",
    check: (claims, ctx) => checkRequiredClaims(claims, ctx.policy),
    passed: (_, ctx) =>
      ctx.policy.requiredClaims.length === 0
        ? "no REQUIRED_CLAIMS"
        : `${describe(ctx.policy.requiredClaims.map((r) => r.claim.text))} match`,
  },
]);

/**
 * Runs {@linkcode CLAIM_RULES} in order and stops at the first failure. Returns the parsed time
 * claims on success, for the cache.
 */
export function checkClaims(
  claims: Readonly<Record<string, unknown>>,
  options: ClaimContext,
): TimeClaims | GateError {
  for (const r of CLAIM_RULES) {
    const err = r.check(claims, options);
    if (err) return err;
  }
  return readTimeClaims(claims);
}

/** Every rule of {@linkcode CLAIM_RULES} with its result, for `mcp-gate check --token`. */
export function explainClaims(
  claims: Readonly<Record<string, unknown>>,
  options: ClaimContext,
): RuleOutcome[] {
  return CLAIM_RULES.map((r) => {
    const error = r.check(claims, options);
    return error
      ? { rule: r.rule, ok: false, detail: error.detail ?? error.code, error }
      : { rule: r.rule, ok: true, detail: r.passed(claims, options) };
  });
}

/**
 * One rule's result for `mcp-gate check --token`: passed, failed with the rejection, or not
 * checked (`ok` undefined) because an earlier step failed. `detail` never holds token bytes.
 */
export interface RuleOutcome {
  readonly rule: string;
  readonly ok: boolean | undefined;
  readonly detail: string;
  readonly error?: GateError;
}

/** A short JSON rendering of a token value for a log detail (bounded, never the token). */
function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}
