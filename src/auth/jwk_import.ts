/**
 * Key import for the key store: a JWK Set document (RFC 7517 §5) becomes the gate's verification
 * keys, each imported by jose's `importJWK` into one non-extractable WebCrypto CryptoKey per
 * algorithm it may verify. Import happens once per key set, never per request; a key whose JWK is
 * unchanged across refreshes keeps its object, so verified-token cache entries survive refreshes.
 *
 * jose does the JWK-to-CryptoKey mapping and, at verify time, checks that the CryptoKey fits the
 * token's `alg` (name, hash, curve, RSA size). What jose does not decide is named here as policy:
 * which keys of the set are usable at all and which allowed algorithms each one may serve.
 */
import { importJWK, type JWK } from "jose";
import { createPublicKey } from "node:crypto";

/** One usable public key of the key set. */
export interface VerificationKey {
  /** The JWK `kid`, if it had one (an opaque lookup key, RFC 8725 §3.10). */
  readonly kid: string | undefined;
  readonly kty: string;
  /** JWS algorithms this key may verify: its kty/crv (and own `alg`) ∩ ALLOWED_ALGS. */
  readonly algs: ReadonlySet<string>;
  /** The CryptoKey imported for `alg`, or undefined when `alg` is not one of {@linkcode algs}. */
  cryptoKey(alg: string): CryptoKey | undefined;
}

/** Why a JWK was left out of the key set (for the `key set loaded` log line). */
export interface SkippedKey {
  kid?: string;
  reason: string;
}

/** The outcome of {@linkcode importKeySet}. */
export interface ImportedKeySet {
  keys: VerificationKey[];
  skipped: SkippedKey[];
}

/**
 * The key type (and curve) each JWS algorithm needs: RFC 7518 §3.3-3.5, RFC 8037 §3.1 (EdDSA),
 * RFC 9864 (the fully specified Ed25519). A key is offered to jose only for these algorithms.
 */
const KEY_TYPE_OF_ALG: Readonly<Record<string, { kty: string; crv?: string }>> = {
  RS256: { kty: "RSA" },
  RS384: { kty: "RSA" },
  RS512: { kty: "RSA" },
  PS256: { kty: "RSA" },
  PS384: { kty: "RSA" },
  PS512: { kty: "RSA" },
  ES256: { kty: "EC", crv: "P-256" },
  ES384: { kty: "EC", crv: "P-384" },
  ES512: { kty: "EC", crv: "P-521" },
  EdDSA: { kty: "OKP", crv: "Ed25519" },
  Ed25519: { kty: "OKP", crv: "Ed25519" },
};

/** The JWS algorithms the gate can verify. */
export const SUPPORTED_ALGS: ReadonlySet<string> = new Set(Object.keys(KEY_TYPE_OF_ALG));

/** RFC 7518 §3.3: RSA keys of 2048 bits or more (jose refuses smaller ones again at verify). */
const MIN_RSA_BITS = 2048;

/**
 * Parses a JWK Set document (RFC 7517 §5) and imports every usable signing key. Symmetric keys,
 * encryption keys (`use: "enc"`, `key_ops` without "verify"), RSA keys under 2048 bits, and keys
 * that fit no allowed algorithm are skipped. `previous` keys with an identical JWK are reused.
 * @throws {Error} when the document is not a key set or holds no usable key.
 */
export async function importKeySet(
  doc: unknown,
  options: { allowedAlgs: readonly string[]; previous?: readonly VerificationKey[] },
): Promise<ImportedKeySet> {
  if (!isRecord(doc) || !Array.isArray(doc.keys)) {
    throw new Error('Invalid key set: expected a JSON object with a "keys" array');
  }
  const allowed = options.allowedAlgs.filter((a) => SUPPORTED_ALGS.has(a));
  const reuse = new Map<string, VerificationKey>();
  for (const k of options.previous ?? []) {
    const fp = FINGERPRINTS.get(k);
    if (fp !== undefined) reuse.set(fp, k);
  }
  const keys: VerificationKey[] = [];
  const skipped: SkippedKey[] = [];
  for (const jwk of doc.keys) {
    if (!isRecord(jwk)) {
      skipped.push({ reason: "not an object" });
      continue;
    }
    const kid = typeof jwk.kid === "string" ? jwk.kid : undefined;
    const result = await importOne(jwk, allowed, reuse);
    if (typeof result === "string") skipped.push({ kid, reason: result });
    else keys.push(result);
  }
  if (keys.length === 0) {
    const why = skipped.map((s) => `${s.kid ?? "(no kid)"}: ${s.reason}`).join("; ");
    throw new Error(`Invalid key set: no usable signing key${why ? ` (${why})` : ""}`);
  }
  return { keys, skipped };
}

/** Canonical public JWK members per imported key, to reuse unchanged keys across refreshes. */
const FINGERPRINTS = new WeakMap<VerificationKey, string>();

/** Policy: may this JWK sign tokens at all (RFC 7517 §4.2-4.3)? A reason when not. */
function checkKeyUse(jwk: Record<string, unknown>): string | undefined {
  if (typeof jwk.kty !== "string") return 'missing "kty"';
  if (jwk.kty === "oct") return "symmetric key";
  if (jwk.use !== undefined && jwk.use !== "sig") return `"use" is ${JSON.stringify(jwk.use)}`;
  if (jwk.key_ops !== undefined) {
    if (!Array.isArray(jwk.key_ops) || !jwk.key_ops.includes("verify")) {
      return '"key_ops" does not include "verify"';
    }
  }
  if (jwk.alg !== undefined && typeof jwk.alg !== "string") return 'invalid "alg"';
  return undefined;
}

/** Policy: the allowed algorithms that fit the key's type and curve, and its own `alg`. */
function algsForKey(jwk: Record<string, unknown>, allowed: readonly string[]): Set<string> {
  return new Set(
    allowed.filter((a) => {
      const want = KEY_TYPE_OF_ALG[a];
      // RFC 7517 §4.4: a key that names its alg is used with that alg only.
      return want.kty === jwk.kty && (want.crv === undefined || want.crv === jwk.crv) &&
        (jwk.alg === undefined || jwk.alg === a);
    }),
  );
}

async function importOne(
  jwk: Record<string, unknown>,
  allowed: readonly string[],
  reuse: Map<string, VerificationKey>,
): Promise<VerificationKey | string> {
  const unusable = checkKeyUse(jwk);
  if (unusable) return unusable;
  const kty = jwk.kty as string;
  const algs = algsForKey(jwk, allowed);
  if (algs.size === 0) return `no allowed algorithm for kty ${JSON.stringify(kty)}`;
  // Only public members: a published private "d" must never be imported.
  const pub = kty === "RSA"
    ? { kty, n: jwk.n, e: jwk.e }
    : kty === "EC"
    ? { kty, crv: jwk.crv, x: jwk.x, y: jwk.y }
    : { kty, crv: jwk.crv, x: jwk.x };
  if (Object.values(pub).some((v) => typeof v !== "string")) return "missing key members";
  const kid = typeof jwk.kid === "string" ? jwk.kid : undefined;
  const fp = JSON.stringify([kid, [...algs], pub]);
  const existing = reuse.get(fp);
  if (existing) return existing;
  const cryptoKeys = new Map<string, CryptoKey>();
  try {
    // WebCrypto's JWK import defers point validation to the first verify; node:crypto checks
    // the key at once, so a key that could never verify is reported and left out here.
    // deno-lint-ignore no-explicit-any -- node:crypto's JWK type is narrower than a parsed JWK
    createPublicKey({ key: pub as any, format: "jwk" });
    for (const a of algs) {
      cryptoKeys.set(a, await importJWK(pub as JWK, a, { extractable: false }) as CryptoKey);
    }
  } catch (e) {
    return `import failed: ${e instanceof Error ? e.message : String(e)}`;
  }
  if (kty === "RSA") {
    const bits = (cryptoKeys.values().next().value!.algorithm as RsaHashedKeyAlgorithm)
      .modulusLength;
    if (bits < MIN_RSA_BITS) return `RSA key shorter than ${MIN_RSA_BITS} bits`;
  }
  const key: VerificationKey = {
    kid,
    kty,
    algs,
    cryptoKey: (alg) => cryptoKeys.get(alg),
  };
  FINGERPRINTS.set(key, fp);
  return key;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
