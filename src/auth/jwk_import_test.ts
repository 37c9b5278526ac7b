import { equal, ok as assert } from "node:assert/strict";
import { importKeySet } from "./jwk_import.ts";
import { generateTestKey } from "../../tests/helpers/issuer.ts";

Deno.test("importKeySet() imports one non-extractable verify-only CryptoKey per algorithm of a key", async () => {
  const rsa = await generateTestKey("RS256");
  const { alg: _alg, ...bare } = rsa.publicJwk;
  const { keys } = await importKeySet({ keys: [bare] }, { allowedAlgs: ["RS256", "PS384"] });
  const key = keys[0];
  const cases: [string, string, string][] = [
    ["RS256", "RSASSA-PKCS1-v1_5", "SHA-256"],
    ["PS384", "RSA-PSS", "SHA-384"],
  ];
  for (const [alg, name, hash] of cases) {
    const ck = key.cryptoKey(alg);
    assert(ck, alg);
    const algorithm = ck.algorithm as RsaHashedKeyAlgorithm;
    equal(`${algorithm.name}/${algorithm.hash.name}`, `${name}/${hash}`);
    equal(algorithm.modulusLength, 2048);
    equal(ck.extractable, false);
    equal(ck.type, "public");
    equal(ck.usages.join(), "verify");
  }
  equal(key.cryptoKey("RS512"), undefined, "not an allowed algorithm");
  equal(key.cryptoKey("ES256"), undefined, "not the key's type");
});

Deno.test("importKeySet() imports EC and OKP keys for their curve's algorithm only", async () => {
  const ec = await generateTestKey("ES256");
  const ed = await generateTestKey("EdDSA");
  const { keys } = await importKeySet({ keys: [ec.publicJwk, ed.publicJwk] }, {
    allowedAlgs: ["ES256", "ES384", "EdDSA", "Ed25519"],
  });
  equal([...keys[0].algs].join(), "ES256");
  equal((keys[0].cryptoKey("ES256")!.algorithm as EcKeyAlgorithm).namedCurve, "P-256");
  equal(keys[0].cryptoKey("ES384"), undefined);
  equal(keys[1].cryptoKey(ed.publicJwk.alg as string)!.algorithm.name, "Ed25519");
});
