/**
 * Bearer token verification (docs/contract.md §4; RFC 8725, RFC 9068 §4). jose verifies the JWS
 * (`compactVerify`: protected header, `alg` allow-list, signature, payload) with a key-resolver
 * function over the gate's key store. The gate keeps, as named checks, what jose does not decide
 * or decides more leniently: the compact form (strict base64url, no JWE), the header policy (no
 * `crit` at all, no `b64`, the `typ` variants, a string `kid`), key selection from the key set
 * only (header `jku`/`x5u`/`jwk`/`x5c` are never read), then the claim checks of policy.ts.
 *
 * Keys are CryptoKeys imported once per key set (jwk_import.ts). Tokens that pass are remembered
 * by the verified-token cache (token_cache.ts) until their `exp`; bench/verify_bench.ts measures
 * both paths.
 */
import {
  base64url,
  type CompactJWSHeaderParameters,
  compactVerify,
  decodeProtectedHeader,
} from "jose";
import { type Config, type IssuerConfig, issuersOf } from "../config/mod.ts";
import { GateError } from "../errors.ts";
import type { KeyStore, KeyStores, VerificationKey } from "./jwks.ts";
import type { Logger } from "../ops/mod.ts";
import {
  checkClaims,
  checkTime,
  checkTyp,
  createPolicy,
  explainClaims,
  type Policy,
  type RuleOutcome,
  type TimeClaims,
} from "./policy.ts";
import { createTokenCache, type TokenCacheOptions } from "./token_cache.ts";

/** A token that passed every check. */
export interface VerifiedToken {
  readonly sub: string;
  readonly claims: Readonly<Record<string, unknown>>;
  /** `exp` in epoch milliseconds. */
  readonly expMs: number;
}

/** Verifies bearer tokens; see {@linkcode createVerifier}. */
export interface TokenVerifier {
  /**
   * Resolves with the verified token, or rejects with a GateError whose code is `invalid_token`
   * or `insufficient_scope` and whose `reason`/`detail` say why (for the log only).
   */
  verify(token: string): Promise<VerifiedToken>;
}

/** Dependencies of {@linkcode createVerifier}. */
export interface VerifierDeps {
  /** Clock in epoch milliseconds. */
  now?: () => number;
  log?: Logger;
  /** Verified-token cache bounds, or false to disable the cache. */
  cache?: TokenCacheOptions | false;
}

/** Tokens longer than this are malformed before any parsing (no IdP issues tokens this big). */
export const MAX_TOKEN_BYTES = 16 * 1024;

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

interface CacheEntry {
  readonly expMs: number;
  readonly result: VerifiedToken;
  readonly key: VerificationKey;
  readonly keys: KeyStore;
  readonly time: TimeClaims;
}

/** One issuer as the verifier sees it: its key store and the policy its tokens must pass. */
interface IssuerEntry {
  readonly source: IssuerConfig;
  readonly keys: KeyStore;
  readonly policy: Policy;
}

function reject(reason: GateError["reason"], detail: string): never {
  throw new GateError("invalid_token", { reason, detail });
}

/**
 * The compact JWS form (RFC 7515 §7.1): three segments of unpadded base64url (RFC 7515 §2). jose
 * decodes leniently (padding and whitespace pass `Uint8Array.fromBase64`), so the strict form is
 * checked here first, with the size cap and a JWE named as such.
 */
function checkCompactForm(token: string): void {
  if (token.length > MAX_TOKEN_BYTES) {
    reject("malformed", `token is longer than ${MAX_TOKEN_BYTES} bytes`);
  }
  const d1 = token.indexOf(".");
  const d2 = d1 < 0 ? -1 : token.indexOf(".", d1 + 1);
  if (d2 < 0 || token.indexOf(".", d2 + 1) >= 0) {
    const segments = token.split(".").length;
    // RFC 7516 §9: five segments is a JWE; it is not decrypted here (specs §4.1 item 6).
    reject(
      "malformed",
      segments === 5 ? "token is a JWE, not a JWS" : `token is not a JWS (${segments} segments)`,
    );
  }
  const header = token.slice(0, d1);
  const payload = token.slice(d1 + 1, d2);
  if (
    header === "" || payload === "" || !BASE64URL.test(header) || !BASE64URL.test(payload) ||
    !BASE64URL.test(token.slice(d2 + 1))
  ) {
    reject("malformed", "token segments are not base64url");
  }
}

/**
 * The protected header as a JSON object (jose: strict UTF-8, RFC 7515 §5.2 steps 2-4). Read here
 * only when jose refused a token before asking for its key.
 */
function readHeader(token: string): Record<string, unknown> {
  try {
    return decodeProtectedHeader(token) as Record<string, unknown>;
  } catch {
    reject("malformed", "token header is not a JSON object");
  }
}

/** One named header check; `passed` says what was accepted, for `mcp-gate check --token`. */
interface HeaderRule {
  readonly rule: string;
  check(header: Record<string, unknown>, allowedAlgs: ReadonlySet<string>): GateError | undefined;
  passed(header: Record<string, unknown>): string;
}

function invalid(reason: GateError["reason"], detail: string): GateError {
  return new GateError("invalid_token", { reason, detail });
}

/**
 * Header policy, in this order: an `alg` from the allow-list (RFC 8725 §3.1; `none` and HS* are
 * never in it, RFC 9068 §4), no `crit` and no `b64` (RFC 7515 §4.1.11: no extension is understood
 * here, so even the RFC 7797 unencoded payload jose accepts is refused), an accepted `typ`
 * (policy.ts), and a `kid` that is a string when present.
 */
const HEADER_RULES: readonly HeaderRule[] = [
  {
    rule: "alg allowed",
    check(header, allowedAlgs) {
      const alg = header.alg;
      if (typeof alg !== "string") return invalid("malformed", "token header has no alg");
      if (!allowedAlgs.has(alg)) {
        return invalid("alg", `alg ${JSON.stringify(alg.slice(0, 32))} is not allowed`);
      }
      return undefined;
    },
    passed: (header) => `alg ${JSON.stringify(header.alg)} is in ALLOWED_ALGS`,
  },
  {
    rule: "crit",
    check(header) {
      if (header.crit !== undefined || (header.b64 !== undefined && header.b64 !== true)) {
        return invalid("crit", "token header has crit or b64, which are not supported");
      }
      return undefined;
    },
    passed: () => "no crit or b64 extension",
  },
  {
    rule: "typ",
    check: (header) => checkTyp(header.typ),
    passed: (header) =>
      header.typ === undefined ? "typ absent" : `typ ${JSON.stringify(header.typ)}`,
  },
  {
    rule: "kid",
    check(header) {
      const kid = header.kid;
      if (kid !== undefined && typeof kid !== "string") {
        return invalid("malformed", "kid is not a string");
      }
      return undefined;
    },
    passed: (header) =>
      header.kid === undefined ? "no kid: every key is tried" : `kid ${JSON.stringify(header.kid)}`,
  },
];

/** Runs {@linkcode HEADER_RULES} in order; throws the first failure. */
function checkHeader(
  header: Record<string, unknown>,
  allowedAlgs: ReadonlySet<string>,
): { alg: string; kid: string | undefined } {
  for (const r of HEADER_RULES) {
    const err = r.check(header, allowedAlgs);
    if (err) throw err;
  }
  return { alg: header.alg as string, kid: header.kid as string | undefined };
}

/**
 * The key-set keys that may verify this token (RFC 8725 §3.10: the key comes from the key set
 * only): those with its `kid` (every key when it has none), refetching the set once, rate-limited,
 * for an unknown `kid`; then those whose type fits `alg` (RFC 7517 §4.4).
 */
async function selectKeys(
  keys: KeyStore,
  kid: string | undefined,
  alg: string,
): Promise<readonly VerificationKey[]> {
  let candidates = keys.keysFor(kid);
  if (candidates.length === 0 && kid !== undefined) {
    await keys.refetchForUnknownKid(kid);
    candidates = keys.keysFor(kid);
  }
  if (candidates.length === 0) {
    reject(
      "unknown_kid",
      kid === undefined ? "no key in the key set" : "kid is not in the key set",
    );
  }
  const usable = candidates.filter((k) => k.algs.has(alg));
  if (usable.length === 0) reject("alg", `alg "${alg}" does not match the key`);
  return usable;
}

/**
 * A jose error as the gate's reason; anything else is rethrown (a bug, logged by the caller).
 * jose's messages are not copied into the detail: some quote header members.
 */
function fromJose(e: unknown): GateError {
  const code = (e as { code?: unknown } | null)?.code;
  switch (code) {
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return new GateError("invalid_token", {
        reason: "signature",
        detail: "signature does not verify",
      });
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return new GateError("invalid_token", { reason: "alg", detail: "alg is not allowed" });
    case "ERR_JWS_INVALID":
    case "ERR_JOSE_NOT_SUPPORTED":
      return new GateError("invalid_token", {
        reason: "malformed",
        detail: `token is not a valid JWS (${code})`,
      });
  }
  throw e;
}

/**
 * The unverified `iss` of a compact JWS whose form was checked, only to choose a key set: the
 * token is then verified against that issuer exactly (the verified `iss` must be the same).
 */
function unverifiedIssuer(token: string): unknown {
  const d1 = token.indexOf(".");
  const payload = token.slice(d1 + 1, token.indexOf(".", d1 + 1));
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(payload, { alphabet: "base64url" });
  } catch {
    reject("malformed", "token segments are not base64url");
  }
  return readClaims(bytes).iss;
}

/** The JWT Claims Set (RFC 7519 §7.2 step 10): a JSON object in UTF-8. */
function readClaims(payload: Uint8Array): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(utf8.decode(payload));
  } catch {
    reject("malformed", "token payload is not a JSON object");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    reject("malformed", "token payload is not a JSON object");
  }
  return v as Record<string, unknown>;
}

/** The algorithms a token may use: ALLOWED_ALGS, never `none` or HS* (RFC 8725 §3.1). */
function allowedAlgsOf(config: Config): ReadonlySet<string> {
  return new Set(config.allowedAlgs.filter((a) => a !== "none" && !a.startsWith("HS")));
}

/**
 * Each issuer of the configuration with its key store and policy, and the choice of the one whose
 * keys may verify a token: the only one, or with several the one its unverified `iss` names
 * exactly (a token naming none is refused, `issuer`, before any key is looked up).
 */
function issuerEntries(
  config: Config,
  keys: KeyStore | KeyStores,
): { readonly entries: readonly IssuerEntry[]; choose(token: string): IssuerEntry } {
  const stores = "stores" in keys ? keys.stores : [keys];
  const issuers = issuersOf(config);
  if (stores.length !== issuers.length) {
    throw new TypeError(`Expected ${issuers.length} key stores, got ${stores.length}`);
  }
  const entries: IssuerEntry[] = issuers.map((source, i) => ({
    source,
    keys: stores[i],
    policy: createPolicy({ ...config, expectedAudience: source.audiences }),
  }));
  const byIssuer = new Map(entries.map((e) => [e.source.issuer, e]));
  return {
    entries,
    choose(token) {
      if (entries.length === 1) return entries[0];
      const iss = unverifiedIssuer(token);
      const entry = typeof iss === "string" ? byIssuer.get(iss) : undefined;
      if (entry) return entry;
      const shown = typeof iss === "string" ? JSON.stringify(iss.slice(0, 200)) : typeof iss;
      reject("issuer", `iss ${shown} names no configured issuer`);
    },
  };
}

/**
 * Creates the verifier over one key store (the first issuer's) or every issuer's
 * ({@linkcode KeyStores}). The policy of each issuer (its audiences, and the scopes, claims and
 * leeway all share) and the allowed algorithms are fixed here. With several issuers a token's
 * unverified `iss` chooses the key set, and a token naming none of them is refused (`issuer`)
 * before any key is looked up or fetched; with one, every token is checked against its keys.
 */
export function createVerifier(
  config: Config,
  keys: KeyStore | KeyStores,
  deps: VerifierDeps = {},
): TokenVerifier {
  const now = deps.now ?? Date.now;
  const issuers = issuerEntries(config, keys);
  const allowedAlgs = allowedAlgsOf(config);
  const cache = deps.cache === false ? undefined : createTokenCache<CacheEntry>(deps.cache);
  const issuerFor = (token: string) => issuers.choose(token);

  const algorithms = [...allowedAlgs];

  /**
   * jose verifies the JWS (RFC 7515 §5.2) and asks `resolveKey` for the key once it has parsed
   * the protected header and accepted its `alg` and `crit`. The resolver applies the gate's
   * header policy to that same header, then selects keys from the key store. When several keys
   * may fit (no `kid`, or a repeated one), the others are tried after a signature failure.
   */
  async function verifyJws(
    token: string,
    keys: KeyStore,
  ): Promise<{ payload: Uint8Array; key: VerificationKey }> {
    let alg = "";
    let candidates: readonly VerificationKey[] | undefined;
    const resolveKey = async (header: CompactJWSHeaderParameters): Promise<CryptoKey> => {
      const checked = checkHeader(header as Record<string, unknown>, allowedAlgs);
      alg = checked.alg;
      candidates = await selectKeys(keys, checked.kid, alg);
      return candidates[0].cryptoKey(alg)!;
    };
    try {
      const { payload } = await compactVerify(token, resolveKey, { algorithms });
      return { payload, key: candidates![0] };
    } catch (e) {
      if (e instanceof GateError) throw e;
      if (candidates === undefined) {
        // jose refused the header before asking for a key: the gate's header checks, in their
        // order, name the reason (an empty `crit` is "crit" here, a JWS error to jose).
        checkHeader(readHeader(token), allowedAlgs);
        throw fromJose(e);
      }
      let failure = fromJose(e);
      for (const key of candidates.slice(1)) {
        if (failure.reason !== "signature") break;
        try {
          const { payload } = await compactVerify(token, key.cryptoKey(alg)!, { algorithms });
          return { payload, key };
        } catch (e) {
          failure = fromJose(e);
        }
      }
      throw failure;
    }
  }

  async function verifyUncached(token: string, nowMs: number): Promise<VerifiedToken> {
    checkCompactForm(token);
    const issuer = issuerFor(token);
    if (!issuer.keys.ready) {
      throw new GateError("not_ready", { reason: "keys_not_loaded", retryAfterSeconds: 5 });
    }
    const { payload, key } = await verifyJws(token, issuer.keys);
    const claims = readClaims(payload);
    const checked = checkClaims(claims, {
      policy: issuer.policy,
      issuer: issuer.source.issuer,
      nowMs,
    });
    if (checked instanceof GateError) {
      // A 403 comes after the subject check: name the subject, so the refusal is charged to it.
      if (checked.code !== "insufficient_scope") throw checked;
      throw new GateError(checked.code, {
        reason: checked.reason,
        detail: checked.detail,
        subject: claims.sub as string,
        issuer: claims.iss as string,
      });
    }

    const result: VerifiedToken = Object.freeze({
      sub: claims.sub as string,
      claims: Object.freeze(claims),
      expMs: checked.expMs!,
    });
    cache?.set(
      token,
      { expMs: result.expMs, result, key, keys: issuer.keys, time: checked },
      nowMs,
    );
    return result;
  }

  return {
    async verify(token) {
      const nowMs = now();
      if (cache) {
        const hit = cache.get(token, nowMs);
        if (hit) {
          // docs/contract.md §4: time is re-checked on each use; a key that left the set ends
          // the entry.
          if (hit.keys.hasKey(hit.key)) {
            const err = checkTime(hit.time, nowMs, config.clockSkewMs);
            if (!err) return hit.result;
          }
          cache.delete(token);
        }
      }
      try {
        return await verifyUncached(token, nowMs);
      } catch (e) {
        if (e instanceof GateError) throw e;
        // A bug must not turn into a 500 or an acceptance: reject, and say so in the log.
        deps.log?.error("token verification failed unexpectedly", { error: String(e) });
        throw new GateError("invalid_token", { reason: "malformed", detail: "internal error" });
      }
    },
  };
}

/** What {@linkcode explainToken} found: each rule's outcome and the verifier's own verdict. */
export interface TokenExplanation {
  readonly rules: readonly RuleOutcome[];
  /** What {@linkcode createVerifier}'s `verify` decided for the same token, at the same time. */
  readonly verdict: { readonly ok: true; readonly sub: string } | {
    readonly ok: false;
    readonly error: GateError;
  };
}

/**
 * Every rule of docs/contract.md §4 applied to `token` one by one, for `mcp-gate check --token`:
 * the compact form, the header rules, the key found by `kid`/`alg`, the signature, then
 * {@linkcode explainClaims} (run on the decoded claims even when the signature failed, so every
 * reason shows at once). Uses the same named checks as the verifier and then asks the verifier
 * itself for the verdict, so the two cannot disagree unnoticed. No outcome holds token bytes.
 */
export async function explainToken(
  token: string,
  deps: { config: Config; keys: KeyStore | KeyStores; now?: () => number },
): Promise<TokenExplanation> {
  const { config } = deps;
  const nowMs = (deps.now ?? Date.now)();
  const allowedAlgs = allowedAlgsOf(config);
  const issuers = issuerEntries(config, deps.keys);
  const rules: RuleOutcome[] = [];
  const fail = (rule: string, e: unknown) => {
    if (!(e instanceof GateError)) throw e;
    rules.push({ rule, ok: false, detail: e.detail ?? e.code, error: e });
  };
  const skipped = (rule: string, why: string) => rules.push({ rule, ok: undefined, detail: why });

  const verifier = createVerifier(config, deps.keys, { cache: false, now: () => nowMs });
  const verdict = await verifier.verify(token).then(
    (t) => ({ ok: true as const, sub: t.sub }),
    (error: GateError) => ({ ok: false as const, error }),
  );

  try {
    checkCompactForm(token);
    rules.push({ rule: "form", ok: true, detail: "three base64url segments (JWS compact form)" });
  } catch (e) {
    fail("form", e);
    return { rules, verdict };
  }
  let issuer: IssuerEntry;
  try {
    issuer = issuers.choose(token);
    if (issuers.entries.length > 1) {
      rules.push({
        rule: "issuer's key set",
        ok: true,
        detail: `iss ${JSON.stringify(issuer.source.issuer)} chooses its key set`,
      });
    }
  } catch (e) {
    fail("issuer's key set", e);
    return { rules, verdict };
  }
  const keys = issuer.keys;
  if (!keys.ready) {
    fail(
      "key",
      new GateError("not_ready", {
        reason: "keys_not_loaded",
        detail: `the key set of ${JSON.stringify(issuer.source.issuer)} is not loaded`,
      }),
    );
    return { rules, verdict };
  }
  let header: Record<string, unknown>;
  try {
    header = readHeader(token);
  } catch (e) {
    fail("header", e);
    return { rules, verdict };
  }
  let headerOk = true;
  for (const r of HEADER_RULES) {
    const err = r.check(header, allowedAlgs);
    if (err) {
      headerOk = false;
      fail(r.rule, err);
    } else rules.push({ rule: r.rule, ok: true, detail: r.passed(header) });
  }

  let signed = false;
  if (!headerOk) {
    skipped("key", "not looked up: the header failed a rule");
    skipped("signature", "not checked: no key");
  } else {
    const { alg, kid } = checkHeader(header, allowedAlgs);
    let candidates: readonly VerificationKey[] = [];
    try {
      candidates = await selectKeys(keys, kid, alg);
      const names = candidates.map((k) => JSON.stringify(k.kid ?? null)).join(", ");
      rules.push({ rule: "key", ok: true, detail: `${alg} key(s) in the key set: kid ${names}` });
    } catch (e) {
      fail("key", e);
      skipped("signature", "not checked: no key");
    }
    if (candidates.length > 0) {
      let failure: GateError | undefined;
      for (const key of candidates) {
        try {
          await compactVerify(token, key.cryptoKey(alg)!, { algorithms: [...allowedAlgs] });
          signed = true;
          rules.push({
            rule: "signature",
            ok: true,
            detail: `verifies with kid ${JSON.stringify(key.kid ?? null)}`,
          });
          break;
        } catch (e) {
          failure = e instanceof GateError ? e : fromJose(e);
        }
      }
      if (!signed) fail("signature", failure!);
    }
  }

  let claims: Record<string, unknown>;
  try {
    const d1 = token.indexOf(".");
    const payload = token.slice(d1 + 1, token.indexOf(".", d1 + 1));
    claims = readClaims(base64url.decode(payload));
  } catch (e) {
    fail("claims", e instanceof GateError ? e : invalid("malformed", "payload is not base64url"));
    return { rules, verdict };
  }
  const context = { policy: issuer.policy, issuer: issuer.source.issuer, nowMs };
  for (const outcome of explainClaims(claims, context)) {
    rules.push(
      signed || !outcome.ok ? outcome : {
        ...outcome,
        detail: `${outcome.detail} (not trusted: the signature did not verify)`,
      },
    );
  }
  return { rules, verdict };
}
