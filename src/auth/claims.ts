/**
 * Reading claims where providers put them: a configured claim is a top-level name or a JSON
 * Pointer (RFC 6901) into the claims set (Keycloak `/realm_access/roles`, `/resource_access/<client>/roles`),
 * and a claim value is read as a list of strings by one rule, {@linkcode claimStrings}, for every
 * consumer (SCOPE_CLAIMS, REQUIRED_CLAIMS, CLAIM_HEADERS).
 */
import type { ClaimRef } from "../config/mod.ts";

/** RFC 6901 §4: an array index is "0" or digits without a leading zero. */
const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/**
 * The value `ref` names in `claims` (RFC 6901 §4 evaluation), or `undefined` when it names
 * nothing: an object is entered by one of its own members (never an inherited property such as
 * `__proto__` or `constructor`), an array by an index within it ("-", the element after the last,
 * names nothing), and a string, number, boolean or null has no members.
 */
export function claimAt(claims: Readonly<Record<string, unknown>>, ref: ClaimRef): unknown {
  let v: unknown = claims;
  for (const token of ref.path) {
    if (Array.isArray(v)) {
      if (!ARRAY_INDEX.test(token)) return undefined;
      const i = Number(token);
      if (i >= v.length) return undefined;
      v = v[i];
    } else if (typeof v === "object" && v !== null && Object.hasOwn(v, token)) {
      v = (v as Record<string, unknown>)[token];
    } else return undefined;
  }
  return v;
}

/**
 * A claim value as a list of strings, the one rule every claim consumer applies: an array of
 * strings is its elements; a string is its space-separated words (RFC 6749 §3.3, RFC 9068
 * §2.2.3: `"a b"` and `["a","b"]` are the same list); anything else (a number, an object, an array
 * holding a non-string) is not a list of strings: `undefined`.
 */
export function claimStrings(value: unknown): readonly string[] | undefined {
  if (typeof value === "string") return value.split(" ").filter((s) => s !== "");
  if (!Array.isArray(value)) return undefined;
  for (const s of value) if (typeof s !== "string") return undefined;
  return value as string[];
}
