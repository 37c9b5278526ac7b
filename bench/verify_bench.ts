/**
 * Token verification cost per algorithm: `deno bench --allow-net --allow-env --allow-read bench/verify_bench.ts`
 *
 * Groups per algorithm compare the signature primitive alone (WebCrypto with a cached CryptoKey
 * vs node:crypto with a cached KeyObject), and a whole token: jose `compactVerify` alone (the
 * floor: what the verifier hands to jose), jose `jwtVerify`, and our verifier with the cache off
 * (jose `compactVerify` plus the gate's form, header, key-selection and claim checks) and on a
 * cache hit. The "x32 concurrent" rows show whether a primitive's work leaves the event loop free
 * (WebCrypto runs off the main thread).
 *
 * Outcome on two cores (Deno 2.9, see src/auth/jwks.ts): one signature costs about the same either
 * way (RS256 ≈ 250-450 µs, ES256 ≈ 0.4-0.7 ms, EdDSA ≈ 50 µs; node:crypto a little ahead for
 * RSA and Ed25519, WebCrypto ahead for ES256), but 32 concurrent WebCrypto verifications finish
 * 1.5-4x sooner than 32 node:crypto ones, which block the event loop. So keys are WebCrypto
 * CryptoKeys (jose `importJWK`) imported once per key set. A never-seen token costs the signature
 * plus jose's JWS processing and the gate's checks: 5-25 µs of CPU above the hand-written
 * WebCrypto verifier jose replaced (+2-12 % per token, old and new interleaved in one process;
 * +14 % gate CPU per request in `deno task bench --only=cold`). A cache hit costs under 1 µs.
 */
import * as jose from "jose";
import { constants, createPublicKey, verify as nodeVerify } from "node:crypto";
import { createVerifier } from "../src/auth/mod.ts";
import {
  configFor,
  createInMemoryKeyStore,
  generateTestKey,
  mintToken,
  type TestAlg,
} from "../tests/helpers/issuer.ts";

const ISS = "https://auth.example.com/realms/bench";
const ALGS: TestAlg[] = ["RS256", "PS256", "ES256", "EdDSA"];

function subtleParams(alg: TestAlg): AlgorithmIdentifier | RsaPssParams | EcdsaParams {
  if (alg.startsWith("RS")) return { name: "RSASSA-PKCS1-v1_5" };
  if (alg.startsWith("PS")) return { name: "RSA-PSS", saltLength: 32 };
  if (alg.startsWith("ES")) return { name: "ECDSA", hash: "SHA-256" };
  return { name: "Ed25519" };
}

function nodeOptions(alg: TestAlg, key: ReturnType<typeof createPublicKey>) {
  if (alg.startsWith("PS")) {
    return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
  }
  if (alg.startsWith("ES")) return { key, dsaEncoding: "ieee-p1363" as const };
  return { key };
}

for (const alg of ALGS) {
  const key = await generateTestKey(alg);
  const config = configFor(ISS, { jwksUri: "https://as.example/jwks" });
  const keys = await createInMemoryKeyStore({ config, jwks: () => ({ keys: [key.publicJwk] }) });
  const uncached = createVerifier(config, keys, { cache: false });
  const cached = createVerifier(config, keys);
  const token = await mintToken({
    issuer: ISS,
    key,
    claims: { scope: "mcp:read mcp:write", exp: Math.floor(Date.now() / 1000) + 3600 },
  });
  await cached.verify(token);

  const [h, p, s] = token.split(".");
  const data = new TextEncoder().encode(`${h}.${p}`);
  const sig = Uint8Array.fromBase64(s, { alphabet: "base64url" });
  const cryptoKey = await jose.importJWK(key.publicJwk, alg) as CryptoKey;
  const keyObject = createPublicKey({ key: { ...key.publicJwk }, format: "jwk" });
  const params = subtleParams(alg);
  const nodeOpts = nodeOptions(alg, keyObject);
  const hash = alg === "EdDSA" ? null : "sha256";
  const joseOptions = { issuer: ISS, audience: config.expectedAudience as string[] };

  if (!await crypto.subtle.verify(params, cryptoKey, sig, data)) throw new Error("subtle");
  if (!nodeVerify(hash, data, nodeOpts, sig)) throw new Error("node");

  Deno.bench({
    name: `${alg} signature: crypto.subtle.verify, cached CryptoKey`,
    group: `${alg} signature`,
    async fn() {
      await crypto.subtle.verify(params, cryptoKey, sig, data);
    },
  });
  Deno.bench({
    name: `${alg} signature: node:crypto verify, cached KeyObject`,
    group: `${alg} signature`,
    baseline: true,
    fn() {
      nodeVerify(hash, data, nodeOpts, sig);
    },
  });
  Deno.bench({
    name: `${alg} signature x32 concurrent: crypto.subtle.verify`,
    group: `${alg} x32`,
    async fn() {
      await Promise.all(
        Array.from({ length: 32 }, () => crypto.subtle.verify(params, cryptoKey, sig, data)),
      );
    },
  });
  Deno.bench({
    name: `${alg} signature x32 sequential: node:crypto verify`,
    group: `${alg} x32`,
    baseline: true,
    fn() {
      for (let i = 0; i < 32; i++) nodeVerify(hash, data, nodeOpts, sig);
    },
  });
  Deno.bench({
    name: `${alg} token: jose compactVerify, cached CryptoKey`,
    group: `${alg} token`,
    async fn() {
      await jose.compactVerify(token, cryptoKey, { algorithms: [alg] });
    },
  });
  Deno.bench({
    name: `${alg} token: jose jwtVerify, cached CryptoKey`,
    group: `${alg} token`,
    async fn() {
      await jose.jwtVerify(token, cryptoKey, joseOptions);
    },
  });
  Deno.bench({
    name: `${alg} token: createVerifier, cache off`,
    group: `${alg} token`,
    baseline: true,
    async fn() {
      await uncached.verify(token);
    },
  });
  Deno.bench({
    name: `${alg} token: createVerifier, cache hit`,
    group: `${alg} token`,
    async fn() {
      await cached.verify(token);
    },
  });
}
