/**
 * The value parsers of the configuration table (src/config/config.ts): one per kind of value, each
 * reporting every problem through `fail` in the configuration's one voice, and the value types
 * they produce. Pure; no knowledge of variable names beyond what a message quotes.
 */
import { isReservedForClaims, managedKey } from "../headers/mod.ts";
import { type Cidr, isLoopbackHost, parseCidr, parseIp } from "../net/mod.ts";

/** LOG_LEVEL's values, least to most severe. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** A listener address. `hostname` is "0.0.0.0", "::", "127.0.0.1", ...; `port` may be 0. */
export interface ListenAddr {
  readonly hostname: string;
  readonly port: number;
}

/**
 * A claim as SCOPE_CLAIMS, REQUIRED_CLAIMS and CLAIM_HEADERS name it: a JSON Pointer (RFC 6901)
 * when the text starts with "/", else the name of a top-level claim (so URL-named claims such as
 * `https://example.com/roles` stay names).
 */
export interface ClaimRef {
  /** As configured, for logs and the redacted view. */
  readonly text: string;
  /** The reference tokens, unescaped (RFC 6901 §4): `[text]` for a name. */
  readonly path: readonly string[];
}

/** One `claim=Header-Name` pair of CLAIM_HEADERS. */
export interface ClaimHeader {
  readonly claim: ClaimRef;
  /** Lower-case header name. */
  readonly header: string;
}

/**
 * One REQUIRED_CLAIMS entry. `equals` (the JSON form): the claim equals the value (deep JSON
 * equality) or contains it (every element of it, when the value is an array). `anyOf` (the
 * `claim=a|b` form): the claim's list of strings contains at least one of the values.
 */
export type RequiredClaim =
  | { readonly claim: ClaimRef; readonly kind: "equals"; readonly value: unknown }
  | { readonly claim: ClaimRef; readonly kind: "anyOf"; readonly values: readonly string[] };

/** The upstream base URL, split once so the request path does no URL parsing. */
export interface Upstream {
  /** As configured. */
  readonly url: string;
  readonly protocol: "http:" | "https:";
  /** Host name or IP address; an IPv6 address without brackets ("::1"). */
  readonly hostname: string;
  /** Numeric port, defaulted from the scheme. */
  readonly port: number;
  /** `host[:port]` as it goes into the upstream `Host` header (port omitted when default). */
  readonly host: string;
  /** Base path without a trailing slash ("" for the root); the request path is appended. */
  readonly basePath: string;
}

/** The asymmetric JWS algorithms the gate can verify (RFC 7518 §3.1, RFC 8037). */
export const ASYMMETRIC_ALGS: readonly string[] = Object.freeze([
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
]);

/** Reports a bad value; `got` defaults to the whole variable. */
export type Fail = (detail: string, got?: string) => void;
/** Parses one value; calls `fail` for each problem (the returned value is then ignored). */
export type Parser<T> = (text: string, fail: Fail) => T | undefined;

/** `host:port`, with brackets around an IPv6 host. */
export function formatListenAddr(addr: ListenAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

// --- parsers -------------------------------------------------------------------------------

/** A parsed http(s) URL and the text it came from. */
export interface HttpUrl {
  readonly text: string;
  readonly url: URL;
}

/**
 * An absolute http(s) URL with a host, no fragment, no user info, and no characters the WHATWG
 * parser would silently drop or rewrite (whitespace, controls, backslashes), so "verbatim" holds.
 */
export function httpUrl(text: string, fail: Fail, rules: { query: boolean }): HttpUrl | undefined {
  if (/[\s\\\p{Cc}]/u.test(text)) {
    fail("expected a URL without whitespace, control characters or backslashes");
    return undefined;
  }
  let url: URL | undefined;
  try {
    if (/^https?:\/\/[^/?#]/i.test(text)) url = new URL(text);
  } catch { /* reported below */ }
  if (!url) {
    fail("expected an http or https URL");
    return undefined;
  }
  if (text.includes("#")) fail("expected a URL without a fragment");
  if (!rules.query && text.includes("?")) fail("expected a URL without a query");
  // "http://user:pw@h" and a stray "http://@h": credentials must not sit in config or logs.
  if (authority(text).includes("@")) fail("expected a URL without user info");
  return { text, url };
}

/** The text between "//" and the first "/", "?" or "#". */
function authority(text: string): string {
  const start = text.indexOf("//") + 2;
  const rest = text.slice(start);
  const end = rest.search(/[/?#]/);
  return end < 0 ? rest : rest.slice(0, end);
}

/** An http(s) base URL without query, split once into what the forwarder needs. */
export function parseUpstream(text: string, fail: Fail): Upstream | undefined {
  const parsed = httpUrl(text, fail, { query: false });
  if (!parsed) return undefined;
  const { url } = parsed;
  const protocol = url.protocol as "http:" | "https:";
  return {
    url: text,
    protocol,
    hostname: stripBrackets(url.hostname),
    port: url.port ? Number(url.port) : protocol === "https:" ? 443 : 80,
    host: url.host, // WHATWG already omits the scheme's default port
    basePath: trimTrailingSlashes(url.pathname),
  };
}

/** AUTHORIZATION_SERVER: issuer URLs (RFC 8414 §2: no query or fragment), comma-separated. */
export function parseIssuers(text: string, fail: Fail): readonly string[] | undefined {
  const list = nonEmpty(splitList(text), fail);
  let ok = list !== undefined;
  for (const entry of list ?? []) {
    if (!httpUrl(entry, (d) => fail(d, entry), { query: false })) ok = false;
  }
  return ok ? list : undefined;
}

/** One ISSUER_AUDIENCES entry: an AUTHORIZATION_SERVER issuer and the audiences for its tokens. */
export interface IssuerAudiences {
  readonly issuer: string;
  readonly audiences: readonly string[];
}

/**
 * ISSUER_AUDIENCES: `issuer=aud|aud` entries, comma-separated. The issuer ends at the first "="
 * (issuer identifiers, https URLs without query, have none in practice; one that had could not be
 * named, and the configuration says so), so an audience may hold "=" (base64 client IDs do);
 * audiences are separated by "|", which no URL, GUID or client ID holds unencoded. Whether each
 * issuer is one of AUTHORIZATION_SERVER is checked across variables.
 */
export function parseIssuerAudiences(
  text: string,
  fail: Fail,
): readonly IssuerAudiences[] | undefined {
  const out: IssuerAudiences[] = [];
  let ok = true;
  for (const entry of nonEmpty(splitList(text), fail) ?? []) {
    const eq = entry.indexOf("=");
    const issuer = entry.slice(0, Math.max(eq, 0)).trim();
    const audiences = entry.slice(eq + 1).split("|").map((a) => a.trim());
    if (eq < 0 || issuer === "" || audiences.some((a) => a === "")) {
      ok = false;
      fail(
        "expected issuer=audience|audience pairs like https://auth.example.com/=api://mcp",
        entry,
      );
    } else out.push({ issuer, audiences: unique(audiences) });
  }
  return ok && out.length > 0 ? out : undefined;
}

/** RFC 8725 §3.9 spirit: key material over plain http only where no network is crossed. */
export function parseJwksUri(text: string, fail: Fail): string | undefined {
  const parsed = httpUrl(text, fail, { query: true });
  if (!parsed) return undefined;
  if (parsed.url.protocol === "http:" && !isLoopbackHost(parsed.url.hostname)) {
    fail("expected an https URL (http only for a loopback host)");
  }
  return text;
}

/**
 * A Redis or Valkey URL for the shared rate limiter: `redis://` or `rediss://` (TLS), a host, an
 * optional port, user info (`user:password@`, percent-encoded) and database number (`/2`); no
 * query or fragment. Problems quote the URL with its user info hidden, and the user info must be
 * percent-encoded so that redactSecrets (src/errors.ts) hides all of it wherever the URL is shown.
 */
export function parseRedisUrl(text: string, fail: Fail): string | undefined {
  const start = text.indexOf("//");
  const at = text.lastIndexOf("@");
  const userinfo = start >= 0 && at > start;
  const shown = userinfo ? text.slice(0, start + 2) + "[redacted]" + text.slice(at) : text;
  if (/[\s\\\p{Cc}]/u.test(text)) {
    fail("expected a URL without whitespace, control characters or backslashes", shown);
    return undefined;
  }
  if (userinfo && /[@/?#]/.test(text.slice(start + 2, at))) {
    fail('expected the user info percent-encoded ("%40" for "@", "%2F" for "/")', shown);
    return undefined;
  }
  let url: URL | undefined;
  try {
    if (/^rediss?:\/\/[^/?#]/i.test(text)) url = new URL(text);
  } catch { /* reported below */ }
  if (!url || url.hostname === "") {
    fail("expected a redis:// or rediss:// URL with a host", shown);
    return undefined;
  }
  if (text.includes("?") || text.includes("#")) {
    fail("expected a URL without a query or fragment", shown);
  }
  if (!/^\/?(\d{1,5})?$/.test(url.pathname)) {
    fail('expected no path but a database number like "/0"', shown);
  }
  return text;
}

/** `host:port`, `:port` (all IPv4 interfaces), `[IPv6]:port`. */
export function parseListenAddr(text: string, fail: Fail): ListenAddr | undefined {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    fail("expected host:port, :port or [IPv6]:port with a port from 0 to 65535");
    return undefined;
  }
  if (m[1] !== undefined) {
    if (parseIp(m[1])?.family !== 6) fail("expected an IPv6 address inside the brackets");
    return { hostname: m[1].toLowerCase(), port };
  }
  const host = m[2] === "" ? "0.0.0.0" : m[2];
  const valid = /^[\d.]+$/.test(host)
    ? parseIp(host) !== undefined
    : /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host);
  if (!valid) fail("expected a host name or IP address before the port");
  return { hostname: host, port };
}

/** RFC 6749 §3.3 scope-token: printable ASCII without space, '"' and '\' (it goes in a quoted header value). */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

/** Scope tokens separated by commas or spaces; an empty list is allowed. */
export function parseScopes(text: string, fail: Fail): readonly string[] {
  const scopes = unique(text.split(/[\s,]+/).filter((s) => s !== ""));
  for (const s of scopes) {
    if (!SCOPE_TOKEN.test(s)) {
      fail(`expected scope tokens of printable ASCII without '"' or '\\'`, s);
    }
  }
  return scopes;
}

/** A JSON object (not an array or a scalar). */
export function parseJsonObject(text: string, fail: Fail): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch { /* reported below */ }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail('expected a JSON object like {"tenant":"acme"}');
    return undefined;
  }
  return value as Record<string, unknown>;
}

/**
 * The reference tokens of a JSON Pointer (RFC 6901 §3: `*("/" reference-token)`, where `~` is
 * only ever followed by `0` or `1`), unescaped as §4 says: `~1` becomes `/`, then `~0` becomes
 * `~`, in one pass so `~01` is `~1`. Undefined when `text` is not a pointer.
 */
export function parseJsonPointer(text: string): string[] | undefined {
  if (text === "") return [];
  if (!text.startsWith("/") || /~(?![01])/.test(text)) return undefined;
  return text.slice(1).split("/").map((t) => t.replace(/~[01]/g, (e) => (e === "~1" ? "/" : "~")));
}

/** A claim name, or a JSON Pointer when it starts with "/" (see {@linkcode ClaimRef}). */
export function parseClaimRef(text: string, fail: Fail): ClaimRef | undefined {
  if (!text.startsWith("/")) return { text, path: [text] };
  const path = parseJsonPointer(text);
  if (path === undefined) {
    fail('expected a JSON Pointer (RFC 6901) where "~" is followed by 0 or 1', text);
    return undefined;
  }
  return { text, path };
}

/**
 * {@linkcode parseClaimRef} for text known to be valid (constants, tests).
 * @throws {TypeError} when `text` is a malformed pointer.
 */
export function claimRef(text: string): ClaimRef {
  const ref = parseClaimRef(text, (d) => {
    throw new TypeError(`Invalid claim ${JSON.stringify(text)}: ${d}`);
  });
  return ref!;
}

/** Claim names or pointers, comma-separated (SCOPE_CLAIMS). */
export function parseClaimRefs(text: string, fail: Fail): readonly ClaimRef[] | undefined {
  const refs = nonEmpty(splitList(text), fail)?.map((t) => parseClaimRef(t, fail));
  return refs?.every((r) => r !== undefined) ? refs as ClaimRef[] : undefined;
}

/**
 * REQUIRED_CLAIMS in either of two forms, told apart by the first character (a claim name never
 * starts with "{" in the second form):
 * - a JSON object, `{"tenant":"acme","/realm_access/roles":"mcp"}`: each claim equals the value or
 *   is an array holding it ({@linkcode RequiredClaim} `equals`);
 * - `claim=value|value,claim=value`: each claim holds or equals one of the `|`-separated values
 *   ({@linkcode RequiredClaim} `anyOf`). The claim ends at the first "=", so a claim name with "="
 *   or "," needs the JSON form; a value never holds "|", "," or a space (a scope claim's string
 *   is read as words, so a value with a space could never match one; the JSON form takes any).
 */
const REQUIRED_CLAIMS_FORMS =
  'expected a JSON object like {"tenant":"acme"} or claim=value|value pairs like groups=admin|ops';

export function parseRequiredClaims(
  text: string,
  fail: Fail,
): readonly RequiredClaim[] | undefined {
  const t = text.trim();
  const out: RequiredClaim[] = [];
  let ok = true;
  const ref = (name: string, shown: string) => {
    const r = parseClaimRef(name, (d) => fail(d, shown));
    if (!r) ok = false;
    return r;
  };
  if (t.startsWith("{")) {
    const obj = parseJsonObject(t, () => fail(REQUIRED_CLAIMS_FORMS));
    if (!obj) return undefined;
    for (const [name, value] of Object.entries(obj)) {
      // An empty array would be "contains every one of nothing": held by any token, even one
      // without the claim, which is never what a requirement means.
      if (Array.isArray(value) && value.length === 0) {
        ok = false;
        fail("expected a value or a non-empty array", `${name}=[]`);
        continue;
      }
      const claim = ref(name, name);
      if (claim) out.push({ claim, kind: "equals", value });
    }
    return ok ? out : undefined;
  }
  for (const entry of nonEmpty(splitList(t), fail) ?? []) {
    const eq = entry.indexOf("=");
    const name = entry.slice(0, Math.max(eq, 0)).trim();
    const values = entry.slice(eq + 1).split("|").map((v) => v.trim());
    if (eq < 0 || name === "" || values.some((v) => v === "")) {
      ok = false;
      fail(REQUIRED_CLAIMS_FORMS, entry);
    } else if (values.some((v) => /\s/.test(v))) {
      ok = false;
      fail(
        "expected values without spaces (the JSON form takes a value that holds one)",
        entry,
      );
    } else {
      const claim = ref(name, entry);
      if (claim) out.push({ claim, kind: "anyOf", values: unique(values) });
    }
  }
  return ok && out.length > 0 ? out : undefined;
}

/** RFC 8725 §3.1: never `none`, and never an HMAC secret shared with the authorization server. */
export function parseAlgs(text: string, fail: Fail): readonly string[] | undefined {
  const algs = nonEmpty(splitList(text), fail);
  for (const alg of algs ?? []) {
    if (/^(none|HS\d*)$/i.test(alg)) {
      fail('symmetric and "none" algorithms are never allowed', alg);
    } else if (!ASYMMETRIC_ALGS.includes(alg)) {
      fail(`expected algorithms from ${ASYMMETRIC_ALGS.join(",")}`, alg);
    }
  }
  return algs;
}

/** Nanoseconds per Go duration unit (Go's time.ParseDuration). */
const UNIT_NS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  "µs": 1e3, // U+00B5 micro sign
  "μs": 1e3, // U+03BC Greek mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};
const NUMBER = String.raw`(?:\d+\.?\d*|\.\d+)`;
const PLAIN_SECONDS = new RegExp(`^${NUMBER}$`);
const GO_DURATION = new RegExp(`^(?:${NUMBER}(?:ns|us|µs|μs|ms|s|m|h))+$`);
const DURATION_PART = new RegExp(`(${NUMBER})(ns|us|µs|μs|ms|s|m|h)`, "g");
/** setTimeout's limit: longer delays fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Go duration (`1h30m`, `500ms`) or plain seconds (`30`, `0.5`), in milliseconds. */
export function duration(rules: { zero: boolean }): Parser<number> {
  return (text, fail) => {
    const t = text.trim();
    let ns: number;
    if (PLAIN_SECONDS.test(t)) ns = Number(t) * 1e9;
    else if (GO_DURATION.test(t)) {
      ns = 0;
      for (const [, n, unit] of t.matchAll(DURATION_PART)) ns += Number(n) * UNIT_NS[unit];
    } else {
      fail(
        t.startsWith("-")
          ? "expected a duration that is not negative"
          : 'expected a duration like "30s", "1m30s", "500ms" or plain seconds like "30"',
      );
      return undefined;
    }
    const ms = Math.round(ns) / 1e6; // whole nanoseconds, so "1.1s" is exactly 1100
    if (!rules.zero && ms === 0) fail("expected a duration greater than zero");
    if (ms > MAX_TIMER_MS) fail("expected a duration of at most 596h");
    return ms;
  };
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
};

/** Bytes, or a number with a binary suffix. Decimal-looking suffixes (MB) are ambiguous: refused. */
export function parseSize(text: string, fail: Fail): number | undefined {
  const m = new RegExp(`^(${NUMBER})\\s*([A-Za-z]*)$`).exec(text.trim());
  const unit = SIZE_UNITS[m?.[2].toLowerCase() ?? "?"];
  if (!m || unit === undefined) {
    fail('expected a size in bytes or with a KiB, MiB or GiB suffix, like "10MiB"');
    return undefined;
  }
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) fail("expected a positive whole number of bytes");
  return bytes;
}

/** A non-empty list of addresses or CIDR blocks; /0 is refused. */
export function parseTrustedProxies(text: string, fail: Fail): readonly Cidr[] | undefined {
  const out: Cidr[] = [];
  for (const entry of nonEmpty(splitList(text), fail) ?? []) {
    const cidr = parseCidr(entry);
    if (!cidr) fail("expected an IP address or CIDR block like 10.0.0.0/8", entry);
    else if (cidr.prefix === 0) {
      fail("expected a block smaller than /0, which trusts every client", entry);
    } else out.push(cidr);
  }
  return out;
}

/** Exact origins (RFC 6454 §6.2 serialisation) or `*`; compared with the request's Origin as is. */
export function parseOrigins(text: string, fail: Fail): readonly string[] | undefined {
  const out: string[] = [];
  for (const entry of nonEmpty(splitList(text), fail) ?? []) {
    if (entry === "*") {
      out.push(entry);
      continue;
    }
    if (entry.toLowerCase() === "null") {
      // Sandboxed frames and file: pages all send "null": allowing it allows them all.
      fail('expected a real origin, never "null"', entry);
      continue;
    }
    if (entry.includes("*")) {
      fail('expected "*" alone or an exact origin, not a pattern', entry);
      continue;
    }
    const origin = parseOrigin(entry);
    if (origin) out.push(origin);
    else {
      fail('expected "*" or an origin like "https://app.example.com" (no path)', entry);
    }
  }
  return unique(out);
}

function parseOrigin(entry: string): string | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#@\s\\]+)$/.exec(entry);
  if (!m) return undefined;
  const scheme = m[1].toLowerCase();
  if (scheme !== "http" && scheme !== "https") return `${scheme}://${m[2].toLowerCase()}`;
  try {
    return new URL(entry).origin; // lower-cases the host and drops a default port, as browsers send it
  } catch {
    return undefined;
  }
}

/** RFC 9110 §5.6.2 token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Headers the gate manages itself or that change how the message is framed or routed; a claim
 * must never set them. Hop-by-hop per RFC 9110 §7.6.1.
 */

/**
 * `claim=Header-Name` pairs; a header the gate manages, or named twice, is refused. The claim (a
 * name or a JSON Pointer) ends at the last "=": a header name never holds one (RFC 9110 §5.6.2).
 */
export function parseClaimHeaders(text: string, fail: Fail): readonly ClaimHeader[] | undefined {
  const out: ClaimHeader[] = [];
  for (const entry of nonEmpty(splitList(text), fail) ?? []) {
    const eq = entry.lastIndexOf("=");
    const name = entry.slice(0, Math.max(eq, 0)).trim();
    const header = entry.slice(eq + 1).trim().toLowerCase();
    const claim = name === "" ? undefined : parseClaimRef(name, (d) => fail(d, entry));
    if (name !== "" && claim === undefined) continue;
    if (eq < 0 || claim === undefined || header === "") {
      fail("expected claim=Header-Name pairs like sub=X-Auth-Subject", entry);
    } else if (!HEADER_NAME.test(header)) {
      fail("expected an HTTP header name", entry);
    } else if (
      isReservedForClaims(header)
    ) {
      fail(
        "expected a header the gate does not manage (not hop-by-hop, Host, Authorization, " +
          "Cookie, Content-*, Forwarded, X-Forwarded-*, X-Real-IP, X-Request-Id, Mcp-*, " +
          "Expect or a client-address header, in any spelling)",
        entry,
      );
    } else if (out.some((c) => managedKey(c.header) === managedKey(header))) {
      // CGI, WSGI, Rack and PHP read "-" and "_" as one name (headers/managed.ts): two spellings
      // would reach them as one variable, and a user-editable claim could stand in for `sub`.
      fail("expected each header at most once, in any spelling (- and _ are one name)", entry);
    } else out.push({ claim, header });
  }
  return out;
}

/** true/false, 1/0, yes/no, any case. */
export function parseBoolean(text: string, fail: Fail): boolean | undefined {
  const t = text.trim().toLowerCase();
  if (t === "true" || t === "1" || t === "yes") return true;
  if (t === "false" || t === "0" || t === "no") return false;
  fail("expected true, false, 1, 0, yes or no");
  return undefined;
}

/** A number of requests per second, 0 or more, fractions allowed. */
export function parseRate(text: string, fail: Fail): number | undefined {
  const t = text.trim();
  if (!PLAIN_SECONDS.test(t)) {
    fail("expected a number of requests per second, 0 or more");
    return undefined;
  }
  return Number(t);
}

/** A probability: a number from 0 to 1 (OTEL_TRACE_SAMPLE_RATE). */
export function parseSampleRate(text: string, fail: Fail): number | undefined {
  const t = text.trim();
  const n = PLAIN_SECONDS.test(t) ? Number(t) : NaN;
  if (!(n >= 0 && n <= 1)) {
    fail("expected a number from 0 to 1");
    return undefined;
  }
  return n;
}

/** A whole number, 0 or more. */
export function parseCount(text: string, fail: Fail): number | undefined {
  const t = text.trim();
  if (!/^\d+$/.test(t) || !Number.isSafeInteger(Number(t))) {
    fail("expected a whole number, 0 or more");
    return undefined;
  }
  return Number(t);
}

/** debug, info, warn or error, any case. */
export function parseLogLevel(text: string, fail: Fail): LogLevel | undefined {
  const t = text.trim().toLowerCase();
  if (t === "debug" || t === "info" || t === "warn" || t === "error") return t;
  fail("expected debug, info, warn or error");
  return undefined;
}

// --- helpers -------------------------------------------------------------------------------

/** Comma-separated entries, trimmed, empty ones dropped, duplicates removed. */
export function splitList(text: string): string[] {
  return unique(text.split(",").map((s) => s.trim()).filter((s) => s !== ""));
}

/** A list variable that is set must name at least one entry (`","` is a mistake, not a default). */
export function nonEmpty(list: string[], fail: Fail): string[] | undefined {
  if (list.length === 0) fail("expected at least one entry");
  return list.length === 0 ? undefined : list;
}

function unique<T>(list: T[]): T[] {
  return [...new Set(list)];
}

/** `path` without trailing slashes ("/" becomes ""). */
export function trimTrailingSlashes(path: string): string {
  return path.replace(/\/+$/, "");
}

function stripBrackets(hostname: string): string {
  return hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
}
