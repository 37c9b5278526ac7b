/**
 * Credential forms redactSecrets() must hide (found by review; each failed before the fix).
 */
import assert from "node:assert/strict";
import { REDACTED, redactSecrets } from "./errors.ts";

Deno.test("redactSecrets() hides a URL password that contains '@' (WHATWG splits the user info at the last '@')", () => {
  // new URL() accepts this: password "p%40ss", host redis.internal:6379. The regex's user info
  // stops at the first '@', so "ss" is shown.
  const url = "redis://app:p@ss@redis.internal:6379";
  assert.equal(new URL(url).host, "redis.internal:6379");
  const out = redactSecrets(`RATE_LIMIT_REDIS_URL "${url}" refused`);
  assert.equal(out, `RATE_LIMIT_REDIS_URL "redis://${REDACTED}@redis.internal:6379" refused`);
});

Deno.test("redactSecrets() hides the signatures of S3 and GCS pre-signed URLs", () => {
  // SECRET_QUERY_PARAMS names "signed-URL signatures", but the usual spellings are prefixed.
  const out = redactSecrets(
    "https://b.s3.amazonaws.com/jwks.json?X-Amz-Credential=AKIA&X-Amz-Signature=deadbeef",
  );
  assert.ok(!out.includes("deadbeef"), out);
  const gcs = redactSecrets("https://storage.googleapis.com/b/k?X-Goog-Signature=cafebabe");
  assert.ok(!gcs.includes("cafebabe"), gcs);
});
