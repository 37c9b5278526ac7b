/**
 * Finding the key set from the authorization server's issuer: metadata discovery (RFC 8414 §3,
 * OIDC Discovery §4) and the rule for which URLs keys may come from.
 */
import { isLoopbackHost } from "../net/mod.ts";
import { type GetJson, KeySetError } from "./key_fetch.ts";

/**
 * Metadata URLs to try for an issuer, in order: RFC 8414 §3.1 (well-known inserted between host
 * and path, a terminating "/" removed), then OIDC Discovery §4 (appended to the issuer), then the
 * path-inserted OIDC form some servers use. Duplicates removed (a root issuer yields two).
 */
export function discoveryUrls(issuer: string): string[] {
  const url = new URL(issuer);
  const path = url.pathname.endsWith("/") ? url.pathname.slice(0, -1) : url.pathname;
  return [
    ...new Set([
      `${url.origin}/.well-known/oauth-authorization-server${path}`,
      `${url.origin}${path}/.well-known/openid-configuration`,
      `${url.origin}/.well-known/openid-configuration${path}`,
    ]),
  ];
}

/** A key-set or metadata URL must be https, or http on a loopback host. */
export function isAcceptableKeyUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.protocol === "https:") return true;
  return url.protocol === "http:" && isLoopbackHost(url.hostname);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** What discovery found (RFC 8414 §2). */
export interface Discovered {
  issuer: string;
  jwksUri: string;
  /** The metadata document's URL; "" when JWKS_URI was configured and nothing was fetched. */
  metadataUrl: string;
}

/**
 * Fetches the metadata of `authorizationServer` from each of {@linkcode discoveryUrls} in turn
 * and returns its `jwks_uri`.
 * @throws {KeySetError} when no URL answers 200, or the document is not an object, names another
 * issuer (RFC 8414 §3.3) or an unacceptable `jwks_uri` (the last two at level "error").
 */
export async function discover(authorizationServer: string, getJson: GetJson): Promise<Discovered> {
  const as = authorizationServer;
  const tried: string[] = [];
  for (const url of discoveryUrls(as)) {
    const { status, body } = await getJson(url, "authorization server metadata");
    if (status !== 200) {
      tried.push(`${url} (HTTP ${status})`);
      continue;
    }
    if (!isRecord(body)) {
      throw new KeySetError(`Invalid authorization server metadata at "${url}": not an object`);
    }
    // RFC 8414 §3.3 / OIDC Discovery §4.3: the issuer must be identical to the one used.
    if (body.issuer !== as) {
      throw new KeySetError(
        `Authorization server metadata at "${url}" has issuer ${
          JSON.stringify(body.issuer)
        }, not AUTHORIZATION_SERVER "${as}" (RFC 8414 §3.3): set AUTHORIZATION_SERVER=${
          JSON.stringify(body.issuer)
        } exactly`,
        "error",
      );
    }
    const jwksUri = body.jwks_uri;
    if (typeof jwksUri !== "string" || !isAcceptableKeyUrl(jwksUri)) {
      throw new KeySetError(
        `Invalid "jwks_uri" in authorization server metadata at "${url}": expected an https URL (http only on loopback), got ${
          JSON.stringify(jwksUri)
        }; set JWKS_URI to override`,
        "error",
      );
    }
    return { issuer: as, jwksUri, metadataUrl: url };
  }
  throw new KeySetError(
    `No authorization server metadata found for AUTHORIZATION_SERVER "${as}" (tried ${
      tried.join(", ")
    }); set JWKS_URI`,
  );
}
