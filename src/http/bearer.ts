/**
 * Bearer token extraction (RFC 6750 §2.1), header only. Pure: no I/O, no clock.
 */
import { GateError } from "../errors.ts";

/** RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** `auth-scheme [ 1*SP credentials ]` after trimming; tabs tolerated like spaces. */
const CREDENTIALS = /^([^ \t]+)(?:[ \t]+([^]*))?$/;

/** A comma-separated part of a joined header value that starts with the Bearer scheme. */
const BEARER_PART = /(?:^|,)[ \t]*bearer(?:[ \t]|,|$)/i;

/**
 * Returns the bearer token from an `Authorization` value as `Headers.get()` gives it (repeated
 * fields joined with ", "; null when absent), or `undefined` when the request carries no token:
 * no header, an empty header, another scheme (`Basic ...`), a bare `Bearer`, or a token only in
 * the `access_token` query parameter (docs/contract.md §3.3: never accepted, counts as none).
 *
 * `search` is the raw query string of the request URL (`url.search`: `"?a=b"` or `""`).
 *
 * @throws {GateError} `invalid_request` (`multiple_authorization`) when several Authorization
 * headers were sent; `invalid_request` (`token_in_query`) when a token is in the header and an
 * `access_token` query parameter is present too (RFC 6750 §3.1: "more than one method");
 * `invalid_token` (`malformed`) when the Bearer credentials are not one b64token.
 */
export function bearerFrom(value: string | null, search: string): string | undefined {
  if (value === null) return undefined;

  // Headers joins repeated fields with ", ". A b64token never contains a comma, so a comma next
  // to a Bearer credential means several Authorization headers (RFC 9110 §11.6.2 allows one).
  // A comma with no Bearer part at all is another scheme's parameter list (Digest): no token.
  if (value.includes(",")) {
    if (BEARER_PART.test(value)) {
      throw new GateError("invalid_request", { reason: "multiple_authorization" });
    }
    return undefined;
  }

  let token: string | undefined;
  if (isPlainBearer(value)) {
    // The usual "Bearer <token>": what the split below gives, without a trim and a regex.
    token = value.slice(7);
  } else {
    const match = CREDENTIALS.exec(value.trim());
    if (match === null) return undefined; // empty header
    // RFC 9110 §11.1: the auth-scheme is case-insensitive.
    if (match[1].toLowerCase() !== "bearer") return undefined;
    token = match[2];
    if (token === undefined || token === "") return undefined;
  }

  if (hasAccessTokenParam(search)) {
    throw new GateError("invalid_request", { reason: "token_in_query" });
  }
  if (!B64TOKEN.test(token)) {
    throw new GateError("invalid_token", { reason: "malformed" });
  }
  return token;
}

/**
 * `Bearer` or `bearer`, one space, then a first token character; ending in a token character so
 * that trimming would change nothing.
 */
function isPlainBearer(value: string): boolean {
  const n = value.length;
  if (n < 8 || value.charCodeAt(6) !== 32) return false;
  if (!value.startsWith("Bearer") && !value.startsWith("bearer")) return false;
  return isTokenChar(value.charCodeAt(7)) && isTokenChar(value.charCodeAt(n - 1));
}

/** A b64token character or `=` (RFC 6750 §2.1). */
function isTokenChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 ||
    c === 46 || c === 95 || c === 126 || c === 43 || c === 47 || c === 61;
}

/**
 * Whether the query has an `access_token` parameter (RFC 6750 §2.3), by name after
 * percent-decoding, as the upstream would parse it; an empty value counts.
 */
export function hasAccessTokenParam(search: string): boolean {
  // Fast path: the name can only be present literally or percent-encoded.
  if (!search.includes("access_token") && !search.includes("%")) return false;
  const query = search.startsWith("?") ? search.slice(1) : search;
  return query.split("&").some(isAccessTokenParam);
}

/**
 * Whether one query parameter (`name[=value]`, raw) is named `access_token` once its name is
 * decoded as application/x-www-form-urlencoded, as URLSearchParams and most servers decode it.
 * The one rule both the bearer extractor and the forwarder's query stripping use.
 */
export function isAccessTokenParam(param: string): boolean {
  const eq = param.indexOf("=");
  const name = eq === -1 ? param : param.slice(0, eq);
  if (name === "access_token") return true;
  if (!name.includes("%") && !name.includes("+")) return false;
  return formDecode(name) === "access_token";
}

/** application/x-www-form-urlencoded name decoding, lenient like URLSearchParams. */
function formDecode(s: string): string {
  const plus = s.replaceAll("+", " ");
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus.replace(/%([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
  }
}
