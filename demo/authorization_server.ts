/**
 * A local OAuth 2.1 / OpenID authorization server for the demo and the end-to-end tests:
 * `oidc-provider` 9 on `node:http`, bound to 127.0.0.1.
 *
 * What it is set up to do, and why:
 * - Resource indicators (RFC 8707) with one resource server, the gate's `RESOURCE_URI`: access
 *   tokens for it are RS256 JWTs with header `typ: at+jwt` (RFC 9068) and `aud` = the resource,
 *   which is what the gate verifies.
 * - Authorization code with PKCE S256 (public clients must use it), the way Claude.ai and the MCP
 *   SDK client connect; `devInteractions` is the login page: any username, any password.
 * - Dynamic client registration (RFC 7591), open, so MCP Inspector and the SDK client can register.
 * - Client credentials, for a copy-paste `curl` token command.
 * - Token introspection (RFC 7662) for confidential clients, and opaque access tokens on request
 *   (`accessTokenFormat: "opaque"`), for the gate's introspection (docs/identity-providers.md).
 * - CORS on every endpoint, registration included, so a browser client (MCP Inspector) can use it.
 *
 * Demo-only: keys are generated at start, storage is in memory, anyone can log in.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

/** The pre-registered public client (authorization code + PKCE, no secret). */
export const DEMO_PUBLIC_CLIENT_ID = "mcp-demo";
/** The pre-registered confidential client for client credentials (`client_secret_basic`/`_post`). */
export const DEMO_SERVICE_CLIENT_ID = "mcp-demo-service";
/** Its secret. Demo-only: the server listens on 127.0.0.1. */
export const DEMO_SERVICE_CLIENT_SECRET = "demo-secret";

/** Redirect URIs the pre-registered public client accepts: MCP Inspector's two callbacks. */
export const DEMO_PUBLIC_CLIENT_REDIRECT_URIS: readonly string[] = [
  "http://localhost:6274/oauth/callback",
  "http://localhost:6274/oauth/callback/debug",
];

/** Options for {@linkcode startAuthorizationServer}. */
export interface AuthorizationServerOptions {
  /** Port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** The protected resource (the gate's `RESOURCE_URI`): the `aud` of every access token. */
  resource: string;
  /** Scopes of that resource; default `["mcp:tools"]`. */
  scopes?: readonly string[];
  /** Access token lifetime in seconds; default 3600. */
  accessTokenTtlSeconds?: number;
  /** Extra redirect URIs for the pre-registered public client (tests use their own). */
  redirectUris?: readonly string[];
  /**
   * Access token format for the resource: "jwt" (RFC 9068, the default) or "opaque" (a random
   * string only the introspection endpoint can tell anything about).
   */
  accessTokenFormat?: "jwt" | "opaque";
}

/** A running authorization server. */
export interface RunningAuthorizationServer {
  /** The issuer, `http://127.0.0.1:<port>`, no trailing slash: give it to the gate verbatim. */
  readonly issuer: string;
  /** Same as `issuer` (the server lives at the root). */
  readonly url: string;
  /** The token endpoint. */
  readonly tokenEndpoint: string;
  readonly port: number;
  /** Closes the listener and every open connection. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts oidc-provider on 127.0.0.1.
 * @throws {Deno.errors.AddrInUse} when the port is taken.
 */
export async function startAuthorizationServer(
  options: AuthorizationServerOptions,
): Promise<RunningAuthorizationServer> {
  const resource = options.resource;
  const scopes = [...(options.scopes ?? ["mcp:tools"])];
  const ttl = options.accessTokenTtlSeconds ?? 3600;
  const format = options.accessTokenFormat ?? "jwt";

  // The issuer contains the port, and the provider needs the issuer: listen first, then build
  // the provider and plug it in.
  let handle: http.RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => handle(req, res));
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        err.code === "EADDRINUSE"
          ? new Deno.errors.AddrInUse(`Port ${options.port} on 127.0.0.1 is already in use`)
          : err,
      );
    };
    server.once("error", onError);
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.off("error", onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;

  // oidc-provider warns on import (Deno is not Node) and on construction (in-memory storage,
  // devInteractions): all expected here, and alarming in a newcomer's first terminal.
  const { Provider, errors } = await withoutKnownWarnings(() => import("oidc-provider"));
  const provider = await withoutKnownWarnings(async () =>
    new Provider(issuer, {
      jwks: { keys: [await generateSigningKey()] },
      cookies: { keys: [crypto.randomUUID()] },
      clients: [
        {
          client_id: DEMO_PUBLIC_CLIENT_ID,
          client_name: "mcp-gate demo client",
          token_endpoint_auth_method: "none",
          grant_types: ["authorization_code", "refresh_token"],
          response_types: ["code"],
          redirect_uris: [...DEMO_PUBLIC_CLIENT_REDIRECT_URIS, ...(options.redirectUris ?? [])],
        },
        {
          client_id: DEMO_SERVICE_CLIENT_ID,
          client_secret: DEMO_SERVICE_CLIENT_SECRET,
          client_name: "mcp-gate demo service",
          grant_types: ["client_credentials"],
          response_types: [],
          redirect_uris: [],
        },
      ],
      // The resource's scopes are listed here too: clients registering with `scope` (the MCP SDK
      // sends the scopes it will ask for) are refused when a value is unknown here.
      scopes: ["openid", "offline_access", ...scopes],
      claims: { openid: ["sub"] },
      responseTypes: ["code"],
      pkce: { required: () => true },
      features: {
        devInteractions: { enabled: true },
        clientCredentials: { enabled: true },
        registration: { enabled: true },
        // A client may revoke its own tokens; a confidential one (the resource server's role)
        // any token, so that tests can revoke what the gate has cached.
        revocation: {
          enabled: true,
          allowedPolicy: (
            _ctx: unknown,
            client: { clientAuthMethod: string; clientId: string },
            token: { clientId?: string },
          ) => client.clientAuthMethod !== "none" || token.clientId === client.clientId,
        },
        // RFC 7662 for confidential clients only (the gate authenticates as the service client).
        introspection: {
          enabled: true,
          allowedPolicy: (_ctx: unknown, client: { clientAuthMethod: string }) =>
            client.clientAuthMethod !== "none",
        },
        resourceIndicators: {
          enabled: true,
          // A client that names no resource still gets a token for the gate.
          defaultResource: (_ctx: unknown, _client: unknown, oneOf?: string[]) => oneOf ?? resource,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx: unknown, indicator: string) => {
            if (indicator !== resource) throw new errors.InvalidTarget();
            // RFC 9068: a JWT access token, `typ: at+jwt`, `aud` = the resource; or an opaque
            // one whose introspection answer carries the same `aud`.
            return {
              scope: scopes.join(" "),
              audience: resource,
              accessTokenTTL: ttl,
              accessTokenFormat: format,
              ...(format === "jwt" ? { jwt: { sign: { alg: "RS256" } } } : {}),
            };
          },
        },
      },
      // Every client may be used from a browser (MCP Inspector): demo-only.
      clientBasedCORS: () => true,
      findAccount: (_ctx: unknown, sub: string) => ({
        accountId: sub,
        claims: () => ({ sub }),
      }),
      renderError: (ctx: { type: string; body: string }, out: Record<string, string>) => {
        ctx.type = "text/plain";
        ctx.body = Object.entries(out).map(([k, v]) => `${k}: ${v}`).join("\n") + "\n";
      },
      ttl: {
        AccessToken: ttl,
        ClientCredentials: ttl,
        Grant: 3600,
        Interaction: 600,
        Session: 3600,
        AuthorizationCode: 60,
      },
    })
  );
  const callback = provider.callback() as http.RequestListener;
  handle = (req, res) => {
    if (withCors(req, res)) return;
    callback(req, res);
  };

  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return {
    issuer,
    url: issuer,
    tokenEndpoint: `${issuer}/token`,
    port,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Adds permissive CORS headers (oidc-provider itself has none on registration) and answers
 * preflights. Returns true when the request was answered.
 */
function withCors(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const origin = req.headers.origin;
  if (!origin) return false;
  res.setHeader("Access-Control-Allow-Origin", origin);
  res.setHeader("Vary", "Origin");
  res.setHeader("Access-Control-Expose-Headers", "WWW-Authenticate, Location");
  if (req.method === "OPTIONS" && req.headers["access-control-request-method"]) {
    res.statusCode = 204;
    res.setHeader("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS");
    const wanted = req.headers["access-control-request-headers"];
    if (wanted) res.setHeader("Access-Control-Allow-Headers", wanted);
    res.setHeader("Access-Control-Max-Age", "600");
    res.end();
    return true;
  }
  return false;
}

/** oidc-provider's warnings that are expected in this demo setup. */
const KNOWN_WARNINGS = [/Unsupported runtime/, /in-memory adapter/, /devInteractions is enabled/];

/** Runs `fn` with console.warn dropping {@linkcode KNOWN_WARNINGS}, and nothing else. */
async function withoutKnownWarnings<T>(fn: () => Promise<T>): Promise<T> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    const text = String(args[0]);
    if (!KNOWN_WARNINGS.some((re) => re.test(text))) warn(...args);
  };
  try {
    return await fn();
  } finally {
    console.warn = warn;
  }
}

/** A fresh RS256 signing key as a private JWK (demo-only: a new one every start). */
async function generateSigningKey(): Promise<JsonWebKey & { kid: string; use: string }> {
  const pair = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  delete jwk.key_ops;
  delete jwk.ext;
  return { ...jwk, alg: "RS256", use: "sig", kid: `demo-${crypto.randomUUID().slice(0, 8)}` };
}
