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

// RFC 9110 §5.6.2 token.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/**
 * RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]. One leniency: the
 * SP before an empty reason phrase may be missing ("HTTP/1.1 204"), as some servers send it. The
 * reason phrase holds no CTL but HTAB: decodeHead() has checked that already.
 */
const STATUS_LINE = /^HTTP\/1\.([01]) ([0-9]{3})(?: .*)?$/;
const DIGITS = /^[0-9]{1,15}$/;

/**
 * The head as a byte string, after checking it holds no byte a head may not contain: a CTL other
 * than HTAB, CR and LF (RFC 9110 §5.5 field-vchar, RFC 9112 §4 reason-phrase), or a bare CR, one
 * not followed by LF (RFC 9112 §2.2). The check shares isomorphicDecode()'s ASCII scan: one pass
 * over the bytes (a regex over the text costs about 3 times as much).
 */
function decodeHead(head: Uint8Array): string {
  let ascii = true;
  for (let i = 0; i < head.length; i++) {
    const b = head[i];
    if (b < 0x20) {
      if (b === 9 || b === LF || (b === CR && head[i + 1] === LF)) continue;
      throw new Http1ProtocolError("Invalid character in response head");
    }
    if (b >= 0x7f) {
      if (b === 0x7f) throw new Http1ProtocolError("Invalid character in response head");
      ascii = false;
    }
  }
  return ascii ? utf8.decode(head) : isomorphicDecode(head);
}

/** Whether `name` is a valid field name (RFC 9110 §5.1). */
export function isToken(name: string): boolean {
  return TOKEN.test(name);
}

/**
 * Parses a response head (status line through the blank line), as found by
 * {@linkcode findHeadEnd}. Every field line is parsed and checked first; the framing (RFC 9112
 * §6.3) is then decided on the complete field list: Transfer-Encoding overrides Content-Length
 * (and marks the connection for closing), differing Content-Length values are an error.
 * Rejected: obs-fold (RFC 9112 §5.2 lets a proxy answer 502 instead of unfolding), bare CR,
 * CTLs but HTAB, whitespace between a field name and its colon (RFC 9112 §5.1), an invalid
 * status line, Transfer-Encoding in an HTTP/1.0 response or chunked applied twice (RFC 9112 §6.1).
 * @throws {Http1ProtocolError} on any syntax violation.
 */
export function parseResponseHead(head: Uint8Array): ResponseHead {
  const text = decodeHead(head);
  const lines = text.split("\n");
  // The last two entries are the blank line and the empty tail after it.
  const end = lines.length - 2;
  if (end < 1 || lines[end + 1] !== "" || trimCr(lines[end]) !== "") {
    throw new Http1ProtocolError("Unterminated response head");
  }
  const m = STATUS_LINE.exec(trimCr(lines[0]));
  if (!m) throw new Http1ProtocolError("Invalid status line");
  const minor = m[1] === "1" ? 1 : 0;
  const status = Number(m[2]);
  const headers: [string, string][] = [];
  for (let i = 1; i < end; i++) {
    const line = trimCr(lines[i]);
    const c0 = line.charCodeAt(0);
    if (c0 === 32 || c0 === 9) throw new Http1ProtocolError("Obsolete line folding");
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Http1ProtocolError("Invalid header line");
    const name = line.slice(0, colon).toLowerCase();
    // No whitespace between name and colon (RFC 9112 §5.1), so the token check covers it.
    if (!TOKEN.test(name)) throw new Http1ProtocolError("Invalid header name");
    // OWS around the value is HTAB and SP only; trim() would also eat other whitespace, but
    // decodeHead() let none through (and no CR is left after trimCr).
    headers.push([name, line.slice(colon + 1).trim()]);
  }
  return framing(minor, status, headers);
}

/** RFC 9112 §6.3 message body length and §9.3 persistence, from the complete field list. */
function framing(minor: 0 | 1, status: number, headers: [string, string][]): ResponseHead {
  let contentLength = -1;
  let transferEncoding: string | null = null;
  let connection: string | null = null;
  for (let i = 0; i < headers.length; i++) {
    const name = headers[i][0];
    const value = headers[i][1];
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
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    if (minor === 0) throw new Http1ProtocolError("Transfer-Encoding in an HTTP/1.0 response");
    const codings = splitTokens(transferEncoding);
    chunked = codings[codings.length - 1] === "chunked";
    // RFC 9112 §6.1: chunked is applied at most once.
    if (codings.indexOf("chunked") !== (chunked ? codings.length - 1 : -1)) {
      throw new Http1ProtocolError("Invalid transfer-encoding");
    }
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

/** Byte classes for the chunk framing and trailer grammar, one bit each. */
const TCHAR = 1; // RFC 9110 §5.6.2 tchar
const FVCHAR = 2; // RFC 9110 §5.5 field-vchar: VCHAR / obs-text
const QDTEXT = 4; // RFC 9110 §5.6.4 qdtext
const WS = 8; // SP / HTAB
const BYTE_CLASS: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
    t[c.charCodeAt(0)] |= TCHAR;
  }
  for (let b = 0x21; b <= 0xff; b++) if (b !== 0x7f) t[b] |= FVCHAR;
  for (let b = 0x21; b <= 0xff; b++) if (b !== 0x22 && b !== 0x5c && b !== 0x7f) t[b] |= QDTEXT;
  t[0x20] |= WS | QDTEXT;
  t[0x09] |= WS | QDTEXT;
  return t;
})();

const enum State {
  /** chunk-size: 1*HEXDIG. */
  Size,
  /** BWS after the size or an ext-val: only more BWS or ";" may follow. */
  WsBeforeSemi,
  /** After ";": BWS, then an ext-name. */
  NameStart,
  Name,
  /** BWS after an ext-name: ";" or "=" may follow. */
  WsAfterName,
  /** After "=": BWS, then a token or a quoted-string. */
  ValueStart,
  TokenValue,
  Quoted,
  QuotedPair,
  /** After the closing DQUOTE of a quoted ext-val. */
  AfterQuoted,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerName,
  TrailerValue,
  TrailerLf,
  EndLf,
  Done,
}

/** Longest chunk-size line (with extensions) and trailer section accepted. */
const MAX_LINE = 4096;
const MAX_TRAILERS = 64 * 1024;
/** 13 significant hex digits is 2^52: still an exact JS number. */
const MAX_SIZE_DIGITS = 13;

/**
 * Incremental decoder for the chunked transfer coding (RFC 9112 §7.1): strips the framing and
 * yields the payload bytes untouched (as subarrays of the input, no copy). Chunk size lines are
 * checked against the grammar, byte by byte:
 *
 *     chunk-size [ chunk-ext ] CRLF
 *     chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
 *     ext-name   = token;  ext-val = token / quoted-string
 *
 * and trailer lines as field lines (`token ":" OWS value OWS`, no CTL but HTAB, no obs-fold).
 * Extensions and trailer fields are then dropped. A bare LF ends a line like CRLF (RFC 9112
 * §2.2); a bare CR is an error.
 */
export class ChunkedDecoder {
  #state = State.Size;
  #size = 0;
  #digits = 0;
  #significant = 0;
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
      const state = this.#state;
      if (state === State.Data) {
        const take = Math.min(this.#remaining, n - i);
        out.push(input.subarray(i, i + take));
        i += take;
        this.#remaining -= take;
        if (this.#remaining === 0) this.#state = State.DataCr;
        continue;
      }
      if (state === State.Done) return i;
      const b = input[i++];
      if (state < State.Data) {
        if (++this.#lineBytes > MAX_LINE) throw new Http1ProtocolError("Chunk size line too long");
        this.#sizeLine(b);
      } else if (state < State.TrailerStart) {
        this.#dataEnd(state, b);
      } else {
        if (++this.#trailerBytes > MAX_TRAILERS) throw new Http1ProtocolError("Trailers too large");
        this.#trailer(state, b);
        if (this.#state === State.Done) return i;
      }
    }
    return i;
  }

  /** One byte of a chunk-size line. */
  #sizeLine(b: number): void {
    const cls = BYTE_CLASS[b];
    switch (this.#state) {
      case State.Size: {
        const h = hexValue(b);
        if (h !== -1) {
          this.#digits++;
          if (this.#size !== 0 || h !== 0) {
            if (++this.#significant > MAX_SIZE_DIGITS) {
              throw new Http1ProtocolError("Chunk too large");
            }
          }
          this.#size = this.#size * 16 + h;
          return;
        }
        if (this.#digits === 0) throw new Http1ProtocolError("Invalid chunk size");
        if (b === 0x3b) this.#state = State.NameStart;
        else if (cls & WS) this.#state = State.WsBeforeSemi;
        else this.#lineEnd(b, "Invalid chunk size");
        return;
      }
      case State.WsBeforeSemi:
        if (b === 0x3b) this.#state = State.NameStart;
        else if (!(cls & WS)) throw new Http1ProtocolError("Invalid chunk extension");
        return;
      case State.NameStart:
        if (cls & TCHAR) this.#state = State.Name;
        else if (!(cls & WS)) throw new Http1ProtocolError("Invalid chunk extension");
        return;
      case State.Name:
        if (cls & TCHAR) return;
        if (b === 0x3b) this.#state = State.NameStart;
        else if (b === 0x3d) this.#state = State.ValueStart;
        else if (cls & WS) this.#state = State.WsAfterName;
        else this.#lineEnd(b, "Invalid chunk extension");
        return;
      case State.WsAfterName:
        if (b === 0x3b) this.#state = State.NameStart;
        else if (b === 0x3d) this.#state = State.ValueStart;
        else if (!(cls & WS)) throw new Http1ProtocolError("Invalid chunk extension");
        return;
      case State.ValueStart:
        if (cls & TCHAR) this.#state = State.TokenValue;
        else if (b === 0x22) this.#state = State.Quoted;
        else if (!(cls & WS)) throw new Http1ProtocolError("Invalid chunk extension");
        return;
      case State.TokenValue:
        if (cls & TCHAR) return;
        this.#afterValue(b, cls);
        return;
      case State.Quoted:
        if (b === 0x22) this.#state = State.AfterQuoted;
        else if (b === 0x5c) this.#state = State.QuotedPair;
        else if (!(cls & QDTEXT)) throw new Http1ProtocolError("Invalid chunk extension");
        return;
      case State.QuotedPair:
        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        if (!(cls & (FVCHAR | WS))) throw new Http1ProtocolError("Invalid chunk extension");
        this.#state = State.Quoted;
        return;
      case State.AfterQuoted:
        this.#afterValue(b, cls);
        return;
      case State.SizeLf:
        if (b !== LF) throw new Http1ProtocolError("Invalid chunk size line");
        this.#endSizeLine();
        return;
    }
  }

  /** After an ext-val: ";", BWS before one, or the line end. */
  #afterValue(b: number, cls: number): void {
    if (b === 0x3b) this.#state = State.NameStart;
    else if (cls & WS) this.#state = State.WsBeforeSemi;
    else this.#lineEnd(b, "Invalid chunk extension");
  }

  /** CRLF (or a bare LF) ending a chunk-size line; anything else is an error. */
  #lineEnd(b: number, message: string): void {
    if (b === CR) this.#state = State.SizeLf;
    else if (b === LF) this.#endSizeLine();
    else throw new Http1ProtocolError(message);
  }

  /** The CRLF after chunk data. */
  #dataEnd(state: State, b: number): void {
    if (state === State.DataCr && b === CR) this.#state = State.DataLf;
    else if (b === LF) this.#startSize();
    else throw new Http1ProtocolError("Missing CRLF after chunk data");
  }

  /** One byte of the trailer section: `*( field-line CRLF ) CRLF`. */
  #trailer(state: State, b: number): void {
    const cls = BYTE_CLASS[b];
    switch (state) {
      case State.TrailerStart:
        // A field name, or the blank line ending the message; obs-fold (SP/HTAB) is refused.
        if (cls & TCHAR) this.#state = State.TrailerName;
        else if (b === CR) this.#state = State.EndLf;
        else if (b === LF) this.#state = State.Done;
        else throw new Http1ProtocolError("Invalid trailer field");
        return;
      case State.TrailerName:
        if (b === 0x3a) this.#state = State.TrailerValue;
        else if (!(cls & TCHAR)) throw new Http1ProtocolError("Invalid trailer field");
        return;
      case State.TrailerValue:
        if (b === CR) this.#state = State.TrailerLf;
        else if (b === LF) this.#state = State.TrailerStart;
        else if (!(cls & (FVCHAR | WS))) throw new Http1ProtocolError("Invalid trailer field");
        return;
      case State.TrailerLf:
        if (b !== LF) throw new Http1ProtocolError("Invalid trailer field");
        this.#state = State.TrailerStart;
        return;
      case State.EndLf:
        if (b !== LF) throw new Http1ProtocolError("Invalid trailer section");
        this.#state = State.Done;
        return;
    }
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
    this.#significant = 0;
    this.#lineBytes = 0;
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
