/**
 * The request's URL, split once and checked: what the client asked for, in a form that can go
 * upstream byte for byte. Deno.serve decodes a non-ASCII request target (and Host, and an
 * absolute-form authority) as UTF-8 into `req.url`, so `req.url` can hold any code point; nothing
 * of it may reach the upstream head unchecked (docs/security.md, "The request target").
 *
 * - The path and query are re-serialised (RFC 3986 §2, §3.3, §3.4): `pchar`, "/" (and "?" in the
 *   query) pass as they are, a valid `%XX` escape passes unchanged, and every other code point is
 *   percent-encoded as its UTF-8 bytes. A "%" that starts no valid escape has no faithful
 *   encoding (re-encoding it changes what the upstream decodes), so the request is refused.
 * - The authority (from Host, an absolute-form target or HTTP/2's `:authority`) must be RFC 9110
 *   §7.2 `uri-host [":" port]`; the path is never taken from it.
 */

/** The parts of a checked request URL. */
export interface RequestTarget {
  /** The authority, `uri-host [":" port]`. */
  readonly authority: string;
  /** Absolute path in RFC 3986 characters, starting with "/". */
  readonly path: string;
  /** The query with its "?", in RFC 3986 characters, or "". */
  readonly query: string;
}

/** Why a URL was refused: the log reason of the 400. */
export type TargetProblem = "invalid_target" | "invalid_host";

// RFC 3986 §3.2.2 host: IP-literal (IPv6 or IPvFuture in brackets), or reg-name (which covers
// IPv4address): unreserved / pct-encoded / sub-delims; then an optional port of digits. No
// userinfo (RFC 9110 §4.2.4), no whitespace, nothing outside ASCII.
const URI_HOST = new RegExp(
  "^(?:\\[(?:(?=[^\\]]*:)[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\\.[A-Za-z0-9\\-._~!$&'()*+,;=:]+)\\]" +
    "|(?:[A-Za-z0-9\\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]*)?$",
);

/** Whether `value` is `uri-host [":" port]` (RFC 9110 §7.2), as a Host field must be. */
export function isUriHost(value: string): boolean {
  return URI_HOST.test(value);
}

const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
const QUERY_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$/;
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;

/**
 * Splits and checks an absolute request URL as Deno.serve builds it (`scheme://authority/path?q`).
 * Returns the problem instead of throwing: the handler answers 400 before any other work.
 */
export function parseRequestUrl(url: string): RequestTarget | TargetProblem {
  const scheme = url.indexOf("://");
  if (scheme === -1) return "invalid_target";
  const start = scheme + 3;
  let end = start;
  // The authority ends at the first "/", "?" or "#" (RFC 3986 §3.2); Deno puts no "#" or "?"
  // there for a valid host, so anything else is refused by the host check below.
  while (end < url.length) {
    const c = url.charCodeAt(end);
    if (c === 0x2f || c === 0x3f || c === 0x23) break;
    end++;
  }
  const authority = url.slice(start, end);
  if (!URI_HOST.test(authority)) return "invalid_host";
  if (end === url.length) return { authority, path: "/", query: "" };
  if (url.charCodeAt(end) !== 0x2f) return "invalid_target";
  const q = url.indexOf("?", end);
  const rawPath = q === -1 ? url.slice(end) : url.slice(end, q);
  const path = reencode(rawPath, PATH_CHARS, false);
  if (path === undefined) return "invalid_target";
  if (q === -1) return { authority, path, query: "" };
  const query = reencode(url.slice(q), QUERY_CHARS, true);
  if (query === undefined) return "invalid_target";
  return { authority, path, query };
}

const HEX = "0123456789ABCDEF";
const utf8 = new TextEncoder();

/**
 * `s` with every code point outside the allowed set percent-encoded as UTF-8, or undefined when a
 * "%" starts no valid escape or a lone surrogate has no UTF-8 form.
 */
function reencode(s: string, plain: RegExp, query: boolean): string | undefined {
  if (plain.test(s)) return s.includes("%") && BAD_PERCENT.test(s) ? undefined : s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      if (!isHex(s.charCodeAt(i + 1)) || !isHex(s.charCodeAt(i + 2))) return undefined;
      out += "%";
    } else if (c < 0x80 && isPlain(c, query)) {
      out += s[i];
    } else {
      // A whole code point: a surrogate pair is one character of UTF-8.
      const cp = s.codePointAt(i)!;
      if (cp >= 0xd800 && cp <= 0xdfff) return undefined;
      const ch = String.fromCodePoint(cp);
      if (cp > 0xffff) i++;
      for (const b of utf8.encode(ch)) out += "%" + HEX[b >> 4] + HEX[b & 15];
    }
  }
  return out;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

// pchar minus "%" (RFC 3986 §3.3): ALPHA DIGIT - . _ ~ ! $ & ' ( ) * + , ; = : @ and "/";
// the query adds "?" (§3.4).
const PLAIN = new Uint8Array(128);
for (const ch of "-._~!$&'()*+,;=:@/") PLAIN[ch.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) PLAIN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) PLAIN[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) PLAIN[c] = 1;

function isPlain(c: number, query: boolean): boolean {
  return PLAIN[c] === 1 || (query && c === 0x3f);
}
