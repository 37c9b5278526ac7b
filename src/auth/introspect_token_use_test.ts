/**
 * What an introspection answer must say before the gate treats the presented string as an access
 * token: a refresh token's answer (`token_use`) is not one.
 */
import assert from "node:assert/strict";
import { GateError } from "../errors.ts";
import { createLogger, createMemorySink } from "../ops/mod.ts";
import { createIntrospector } from "./introspect.ts";
import { TEST_RESOURCE, testConfig } from "../../tests/helpers/config.ts";

const ISSUER = "https://auth.example.com";

Deno.test("an introspection answer for a refresh token (Ory Hydra/fosite token_use) is not accepted as an access token", async () => {
  const now = Math.floor(Date.now() / 1000);
  // Hydra introspects every token type whatever token_type_hint says (RFC 7662 §2.1 allows it)
  // and tells them apart by `token_use`; its refresh tokens carry the same sub, aud and scope.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.text();
    return Response.json({
      active: true,
      iss: ISSUER,
      aud: [TEST_RESOURCE],
      sub: "alice",
      scope: "mcp:tools offline_access",
      client_id: "app",
      exp: now + 30 * 24 * 3600,
      iat: now,
      token_use: "refresh_token",
    });
  });
  await using _ = { [Symbol.asyncDispose]: () => server.shutdown() };
  const introspector = createIntrospector(
    testConfig({
      introspectionClientId: "gate",
      introspectionClientSecret: "s3cret",
      introspectionUrl: `http://127.0.0.1:${server.addr.port}/introspect`,
    }),
    { log: createLogger({ level: "debug", sink: createMemorySink() }), issuer: () => ISSUER },
  );
  await using _i = introspector;
  let outcome: unknown;
  try {
    outcome = await introspector.verify("ory_rt_refresh-token-of-alice");
  } catch (e) {
    outcome = e;
  }
  assert.ok(
    outcome instanceof GateError && outcome.code === "invalid_token",
    "a refresh token passed as a bearer access token",
  );
});
