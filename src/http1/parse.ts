/**
 * Pure HTTP/1.1 wire helpers for the upstream client (RFC 9112): response head parsing, chunked
 * transfer decoding, and the byte-string (isomorphic) encoding HTTP field values use. No I/O.
 */

/** The upstream broke the HTTP/1.1 message syntax; the exchange cannot continue. */
export class Http1ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Http1ProtocolError";
  }
}

/** A parsed response status line and header section. */
export interface ResponseHead {
  /** Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0. */
  readonly minor: 0 | 1;
  readonly status: number;
  /** Field lines in order: lower-case name, value without surrounding whitespace. */
  readonly headers: [string, string][];
  /** Content-Length, or -1 when absent (or overridden by Transfer-Encoding). */
  readonly contentLength: number;
  /** Transfer-Encoding is present and its last coding is chunked. */
  readonly chunked: boolean;
  /** Transfer-Encoding is present but not chunked last: the body runs until close (RFC 9112 §6.3). */
  readonly untilClose: boolean;
  /** The connection must not be reused after this response (Connection: close, HTTP/1.0). */
  readonly close: boolean;
  /** Lower-case field names listed in Connection (RFC 9110 §7.6.1), or null. */
  readonly connectionTokens: readonly string[] | null;
}

const CR = 13;
const LF = 10;

/**
 * Index just past the blank line ending the head in `buf`, or -1. `from` lets a caller resume
 * the search after appending bytes. Bare LF line ends are accepted (RFC 9112 §2.2).
 */
export function findHeadEnd(buf: Uint8Array, from = 0): number {
  let i = from > 3 ? from - 3 : 0;
  const n = buf.length;
  while (i < n) {
    const j = buf.indexOf(LF, i);
    if (j === -1) return -1;
    // "\n\n" or "\n\r\n"
    if (j + 1 < n && buf[j + 1] === LF) return j + 2;
    if (j + 2 < n && buf[j + 1] === CR && buf[j + 2] === LF) return j + 3;
    i = j + 1;
  }
  return -1;
}

const utf8 = new TextDecoder();

/**
 * Bytes to a string with one char per byte (WHATWG "isomorphic decode"), how Deno represents
 * non-ASCII field bytes, so they round-trip unchanged through Headers and Deno.serve.
 */
export function isomorphicDecode(bytes: Uint8Array): string {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) return utf8.decode(bytes);
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

const utf8Encoder = new TextEncoder();
// deno-lint-ignore no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Encodes a head string: ASCII via the native encoder, otherwise one byte per char (chars above
 * 0xFF cannot occur: callers pass byte strings, see {@linkcode toByteString}).
 */
export function isomorphicEncode(s: string): Uint8Array {
  if (!NON_ASCII.test(s)) return utf8Encoder.encode(s);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * A Unicode string (e.g. a JWT claim) as the byte string of its UTF-8 encoding, one char per byte,
 * ready for {@linkcode isomorphicEncode}. ASCII comes back unchanged.
 */
export function toByteString(s: string): string {
  if (!NON_ASCII.test(s)) return s;
  let out = "";
  for (const b of utf8Encoder.encode(s)) out += String.fromCharCode(b);
  return out;
}

// RFC 9110 §5.6.2 token.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([0-9]{3})(?:[ \t].*)?$/;
const DIGITS = /^[0-9]{1,15}$/;

/** Whether `name` is a valid field name (RFC 9110 §5.1). */
export function isToken(name: string): boolean {
  return TOKEN.test(name);
}

/**
 * Parses a response head (status line through the blank line), as found by
 * {@linkcode findHeadEnd}. Applies RFC 9112 §6.3 framing rules: Transfer-Encoding overrides
 * Content-Length (and marks the connection for closing), differing Content-Length values are an
 * error.
 * @throws {Http1ProtocolError} on any syntax violation.
 */
export function parseResponseHead(head: Uint8Array): ResponseHead {
  const text = isomorphicDecode(head);
  const lines = text.split("\n");
  const first = trimCr(lines[0]);
  const m = STATUS_LINE.exec(first);
  if (!m) throw new Http1ProtocolError("Invalid status line");
  const minor = m[1] === "1" ? 1 : 0;
  const status = Number(m[2]);
  const headers: [string, string][] = [];
  let contentLength = -1;
  let transferEncoding: string | null = null;
  let connection: string | null = null;
  // The last two entries are the blank line and the empty tail after it.
  const end = lines.length - 2;
  for (let i = 1; i < end; i++) {
    const line = trimCr(lines[i]);
    const c0 = line.charCodeAt(0);
    if (c0 === 32 || c0 === 9) {
      // obs-fold: a proxy replaces it with SP (RFC 9112 §5.2).
      if (headers.length === 0) throw new Http1ProtocolError("Invalid header folding");
      const last = headers[headers.length - 1];
      last[1] = `${last[1]} ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Http1ProtocolError("Invalid header line");
    const name = line.slice(0, colon).toLowerCase();
    // No whitespace between name and colon (RFC 9112 §5.1), so the token check covers it.
    if (!TOKEN.test(name)) throw new Http1ProtocolError("Invalid header name");
    const value = line.slice(colon + 1).trim();
    if (value.includes("\0")) throw new Http1ProtocolError("Invalid header value");
    headers.push([name, value]);
    if (name === "content-length") {
      const n = parseContentLength(value);
      if (contentLength !== -1 && contentLength !== n) {
        throw new Http1ProtocolError("Conflicting content-length");
      }
      contentLength = n;
    } else if (name === "transfer-encoding") {
      transferEncoding = transferEncoding === null ? value : `${transferEncoding}, ${value}`;
    } else if (name === "connection") {
      connection = connection === null ? value : `${connection}, ${value}`;
    }
  }
  const connectionTokens = connection === null ? null : splitTokens(connection);
  let close = minor === 0
    ? !(connectionTokens?.includes("keep-alive") ?? false)
    : (connectionTokens?.includes("close") ?? false);
  let chunked = false;
  let untilClose = false;
  if (transferEncoding !== null) {
    const codings = splitTokens(transferEncoding);
    chunked = codings[codings.length - 1] === "chunked";
    untilClose = !chunked;
    // RFC 9112 §6.1: Transfer-Encoding overrides Content-Length; such a message may be an attempt
    // at request smuggling, so the connection is not reused.
    if (contentLength !== -1) close = true;
    contentLength = -1;
    if (untilClose) close = true;
  }
  return { minor, status, headers, contentLength, chunked, untilClose, close, connectionTokens };
}

function trimCr(line: string): string {
  return line.charCodeAt(line.length - 1) === CR ? line.slice(0, -1) : line;
}

/** Comma-separated list members, trimmed and lower-cased, empty ones dropped. */
export function splitTokens(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(",")) {
    const t = part.trim().toLowerCase();
    if (t !== "") out.push(t);
  }
  return out;
}

function parseContentLength(value: string): number {
  // Fast path, the usual case: 1 to 15 digits and nothing else (what DIGITS accepts).
  const len = value.length;
  if (len > 0 && len <= 15) {
    let v = 0;
    let i = 0;
    for (; i < len; i++) {
      const d = value.charCodeAt(i) - 48;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
    }
    if (i === len) return v;
  }
  // A list of identical values is tolerated (RFC 9110 §8.6).
  let n = -1;
  for (const part of value.split(",")) {
    const t = part.trim();
    if (!DIGITS.test(t)) throw new Http1ProtocolError("Invalid content-length");
    const v = Number(t);
    if (n !== -1 && v !== n) throw new Http1ProtocolError("Conflicting content-length");
    n = v;
  }
  return n;
}

const enum State {
  Size,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerLf,
  Done,
}

/** Longest chunk-size line (with extensions) and trailer section accepted. */
const MAX_LINE = 4096;
const MAX_TRAILERS = 64 * 1024;
/** 13 hex digits is 2^52: still an exact JS number. */
const MAX_SIZE_DIGITS = 13;

/**
 * Incremental decoder for the chunked transfer coding (RFC 9112 §7.1): strips the framing and
 * yields the payload bytes untouched (as subarrays of the input, no copy). Chunk extensions and
 * trailer fields are read and dropped.
 */
export class ChunkedDecoder {
  #state = State.Size;
  #size = 0;
  #digits = 0;
  #remaining = 0;
  #lineBytes = 0;
  #trailerBytes = 0;

  /** The terminating zero-size chunk and the trailer section have been read. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /**
   * Consumes `input`, appending payload slices to `out`. Returns how many bytes were consumed:
   * all of them, unless the message ended inside `input` (the rest belongs to no message).
   * @throws {Http1ProtocolError} on malformed framing.
   */
  push(input: Uint8Array, out: Uint8Array[]): number {
    const n = input.length;
    let i = 0;
    while (i < n) {
      switch (this.#state) {
        case State.Data: {
          const take = Math.min(this.#remaining, n - i);
          out.push(input.subarray(i, i + take));
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = State.DataCr;
          break;
        }
        case State.Size: {
          const b = input[i++];
          const h = hexValue(b);
          if (h !== -1) {
            if (++this.#digits > MAX_SIZE_DIGITS) throw new Http1ProtocolError("Chunk too large");
            this.#size = this.#size * 16 + h;
          } else if (this.#digits === 0) {
            throw new Http1ProtocolError("Invalid chunk size");
          } else if (b === CR) {
            this.#state = State.SizeLf;
          } else if (b === LF) {
            this.#endSizeLine();
          } else if (b === 0x3b || b === 0x20 || b === 0x09) {
            // ";" starts a chunk extension (BWS allowed before it).
            this.#state = State.Ext;
            this.#lineBytes = this.#digits + 1;
          } else {
            throw new Http1ProtocolError("Invalid chunk size");
          }
          break;
        }
        case State.Ext: {
          const j = input.indexOf(LF, i);
          const stop = j === -1 ? n : j;
          this.#lineBytes += stop - i;
          if (this.#lineBytes > MAX_LINE) throw new Http1ProtocolError("Chunk extension too long");
          i = stop;
          if (j !== -1) {
            i++;
            this.#endSizeLine();
          }
          break;
        }
        case State.SizeLf: {
          if (input[i++] !== LF) throw new Http1ProtocolError("Invalid chunk size line");
          this.#endSizeLine();
          break;
        }
        case State.DataCr: {
          const b = input[i++];
          if (b === CR) this.#state = State.DataLf;
          else if (b === LF) this.#startSize();
          else throw new Http1ProtocolError("Missing CRLF after chunk data");
          break;
        }
        case State.DataLf: {
          if (input[i++] !== LF) throw new Http1ProtocolError("Missing CRLF after chunk data");
          this.#startSize();
          break;
        }
        case State.TrailerStart: {
          // At the start of a trailer line: CRLF (or LF) here ends the message.
          const b = input[i];
          if (b === CR) {
            i++;
            this.#state = State.TrailerLf;
          } else if (b === LF) {
            i++;
            this.#state = State.Done;
            return i;
          } else {
            this.#state = State.Trailer;
          }
          break;
        }
        case State.Trailer: {
          const j = input.indexOf(LF, i);
          const stop = j === -1 ? n : j + 1;
          this.#trailerBytes += stop - i;
          if (this.#trailerBytes > MAX_TRAILERS) throw new Http1ProtocolError("Trailers too large");
          i = stop;
          if (j !== -1) this.#state = State.TrailerStart;
          break;
        }
        case State.TrailerLf: {
          if (input[i++] !== LF) throw new Http1ProtocolError("Invalid trailer section");
          this.#state = State.Done;
          return i;
        }
        case State.Done:
          return i;
      }
    }
    return i;
  }

  #endSizeLine(): void {
    if (this.#size === 0) {
      this.#state = State.TrailerStart;
    } else {
      this.#remaining = this.#size;
      this.#state = State.Data;
    }
  }

  #startSize(): void {
    this.#state = State.Size;
    this.#size = 0;
    this.#digits = 0;
  }
}

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  const l = b | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

const CRLF = new Uint8Array([CR, LF]);

/** Frames one chunk of the chunked coding: size line, data, CRLF, in one new buffer. */
export function encodeChunk(data: Uint8Array): Uint8Array {
  const size = data.length.toString(16);
  const out = new Uint8Array(size.length + 4 + data.length);
  for (let i = 0; i < size.length; i++) out[i] = size.charCodeAt(i);
  out[size.length] = CR;
  out[size.length + 1] = LF;
  out.set(data, size.length + 2);
  out.set(CRLF, size.length + 2 + data.length);
  return out;
}

/** The last chunk with no trailers. */
export const LAST_CHUNK: Uint8Array = new Uint8Array([0x30, CR, LF, CR, LF]);

/**
 * A Content-Length field value as one length, or undefined when it is not a valid one. A field
 * sent on several lines arrives joined ("5, 5"); identical values count as one (RFC 9110 §8.6).
 */
export function contentLengthOf(value: string | null): number | undefined {
  if (value === null) return undefined;
  try {
    const n = parseContentLength(value);
    return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
