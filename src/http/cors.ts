/**
 * Origin checks and CORS for the protected endpoint (MCP transport §Security: Origin validation;
 * docs/specs.md §11.4, §12). The metadata endpoint has its own, public, CORS in metadata.ts.
 *
 * With ALLOWED_ORIGINS empty the gate checks no Origin and emits no CORS headers at all: browsers
 * then cannot read responses, which is the safe default; operators who serve browser clients
 * (MCP Inspector, web apps) list their origins or `*`. Credentials mode is never allowed: bearer
 * tokens need none, and a reflected origin with credentials would expose cookies
 * (docs/specs.md §12.4).
 */
import type { Config } from "../config/mod.ts";

/** Methods the MCP Streamable HTTP transport uses (docs/specs.md §11.1), plus HEAD and OPTIONS. */
export const CORS_ALLOW_METHODS = "GET, POST, DELETE, HEAD, OPTIONS";

/** Request headers MCP clients send (docs/specs.md §12.2); requested `Mcp-Param-*` are added. */
export const CORS_ALLOW_HEADERS =
  "Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID, " +
  "Mcp-Method, Mcp-Name";

/**
 * Response headers a browser client must read: the challenge and the session id
 * (docs/contract.md §3).
 */
export const CORS_EXPOSE_HEADERS = "WWW-Authenticate, Mcp-Session-Id";

/** Seconds a browser may cache a preflight answer. */
export const CORS_MAX_AGE = "600";

/** 2026-07-28 `Mcp-Param-<name>` headers: the prefix plus an RFC 9110 token. */
const MCP_PARAM_HEADER = /^mcp-param-[!#$%&'*+.^_`|~0-9a-z-]+$/i;

/** Most `Mcp-Param-*` names echoed in one preflight answer. */
const MAX_PARAM_HEADERS = 32;

export interface Cors {
  /**
   * Whether a request with this `Origin` may proceed: an absent Origin, an empty ALLOWED_ORIGINS
   * or `*` allow everything; else the origin must be listed (scheme and host compared
   * case-insensitively, nothing else normalised).
   */
  originAllowed(origin: string | null): boolean;
  /** OPTIONS with `Access-Control-Request-Method` (Fetch standard §3.2.2). */
  isPreflight(req: Request): boolean;
  /**
   * The 204 answer to a preflight, with CORS headers only for a present, allowed origin when
   * ALLOWED_ORIGINS is set. Call {@linkcode Cors.originAllowed} first (a refused origin gets 403).
   */
  preflight(req: Request): Response;
  /**
   * Adds `Access-Control-Allow-Origin`, `Vary: Origin` and `Access-Control-Expose-Headers` for a
   * present, allowed origin when ALLOWED_ORIGINS is set, overriding any the upstream sent, and
   * drops `Access-Control-Allow-Credentials`. Otherwise leaves `headers` alone.
   */
  decorate(headers: Headers, origin: string | null): void;
}

/**
 * Canonical form of a configured origin: `new URL(x).origin` (lower-case scheme and host, no
 * default port, no trailing slash) when it parses, else the lower-cased text (e.g. `null`).
 */
export function normalizeOrigin(origin: string): string {
  try {
    const parsed = new URL(origin).origin;
    if (parsed !== "null") return parsed;
  } catch {
    // not a URL: compared as written
  }
  return origin.toLowerCase();
}

/** Builds the CORS policy for a configuration; origin list and header values are fixed here. */
export function createCors(config: Config): Cors {
  const wildcard = config.allowedOrigins.includes("*");
  const listed = new Set(config.allowedOrigins.filter((o) => o !== "*").map(normalizeOrigin));
  const enabled = config.allowedOrigins.length > 0;

  const originAllowed = (origin: string | null): boolean =>
    origin === null || !enabled || wildcard || listed.has(origin.toLowerCase());
  // CORS headers go out only for a present origin that the configured list allows.
  const corsFor = (origin: string | null): origin is string =>
    origin !== null && enabled && (wildcard || listed.has(origin.toLowerCase()));

  const plainPreflight: [string, string][] = [
    ["cache-control", "no-store"],
    ["x-content-type-options", "nosniff"],
    ...(enabled ? [["vary", "Origin"] as [string, string]] : []),
  ];
  const corsPreflight: [string, string][] = [
    ["cache-control", "no-store"],
    ["x-content-type-options", "nosniff"],
    ["vary", "Origin"],
    ["access-control-allow-methods", CORS_ALLOW_METHODS],
    ["access-control-max-age", CORS_MAX_AGE],
  ];

  return {
    originAllowed,
    isPreflight: (req) =>
      req.method === "OPTIONS" && req.headers.has("access-control-request-method"),
    preflight(req) {
      const origin = req.headers.get("origin");
      if (!corsFor(origin)) return new Response(null, { status: 204, headers: plainPreflight });
      const headers = new Headers(corsPreflight);
      headers.set("access-control-allow-origin", wildcard ? "*" : origin);
      headers.set(
        "access-control-allow-headers",
        CORS_ALLOW_HEADERS + paramHeaders(req.headers.get("access-control-request-headers")),
      );
      return new Response(null, { status: 204, headers });
    },
    decorate(headers, origin) {
      if (!corsFor(origin)) return;
      headers.set("access-control-allow-origin", wildcard ? "*" : origin);
      headers.set("access-control-expose-headers", CORS_EXPOSE_HEADERS);
      headers.delete("access-control-allow-credentials");
      const vary = headers.get("vary");
      if (vary === null || !/(^|,)\s*(origin|\*)\s*(,|$)/i.test(vary)) {
        headers.append("vary", "Origin");
      }
    },
  };
}

/**
 * The requested `Mcp-Param-*` names as `, a, b` (empty when none). Only these are echoed: other
 * unknown headers stay refused so a preflight cannot widen what the gate lets through.
 */
function paramHeaders(requested: string | null): string {
  if (requested === null || !/mcp-param-/i.test(requested)) return "";
  const seen = new Set<string>();
  for (const raw of requested.split(",")) {
    const name = raw.trim().toLowerCase();
    if (MCP_PARAM_HEADER.test(name)) seen.add(name);
    if (seen.size === MAX_PARAM_HEADERS) break;
  }
  let out = "";
  for (const name of seen) out += `, ${name}`;
  return out;
}
