/**
 * End to end with the real peers, through real sockets:
 * - upstream: the MCP TypeScript SDK server (Streamable HTTP, stateful sessions), `demo/mcp_server.ts`;
 * - authorization server: oidc-provider 9 with resource indicators, `demo/authorization_server.ts`;
 * - client: the MCP SDK client (`Client` + `StreamableHTTPClientTransport` + an OAuth provider),
 *   going the way Claude.ai does: 401 → protected resource metadata → AS metadata → dynamic
 *   client registration → authorization code with PKCE (oidc-provider's login and consent pages
 *   scripted with fetch) → token → initialize, tools/list, tools/call, progress over SSE.
 *
 * The gate listens on port 0, so its address is unknown until it runs, yet `RESOURCE_URI` must be
 * configured first. As in production behind a load balancer, the resource has a public name
 * (`http://mcp.test/mcp`); the client's fetch resolves that name to the gate's socket, the way DNS
 * would. Everything else goes to its real address.
 */
import assert from "node:assert/strict";
// @ts-types="@modelcontextprotocol/sdk/client/index"
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
// @ts-types="@modelcontextprotocol/sdk/client/streamableHttp"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
// @ts-types="@modelcontextprotocol/sdk/client/auth"
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
// @ts-types="@modelcontextprotocol/sdk/client/auth-extensions"
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { parseConfig } from "../src/config/mod.ts";
import { createLogger, createMemorySink } from "../src/ops/mod.ts";
import { startServer } from "../src/server.ts";
import {
  DEMO_SERVICE_CLIENT_ID,
  DEMO_SERVICE_CLIENT_SECRET,
  startAuthorizationServer,
} from "../demo/authorization_server.ts";
import { startMcpServer } from "../demo/mcp_server.ts";
import { DevLoginOAuthProvider } from "./helpers/mcp_oauth_client.ts";
import { closedPort } from "./helpers/net.ts";

const PUBLIC_ORIGIN = "http://mcp.test";
const RESOURCE = `${PUBLIC_ORIGIN}/mcp`;
const METADATA_URL = `${PUBLIC_ORIGIN}/.well-known/oauth-protected-resource/mcp`;
const SCOPE = "mcp:tools";

/** What reached the MCP server, per request. */
interface UpstreamRequest {
  method: string;
  authorization: string | null;
  cookie: string | null;
  subject: string | null;
}

/** One request the MCP client made, with the URL as the client saw it. */
interface ClientRequest {
  method: string;
  url: string;
  status: number;
  contentType: string | null;
}

/** The three real peers plus the gate, all on 127.0.0.1, port 0. */
async function startStack() {
  const upstreamRequests: UpstreamRequest[] = [];
  const mcp = startMcpServer({
    onRequest: (req) =>
      upstreamRequests.push({
        method: req.method,
        authorization: req.headers.get("authorization"),
        cookie: req.headers.get("cookie"),
        subject: req.headers.get("x-auth-subject"),
      }),
  });
  const as = await startAuthorizationServer({ resource: RESOURCE, scopes: [SCOPE] });
  const sink = createMemorySink();
  const gate = await startServer(
    parseConfig({
      UPSTREAM_URL: mcp.origin,
      RESOURCE_URI: RESOURCE,
      AUTHORIZATION_SERVER: as.issuer,
      LISTEN_ADDR: "127.0.0.1:0",
      METRICS_ADDR: "",
      SCOPES_SUPPORTED: SCOPE,
      CLAIM_HEADERS: "sub=X-Auth-Subject",
      SHUTDOWN_TIMEOUT: "2s",
    }),
    { log: createLogger({ level: "debug", sink }) },
  );
  const gateOrigin = `http://127.0.0.1:${gate.addr.port}`;
  const clientRequests: ClientRequest[] = [];
  /** The client's fetch: resolves the public name to the gate, records every exchange. */
  const clientFetch = async (input: string | URL | Request, init?: RequestInit) => {
    const req = new Request(input, init);
    const shown = req.url;
    const routed = shown.startsWith(PUBLIC_ORIGIN)
      ? new Request(gateOrigin + shown.slice(PUBLIC_ORIGIN.length), req)
      : req;
    const res = await fetch(routed);
    clientRequests.push({
      method: req.method,
      url: shown,
      status: res.status,
      contentType: res.headers.get("content-type"),
    });
    return res;
  };
  const close = async () => {
    await gate.shutdown();
    await mcp.close();
    await as.close();
  };
  try {
    await waitUntilReady(`${gateOrigin}/readyz`);
  } catch (err) {
    await close();
    throw err;
  }
  return {
    as,
    gateOrigin,
    sink,
    upstreamRequests,
    clientRequests,
    clientFetch,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Polls /readyz (docs/contract.md §2: 200 once the key set is loaded); the gate emits no other
 * event.
 */
async function waitUntilReady(url: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const res = await fetch(url);
    await res.body?.cancel();
    if (res.status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`The gate did not become ready at "${url}"`);
}

function decodeJwtPart(part: string): Record<string, unknown> {
  const b64 = part.replaceAll("-", "+").replaceAll("_", "/");
  return JSON.parse(atob(b64 + "=".repeat((4 - b64.length % 4) % 4)));
}

function textOf(result: unknown): string {
  const content = (result as { content: { type: string; text: string }[] }).content;
  assert.equal(content[0].type, "text");
  return content[0].text;
}

Deno.test("a request without a token gets 401 with the exact challenge, and never reaches the MCP server", async () => {
  await using stack = await startStack();
  const res = await fetch(`${stack.gateOrigin}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
  });
  await res.body?.cancel();
  assert.equal(res.status, 401);
  assert.equal(
    res.headers.get("www-authenticate"),
    `Bearer resource_metadata="${METADATA_URL}", scope="${SCOPE}"`,
  );
  assert.deepEqual(stack.upstreamRequests, []);
});

Deno.test("the MCP SDK client signs in the Claude.ai way (DCR, code + PKCE) and calls tools through the gate", async () => {
  await using stack = await startStack();
  const issuer = stack.as.issuer;
  const provider = new DevLoginOAuthProvider({
    login: "alice",
    redirectUrl: "http://localhost:3999/callback",
  });

  // 1. First attempt: 401, discovery, registration, sign-in; the SDK then asks the app to
  // finish the authorization with the code from the redirect.
  const first = new StreamableHTTPClientTransport(new URL(RESOURCE), {
    authProvider: provider,
    fetch: stack.clientFetch,
  });
  await assert.rejects(
    new Client({ name: "e2e", version: "1.0.0" }).connect(first),
    UnauthorizedError,
  );
  await first.finishAuth(provider.takeAuthorizationCode());
  await first.close();

  assert.equal(provider.registered, true);
  assert.deepEqual(
    stack.clientRequests.map(({ method, url, status }) => `${method} ${url} ${status}`),
    [
      `POST ${RESOURCE} 401`,
      `GET ${METADATA_URL} 200`,
      `GET ${issuer}/.well-known/oauth-authorization-server 200`,
      `POST ${issuer}/reg 201`,
      // finishAuth() discovers again, then redeems the code.
      `GET ${METADATA_URL} 200`,
      `GET ${issuer}/.well-known/oauth-authorization-server 200`,
      `POST ${issuer}/token 200`,
    ],
  );
  assert.equal(provider.authorizationUrls.length, 1);
  const authorize = provider.authorizationUrls[0];
  assert.equal(authorize.origin + authorize.pathname, `${issuer}/auth`);
  assert.equal(authorize.searchParams.get("resource"), RESOURCE);
  assert.equal(authorize.searchParams.get("scope"), SCOPE);
  assert.equal(authorize.searchParams.get("code_challenge_method"), "S256");

  // 2. The token: an RS256 at+jwt for exactly this resource (RFC 9068, RFC 8707).
  const accessToken = provider.tokens()?.access_token;
  assert.ok(accessToken);
  const [header, payload, signature] = accessToken.split(".");
  assert.deepEqual(
    { ...decodeJwtPart(header), kid: undefined },
    { alg: "RS256", typ: "at+jwt", kid: undefined },
  );
  const claims = decodeJwtPart(payload);
  assert.equal(claims.aud, RESOURCE);
  assert.equal(claims.iss, issuer);
  assert.equal(claims.sub, "alice");
  assert.equal(claims.scope, SCOPE);

  // 3. Connected: initialize, tools/list, tools/call.
  stack.clientRequests.length = 0;
  const transport = new StreamableHTTPClientTransport(new URL(RESOURCE), {
    authProvider: provider,
    fetch: stack.clientFetch,
  });
  const client = new Client({ name: "e2e", version: "1.0.0" });
  await client.connect(transport);
  try {
    assert.ok(transport.sessionId, "the Mcp-Session-Id came back through the gate");
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name), ["echo", "add", "countdown", "whoami"]);
    assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })), "5");
    assert.equal(
      textOf(await client.callTool({ name: "echo", arguments: { text: "héllo" } })),
      "héllo",
    );

    // 4. Progress notifications stream over SSE, in order, each as it is sent: the first one
    // arrives well before the result (a buffering proxy would deliver them all at the end).
    const started = performance.now();
    const progress: { progress: number; total?: number; message?: string; at: number }[] = [];
    const result = await client.callTool(
      { name: "countdown", arguments: { from: 4, delayMs: 150 } },
      undefined,
      { onprogress: (p) => progress.push({ ...p, at: performance.now() - started }) },
    );
    const resultAt = performance.now() - started;
    assert.equal(textOf(result), "Counted down from 4");
    assert.deepEqual(
      progress.map(({ progress, total, message }) => ({ progress, total, message })),
      [
        { progress: 1, total: 4, message: "4" },
        { progress: 2, total: 4, message: "3" },
        { progress: 3, total: 4, message: "2" },
        { progress: 4, total: 4, message: "1" },
      ],
    );
    assert.ok(
      resultAt - progress[0].at >= 300,
      `first progress at ${progress[0].at} ms, result at ${resultAt} ms`,
    );
    const countdownPost = stack.clientRequests.filter((r) => r.method === "POST").at(-1);
    assert.equal(countdownPost?.contentType, "text/event-stream");

    // 5. Identity reached the server as a header; the token did not (default strip).
    assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: "whoami" }))), {
      subject: "alice",
      authorizationHeaderSeen: false,
    });
    await transport.terminateSession();
  } finally {
    await client.close();
  }

  assert.deepEqual(
    stack.clientRequests.map(({ method, status }) => `${method} ${status}`).slice(0, 3),
    ["POST 200", "POST 202", "GET 200"], // initialize, initialized, the session's SSE stream
  );
  assert.ok(stack.upstreamRequests.length >= 8);
  assert.deepEqual(
    stack.upstreamRequests.filter((r) => r.authorization !== null || r.cookie !== null),
    [],
  );
  assert.deepEqual(stack.upstreamRequests.filter((r) => r.subject !== "alice"), []);
  assert.ok(stack.upstreamRequests.some((r) => r.method === "DELETE"));

  // 6. The gate logged each request without a byte of the token.
  const logText = stack.sink.text();
  assert.equal(logText.includes(accessToken), false);
  assert.equal(logText.includes(signature), false);
  const requestLines = stack.sink.lines.map((l) => JSON.parse(l)).filter((l) =>
    l.msg === "request"
  );
  assert.ok(requestLines.some((l) => l.auth === "ok" && l.sub === "alice" && l.path === "/mcp"));
  assert.ok(requestLines.some((l) => l.auth === "none" && l.status === 401));
});

Deno.test("the MCP SDK client-credentials provider gets a token from oidc-provider and calls a tool through the gate", async () => {
  await using stack = await startStack();
  const provider = new ClientCredentialsProvider({
    clientId: DEMO_SERVICE_CLIENT_ID,
    clientSecret: DEMO_SERVICE_CLIENT_SECRET,
    // The SDK checks this against the gate's `authorization_servers`: it must match exactly.
    expectedIssuer: stack.as.issuer,
  });
  const transport = new StreamableHTTPClientTransport(new URL(RESOURCE), {
    authProvider: provider,
    fetch: stack.clientFetch,
  });
  const client = new Client({ name: "e2e-service", version: "1.0.0" });
  await client.connect(transport);
  try {
    assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: "whoami" }))), {
      subject: DEMO_SERVICE_CLIENT_ID,
      authorizationHeaderSeen: false,
    });
    await transport.terminateSession();
  } finally {
    await client.close();
  }
  const claims = decodeJwtPart(provider.tokens()!.access_token.split(".")[1]);
  assert.equal(claims.aud, RESOURCE);
  assert.equal(claims.sub, DEMO_SERVICE_CLIENT_ID);
  assert.equal(
    stack.clientRequests.filter((r) => r.url === `${stack.as.issuer}/token`).length,
    1,
  );
});

/** Collects a child's output and resolves `seen(marker)` once it has appeared. */
function watchOutput(stream: ReadableStream<Uint8Array>) {
  let text = "";
  const waiters: { marker: string; resolve: () => void }[] = [];
  const done = (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      for (const w of waiters.filter((w) => text.includes(w.marker))) w.resolve();
    }
  })();
  return {
    text: () => text,
    done,
    seen(marker: string): Promise<void> {
      if (text.includes(marker)) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push({ marker, resolve });
      return promise;
    },
  };
}

/** Whether `curl` can be run here (the banner's commands need it). */
async function hasCurl(): Promise<boolean> {
  try {
    return (await new Deno.Command("curl", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

Deno.test("deno task demo starts the three servers, its printed commands work, and it exits 0 on SIGINT", async (t) => {
  // The gate's port is part of RESOURCE_URI, so the demo needs it up front: take a free one.
  const gatePort = closedPort();
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const task: string[] = denoJson.tasks.demo.split(" ");
  assert.deepEqual(task.slice(0, 2), ["deno", "run"]);
  const child = new Deno.Command(Deno.execPath(), {
    args: task.slice(1),
    cwd: new URL("..", import.meta.url),
    env: { DEMO_GATE_PORT: String(gatePort), DEMO_AS_PORT: "0", DEMO_MCP_PORT: "0", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = watchOutput(child.stdout);
  const stderr = watchOutput(child.stderr);
  const mcpUrl = `http://127.0.0.1:${gatePort}/mcp`;
  try {
    const exited = child.status.then((s) => {
      throw new Error(`The demo exited with ${s.code}: ${stderr.text()}`);
    });
    exited.catch(() => {});
    await Promise.race([stdout.seen("Ctrl-C stops it."), exited]);

    await t.step("the banner names the gate's MCP URL and the gate has its keys", () => {
      assert.ok(stdout.text().includes(`MCP endpoint (through the gate)   ${mcpUrl}`));
      assert.equal(stdout.text().includes("has not loaded"), false);
    });

    let issuer = "";
    await t.step("the metadata names the demo's authorization server", async () => {
      const res = await fetch(
        `http://127.0.0.1:${gatePort}/.well-known/oauth-protected-resource/mcp`,
      );
      const doc = await res.json();
      assert.equal(doc.resource, mcpUrl);
      assert.deepEqual(doc.scopes_supported, ["mcp:tools"]);
      issuer = doc.authorization_servers[0];
      assert.match(stdout.text(), new RegExp(`Authorization server \\(issuer\\)\\s+${issuer} `));
    });

    await t.step(
      "a client-credentials token calls a tool through the gate (MCP SDK client)",
      async () => {
        const token = await serviceToken(issuer, mcpUrl);
        const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
          requestInit: { headers: { authorization: `Bearer ${token}` } },
        });
        const client = new Client({ name: "demo-smoke", version: "1.0.0" });
        await client.connect(transport);
        try {
          assert.equal(
            textOf(await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })),
            "5",
          );
          await transport.terminateSession();
        } finally {
          await client.close();
        }
      },
    );

    await t.step(
      "a browser at MCP Inspector's origin passes CORS at each step of the flow",
      async () => {
        const origin = "http://localhost:6274";
        const preflights: [string, string, string][] = [
          [
            `http://127.0.0.1:${gatePort}/.well-known/oauth-protected-resource/mcp`,
            "GET",
            "mcp-protocol-version",
          ],
          [`${issuer}/.well-known/oauth-authorization-server`, "GET", "mcp-protocol-version"],
          [`${issuer}/reg`, "POST", "content-type"],
          [`${issuer}/token`, "POST", "content-type"],
          [mcpUrl, "POST", "authorization, content-type, mcp-protocol-version, mcp-session-id"],
        ];
        for (const [url, method, headers] of preflights) {
          const res = await fetch(url, {
            method: "OPTIONS",
            headers: {
              origin,
              "access-control-request-method": method,
              "access-control-request-headers": headers,
            },
          });
          await res.body?.cancel();
          assert.equal(res.status, 204, url);
          assert.ok(
            [origin, "*"].includes(res.headers.get("access-control-allow-origin") ?? ""),
            url,
          );
          const allowed = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
          for (const h of headers.split(", ")) assert.ok(allowed.includes(h), `${url}: ${h}`);
        }
        const challenge = await fetch(mcpUrl, { method: "POST", headers: { origin } });
        await challenge.body?.cancel();
        assert.equal(challenge.status, 401);
        assert.equal(challenge.headers.get("access-control-allow-origin"), origin);
        assert.match(
          challenge.headers.get("access-control-expose-headers") ?? "",
          /WWW-Authenticate/i,
        );
      },
    );

    await t.step({
      name: "the banner's curl commands work as printed",
      ignore: !(await hasCurl()),
      fn: async () => {
        const banner = stdout.text();
        const script = banner.slice(
          banner.indexOf("  # 1."),
          banner.indexOf("Connect MCP Inspector"),
        );
        const out = await new Deno.Command("bash", {
          args: ["-c", `set -eo pipefail\n${script}\necho "SESSION=$SESSION"`],
          stdout: "piped",
          stderr: "null",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, text);
        assert.match(text, /^HTTP\/1\.1 401 /m);
        assert.match(text, /^www-authenticate: Bearer resource_metadata="/im);
        assert.match(text, /^SESSION=[0-9a-f-]{36}$/m);
        assert.ok(text.includes('"result":{"content":[{"type":"text","text":"5"}]}'), text);
        const progress = [...text.matchAll(/"method":"notifications\/progress".*?"progress":(\d)/g)]
          .map((m) => Number(m[1]));
        assert.deepEqual(progress, [1, 2, 3, 4, 5]);
        assert.ok(text.includes("Counted down from 5"));
      },
    });

    await t.step(
      "SIGINT with a session's SSE stream open stops everything at once, exit 0",
      async () => {
        const streamOpen = Promise.withResolvers<void>();
        const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
          requestInit: {
            headers: { authorization: `Bearer ${await serviceToken(issuer, mcpUrl)}` },
          },
          fetch: async (input, init) => {
            const res = await fetch(input, init);
            if (init?.method === "GET" && res.status === 200) streamOpen.resolve();
            return res;
          },
        });
        transport.onerror = () => {}; // the stream breaks when the demo stops: expected
        const client = new Client({ name: "demo-sigint", version: "1.0.0" });
        await client.connect(transport);
        try {
          await streamOpen.promise; // the session's standalone SSE stream, through the gate
          const started = performance.now();
          child.kill("SIGINT");
          const status = await child.status;
          // SHUTDOWN_TIMEOUT is 3s in the demo: a drain that waited for the stream would take that.
          assert.ok(
            performance.now() - started < 2000,
            `stopped in ${performance.now() - started} ms`,
          );
          assert.equal(status.code, 0, stderr.text());
        } finally {
          await client.close();
        }
      },
    );
  } finally {
    // Whatever failed above, the demo must not outlive the test.
    try {
      child.kill("SIGINT");
    } catch {
      // already exited
    }
    const status = await child.status;
    await Promise.all([stdout.done, stderr.done]);
    assert.equal(status.code, 0, stderr.text());
    assert.ok(stdout.text().includes("mcp-gate demo: stopped"));
  }
});

/** A client-credentials token from the demo's authorization server. */
async function serviceToken(issuer: string, resource: string): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: "POST",
    headers: {
      authorization: `Basic ${btoa(`${DEMO_SERVICE_CLIENT_ID}:${DEMO_SERVICE_CLIENT_SECRET}`)}`,
    },
    body: new URLSearchParams({ grant_type: "client_credentials", resource, scope: "mcp:tools" }),
  });
  assert.equal(res.status, 200);
  return (await res.json()).access_token;
}
