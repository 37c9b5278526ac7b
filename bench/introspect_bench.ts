/**
 * What a warm opaque token costs against a warm JWT, in the verification step alone:
 * `deno bench --allow-net --allow-env --allow-read bench/introspect_bench.ts`
 *
 * Both are cache hits: the JWT verifier looks its token up by its bytes; the introspector by the
 * token's SHA-256 (src/auth/introspect.ts: the cache never holds the token), so a warm opaque
 * token pays one hash more. `deno task bench --only=introspect` measures the same through the
 * whole gate, where the difference is a few per cent of a request's CPU.
 */
import {
  createIntrospector,
  createVerifier,
  tokenKey,
  withIntrospection,
} from "../src/auth/mod.ts";
import { createLogger } from "../src/ops/mod.ts";
import {
  configFor,
  createInMemoryKeyStore,
  generateTestKey,
  mintToken,
} from "../tests/helpers/issuer.ts";

const ISS = "https://auth.example.com/realms/bench";
const OPAQUE = "bench-opaque-token-0123456789abcdefghijklmnopqrstuv";

// The endpoint answers once; every measured call is a cache hit.
const endpoint = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
  Response.json({
    active: true,
    iss: ISS,
    aud: "https://mcp.example.com/mcp",
    sub: "bench-user",
    scope: "mcp:tools",
    exp: Math.floor(Date.now() / 1000) + 3600,
  }));
const key = await generateTestKey("RS256");
const config = configFor(ISS, {
  jwksUri: "https://as.example/jwks",
  introspectionClientId: "bench",
  introspectionClientSecret: "bench-secret",
  introspectionUrl: `http://127.0.0.1:${endpoint.addr.port}/introspect`,
});
const keys = await createInMemoryKeyStore({ config, jwks: () => ({ keys: [key.publicJwk] }) });
const jwt = createVerifier(config, keys);
const introspector = createIntrospector(config, {
  log: createLogger({ level: "error" }),
  issuer: () => ISS,
});
const verifier = withIntrospection(jwt, introspector, { all: false });
const token = await mintToken({
  issuer: ISS,
  key,
  claims: { scope: "mcp:tools", exp: Math.floor(Date.now() / 1000) + 3600 },
});
await verifier.verify(token);
await verifier.verify(OPAQUE);
await endpoint.shutdown();

Deno.bench({
  name: "warm JWT: verifier cache hit",
  group: "warm token",
  baseline: true,
  async fn() {
    await verifier.verify(token);
  },
});
Deno.bench({
  name: "warm opaque token: introspection cache hit",
  group: "warm token",
  async fn() {
    await verifier.verify(OPAQUE);
  },
});
Deno.bench({
  name: "tokenKey(): SHA-256 hex of a 52-byte token",
  fn() {
    tokenKey(OPAQUE);
  },
});
