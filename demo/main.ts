/**
 * `deno task demo`: the whole picture on 127.0.0.1 with nothing but Deno.
 *
 * Starts, in this process:
 * - the sample MCP server (MCP SDK, Streamable HTTP, no auth of its own) on `DEMO_MCP_PORT` (9401);
 * - oidc-provider as the authorization server on `DEMO_AS_PORT` (9400);
 * - mcp-gate in front of the MCP server on `DEMO_GATE_PORT` (8080);
 * then prints the URLs, copy-paste commands and the MCP Inspector steps. Ctrl-C (SIGINT) or
 * SIGTERM stops all three; exit 0. `LOG_LEVEL` is passed to the gate.
 *
 * Demo-only modules (oidc-provider, the MCP SDK) are imported here and in `demo/`, never from
 * `src/`, so they stay out of the gate's own module graph.
 */
import { parseConfig } from "../src/config/mod.ts";
import { createLogger, createStdoutSink, type LogSink } from "../src/ops/mod.ts";
import { type RunningServer, startServer } from "../src/server.ts";
import {
  DEMO_PUBLIC_CLIENT_ID,
  DEMO_SERVICE_CLIENT_ID,
  DEMO_SERVICE_CLIENT_SECRET,
  type RunningAuthorizationServer,
  startAuthorizationServer,
} from "./authorization_server.ts";
import { type RunningMcpServer, startMcpServer } from "./mcp_server.ts";

/** The demo's ports. */
export interface DemoPorts {
  gate: number;
  authorizationServer: number;
  mcpServer: number;
}

/** Scopes the demo resource offers; the gate publishes them and puts them in its 401 challenge. */
export const DEMO_SCOPES = ["mcp:tools"] as const;

/** Origins of MCP Inspector's web UI, allowed by the gate so Inspector can connect directly. */
const INSPECTOR_ORIGINS = ["http://localhost:6274", "http://127.0.0.1:6274"];

/** A running demo: the three servers and their URLs. */
export interface RunningDemo {
  readonly mcpUrl: string;
  readonly metadataUrl: string;
  readonly issuer: string;
  readonly upstreamUrl: string;
  /** Whether the gate loaded the authorization server's keys before the timeout. */
  readonly ready: boolean;
  /** Stops the MCP server (ending its sessions), the gate, then the authorization server. */
  close(): Promise<void>;
}

/** Raised when a demo port is taken; names the server and the variable that moves it. */
export class PortInUseError extends Error {
  constructor(what: string, port: number, variable: string) {
    super(
      `Port ${port} on 127.0.0.1 (${what}) is already in use: stop what uses it, or set ` +
        `${variable} to a free port`,
    );
    this.name = "PortInUseError";
  }
}

/** Options for {@linkcode startDemo}. */
export interface DemoOptions {
  ports: DemoPorts;
  /** The gate's LOG_LEVEL; default "info". */
  logLevel?: string;
}

/**
 * Starts the MCP server, the authorization server and the gate, and waits (up to 10 s) until the
 * gate has loaded the authorization server's keys.
 * @throws {PortInUseError} when a port is taken (whatever was started is stopped again).
 */
export async function startDemo(options: DemoOptions): Promise<RunningDemo> {
  const { ports } = options;
  const gateOrigin = `http://127.0.0.1:${ports.gate}`;
  const resource = `${gateOrigin}/mcp`;
  let mcp: RunningMcpServer | undefined;
  let as: RunningAuthorizationServer | undefined;
  let gate: RunningServer | undefined;
  // The MCP server goes first: closing its sessions ends their long-lived SSE streams (MCP
  // Inspector keeps one open), so the gate's drain finishes at once instead of at its timeout.
  const closeAll = async () => {
    await mcp?.close();
    await gate?.shutdown();
    await as?.close();
  };

  try {
    mcp = await bind(
      () => startMcpServer({ port: ports.mcpServer }),
      new PortInUseError("sample MCP server", ports.mcpServer, "DEMO_MCP_PORT"),
    );
    as = await bind(
      () =>
        startAuthorizationServer({
          port: ports.authorizationServer,
          resource,
          scopes: DEMO_SCOPES,
        }),
      new PortInUseError("authorization server", ports.authorizationServer, "DEMO_AS_PORT"),
    );

    const config = parseConfig({
      UPSTREAM_URL: mcp.origin,
      RESOURCE_URI: resource,
      AUTHORIZATION_SERVER: as.issuer,
      LISTEN_ADDR: `127.0.0.1:${ports.gate}`,
      METRICS_ADDR: "",
      SCOPES_SUPPORTED: DEMO_SCOPES.join(" "),
      RESOURCE_NAME: "mcp-gate demo",
      CLAIM_HEADERS: "sub=X-Auth-Subject",
      ALLOWED_ORIGINS: INSPECTOR_ORIGINS.join(","),
      SHUTDOWN_TIMEOUT: "3s",
      LOG_LEVEL: options.logLevel ?? "info",
    });
    const keysLoaded = Promise.withResolvers<void>();
    const log = createLogger({
      level: config.logLevel,
      sink: watchSink(createStdoutSink(), KEYS_LOADED_MARKER, keysLoaded.resolve),
    });
    gate = await bind(
      () => startServer(config, { log }),
      new PortInUseError("mcp-gate", ports.gate, "DEMO_GATE_PORT"),
    );
    const ready = await settlesWithin(keysLoaded.promise, READY_TIMEOUT_MS);
    log.flush();

    return {
      mcpUrl: resource,
      metadataUrl: `${gateOrigin}/.well-known/oauth-protected-resource/mcp`,
      issuer: as.issuer,
      upstreamUrl: mcp.url,
      ready,
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The text printed once the demo is up: URLs, commands, Inspector steps. */
export function banner(demo: RunningDemo): string {
  const mcp = demo.mcpUrl;
  const rpc = (id: number, method: string, params: unknown) =>
    `'${JSON.stringify({ jsonrpc: "2.0", id, method, params })}'`;
  const post = (withSession: boolean, stream = false) =>
    [
      `curl ${stream ? "-N " : ""}-s${withSession ? "" : " -o /dev/null -D -"} -X POST ${mcp}`,
      `-H "Authorization: Bearer $TOKEN"`,
      ...(withSession
        ? [`-H "Mcp-Session-Id: $SESSION" -H 'MCP-Protocol-Version: 2025-11-25'`]
        : []),
      `-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'`,
    ].join(" \\\n    ");
  const init = rpc(1, "initialize", {
    protocolVersion: "2025-11-25",
    capabilities: {},
    clientInfo: { name: "curl", version: "1" },
  });
  const add = rpc(2, "tools/call", { name: "add", arguments: { a: 2, b: 3 } });
  const countdown = rpc(3, "tools/call", {
    name: "countdown",
    arguments: { from: 5, delayMs: 500 },
    _meta: { progressToken: "p1" },
  });
  const notReady = demo.ready ? "" : `
  Note: the gate has not loaded the authorization server's keys yet; until it does, requests
  get 503 (see the log lines above).
`;
  return `
mcp-gate demo is running. Ctrl-C stops it.

  MCP endpoint (through the gate)   ${mcp}
  Protected resource metadata       ${demo.metadataUrl}
  Authorization server (issuer)     ${demo.issuer}   (login: any username and password)
  Sample MCP server (no auth)       ${demo.upstreamUrl}
${notReady}
Try it with curl (bash or zsh; the token stays in $TOKEN and is never printed):

  # 1. No token: 401 and a WWW-Authenticate challenge pointing at the metadata
  curl -i -X POST ${mcp}

  # 2. A token for the gate's resource (client credentials)
  TOKEN=$(curl -s -u ${DEMO_SERVICE_CLIENT_ID}:${DEMO_SERVICE_CLIENT_SECRET} -d grant_type=client_credentials \\
    -d resource=${mcp} -d scope=${DEMO_SCOPES.join("+")} ${demo.issuer}/token \\
    | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')

  # 3. Open an MCP session (the sample server is stateful: keep its Mcp-Session-Id)
  SESSION=$(${post(false)} \\
    -d ${init} \\
    | tr -d '\\r' | awk 'tolower($1)=="mcp-session-id:" {print $2}')

  # 4. Call a tool
  ${post(true)} \\
    -d ${add}

  # 5. Progress notifications stream through the gate over SSE, one every 0.5 s
  ${post(true, true)} \\
    -d ${countdown}

Connect MCP Inspector (needs Node.js; OAuth with dynamic client registration):

  npx @modelcontextprotocol/inspector
  In the page it opens: Transport Type "Streamable HTTP", URL ${mcp}, Connect.
  Inspector gets the 401, reads the metadata, registers itself with the authorization server
  and opens its login page: sign in with any username and password, then Continue.
  Use 127.0.0.1, not localhost: clients check the URL against the resource ${mcp}.
  Pre-registered public client id, to skip registration: ${DEMO_PUBLIC_CLIENT_ID}.
`;
}

/**
 * The gate's log line once the key set is loaded. The demo waits for it rather than polling
 * /readyz, which would put a 503 line for each poll into the log under the banner.
 */
const KEYS_LOADED_MARKER = '"msg":"key set loaded"';
const READY_TIMEOUT_MS = 10_000;

/** Passes lines on to `sink`, calling `onMatch` once a line contains `marker`. */
function watchSink(sink: LogSink, marker: string, onMatch: () => void): LogSink {
  let matched = false;
  return {
    write(line) {
      if (!matched && line.includes(marker)) {
        matched = true;
        onMatch();
      }
      sink.write(line);
    },
    flush: () => sink.flush(),
  };
}

/** Whether `promise` settled within `ms` (the timer is cleared either way). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `start`, turning "address in use" into `busy`. */
async function bind<T>(start: () => T | Promise<T>, busy: PortInUseError): Promise<T> {
  try {
    return await start();
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse || /address.*in use|EADDRINUSE/i.test(String(err))) {
      throw busy;
    }
    throw err;
  }
}

/**
 * Reads a port variable. 0 (any free port) is allowed only where `allowZero`: the gate's port is
 * part of RESOURCE_URI, which the authorization server must know before the gate starts.
 */
function portFromEnv(variable: string, fallback: number, allowZero: boolean): number {
  const text = Deno.env.get(variable);
  if (text === undefined || text === "") return fallback;
  const port = Number(text);
  const min = allowZero ? 0 : 1;
  if (!/^\d+$/.test(text) || port < min || port > 65535) {
    throw new Error(`Invalid "${variable}": expected a port from ${min} to 65535, got "${text}"`);
  }
  return port;
}

async function main(): Promise<number> {
  let demo: RunningDemo;
  try {
    demo = await startDemo({
      ports: {
        gate: portFromEnv("DEMO_GATE_PORT", 8080, false),
        authorizationServer: portFromEnv("DEMO_AS_PORT", 9400, true),
        mcpServer: portFromEnv("DEMO_MCP_PORT", 9401, true),
      },
      logLevel: Deno.env.get("LOG_LEVEL") || undefined,
    });
  } catch (err) {
    console.error(`mcp-gate demo: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  console.log(banner(demo));

  const stop = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const handlers = signals.map((signal) => {
    const handler = () => stop.resolve(signal);
    Deno.addSignalListener(signal, handler);
    return { signal, handler };
  });
  const signal = await stop.promise;
  for (const { signal, handler } of handlers) Deno.removeSignalListener(signal, handler);
  // A second Ctrl-C while closing ends the process at once.
  const force = () => Deno.exit(130);
  Deno.addSignalListener("SIGINT", force);
  console.log(`\nmcp-gate demo: ${signal} received, stopping`);
  await demo.close();
  Deno.removeSignalListener("SIGINT", force);
  console.log("mcp-gate demo: stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main());
