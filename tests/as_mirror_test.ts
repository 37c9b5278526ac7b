/**
 * AS_METADATA_MIRROR (docs/identity-providers.md, "Clients from before RFC 9728"): a client of the
 * MCP 2025-03-26 revision knows nothing of RFC 9728 and looks for the authorization server's
 * metadata at the MCP server's own origin. The MCP SDK client is made into one here: its fetch
 * answers 404 for every protected resource metadata URL (so the SDK takes its legacy path, the
 * MCP server's origin as the authorization server) and its `initialize` asks for 2025-03-26.
 */
import assert from "node:assert/strict";
// @ts-types="@modelcontextprotocol/sdk/client/index"
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
// @ts-types="@modelcontextprotocol/sdk/client/streamableHttp"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
// @ts-types="@modelcontextprotocol/sdk/client/auth"
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { startAuthorizationServer } from "../demo/authorization_server.ts";
import { startMcpServer } from "../demo/mcp_server.ts";
import { DevLoginOAuthProvider } from "./helpers/mcp_oauth_client.ts";
import { drain, startGate, type TestGate } from "./helpers/gate.ts";
import { ready } from "./helpers/rig.ts";

const PUBLIC_ORIGIN = "http://mcp.test";
const RESOURCE = `${PUBLIC_ORIGIN}/mcp`;
const MIRROR = "/.well-known/oauth-authorization-server";
const OLD_PROTOCOL = "2025-03-26";

async function startStack(env: Record<string, string>) {
  const mcp = startMcpServer();
  const as = await startAuthorizationServer({ resource: RESOURCE, scopes: ["mcp:tools"] });
  let gate: TestGate;
  try {
    gate = await startGate({
      UPSTREAM_URL: mcp.origin,
      RESOURCE_URI: RESOURCE,
      AUTHORIZATION_SERVER: as.issuer,
      SCOPES_SUPPORTED: "mcp:tools",
      SHUTDOWN_TIMEOUT: "2s",
      ...env,
    });
    await ready(gate);
  } catch (err) {
    await mcp.close();
    await as.close();
    throw err;
  }
  return {
    as,
    gate,
    async [Symbol.asyncDispose]() {
      await gate.close();
      await mcp.close();
      await as.close();
    },
  };
}

Deno.test("an MCP SDK client of the 2025-03-26 revision discovers the authorization server through the mirror, signs in and calls a tool", async () => {
  await using stack = await startStack({ AS_METADATA_MIRROR: "true" });
  const seen: string[] = [];
  const negotiated: string[] = [];
  /** The old client: no RFC 9728, protocol 2025-03-26, the public name routed to the gate. */
  const oldClientFetch = async (input: string | URL | Request, init?: RequestInit) => {
    let req = new Request(input, init);
    const url = new URL(req.url);
    if (url.pathname.startsWith("/.well-known/oauth-protected-resource")) {
      seen.push(`GET ${req.url} 404 (not known to this client)`);
      return new Response("not found", { status: 404 });
    }
    let initializing = false;
    if (req.method === "POST" && url.origin === PUBLIC_ORIGIN) {
      const body = await req.text();
      const msg = JSON.parse(body);
      initializing = msg.method === "initialize";
      const sent = initializing
        ? JSON.stringify({ ...msg, params: { ...msg.params, protocolVersion: OLD_PROTOCOL } })
        : body;
      req = new Request(req, { body: sent });
    }
    const routed = url.origin === PUBLIC_ORIGIN
      ? new Request(stack.gate.origin + req.url.slice(PUBLIC_ORIGIN.length), req)
      : req;
    const res = await fetch(routed);
    seen.push(`${req.method} ${req.url} ${res.status}`);
    if (initializing && res.status === 200) {
      // JSON or a one-event SSE stream: either way the result names the version agreed on.
      const v = /"protocolVersion":"([^"]+)"/.exec(await res.clone().text())?.[1];
      if (v) negotiated.push(v);
    }
    return res;
  };

  const provider = new DevLoginOAuthProvider({
    login: "carol",
    redirectUrl: "http://localhost:3999/callback",
  });
  const first = new StreamableHTTPClientTransport(new URL(RESOURCE), {
    authProvider: provider,
    fetch: oldClientFetch,
  });
  await assert.rejects(
    new Client({ name: "old", version: "1.0.0" }).connect(first),
    UnauthorizedError,
  );
  await first.finishAuth(provider.takeAuthorizationCode());
  await first.close();
  assert.ok(
    seen.includes(`GET ${PUBLIC_ORIGIN}${MIRROR} 200`),
    `the client read the mirror:\n${seen.join("\n")}`,
  );
  assert.ok(seen.includes(`POST ${stack.as.issuer}/reg 201`), seen.join("\n"));
  assert.ok(seen.includes(`POST ${stack.as.issuer}/token 200`), seen.join("\n"));

  const transport = new StreamableHTTPClientTransport(new URL(RESOURCE), {
    authProvider: provider,
    fetch: oldClientFetch,
  });
  const client = new Client({ name: "old", version: "1.0.0" });
  await client.connect(transport);
  try {
    const result = await client.callTool({ name: "add", arguments: { a: 20, b: 22 } });
    assert.equal((result as { content: { text: string }[] }).content[0].text, "42");
  } finally {
    await client.close();
  }
  assert.deepEqual(negotiated, [OLD_PROTOCOL]);
});

Deno.test("the mirror serves the authorization server's metadata byte for byte, with an ETag and 304", async () => {
  await using stack = await startStack({ AS_METADATA_MIRROR: "true" });
  const original = await fetch(`${stack.as.issuer}${MIRROR}`);
  const originalBytes = new Uint8Array(await original.arrayBuffer());

  const res = await fetch(`${stack.gate.origin}${MIRROR}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  assert.equal(res.status, 200);
  assert.deepEqual(bytes, originalBytes);
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.equal(res.headers.get("cache-control"), "public, max-age=300, no-transform");
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  const etag = res.headers.get("etag");
  assert.match(etag ?? "", /^"[A-Za-z0-9_-]{43}"$/);

  const again = await fetch(`${stack.gate.origin}${MIRROR}`, {
    headers: { "if-none-match": etag! },
  });
  assert.equal(again.status, 304);
  assert.equal(await again.text(), "");
  const head = await fetch(`${stack.gate.origin}${MIRROR}`, { method: "HEAD" });
  await drain(head);
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), String(originalBytes.byteLength));
  const post = await fetch(`${stack.gate.origin}${MIRROR}`, { method: "POST" });
  await drain(post);
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD, OPTIONS");
});

Deno.test("without AS_METADATA_MIRROR the path is an ordinary protected path", async () => {
  await using stack = await startStack({});
  const res = await fetch(`${stack.gate.origin}${MIRROR}`);
  await drain(res);
  assert.equal(res.status, 401);
});

Deno.test("the mirror answers 503 with Retry-After while the authorization server cannot be reached, and fetches at most once per cooldown", async () => {
  await using stack = await startStack({
    AS_METADATA_MIRROR: "true",
    JWKS_MIN_REFRESH_INTERVAL: "1h",
  });
  await stack.as.close();
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${stack.gate.origin}${MIRROR}`);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "5");
    assert.equal((await res.json()).error, "temporarily_unavailable");
  }
  await stack.gate.waitForLog((l) => l.msg === "authorization server metadata fetch failed");
  // Three requests were answered above: had each fetched, their lines would be in by now.
  await stack.gate.requestLogs(3);
  const failures = stack.gate.logs().filter((l) =>
    l.msg === "authorization server metadata fetch failed"
  );
  assert.equal(failures.length, 1, "one fetch, then the cooldown");
  assert.match(String(failures[0].reason), /Failed fetching authorization server metadata/);
});
