/**
 * Several issuers (AUTHORIZATION_SERVER as a list, docs/identity-providers.md "Several issuers"):
 * two real test issuers behind one gate, each with its own key set, audiences, refresh and refetch
 * budget; a token's unverified `iss` only chooses the key set, and one issuer's outage leaves the
 * other's tokens, and its own cached keys, working.
 */
import assert from "node:assert/strict";
import { startTestIssuer, type TestIssuer } from "./helpers/issuer.ts";
import { startUpstream } from "./helpers/upstream.ts";
import { drain, startGate, type TestGate } from "./helpers/gate.ts";
import { ready, RESOURCE } from "./helpers/rig.ts";
import { generateTestKey } from "./helpers/issuer.ts";

/** Issuer B's audience: an Entra-like application ID URI, set through ISSUER_AUDIENCES. */
const B_AUDIENCE = "api://mcp-b";

async function call(gate: TestGate, token: string): Promise<number> {
  const res = await fetch(`${gate.origin}/mcp`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: "{}",
  });
  await drain(res);
  return res.status;
}

/** The reason of the last request log line (after `count` request lines exist). */
async function lastReason(gate: TestGate, count: number): Promise<unknown> {
  const lines = await gate.requestLogs(count);
  return lines[count - 1].reason;
}

function envFor(a: TestIssuer, b: TestIssuer, upstream: { url: string }): Record<string, string> {
  return {
    UPSTREAM_URL: upstream.url,
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: `${a.issuer},${b.issuer}`,
    ISSUER_AUDIENCES: `${b.issuer}=${B_AUDIENCE}`,
    SCOPES_SUPPORTED: "mcp:tools",
    // Every unknown kid may refetch at once, so the tests see which issuer is asked.
    JWKS_MIN_REFRESH_INTERVAL: "1ms",
  };
}

Deno.test("two issuers: each token is verified against the key set and audiences of the issuer it names", async (t) => {
  await using a = await startTestIssuer({ path: "/realms/a", audience: RESOURCE });
  await using b = await startTestIssuer({ path: "/tenant-b/v2.0", audience: B_AUDIENCE });
  await using upstream = await startUpstream();
  await using gate = await startGate(envFor(a, b, upstream));
  await ready(gate);
  let n = 0;

  await t.step("the metadata lists both issuers, in order (RFC 9728 §2)", async () => {
    const res = await fetch(`${gate.origin}/.well-known/oauth-protected-resource/mcp`);
    assert.deepEqual((await res.json()).authorization_servers, [a.issuer, b.issuer]);
    n++;
  });
  await t.step("each issuer's own token passes", async () => {
    assert.equal(await call(gate, await a.mint()), 200);
    assert.equal(await call(gate, await b.mint()), 200);
    n += 2;
  });
  await t.step("audiences are per issuer", async () => {
    assert.equal(await call(gate, await b.mint({ aud: RESOURCE })), 401);
    assert.equal(await lastReason(gate, ++n), "audience");
    assert.equal(await call(gate, await a.mint({ aud: B_AUDIENCE })), 401);
    assert.equal(await lastReason(gate, ++n), "audience");
  });
  await t.step(
    "a token naming A but signed by B's key is checked against A's keys only",
    async () => {
      const before = { a: a.jwksFetchCount, b: b.jwksFetchCount };
      const forged = await b.mint({ iss: a.issuer, aud: RESOURCE });
      assert.equal(await call(gate, forged), 401);
      assert.equal(await lastReason(gate, ++n), "unknown_kid");
      // A's refetch budget paid for the unknown kid; B was not asked.
      assert.equal(a.jwksFetchCount, before.a + 1);
      assert.equal(b.jwksFetchCount, before.b);
    },
  );
  await t.step("an iss naming no configured issuer is refused without any key fetch", async () => {
    const before = { a: a.jwksFetchCount, b: b.jwksFetchCount };
    for (const iss of [`${a.issuer}/`, "https://evil.example.com", undefined, 42]) {
      const stranger = await generateTestKey("RS256");
      assert.equal(await call(gate, await a.mint({ iss }, { key: stranger })), 401);
      assert.equal(await lastReason(gate, ++n), "issuer");
    }
    assert.deepEqual({ a: a.jwksFetchCount, b: b.jwksFetchCount }, before);
  });
});

Deno.test("two issuers: one issuer's outage leaves the other's tokens and its own cached keys working", async (t) => {
  await using a = await startTestIssuer({ path: "/realms/a", audience: RESOURCE });
  await using b = await startTestIssuer({ path: "/tenant-b/v2.0", audience: B_AUDIENCE });
  await using upstream = await startUpstream();
  await using gate = await startGate(envFor(a, b, upstream));
  await ready(gate);
  let n = 0;

  await b.down("refused");
  await t.step("A's tokens pass while B is unreachable", async () => {
    assert.equal(await call(gate, await a.mint()), 200);
    n++;
  });
  await t.step("B's keys, already loaded, keep verifying fresh B tokens", async () => {
    assert.equal(await call(gate, await b.mint({ jti: "fresh" })), 200);
    n++;
  });
  await t.step("a B token with an unknown kid is refused; A is untouched", async () => {
    const rotated = await generateTestKey("RS256");
    assert.equal(await call(gate, await b.mint({}, { key: rotated })), 401);
    assert.equal(await lastReason(gate, ++n), "unknown_kid");
    assert.equal(await call(gate, await a.mint()), 200);
    n++;
  });
  await t.step("/readyz stays 200", async () => {
    const res = await fetch(`${gate.origin}/readyz`);
    await drain(res);
    assert.equal(res.status, 200);
  });
});

Deno.test("two issuers: a gate started while one is down serves the other; the down one's tokens get 503 until its keys load", async () => {
  await using a = await startTestIssuer({ path: "/realms/a", audience: RESOURCE });
  await using b = await startTestIssuer({ path: "/tenant-b/v2.0", audience: B_AUDIENCE });
  await using upstream = await startUpstream();
  const bToken = await b.mint();
  await b.down("refused");
  await using gate = await startGate(envFor(a, b, upstream));
  // Ready once A is loaded and B's first load has failed (docs/identity-providers.md).
  await gate.waitForLog(
    (l) => l.msg === "key set load failed" && l.authorization_server === b.issuer,
    15_000,
  );
  await ready(gate, 15_000);
  assert.equal(await call(gate, await a.mint()), 200);
  assert.equal(await call(gate, bToken), 503);
  const lines = await gate.requestLogs(2);
  assert.equal(lines[1].reason, "keys_not_loaded");

  await b.up();
  await gate.waitForLog(
    (l) => l.msg === "key set loaded" && l.authorization_server === b.issuer,
    30_000,
  );
  assert.equal(await call(gate, bToken), 200);
});
