/**
 * A sample MCP server for the demo and the end-to-end tests: the MCP TypeScript SDK's `McpServer`
 * behind its web-standard Streamable HTTP transport, on `Deno.serve`, bound to 127.0.0.1.
 *
 * Stateful: `initialize` opens a session (`Mcp-Session-Id`), later requests must carry it, GET
 * opens the session's standalone SSE stream and DELETE ends the session. That is the most
 * demanding shape for a proxy in front of it (session header both ways, long-lived streams).
 *
 * It does no authentication of its own: the gate in front of it does. Tools:
 * - `echo`: returns its text;
 * - `add`: adds two numbers;
 * - `countdown`: counts down, sending one progress notification per step over SSE, with a delay;
 * - `whoami`: reports the identity headers the gate forwarded (`X-Auth-Subject`) and whether an
 *   `Authorization` header reached the server (it should not, by default).
 */
// The SDK's package.json maps `./*` types to `*.d.ts`, so `server/mcp.js` would type-check as
// `any`: @ts-types points the checker at the `.d.ts` (runtime needs the `.js` path).
// @ts-types="@modelcontextprotocol/sdk/server/mcp"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
// @ts-types="@modelcontextprotocol/sdk/server/webStandardStreamableHttp"
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
// @ts-types="@modelcontextprotocol/sdk/types"
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

/** Options for {@linkcode startMcpServer}. */
export interface McpServerOptions {
  /** Port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** Path of the MCP endpoint; default `/mcp`. */
  path?: string;
  /** Called with every request before it is handled (tests record what reached the server). */
  onRequest?: (request: Request) => void;
}

/** A running MCP server. */
export interface RunningMcpServer {
  /** The MCP endpoint, e.g. `http://127.0.0.1:9401/mcp`. */
  readonly url: string;
  /**
   * `http://127.0.0.1:<port>`: the gate's `UPSTREAM_URL` (the gate appends the request path, so
   * `/mcp` on the gate reaches `/mcp` here).
   */
  readonly origin: string;
  readonly port: number;
  /** Ends every session (closing their streams), then stops the listener. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Longest countdown accepted, so one call cannot hold a stream for long. */
const MAX_COUNTDOWN = 50;

/**
 * Starts the sample MCP server on 127.0.0.1; it is listening when this returns.
 * @throws {Deno.errors.AddrInUse} when the port is taken.
 */
export function startMcpServer(options: McpServerOptions = {}): RunningMcpServer {
  const path = options.path ?? "/mcp";
  const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();

  const openSession = async (): Promise<WebStandardStreamableHTTPServerTransport> => {
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => crypto.randomUUID(),
      onsessioninitialized: (id) => void sessions.set(id, transport),
      onsessionclosed: (id) => void sessions.delete(id),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await createMcpServer().connect(transport);
    return transport;
  };

  const handle = async (req: Request): Promise<Response> => {
    options.onRequest?.(req);
    if (new URL(req.url).pathname !== path) return jsonRpcError(404, -32601, "Not found");
    const sessionId = req.headers.get("mcp-session-id");
    if (sessionId) {
      const transport = sessions.get(sessionId);
      // Streamable HTTP: an unknown session is 404, so the client starts a new one.
      if (!transport) return jsonRpcError(404, -32001, "Session not found");
      return await transport.handleRequest(req);
    }
    if (req.method !== "POST") {
      return jsonRpcError(400, -32000, "Bad Request: Mcp-Session-Id header is required");
    }
    let body: unknown;
    try {
      body = await req.json();
    } catch {
      return jsonRpcError(400, -32700, "Parse error: Invalid JSON");
    }
    if (!isInitializeRequest(body)) {
      return jsonRpcError(400, -32000, "Bad Request: Mcp-Session-Id header is required");
    }
    const transport = await openSession();
    return await transport.handleRequest(req, { parsedBody: body });
  };

  const server = Deno.serve(
    { hostname: "127.0.0.1", port: options.port ?? 0, onListen() {} },
    handle,
  );
  const origin = `http://127.0.0.1:${server.addr.port}`;
  const url = origin + path;

  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= (async () => {
      // Closing a transport ends its open SSE streams, which would otherwise keep shutdown()
      // waiting for ever.
      await Promise.allSettled([...sessions.values()].map((t) => t.close()));
      sessions.clear();
      await server.shutdown();
    })();
  return { url, origin, port: server.addr.port, close, [Symbol.asyncDispose]: close };
}

/** A new McpServer with the sample tools (one per session: an McpServer takes one transport). */
export function createMcpServer(): McpServer {
  const server = new McpServer({ name: "mcp-gate-demo", version: "1.0.0" });

  server.registerTool("echo", {
    description: "Returns the text it is given",
    inputSchema: { text: z.string() },
  }, ({ text }) => ({ content: [{ type: "text", text }] }));

  server.registerTool("add", {
    description: "Adds two numbers",
    inputSchema: { a: z.number(), b: z.number() },
  }, ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }));

  server.registerTool("countdown", {
    description: "Counts down from `from` to 1, one progress notification per step, " +
      "`delayMs` apart (streamed over SSE)",
    inputSchema: {
      from: z.number().int().min(1).max(MAX_COUNTDOWN).default(5),
      delayMs: z.number().int().min(0).max(2000).default(200),
    },
  }, async ({ from, delayMs }, extra) => {
    const progressToken = extra._meta?.progressToken;
    for (let i = from; i >= 1; i--) {
      await delay(delayMs, extra.signal);
      if (progressToken !== undefined) {
        await extra.sendNotification({
          method: "notifications/progress",
          params: { progressToken, progress: from - i + 1, total: from, message: `${i}` },
        });
      }
    }
    return { content: [{ type: "text", text: `Counted down from ${from}` }] };
  });

  server.registerTool("whoami", {
    description: "Reports the identity headers the gate forwarded to this server",
  }, (extra) => {
    const headers = extra.requestInfo?.headers ?? {};
    const identity = {
      subject: headers["x-auth-subject"] ?? null,
      authorizationHeaderSeen: "authorization" in headers,
    };
    return { content: [{ type: "text", text: JSON.stringify(identity) }] };
  });

  return server;
}

function jsonRpcError(status: number, code: number, message: string): Response {
  return Response.json({ jsonrpc: "2.0", error: { code, message }, id: null }, { status });
}

/** Waits `ms`, or rejects when `signal` aborts (so an abandoned call leaves no timer behind). */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
