/**
 * Opaque access tokens through the gate (RFC 7662, docs/identity-providers.md "Opaque tokens"):
 * - with oidc-provider issuing opaque tokens from a real authorization code + PKCE sign-in by the
 *   MCP SDK client, the gate discovers oidc-provider's introspection endpoint and lets the client
 *   in; a revoked token is refused at once when answers are not cached;
 * - with a controllable introspection endpoint on a real socket, the failure modes a client sees:
 *   503 + Retry-After while it is down (cached tokens still pass), `/readyz` reporting it, 401 for
 *   an inactive token; and no token byte in any log line.
 */
import assert from "node:assert/strict";
// @ts-types="@modelcontextprotocol/sdk/client/index"
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
// @ts-types="@modelcontextprotocol/sdk/client/streamableHttp"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
// @ts-types="@modelcontextprotocol/sdk/client/auth"
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import {
  DEMO_SERVICE_CLIENT_ID,
  DEMO_SERVICE_CLIENT_SECRET,
  startAuthorizationServer,
} from "../demo/authorization_server.ts";
import { startMcpServer } from "../demo/mcp_server.ts";
import { DevLoginOAuthProvider } from "./helpers/mcp_oauth_client.ts";
import { drain, startGate, type TestGate } from "./helpers/gate.ts";
import { assertNoTokenBytes, ready, RESOURCE, startRig } from "./helpers/rig.ts";

const PUBLIC_ORIGIN = "http://mcp.test";
const PUBLIC_RESOURCE = `${PUBLIC_ORIGIN}/mcp`;
const SCOPE = "mcp:tools";

/** oidc-provider issuing opaque tokens, the SDK's MCP server, and the gate introspecting. */
async function startOpaqueStack(env: Record<string, string> = {}) {
  const mcp = startMcpServer();
  const as = await startAuthorizationServer({
    resource: PUBLIC_RESOURCE,
    scopes: [SCOPE],
    accessTokenFormat: "opaque",
  });
  let gate: TestGate;
  try {
    gate = await startGate({
      UPSTREAM_URL: mcp.origin,
      RESOURCE_URI: PUBLIC_RESOURCE,
      AUTHORIZATION_SERVER: as.issuer,
      SCOPES_SUPPORTED: SCOPE,
      REQUIRED_SCOPES: SCOPE,
      CLAIM_HEADERS: "sub=X-Auth-Subject",
      INTROSPECTION_CLIENT_ID: DEMO_SERVICE_CLIENT_ID,
      INTROSPECTION_CLIENT_SECRET: DEMO_SERVICE_CLIENT_SECRET,
      SHUTDOWN_TIMEOUT: "2s",
      ...env,
    });
    await ready(gate);
  } catch (err) {
    await mcp.close();
    await as.close();
    throw err;
  }
  /** The client's fetch: the public name resolves to the gate, as DNS would. */
  const clientFetch = (input: string | URL | Request, init?: RequestInit) => {
    const req = new Request(input, init);
    return fetch(
      req.url.startsWith(PUBLIC_ORIGIN)
        ? new Request(gate.origin + req.url.slice(PUBLIC_ORIGIN.length), req)
        : req,
    );
  };
  return {
    as,
    gate,
    clientFetch,
    async [Symbol.asyncDispose]() {
      await gate.close();
      await mcp.close();
      await as.close();
    },
  };
}

/** Signs in as `login` with the MCP SDK client (DCR, code + PKCE) and returns its provider. */
async function signIn(
  stack: Awaited<ReturnType<typeof startOpaqueStack>>,
  login: string,
): Promise<DevLoginOAuthProvider> {
  const provider = new DevLoginOAuthProvider({
    login,
    redirectUrl: "http://localhost:3999/callback",
  });
  const first = new StreamableHTTPClientTransport(new URL(PUBLIC_RESOURCE), {
    authProvider: provider,
    fetch: stack.clientFetch,
  });
  await assert.rejects(
    new Client({ name: "introspection", version: "1.0.0" }).connect(first),
    UnauthorizedError,
  );
  await first.finishAuth(provider.takeAuthorizationCode());
  await first.close();
  return provider;
}

function textOf(result: unknown): string {
  return (result as { content: { text: string }[] }).content[0].text;
}

const INITIALIZE = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "curl", version: "1" },
  },
});

function initialize(origin: string, token: string): Promise<Response> {
  return fetch(`${origin}/mcp`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    },
    body: INITIALIZE,
  });
}

Deno.test("the MCP SDK client signs in (code + PKCE) for an opaque token, and the gate lets it in by introspecting it at oidc-provider", async () => {
  await using stack = await startOpaqueStack();
  const provider = await signIn(stack, "alice");
  const token = provider.tokens()?.access_token;
  assert.ok(token);
  assert.ok(!token.includes("."), "oidc-provider issued an opaque token, not a JWT");

  const transport = new StreamableHTTPClientTransport(new URL(PUBLIC_RESOURCE), {
    authProvider: provider,
    fetch: stack.clientFetch,
  });
  const client = new Client({ name: "introspection", version: "1.0.0" });
  await client.connect(transport);
  try {
    assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })), "5");
    assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: "whoami" }))), {
      subject: "alice",
      authorizationHeaderSeen: false,
    });
    await transport.terminateSession();
  } finally {
    await client.close();
  }

  // The session's DELETE is the last exchange (the binary's log lines arrive as they come).
  await stack.gate.waitForLog((l) => l.msg === "request" && l.method === "DELETE");
  const passed = (await stack.gate.requestLogs(1)).filter((l) => l.auth === "ok");
  assert.ok(passed.length >= 4, JSON.stringify(passed));
  assert.ok(passed.every((l) => l.sub === "alice"));
  // The discovered endpoint was found and answered: /readyz says so.
  const res = await fetch(`${stack.gate.origin}/readyz`);
  assert.deepEqual(await res.json(), { status: "ok", introspection: "ok" });
  assertNoTokenBytes(stack.gate.logText(), [token]);
});

Deno.test("with INTROSPECTION_CACHE_TTL=0 a token revoked at oidc-provider is refused on the next request", async () => {
  await using stack = await startOpaqueStack({ INTROSPECTION_CACHE_TTL: "0" });
  const token = (await signIn(stack, "bob")).tokens()!.access_token;
  const before = await initialize(stack.gate.origin, token);
  await drain(before);
  assert.equal(before.status, 200);

  const revoked = await fetch(`${stack.as.issuer}/token/revocation`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `Basic ${btoa(`${DEMO_SERVICE_CLIENT_ID}:${DEMO_SERVICE_CLIENT_SECRET}`)}`,
    },
    body: new URLSearchParams({ token, token_type_hint: "access_token" }),
  });
  assert.equal(revoked.status, 200, await revoked.text());

  const after = await initialize(stack.gate.origin, token);
  await drain(after);
  assert.equal(after.status, 401);
  assert.match(after.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
  const refused = await stack.gate.waitForLog((l) =>
    l.msg === "request" && l.auth === "invalid_token"
  );
  assert.equal(refused.reason, "inactive");
  assertNoTokenBytes(stack.gate.logText(), [token]);
});

/** A controllable introspection endpoint: `mode` decides every answer; `calls` counts them. */
function startEndpoint() {
  const state = {
    mode: "active" as "active" | "inactive" | "down" | "html",
    calls: 0,
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const form = new URLSearchParams(await req.text());
    state.calls++;
    const now = Math.floor(Date.now() / 1000);
    switch (state.mode) {
      case "down":
        return new Response("maintenance", { status: 503 });
      case "html":
        return new Response("<html></html>", { headers: { "content-type": "text/html" } });
      case "inactive":
        return Response.json({ active: false });
      default:
        return Response.json({
          active: true,
          aud: RESOURCE,
          sub: `user-${form.get("token")?.slice(-1)}`,
          scope: "mcp:tools",
          exp: now + 600,
        });
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/introspect`,
    state,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("an introspection endpoint that is down: 503 with Retry-After for new tokens, cached tokens still pass, /readyz stays 200 and says so", async () => {
  await using endpoint = startEndpoint();
  await using rig = await startRig({
    env: {
      INTROSPECTION_CLIENT_ID: "gate",
      INTROSPECTION_CLIENT_SECRET: "s3cret",
      INTROSPECTION_URL: endpoint.url,
    },
  });
  const get = (token: string) => fetch(rig.url, { headers: { authorization: `Bearer ${token}` } });
  const tokens = ["opaque-token-value-A", "opaque-token-value-B", "opaque-token-value-C"];

  const ok = await get(tokens[0]);
  await drain(ok);
  assert.equal(ok.status, 200);

  endpoint.state.mode = "down";
  const cached = await get(tokens[0]);
  await drain(cached);
  assert.equal(cached.status, 200, "a cached answer keeps working");

  const fresh = await get(tokens[1]);
  assert.equal(fresh.status, 503);
  assert.equal(fresh.headers.get("retry-after"), "5");
  assert.equal(fresh.headers.get("www-authenticate"), null);
  assert.deepEqual(await fresh.json(), {
    error: "temporarily_unavailable",
    error_description: "The authorization server cannot check the token now, try again shortly",
  });
  const readyz = await fetch(`${rig.gate.origin}/readyz`);
  assert.equal(readyz.status, 200);
  assert.deepEqual(await readyz.json(), { status: "ok", introspection: "failing" });

  endpoint.state.mode = "html";
  const html = await get(tokens[2]);
  await drain(html);
  assert.equal(html.status, 503);

  endpoint.state.mode = "inactive";
  const inactive = await get(tokens[2]);
  await drain(inactive);
  assert.equal(inactive.status, 401);
  assert.match(inactive.headers.get("www-authenticate") ?? "", /error="invalid_token"/);

  const logs = await rig.gate.requestLogs(5);
  assert.deepEqual(
    logs.map((l) => [l.status, l.auth, l.reason ?? null, l.sub ?? null]),
    [
      [200, "ok", null, "user-A"],
      [200, "ok", null, "user-A"],
      [503, "not_ready", "introspection_unavailable", null],
      [503, "not_ready", "introspection_unavailable", null],
      [401, "invalid_token", "inactive", null],
    ],
  );
  assert.match(String(logs[2].detail), /HTTP 503 from introspection endpoint/);
  assert.match(String(logs[3].detail), /Content type "text\/html"/);
  assert.equal(rig.upstream.requests.length, 2);
  await rig.gate.waitForLog((l) => l.msg === "introspection failing");
  assertNoTokenBytes(rig.gate.logText(), tokens);
});

Deno.test("JWTs keep their own path beside introspection, unless INTROSPECT_ALL", async () => {
  await using endpoint = startEndpoint();
  endpoint.state.mode = "inactive";
  const env = {
    INTROSPECTION_CLIENT_ID: "gate",
    INTROSPECTION_CLIENT_SECRET: "s3cret",
    INTROSPECTION_URL: endpoint.url,
  };
  {
    await using rig = await startRig({ env });
    const res = await fetch(rig.url, {
      headers: { authorization: `Bearer ${await rig.issuer.mint()}` },
    });
    await drain(res);
    assert.equal(res.status, 200);
    assert.equal(endpoint.state.calls, 0);
  }
  {
    await using rig = await startRig({ env: { ...env, INTROSPECT_ALL: "true" } });
    const res = await fetch(rig.url, {
      headers: { authorization: `Bearer ${await rig.issuer.mint()}` },
    });
    await drain(res);
    assert.equal(res.status, 401, "the authorization server says it is revoked");
    assert.equal(endpoint.state.calls, 1);
  }
});

Deno.test("a flood of distinct garbage tokens from one client costs the introspection endpoint at most its rate-limit bucket", async () => {
  await using endpoint = startEndpoint();
  endpoint.state.mode = "inactive";
  await using rig = await startRig({
    env: {
      INTROSPECTION_CLIENT_ID: "gate",
      INTROSPECTION_CLIENT_SECRET: "s3cret",
      INTROSPECTION_URL: endpoint.url,
      RATE_LIMIT_RPS: "0.1",
      RATE_LIMIT_BURST: "3",
    },
  });
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) {
    const res = await fetch(rig.url, { headers: { authorization: `Bearer garbage-${i}` } });
    await drain(res);
    statuses.push(res.status);
  }
  assert.deepEqual(statuses.slice(0, 3), [401, 401, 401]);
  assert.ok(statuses.slice(3).every((s) => s === 429), statuses.join(","));
  assert.equal(endpoint.state.calls, 3, "the empty bucket refuses before any introspection call");
});
