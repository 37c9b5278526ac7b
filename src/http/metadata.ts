/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728): the document, built once from Config, the
 * exact paths that serve it, and the `resource_metadata` URL the 401 challenge points at.
 */
import type { Config } from "../config/mod.ts";

/** RFC 9728 §3: the registered well-known suffix. */
export const WELL_KNOWN_PATH = "/.well-known/oauth-protected-resource";

/** The RFC 9728 §2 members mcp-gate publishes. */
export interface ProtectedResourceMetadata {
  readonly resource: string;
  readonly authorization_servers: readonly string[];
  readonly bearer_methods_supported: readonly string[];
  readonly scopes_supported?: readonly string[];
  readonly resource_name?: string;
  readonly resource_documentation?: string;
}

/** The metadata endpoint, everything precomputed at construction. */
export interface MetadataEndpoint {
  /** The document as published (for `mcp-gate check`). */
  readonly document: ProtectedResourceMetadata;
  /** The path-inserted metadata URL (RFC 9728 §3.1), as in `resource_metadata`. */
  readonly url: string;
  /** Whether `pathname` (a URL pathname, no query) serves the document: exact match only. */
  matches(pathname: string): boolean;
  /** Answers a request whose pathname {@linkcode MetadataEndpoint.matches}. */
  respond(req: Request): Response;
}

/**
 * The metadata URL for a resource identifier, by RFC 9728 §3.1 path insertion: the well-known
 * suffix goes between the host and the path, a lone terminating `/` after the host is removed,
 * and a query is kept. `https://h/mcp` → `https://h/.well-known/oauth-protected-resource/mcp`;
 * `https://h` and `https://h/` → `https://h/.well-known/oauth-protected-resource`.
 *
 * Built from the configured resource, never from the request's Host (docs/specs.md §2.2 item 8).
 * @throws {TypeError} when `resourceUri` is not an absolute URL (config validates it first).
 */
export function resourceMetadataUrl(resourceUri: string): string {
  const url = new URL(resourceUri);
  const path = url.pathname === "/" ? "" : url.pathname;
  return `${url.protocol}//${url.host}${WELL_KNOWN_PATH}${path}${url.search}`;
}

/**
 * The pathnames that serve the document: the root well-known path and, for a resource with a
 * path, the path-inserted form with and without a trailing `/` (docs/specs.md §0.1: the TS SDK
 * strips the slash, Python keeps it). `resourcePath` has no trailing slash ("" for none).
 */
export function metadataPaths(resourcePath: string): readonly string[] {
  const path = resourcePath.replace(/\/+$/, "");
  return path === ""
    ? [WELL_KNOWN_PATH]
    : [WELL_KNOWN_PATH, WELL_KNOWN_PATH + path, `${WELL_KNOWN_PATH}${path}/`];
}

/** Builds the RFC 9728 §2 document; members with no value are omitted (§3.2: no empty arrays). */
export function buildMetadataDocument(config: Config): ProtectedResourceMetadata {
  return {
    resource: config.resourceUri,
    // RFC 9728 §2: every issuer whose tokens the gate accepts, as configured.
    authorization_servers: [...config.authorizationServers],
    bearer_methods_supported: ["header"],
    ...(config.scopesSupported.length > 0 && { scopes_supported: [...config.scopesSupported] }),
    ...(config.resourceName && { resource_name: config.resourceName }),
    ...(config.resourceDocumentation && {
      resource_documentation: config.resourceDocumentation,
    }),
  };
}

const ALLOWED_METHODS = "GET, HEAD, OPTIONS";

/** Creates the metadata endpoint: document, body bytes and headers are built here, once. */
export function createMetadata(config: Config): MetadataEndpoint {
  const document = buildMetadataDocument(config);
  const json = JSON.stringify(document);
  const body = new TextEncoder().encode(json);
  const pathSet = new Set(metadataPaths(config.resourcePath));

  // The document is public (RFC 9728 §3), so any origin may read it: docs/specs.md §12.1.
  const common: [string, string][] = [
    ["access-control-allow-origin", "*"],
    ["x-content-type-options", "nosniff"],
  ];
  const okHeaders: [string, string][] = [
    ...common,
    ["content-type", "application/json"],
    ["cache-control", "public, max-age=300"],
    ["content-length", String(body.byteLength)],
  ];
  const optionsHeaders: [string, string][] = [
    ...common,
    ["access-control-allow-methods", ALLOWED_METHODS],
    // The TS SDK sends MCP-Protocol-Version on its metadata fetch, which needs a preflight.
    ["access-control-allow-headers", "Accept, Content-Type, MCP-Protocol-Version"],
    ["access-control-max-age", "600"],
    ["cache-control", "public, max-age=300"],
  ];
  const notAllowedBody = JSON.stringify({
    error: "method_not_allowed",
    error_description: "Use GET or HEAD",
  });
  const notAllowedHeaders: [string, string][] = [
    ...common,
    ["allow", ALLOWED_METHODS],
    ["content-type", "application/json"],
    ["cache-control", "no-store"],
  ];

  return {
    document,
    url: resourceMetadataUrl(config.resourceUri),
    matches: (pathname) => pathSet.has(pathname),
    respond(req) {
      switch (req.method) {
        case "GET":
          return new Response(body, { status: 200, headers: okHeaders });
        case "HEAD":
          return new Response(null, { status: 200, headers: okHeaders });
        case "OPTIONS":
          return new Response(null, { status: 204, headers: optionsHeaders });
        default:
          return new Response(notAllowedBody, { status: 405, headers: notAllowedHeaders });
      }
    },
  };
}

/**
 * RFC 8414 §3: where clients from before RFC 9728 (MCP 2025-03-26) look for the authorization
 * server's metadata: at the MCP server's own origin, the path discarded (AS_METADATA_MIRROR).
 */
export const AS_METADATA_PATH = "/.well-known/oauth-authorization-server";

/** The mirrored document: the authorization server's bytes and a strong validator for them. */
export interface MirroredDocument {
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** A quoted strong entity tag (RFC 9110 §8.8.3). */
  readonly etag: string;
}

/**
 * The answer at {@linkcode AS_METADATA_PATH}: the authorization server's metadata byte for byte,
 * with the protected resource metadata's caching (plus `no-transform`) and CORS, an `ETag` and 304 for a matching
 * `If-None-Match` (RFC 9110 §13.1.2); `undefined` (never fetched) is 503 with Retry-After.
 */
export function mirrorResponse(req: Request, doc: MirroredDocument | undefined): Response {
  const common: [string, string][] = [
    ["access-control-allow-origin", "*"],
    ["x-content-type-options", "nosniff"],
  ];
  switch (req.method) {
    case "GET":
    case "HEAD": {
      if (doc === undefined) {
        return new Response(
          req.method === "HEAD" ? null : JSON.stringify({
            error: "temporarily_unavailable",
            error_description: "The authorization server metadata cannot be fetched now",
          }),
          {
            status: 503,
            headers: [
              ...common,
              ["content-type", "application/json"],
              ["cache-control", "no-store"],
              ["retry-after", "5"],
            ],
          },
        );
      }
      // no-transform (RFC 9111 §5.2.2.6): the bytes are the authorization server's, and stay
      // so; it also keeps Deno 2.7's automatic compression (the compiled binary's runtime) from
      // re-encoding them and weakening the ETag.
      const validators: [string, string][] = [
        ...common,
        ["cache-control", "public, max-age=300, no-transform"],
        ["etag", doc.etag],
      ];
      if (ifNoneMatch(req.headers.get("if-none-match"), doc.etag)) {
        return new Response(null, { status: 304, headers: validators });
      }
      return new Response(req.method === "HEAD" ? null : doc.bytes, {
        status: 200,
        headers: [
          ...validators,
          ["content-type", "application/json"],
          ["content-length", String(doc.bytes.byteLength)],
        ],
      });
    }
    case "OPTIONS":
      return new Response(null, {
        status: 204,
        headers: [
          ...common,
          ["access-control-allow-methods", ALLOWED_METHODS],
          ["access-control-allow-headers", "Accept, Content-Type, MCP-Protocol-Version"],
          ["access-control-max-age", "600"],
          ["cache-control", "public, max-age=300"],
        ],
      });
    default:
      return new Response(
        JSON.stringify({ error: "method_not_allowed", error_description: "Use GET or HEAD" }),
        {
          status: 405,
          headers: [
            ...common,
            ["allow", ALLOWED_METHODS],
            ["content-type", "application/json"],
            ["cache-control", "no-store"],
          ],
        },
      );
  }
}

/** RFC 9110 §13.1.2: `*` or a list of entity tags, compared weakly. */
function ifNoneMatch(header: string | null, etag: string): boolean {
  if (header === null) return false;
  if (header.trim() === "*") return true;
  return header.split(",").some((t) => t.trim().replace(/^W\//, "") === etag);
}
