/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
/**
 * Worker for {@link ./issuer.ts}: RSA-2048 key generation and RS256 signing are the slow part of
 * setting up the bench (≈ 180 ms per key, ≈ 2.7 ms per token here), so they run on every core.
 *
 * Messages in: `{ op: "keygen" }` → a private RSA JWK;
 * `{ op: "sign", jwk, kid, claims, from, count }` → `count` tokens whose `sub` and `jti` end in
 * `from`, `from + 1`, ...
 */
import { importJWK, type JWK, type JWTPayload, SignJWT } from "jose";
import { generateKeyPairSync } from "node:crypto";

/** A request to the worker. */
export type MintRequest =
  | { op: "keygen" }
  | { op: "sign"; jwk: JWK; kid: string; claims: JWTPayload; from: number; count: number };

self.onmessage = async (e: MessageEvent<MintRequest>) => {
  const msg = e.data;
  if (msg.op === "keygen") {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    self.postMessage(privateKey.export({ format: "jwk" }));
    return;
  }
  const key = await importJWK(msg.jwk, "RS256");
  const tokens: string[] = [];
  for (let i = msg.from; i < msg.from + msg.count; i++) {
    tokens.push(
      await new SignJWT({ ...msg.claims, sub: `bench-user-${i}`, jti: `bench-${i}` })
        .setProtectedHeader({ alg: "RS256", kid: msg.kid, typ: "at+jwt" })
        .sign(key),
    );
  }
  self.postMessage(tokens);
};
