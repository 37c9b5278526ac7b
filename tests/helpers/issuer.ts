/**
 * A test authorization server on 127.0.0.1:0: RFC 8414 and OIDC discovery documents (issuer
 * configurable, optionally with a path such as `/realms/test`), a JWKS endpoint that can rotate,
 * go down, or serve garbage, and a token minter that can also make every kind of bad token
 * (alg none, HS256 keyed with the public key, a foreign key reusing a kid, any header).
 *
 * ```ts
 * await using as = await startTestIssuer({ path: "/realms/test" });
 * const token = await as.mint({ scope: "read" });
 * ```
 */
import * as jose from "jose";
import type { Config } from "../../src/config/mod.ts";
import { createKeyStore, type KeyStore, type TimerId, type Timers } from "../../src/auth/mod.ts";
import { createLogger, createMemorySink, type Logger } from "../../src/ops/mod.ts";
import { TEST_RESOURCE, testConfig } from "./config.ts";

/** Algorithms the test issuer can sign with. */
export type TestAlg =
  | "RS256"
  | "RS384"
  | "RS512"
  | "PS256"
  | "PS384"
  | "PS512"
  | "ES256"
  | "ES384"
  | "ES512"
  | "EdDSA";

/** A signing key pair with its published JWK. */
export interface TestKey {
  readonly kid: string;
  readonly alg: TestAlg;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  /** The JWK as published: public members plus `kid`, `alg`, `use: "sig"`. */
  readonly publicJwk: Readonly<Record<string, unknown>>;
}

let kidCounter = 0;

/** Generates a key pair; `kid` defaults to a fresh unique one. Not published anywhere. */
export async function generateTestKey(alg: TestAlg = "RS256", kid?: string): Promise<TestKey> {
  const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
  const id = kid ?? `k${++kidCounter}-${alg.toLowerCase()}-${crypto.randomUUID().slice(0, 8)}`;
  const jwk = await jose.exportJWK(publicKey);
  return {
    kid: id,
    alg,
    privateKey,
    publicKey,
    publicJwk: Object.freeze({ ...jwk, kid: id, alg, use: "sig" }),
  };
}

/** base64url without padding, of bytes or of a string's UTF-8. */
export function b64url(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

function signParams(alg: TestAlg): AlgorithmIdentifier | RsaPssParams | EcdsaParams {
  if (alg.startsWith("RS")) return { name: "RSASSA-PKCS1-v1_5" };
  if (alg.startsWith("PS")) return { name: "RSA-PSS", saltLength: Number(alg.slice(2)) / 8 };
  if (alg.startsWith("ES")) return { name: "ECDSA", hash: `SHA-${alg.slice(2)}` };
  return { name: "Ed25519" };
}

/**
 * Signs any header and payload with `key` (by the key's own algorithm, whatever the header
 * says): no checks, so tests can build tokens jose would refuse to make.
 */
export async function signJws(options: {
  header: Record<string, unknown>;
  payload: Record<string, unknown> | string;
  key: TestKey;
}): Promise<string> {
  const input = `${b64url(JSON.stringify(options.header))}.${
    b64url(
      typeof options.payload === "string" ? options.payload : JSON.stringify(options.payload),
    )
  }`;
  const sig = await crypto.subtle.sign(
    signParams(options.key.alg),
    options.key.privateKey,
    new TextEncoder().encode(input),
  );
  return `${input}.${b64url(new Uint8Array(sig))}`;
}

/** An unsecured JWS (`alg: none`, empty signature; RFC 7515 Appendix A.5). */
export function unsecuredJws(options: {
  header?: Record<string, unknown>;
  payload: Record<string, unknown>;
}): string {
  const header = { alg: "none", typ: "at+jwt", ...options.header };
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(options.payload))}.`;
}

/** An HMAC-signed JWS, e.g. HS256 keyed with a public key's bytes (RFC 8725 §2.1 confusion). */
export async function hmacJws(options: {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  secret: Uint8Array;
  hash?: "SHA-256" | "SHA-384" | "SHA-512";
}): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    options.secret as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: options.hash ?? "SHA-256" },
    false,
    ["sign"],
  );
  const input = `${b64url(JSON.stringify(options.header))}.${
    b64url(JSON.stringify(options.payload))
  }`;
  const sig = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input));
  return `${input}.${b64url(new Uint8Array(sig))}`;
}

/** The SPKI PEM of a public key (what an HS256-confusion attacker would use as the secret). */
export async function publicKeyPem(key: TestKey): Promise<string> {
  return await jose.exportSPKI(key.publicKey);
}

/**
 * A compact JWS signed by `key` with defaults `iss`, `aud`, `sub: "user-1"`, `iat` now, `exp` in
 * 5 min, a `jti`, and header `{alg, kid, typ: "at+jwt"}`. `claims` and `header` override the
 * defaults; an `undefined` value removes a member (e.g. `{ exp: undefined }`).
 */
export function mintToken(options: {
  issuer: string;
  key: TestKey;
  audience?: string | string[];
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
  nowMs?: number;
}): Promise<string> {
  const key = options.key;
  const nowS = Math.floor((options.nowMs ?? Date.now()) / 1000);
  const payload: Record<string, unknown> = {
    iss: options.issuer,
    aud: options.audience ?? TEST_RESOURCE,
    sub: "user-1",
    iat: nowS,
    exp: nowS + 300,
    jti: crypto.randomUUID(),
    ...options.claims,
  };
  const header: Record<string, unknown> = {
    alg: key.alg,
    kid: key.kid,
    typ: "at+jwt",
    ...options.header,
  };
  for (const o of [payload, header]) {
    for (const [k, v] of Object.entries(o)) if (v === undefined) delete o[k];
  }
  return signJws({ header, payload, key });
}

/** Options for {@linkcode startTestIssuer}. */
export interface TestIssuerOptions {
  /**
   * Issuer path, e.g. "/realms/test" (Keycloak style), "/" (Auth0: a root issuer with its trailing
   * slash). Default: none (root issuer without a slash).
   */
  path?: string;
  /** Algorithm of the first key. Default RS256. */
  alg?: TestAlg;
  /** The `issuer` the discovery documents claim, when it must differ (mismatch tests). */
  publishedIssuer?: string;
  /** Which discovery documents exist. Default "both". */
  discovery?: "both" | "rfc8414" | "oidc" | "oidc-inserted" | "none";
  /** The `jwks_uri` the documents publish, when it must differ from the served one. */
  publishedJwksUri?: string;
  /** Default `aud` of minted tokens. Default {@linkcode TEST_RESOURCE}. */
  audience?: string;
}

/** How the JWKS endpoint currently answers. */
export type JwksMode = "keys" | "garbage" | "oversized" | "oversized-chunked" | "503" | "stall";

/** Options for {@linkcode TestIssuer.mint}. */
export interface MintOptions {
  /** Header members merged over `{alg, kid, typ: "at+jwt"}`; an `undefined` value removes one. */
  header?: Record<string, unknown>;
  /** Signing key. Default the current key. */
  key?: TestKey;
  /** Clock for iat/exp defaults. Default Date.now(). */
  nowMs?: number;
}

/** A running test issuer; see {@linkcode startTestIssuer}. */
export interface TestIssuer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  readonly origin: string;
  /** Issuer identifier: origin + path. */
  readonly issuer: string;
  readonly jwksUri: string;
  readonly audience: string;
  /** The key mint() signs with by default. */
  readonly current: TestKey;
  /** Keys in the served JWKS. */
  readonly published: readonly TestKey[];
  readonly jwksFetchCount: number;
  readonly discoveryFetchCount: number;
  /** Paths requested, in order. */
  readonly requests: readonly string[];
  /** New current key (new kid); the old one stays published only with `keepOld`. */
  rotate(options?: { keepOld?: boolean; alg?: TestAlg }): Promise<TestKey>;
  /** Replaces the published keys (the current key is unchanged). */
  publish(keys: readonly TestKey[]): void;
  /** Serves this exact document as the JWKS (mode "keys" is left). */
  setJwks(doc: unknown): void;
  /** "refused": the listener closes (connection refused); "503": every request gets 503. */
  down(mode?: "refused" | "503"): Promise<void>;
  /** Listens again on the same port and serves keys normally. */
  up(): Promise<void>;
  /** Sets how the JWKS endpoint answers. */
  jwksMode(mode: JwksMode): void;
  serveGarbage(): void;
  serveOversized(): void;
  /** A compact JWS with defaults iss, aud, sub "user-1", iat now, exp in 5 min; `undefined` removes a claim. */
  mint(claims?: Record<string, unknown>, options?: MintOptions): Promise<string>;
  close(): Promise<void>;
}

/** Starts a test issuer; close it with `await using` or `close()`. */
export async function startTestIssuer(options: TestIssuerOptions = {}): Promise<TestIssuer> {
  const path = options.path ?? "";
  const audience = options.audience ?? TEST_RESOURCE;
  let current = await generateTestKey(options.alg ?? "RS256");
  let published: TestKey[] = [current];
  let customJwks: unknown;
  let mode: JwksMode = "keys";
  let downMode: "503" | undefined;
  let jwksFetchCount = 0;
  let discoveryFetchCount = 0;
  const requests: string[] = [];
  const stalled = new Set<() => void>();
  let port = 0;
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;

  const origin = () => `http://127.0.0.1:${port}`;
  const issuer = () => origin() + path;
  // An issuer with a trailing slash (Auth0 "/", Authentik "/application/o/<slug>/") serves its
  // documents where providers do: below the path without that slash (RFC 8414 §3.1).
  const base = path.endsWith("/") ? path.slice(0, -1) : path;
  const jwksPath = `${base}/protocol/openid-connect/certs`;
  const jwksUri = () => origin() + jwksPath;

  const discoveryPaths = () => {
    const d = options.discovery ?? "both";
    const paths: string[] = [];
    if (d === "both" || d === "rfc8414") {
      paths.push(`/.well-known/oauth-authorization-server${base}`);
    }
    if (d === "both" || d === "oidc") paths.push(`${base}/.well-known/openid-configuration`);
    if (d === "oidc-inserted") paths.push(`/.well-known/openid-configuration${base}`);
    return paths;
  };

  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    requests.push(url.pathname);
    if (downMode === "503") return new Response("unavailable", { status: 503 });
    if (url.pathname === jwksPath) {
      jwksFetchCount++;
      switch (mode) {
        case "garbage":
          return new Response("<html>definitely not a key set", {
            headers: { "content-type": "text/html" },
          });
        case "oversized":
          return json({ keys: published.map((k) => k.publicJwk), pad: "x".repeat(2 << 20) });
        case "oversized-chunked": {
          const chunk = new TextEncoder().encode(" ".repeat(64 * 1024));
          let sent = 0;
          const body = new ReadableStream<Uint8Array>({
            pull(c) {
              if (sent++ < 40) c.enqueue(chunk);
              else c.close();
            },
          });
          return new Response(body, { headers: { "content-type": "application/json" } });
        }
        case "503":
          return new Response("unavailable", { status: 503 });
        case "stall":
          await new Promise<void>((resolve) => stalled.add(resolve));
          return new Response("late", { status: 503 });
        default:
          return json(customJwks ?? { keys: published.map((k) => k.publicJwk) });
      }
    }
    if (discoveryPaths().includes(url.pathname)) {
      discoveryFetchCount++;
      return json({
        issuer: options.publishedIssuer ?? issuer(),
        jwks_uri: options.publishedJwksUri ?? jwksUri(),
        authorization_endpoint: `${origin()}${base}/authorize`,
        token_endpoint: `${origin()}${base}/token`,
        response_types_supported: ["code"],
        code_challenge_methods_supported: ["S256"],
      });
    }
    return new Response("not found", { status: 404 });
  };

  const listen = () =>
    new Promise<void>((resolve) => {
      server = Deno.serve({
        hostname: "127.0.0.1",
        port,
        onListen(addr) {
          port = addr.port;
          resolve();
        },
      }, handler);
    });

  const stop = async () => {
    for (const release of stalled) release();
    stalled.clear();
    const s = server;
    server = undefined;
    await s?.shutdown();
  };

  await listen();

  const issuerObj: TestIssuer = {
    get origin() {
      return origin();
    },
    get issuer() {
      return issuer();
    },
    get jwksUri() {
      return jwksUri();
    },
    audience,
    get current() {
      return current;
    },
    get published() {
      return published;
    },
    get jwksFetchCount() {
      return jwksFetchCount;
    },
    get discoveryFetchCount() {
      return discoveryFetchCount;
    },
    requests,
    async rotate(opts = {}) {
      const next = await generateTestKey(opts.alg ?? current.alg);
      published = opts.keepOld ? [...published, next] : [next];
      current = next;
      customJwks = undefined;
      return next;
    },
    publish(keys) {
      published = [...keys];
      customJwks = undefined;
    },
    setJwks(doc) {
      customJwks = doc;
      mode = "keys";
    },
    async down(m = "refused") {
      if (m === "503") {
        downMode = "503";
        return;
      }
      await stop();
    },
    async up() {
      downMode = undefined;
      mode = "keys";
      if (!server) await listen();
    },
    jwksMode(m) {
      mode = m;
    },
    serveGarbage() {
      mode = "garbage";
    },
    serveOversized() {
      mode = "oversized";
    },
    mint(claims = {}, opts = {}) {
      return mintToken({ ...opts, issuer: issuer(), audience, key: opts.key ?? current, claims });
    },
    close: stop,
    [Symbol.asyncDispose]: stop,
  };
  return issuerObj;
}

/**
 * {@linkcode testConfig} pointing at `issuer` (an AUTHORIZATION_SERVER value). Discovery is used
 * unless `jwksUri` is given in `overrides`.
 */
export function configFor(issuer: string, overrides: Partial<Config> = {}): Config {
  return testConfig({ authorizationServers: [issuer], ...overrides });
}

/** Timers that only run when the test fires them; every scheduled delay is recorded. */
export interface ManualTimers extends Timers {
  /** Every delay ever scheduled, in order (cleared ones included). */
  readonly delays: readonly number[];
  /** Number of timers scheduled and neither fired nor cleared. */
  readonly pending: number;
  /** Runs the oldest pending timer and awaits what its callback returns. */
  fire(): Promise<void>;
}

/** Creates {@linkcode ManualTimers}. */
export function manualTimers(): ManualTimers {
  const delays: number[] = [];
  const queue = new Map<number, () => unknown>();
  let next = 1;
  return {
    delays,
    get pending() {
      return queue.size;
    },
    setTimeout(fn, ms) {
      delays.push(ms);
      const id = next++;
      queue.set(id, fn);
      return id as unknown as TimerId;
    },
    clearTimeout(id) {
      queue.delete(id as unknown as number);
    },
    async fire() {
      const first = queue.entries().next();
      if (first.done) throw new Error("No timer is pending");
      const [id, fn] = first.value;
      queue.delete(id);
      await fn();
    },
  };
}

/** A key store over an in-memory JWKS, with the `fetch` calls counted. */
export interface InMemoryKeyStore extends KeyStore {
  readonly fetchCount: number;
}

/**
 * A real key store (createKeyStore) whose `fetch` serves `jwks()` from memory, already loaded.
 * `config.jwksUri` defaults to "https://as.example/jwks" so no discovery happens.
 */
export async function createInMemoryKeyStore(options: {
  config: Config;
  jwks: () => unknown;
  log?: Logger;
  now?: () => number;
}): Promise<InMemoryKeyStore> {
  let fetchCount = 0;
  const config = {
    ...options.config,
    jwksUri: options.config.jwksUri ?? "https://as.example/jwks",
  };
  const store = createKeyStore(config, {
    log: options.log ?? createLogger({ sink: createMemorySink() }),
    now: options.now,
    fetch: (() => {
      fetchCount++;
      return Promise.resolve(
        new Response(JSON.stringify(options.jwks()), {
          headers: { "content-type": "application/json" },
        }),
      );
    }) as typeof fetch,
  });
  await store.refresh();
  return Object.create(store, {
    fetchCount: { get: () => fetchCount },
  }) as InMemoryKeyStore;
}
