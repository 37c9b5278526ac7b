/**
 * Bearer token verification (contract §4; RFC 8725, RFC 9068 §4): compact JWS only, an allowed
 * `alg` that the key supports, a key from the key set only (header `jku`/`x5u`/`jwk`/`x5c` are
 * never read), no unknown `crit`, then the claim checks of policy.ts.
 *
 * The signature check is WebCrypto with CryptoKeys imported once per key set (jwks.ts);
 * bench/verify_bench.ts compares it with jose and node:crypto. Tokens that pass are
 * remembered by the verified-token cache (token_cache.ts) until their `exp`.
 */
import type { Config } from "./config.ts";
import { GateError } from "./errors.ts";
import type { KeyStore, VerificationKey } from "./jwks.ts";
import type { Logger } from "./log.ts";
import { checkClaims, checkTime, checkTyp, createPolicy, type TimeClaims } from "./policy.ts";
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
const ascii = new TextEncoder();

interface CacheEntry {
  readonly expMs: number;
  readonly result: VerifiedToken;
  readonly key: VerificationKey;
  readonly time: TimeClaims;
}

function reject(reason: GateError["reason"], detail: string): never {
  throw new GateError("invalid_token", { reason, detail });
}

function decodeSegment(segment: string): Uint8Array | undefined {
  try {
    return Uint8Array.fromBase64(segment, { alphabet: "base64url" });
  } catch {
    return undefined;
  }
}

function parseJsonObject(segment: string): Record<string, unknown> | undefined {
  const bytes = decodeSegment(segment);
  if (!bytes) return undefined;
  try {
    const v = JSON.parse(utf8.decode(bytes));
    return typeof v === "object" && v !== null && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Splits a compact JWS (RFC 7515 §7.1) into its three base64url segments. */
function split(token: string): [header: string, payload: string, signature: string] {
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
  const signature = token.slice(d2 + 1);
  if (
    header === "" || payload === "" || !BASE64URL.test(header) || !BASE64URL.test(payload) ||
    !BASE64URL.test(signature)
  ) {
    reject("malformed", "token segments are not base64url");
  }
  return [header, payload, signature];
}

/**
 * Creates the verifier. The policy (audiences, scopes, claims, leeway) and the allowed algorithms
 * are fixed here; the issuer is read from the key store, which knows it once ready.
 */
export function createVerifier(
  config: Config,
  keys: KeyStore,
  deps: VerifierDeps = {},
): TokenVerifier {
  const now = deps.now ?? Date.now;
  const policy = createPolicy(config);
  const allowedAlgs: ReadonlySet<string> = new Set(
    config.allowedAlgs.filter((a) => a !== "none" && !a.startsWith("HS")),
  );
  const cache = deps.cache === false ? undefined : createTokenCache<CacheEntry>(deps.cache);

  async function verifyUncached(token: string, nowMs: number): Promise<VerifiedToken> {
    const [h, p, s] = split(token);
    const header = parseJsonObject(h);
    if (!header) reject("malformed", "token header is not a JSON object");

    // RFC 8725 §3.1: an explicit allow-list; `none` and HS* are never in it (RFC 9068 §4).
    const alg = header.alg;
    if (typeof alg !== "string") reject("malformed", "token header has no alg");
    if (!allowedAlgs.has(alg)) {
      reject("alg", `alg ${JSON.stringify(alg.slice(0, 32))} is not allowed`);
    }
    // RFC 7515 §4.1.11: no extension is understood here, so any `crit` is refused; RFC 7797
    // unencoded payloads (`b64: false`) are refused with it.
    if (header.crit !== undefined || (header.b64 !== undefined && header.b64 !== true)) {
      reject("crit", "token header has crit or b64, which are not supported");
    }
    const typErr = checkTyp(header.typ);
    if (typErr) throw typErr;
    const kid = header.kid;
    if (kid !== undefined && typeof kid !== "string") reject("malformed", "kid is not a string");
    // RFC 8725 §3.10: the key comes from the key set only; jku, x5u, jwk, x5c are ignored.
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

    if (s === "") reject("signature", "token has no signature");
    const signature = decodeSegment(s);
    if (!signature) reject("malformed", "token signature is not base64url");
    const data = ascii.encode(token.slice(0, h.length + 1 + p.length));
    let key: VerificationKey | undefined;
    for (const k of usable) {
      if (await k.verify(alg, data, signature)) {
        key = k;
        break;
      }
    }
    if (!key) reject("signature", "signature does not verify");

    const claims = parseJsonObject(p);
    if (!claims) reject("malformed", "token payload is not a JSON object");
    const checked = checkClaims(claims, { policy, issuer: keys.issuer, nowMs });
    if (checked instanceof GateError) {
      // A 403 comes after the subject check: name the subject, so the refusal is charged to it.
      if (checked.code !== "insufficient_scope") throw checked;
      throw new GateError(checked.code, {
        reason: checked.reason,
        detail: checked.detail,
        subject: claims.sub as string,
      });
    }

    const result: VerifiedToken = Object.freeze({
      sub: claims.sub as string,
      claims: Object.freeze(claims),
      expMs: checked.expMs!,
    });
    cache?.set(token, { expMs: result.expMs, result, key, time: checked }, nowMs);
    return result;
  }

  return {
    async verify(token) {
      const nowMs = now();
      if (cache) {
        const hit = cache.get(token, nowMs);
        if (hit) {
          // Contract §4: time is re-checked on each use; a key that left the set ends the entry.
          if (keys.hasKey(hit.key)) {
            const err = checkTime(hit.time, nowMs, policy.clockSkewMs);
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
