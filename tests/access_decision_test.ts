/**
 * The access decision under attack: what an independent review found (each test failed on the
 * code before its fix). One client cannot turn others' tokens into 503s; several issuers stay
 * apart (their tokens, their subjects, their introspection); an issuer not yet discovered does
 * not make its good tokens 401. Real sockets, a real gate.
 */
import assert from "node:assert/strict";
import { startTestIssuer } from "./helpers/issuer.ts";
import { startUpstream } from "./helpers/upstream.ts";
import { drain, startGate } from "./helpers/gate.ts";
import { ready, RESOURCE, startRig } from "./helpers/rig.ts";
import { parseConfig } from "../src/config/mod.ts";
import { ConfigError } from "../src/errors.ts";

const B_AUDIENCE = "api://mcp-b";

/**
 * An introspection endpoint that answers like a real authorization server: active for the tokens
 * in `good`, HTTP 400 `invalid_request` (after `slowMs`) for a token it cannot parse (here: one
 * starting with "bad", standing for an over-long or odd-charactered token, RFC 7662 §2.3 /
 * RFC 6749 §5.2), inactive otherwise. `seen` records every token it was sent.
 */
function startEndpoint(options: { good?: Set<string>; slowMs?: number } = {}) {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const token = new URLSearchParams(await req.text()).get("token") ?? "";
    seen.push(token);
    const now = Math.floor(Date.now() / 1000);
    if (token.startsWith("bad")) {
      await new Promise((r) => setTimeout(r, options.slowMs ?? 0));
      return Response.json({ error: "invalid_request" }, { status: 400 });
    }
    if (options.good?.has(token)) {
      return Response.json({
        active: true,
        aud: RESOURCE,
        sub: "alice",
        scope: "mcp:tools",
        exp: now + 600,
      });
    }
    return Response.json({ active: false });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/introspect`,
    seen,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("a token the introspection endpoint refuses with HTTP 400 does not turn other users' new tokens into 503", async () => {
  const GOOD = "opaque-good-token-of-alice";
  await using endpoint = startEndpoint({ good: new Set([GOOD]), slowMs: 400 });
  await using rig = await startRig({
    env: {
      INTROSPECTION_CLIENT_ID: "gate",
      INTROSPECTION_CLIENT_SECRET: "s3cret",
      INTROSPECTION_URL: endpoint.url,
      // Even with per-client rate limiting on: a 503 is charged to no bucket.
      RATE_LIMIT_RPS: "1",
      RATE_LIMIT_BURST: "5",
    },
  });
  const get = (token: string) => fetch(rig.url, { headers: { authorization: `Bearer ${token}` } });

  // An unauthenticated client sends a token the endpoint answers 400 for (RFC 7662 §2.3): that
  // refuses this token only (401), the endpoint is not "failing".
  const first = await get("bad-1");
  await drain(first);
  assert.equal(first.status, 401);

  // The attacker keeps the one probe allowed while "failing" busy with another such token...
  const probe = get("bad-2");
  await new Promise((r) => setTimeout(r, 100));
  // ...and Alice's perfectly good, never-seen token is refused at once, without any call.
  const alice = await get(GOOD);
  await drain(alice);
  await drain(await probe);
  const lines = await rig.gate.requestLogs(3);
  const aliceLine = lines.find((l) => l.status === alice.status && l.detail !== lines[0].detail);
  assert.equal(
    alice.status,
    200,
    `one client's malformed token made the gate refuse another user's valid token: ${aliceLine?.detail}`,
  );
});

Deno.test("with several issuers, INTROSPECT_ALL is refused at start (issuer B's bearer tokens would go to issuer A's introspection endpoint)", async () => {
  await using a = await startTestIssuer({ path: "/realms/a", audience: RESOURCE });
  await using b = await startTestIssuer({ path: "/tenant-b/v2.0", audience: B_AUDIENCE });
  const problems = startProblems({
    UPSTREAM_URL: "http://127.0.0.1:9/",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: `${a.issuer},${b.issuer}`,
    ISSUER_AUDIENCES: `${b.issuer}=${B_AUDIENCE}`,
    INTROSPECTION_CLIENT_ID: "gate",
    INTROSPECTION_CLIENT_SECRET: "s3cret",
    INTROSPECTION_URL: "http://127.0.0.1:9/introspect",
    INTROSPECT_ALL: "true",
  });
  assert.match(problems, /INTROSPECT_ALL/);
});

Deno.test("with several issuers, CLAIM_HEADERS that maps sub without iss is refused at start (the upstream could not tell the same sub at two issuers apart)", async () => {
  await using a = await startTestIssuer({ path: "/realms/a", audience: RESOURCE });
  await using b = await startTestIssuer({ path: "/tenant-b/v2.0", audience: B_AUDIENCE });
  const base = {
    UPSTREAM_URL: "http://127.0.0.1:9/",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: `${a.issuer},${b.issuer}`,
    ISSUER_AUDIENCES: `${b.issuer}=${B_AUDIENCE}`,
  };
  assert.match(startProblems({ ...base, CLAIM_HEADERS: "sub=X-Auth-Subject" }), /CLAIM_HEADERS/);
  assert.equal(
    startProblems({ ...base, CLAIM_HEADERS: "sub=X-Auth-Subject,iss=X-Auth-Issuer" }),
    "",
  );
});

/** The configuration problems the gate reports for `env` ("" when it has none). */
function startProblems(env: Record<string, string>): string {
  try {
    parseConfig(env);
    return "";
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
}

/** Two issuers behind one gate; `env` adds to the several-issuers configuration. */
async function twoIssuers(env: Record<string, string>) {
  const a = await startTestIssuer({ path: "/realms/a", audience: RESOURCE });
  const b = await startTestIssuer({ path: "/tenant-b/v2.0", audience: B_AUDIENCE });
  const upstream = await startUpstream();
  const gate = await startGate({
    UPSTREAM_URL: upstream.url,
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: `${a.issuer},${b.issuer}`,
    ISSUER_AUDIENCES: `${b.issuer}=${B_AUDIENCE}`,
    SCOPES_SUPPORTED: "mcp:tools",
    ...env,
  });
  await ready(gate);
  const call = async (token: string) => {
    const res = await fetch(`${gate.origin}/mcp`, {
      headers: { authorization: `Bearer ${token}` },
    });
    await drain(res);
    return res.status;
  };
  return {
    a,
    b,
    upstream,
    call,
    async [Symbol.asyncDispose]() {
      await gate.close();
      await upstream.close();
      await b.close();
      await a.close();
    },
  };
}

// OIDC Core §2: `sub` is unique only within its issuer. Mallory at the partner issuer B holds the
// same `sub` string as Alice at A (username-style subjects: Authentik, Dex, custom IdPs).

Deno.test("with several issuers, the same sub at two issuers does not share a rate-limit bucket", async () => {
  await using r = await twoIssuers({ RATE_LIMIT_RPS: "0.01", RATE_LIMIT_BURST: "1" });
  assert.equal(await r.call(await r.b.mint({ sub: "alice" })), 200);
  assert.equal(
    await r.call(await r.a.mint({ sub: "alice" })),
    200,
    "Alice at A is rate-limited by Mallory's use at B",
  );
});

Deno.test("with several issuers, the upstream can tell the same sub at two issuers apart", async () => {
  await using r = await twoIssuers({ CLAIM_HEADERS: "sub=X-Auth-Subject,iss=X-Auth-Issuer" });
  assert.equal(await r.call(await r.b.mint({ sub: "alice" })), 200);
  assert.equal(await r.call(await r.a.mint({ sub: "alice" })), 200);
  const [mallory, alice] = r.upstream.requests;
  const identity = (req: typeof alice) =>
    req.headers.filter(([n]) => n.startsWith("x-auth-")).map((h) => h.join(": ")).join("\n");
  assert.notEqual(
    identity(mallory),
    identity(alice),
    "the upstream sees one identity for Mallory@B and Alice@A (no issuer reaches it)",
  );
});

Deno.test("with several issuers, a valid opaque token of the first issuer is not refused 401 while that issuer's discovery is failing", async () => {
  await using a = await startTestIssuer({ path: "/realms/a", audience: RESOURCE });
  await using b = await startTestIssuer({ path: "/tenant-b/v2.0", audience: B_AUDIENCE });
  await a.down("503");
  const now = Math.floor(Date.now() / 1000);
  // A's introspection endpoint lives elsewhere (INTROSPECTION_URL) and answers normally.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.text();
    return Response.json({
      active: true,
      iss: a.issuer,
      aud: RESOURCE,
      sub: "alice",
      scope: "mcp:tools",
      exp: now + 600,
    });
  });
  await using _endpoint = { [Symbol.asyncDispose]: () => server.shutdown() };
  await using upstream = await startUpstream();
  await using gate = await startGate({
    UPSTREAM_URL: upstream.url,
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: `${a.issuer},${b.issuer}`,
    ISSUER_AUDIENCES: `${b.issuer}=${B_AUDIENCE}`,
    SCOPES_SUPPORTED: "mcp:tools",
    INTROSPECTION_CLIENT_ID: "gate",
    INTROSPECTION_CLIENT_SECRET: "s3cret",
    INTROSPECTION_URL: `http://127.0.0.1:${server.addr.port}/introspect`,
  });
  // Ready: B's keys loaded, A's first load failed (docs/identity-providers.md, several issuers).
  await ready(gate);
  const res = await fetch(`${gate.origin}/mcp`, {
    headers: { authorization: "Bearer opaque-token-of-alice-at-a" },
  });
  await drain(res);
  // The issuer A is known from configuration (issuersOf), discovery or not; the introspector reads
  // keys.stores[0].issuer, which is undefined until A's discovery succeeds, so `iss` never matches.
  const [line] = await gate.requestLogs(1);
  assert.notEqual(
    res.status,
    401,
    `a good token was refused (and negatively cached) with 401, reason ${line.reason}: ${line.detail}`,
  );
});
