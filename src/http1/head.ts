/**
 * The request-head serialiser (RFC 9112 §3, §5): the only code that turns strings into the lines
 * of an upstream request head. It refuses, with {@linkcode Http1HeadError}, anything it cannot
 * send exactly as given: it never truncates a character to a byte, never drops or replaces one,
 * and no value can end a line or start a new one. Callers build every line through it.
 */

/** What part of a head could not be represented. */
export type HeadPart = "method" | "target" | "name" | "value";

/** A head part that cannot be sent exactly; the exchange must not happen. */
export class Http1HeadError extends Error {
  /** Stable code for logs and tests. */
  readonly code = "head_unrepresentable" as const;
  readonly part: HeadPart;
  constructor(part: HeadPart, message: string) {
    super(message);
    this.name = "Http1HeadError";
    this.part = part;
  }
}

// RFC 9110 §5.6.2 token (method, field name).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9112 §3.2 origin-form: absolute-path [ "?" query ], in RFC 3986 characters only: pchar
// (unreserved, pct-encoded, sub-delims, ":", "@"), "/" and "?". Percent signs are checked apart.
const ORIGIN_FORM = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$/;
const PCT = /%(?![0-9A-Fa-f]{2})/;
// RFC 9110 §5.5 field-value: field-vchar (VCHAR, obs-text) with SP/HTAB inside, no CTL; chars
// above 0xFF are not bytes at all.
// deno-lint-ignore no-control-regex
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f\u0100-\uffff]|^[ \t]|[ \t]$/;

/**
 * The request line `METHOD SP origin-form SP HTTP/1.1 CRLF`.
 * @throws {Http1HeadError} when the method is not a token or the target is not an origin-form
 *   target in RFC 3986 characters with valid percent-escapes.
 */
export function requestLine(method: string, target: string): string {
  if (!TOKEN.test(method)) throw new Http1HeadError("method", "Method is not a token");
  if (!ORIGIN_FORM.test(target) || (target.includes("%") && PCT.test(target))) {
    throw new Http1HeadError("target", "Request target is not an origin-form URI");
  }
  return `${method} ${target} HTTP/1.1\r\n`;
}

/**
 * One field line `name: value CRLF`. `value` is a byte string (one char per byte, as Deno gives
 * inbound field values); use {@linkcode toByteString} for Unicode text.
 * @throws {Http1HeadError} when the name is not a token, or the value has a control character
 *   other than HTAB, a char above 0xFF, or leading or trailing whitespace.
 */
export function fieldLine(name: string, value: string): string {
  if (!TOKEN.test(name)) throw new Http1HeadError("name", "Field name is not a token");
  if (BAD_VALUE.test(value)) {
    throw new Http1HeadError("value", `Field "${name}" has a value that cannot be sent as is`);
  }
  return `${name}: ${value}\r\n`;
}

/** Whether `value` would pass {@linkcode fieldLine} (for callers that refuse earlier). */
export function isFieldValue(value: string): boolean {
  return !BAD_VALUE.test(value);
}

const utf8Encoder = new TextEncoder();
// deno-lint-ignore no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * A Unicode string (e.g. a JWT claim) as the byte string of its UTF-8 encoding, one char per byte,
 * ready for {@linkcode fieldLine}. ASCII comes back unchanged. Lone surrogates cannot be encoded
 * faithfully (TextEncoder would substitute U+FFFD), so they are refused.
 * @throws {Http1HeadError} for a string with a lone surrogate.
 */
export function toByteString(s: string): string {
  if (!NON_ASCII.test(s)) return s;
  if (!s.isWellFormed()) {
    throw new Http1HeadError("value", "Value is not well-formed Unicode");
  }
  let out = "";
  for (const b of utf8Encoder.encode(s)) out += String.fromCharCode(b);
  return out;
}

// deno-lint-ignore no-control-regex
const NOT_BYTE = /[^\x00-\xff]/;

/** Whether every char of `s` is a byte (0x00 to 0xFF), so {@linkcode encodeHead} can send it. */
export function isByteString(s: string): boolean {
  return !NOT_BYTE.test(s);
}

/**
 * Encodes a head string built from {@linkcode requestLine} and {@linkcode fieldLine}: one byte
 * per char.
 * @throws {Http1HeadError} for a char above 0xFF, which no byte can carry (never truncated).
 */
export function encodeHead(head: string): Uint8Array {
  if (!NON_ASCII.test(head)) return utf8Encoder.encode(head);
  const out = new Uint8Array(head.length);
  for (let i = 0; i < head.length; i++) {
    const c = head.charCodeAt(i);
    if (c > 0xff) throw new Http1HeadError("value", "Head has a character above 0xFF");
    out[i] = c;
  }
  return out;
}
