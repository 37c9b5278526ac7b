/**
 * The bench's authorization server: RSA keys, JWKS documents of several sizes, discovery
 * metadata on 127.0.0.1:0, and RS256 access tokens minted in workers.
 *
 * Only the signer's private key is used to sign. The other keys of the 10- and 100-key sets are
 * real RSA public keys built cheaply: moduli that are products of two distinct primes taken from
 * a few generated key pairs (the gate only imports and indexes them, never verifies with them).
 * The signer is the last key of every set, the worst place for a linear lookup.
 */
import type { JWK, JWTPayload } from "jose";
import type { MintRequest } from "./mint_worker.ts";

/** Key id of the signing key in every key set. */
export const SIGNER_KID = "bench-signer";

/** Keys for the bench: the signer's private JWK and public key sets by size. */
export interface BenchKeys {
  readonly signer: JWK;
  /** Public JWK sets keyed by their size; each ends with the signer. */
  readonly sets: ReadonlyMap<number, readonly JWK[]>;
}

/** A small pool of mint workers; one job per worker at a time. */
export class MintPool {
  readonly #workers: Worker[];

  constructor(size = navigator.hardwareConcurrency || 2) {
    this.#workers = Array.from(
      { length: Math.max(1, size) },
      () => new Worker(new URL("./mint_worker.ts", import.meta.url), { type: "module" }),
    );
  }

  get size(): number {
    return this.#workers.length;
  }

  /** Runs one job on worker `index`. */
  run<T>(index: number, job: MintRequest): Promise<T> {
    const worker = this.#workers[index % this.#workers.length];
    return new Promise((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data as T);
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(`Mint worker failed: ${e.message}`));
      };
      worker.postMessage(job);
    });
  }

  /** Stops every worker. */
  close(): void {
    for (const w of this.#workers) w.terminate();
  }
}

/** Options for {@linkcode createKeys}. */
export interface CreateKeysOptions {
  pool: MintPool;
  /** Key set sizes wanted, e.g. [1, 10, 100]. */
  sizes: readonly number[];
}

/** Generates the signer and enough real key pairs to build the largest key set from. */
export async function createKeys(options: CreateKeysOptions): Promise<BenchKeys> {
  const largest = Math.max(1, ...options.sizes);
  // k generated pairs give 2k primes, hence 2k(2k-1)/2 distinct moduli.
  let pairs = 1;
  while ((2 * pairs * (2 * pairs - 1)) / 2 < largest) pairs++;
  const { pool } = options;
  const generated: JWK[] = [];
  for (let i = 0; i < pairs; i += pool.size) {
    const batch = Math.min(pool.size, pairs - i);
    generated.push(
      ...await Promise.all(
        Array.from({ length: batch }, (_, j) => pool.run<JWK>(j, { op: "keygen" })),
      ),
    );
  }
  const signer: JWK = { ...generated[0], kid: SIGNER_KID, alg: "RS256", use: "sig" };
  const signerPublic: JWK = {
    kty: "RSA",
    kid: SIGNER_KID,
    alg: "RS256",
    use: "sig",
    n: signer.n,
    e: signer.e,
  };

  const primes = generated.flatMap((k) => [toBigInt(k.p!), toBigInt(k.q!)]);
  const fillers: JWK[] = [];
  const signerN = toBigInt(signer.n!);
  for (let a = 0; a < primes.length && fillers.length < largest; a++) {
    for (let b = a + 1; b < primes.length && fillers.length < largest; b++) {
      const n = primes[a] * primes[b];
      if (n === signerN) continue;
      fillers.push({
        kty: "RSA",
        kid: `bench-filler-${fillers.length + 1}`,
        alg: "RS256",
        use: "sig",
        n: fromBigInt(n),
        e: "AQAB",
      });
    }
  }
  const sets = new Map<number, JWK[]>();
  for (const size of options.sizes) sets.set(size, [...fillers.slice(0, size - 1), signerPublic]);
  return { signer, sets };
}

/** Options for {@linkcode mintTokens}. */
export interface MintOptions {
  pool: MintPool;
  signer: JWK;
  /** Claims every token carries (iss, aud, exp, ...); `sub` and `jti` are made unique. */
  claims: JWTPayload;
  count: number;
  /** First index for `sub`/`jti`, so separate batches never collide. */
  from?: number;
}

/** Mints `count` distinct RS256 tokens, spread over the pool's workers. */
export async function mintTokens(options: MintOptions): Promise<string[]> {
  const { pool, count } = options;
  const from = options.from ?? 0;
  const per = Math.ceil(count / pool.size);
  const jobs: Promise<string[]>[] = [];
  for (let w = 0; w * per < count; w++) {
    jobs.push(pool.run<string[]>(w, {
      op: "sign",
      jwk: options.signer,
      kid: SIGNER_KID,
      claims: options.claims,
      from: from + w * per,
      count: Math.min(per, count - w * per),
    }));
  }
  return (await Promise.all(jobs)).flat();
}

/** A running issuer. */
export interface Issuer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: the `iss` of every token and AUTHORIZATION_SERVER. */
  readonly url: string;
  /** JWKS URL of the key set of `size` keys. */
  jwksUri(size: number): string;
  /** How many times each key set was fetched, by size. */
  readonly fetches: ReadonlyMap<number, number>;
}

/**
 * Serves `/{size}/jwks.json` for each key set and RFC 8414 / OIDC discovery documents pointing
 * at the one-key set.
 */
export function startIssuer(keys: BenchKeys): Promise<Issuer> {
  const fetches = new Map<number, number>();
  const bodies = new Map<string, { size: number; body: string }>();
  for (const [size, set] of keys.sets) {
    bodies.set(`/${size}/jwks.json`, { size, body: JSON.stringify({ keys: set }) });
  }
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen({ port }) {
        const url = `http://127.0.0.1:${port}`;
        resolve({
          url,
          jwksUri: (size) => `${url}/${size}/jwks.json`,
          fetches,
          async [Symbol.asyncDispose]() {
            await server.shutdown();
          },
        });
      },
    }, (req) => {
      const { pathname, origin } = new URL(req.url);
      const jwks = bodies.get(pathname);
      if (jwks) {
        fetches.set(jwks.size, (fetches.get(jwks.size) ?? 0) + 1);
        return new Response(jwks.body, { headers: { "content-type": "application/json" } });
      }
      if (
        pathname === "/.well-known/oauth-authorization-server" ||
        pathname === "/.well-known/openid-configuration"
      ) {
        return Response.json({
          issuer: origin,
          jwks_uri: `${origin}/1/jwks.json`,
          response_types_supported: ["code"],
          subject_types_supported: ["public"],
          id_token_signing_alg_values_supported: ["RS256"],
        });
      }
      return new Response("not found\n", { status: 404 });
    });
  });
}

function toBigInt(b64url: string): bigint {
  const bin = atob(b64url.replaceAll("-", "+").replaceAll("_", "/"));
  let hex = "";
  for (let i = 0; i < bin.length; i++) hex += bin.charCodeAt(i).toString(16).padStart(2, "0");
  return BigInt(`0x${hex}`);
}

function fromBigInt(n: bigint): string {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bin = "";
  for (let i = 0; i < hex.length; i += 2) {
    bin += String.fromCharCode(parseInt(hex.slice(i, i + 2), 16));
  }
  return btoa(bin).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}
