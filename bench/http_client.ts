/**
 * A minimal HTTP/1.1 client over `Deno.connect` for the bench: one request at a time per
 * connection (no pipelining), keep-alive or not, content-length, chunked and read-to-EOF
 * framing, and a body callback so SSE events are seen as they arrive. It exists because `fetch`
 * would add its own pool and decoding cost to every sample, on both sides of the comparison.
 */

const CR = 13;
const LF = 10;
const decoder = new TextDecoder("latin1");

/** What {@linkcode RawConnection.readResponse} learnt about one response. */
export interface ResponseInfo {
  readonly status: number;
  /** False when the server said `Connection: close`, the body ran to EOF, or reading stopped early. */
  readonly keepAlive: boolean;
}

/** Options for {@linkcode RawConnection.readResponse}. */
export interface ReadOptions {
  /** The request was HEAD: the response has no body whatever its headers say. */
  head?: boolean;
  /** Receives body bytes as they arrive (decoded from chunked); return true to stop reading. */
  onBody?: (bytes: Uint8Array) => boolean | void;
}

/** One client connection with its own read buffer. */
export class RawConnection {
  readonly #conn: Deno.TcpConn;
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  /** Connects to `hostname:port` with Nagle off (requests are written in one piece). */
  static async open(hostname: string, port: number): Promise<RawConnection> {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    return new RawConnection(conn);
  }

  /** Writes all of `bytes`. */
  async send(bytes: Uint8Array): Promise<void> {
    let n = 0;
    while (n < bytes.length) n += await this.#conn.write(n === 0 ? bytes : bytes.subarray(n));
  }

  /** Closes the socket; safe to call twice. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Reads one complete response (or up to where `onBody` asked to stop). */
  async readResponse(options: ReadOptions = {}): Promise<ResponseInfo> {
    let headEnd = -1;
    // Scan position relative to #start, which #fill may move when it compacts the buffer.
    let scanned = 0;
    for (;;) {
      headEnd = findHeadEnd(this.#buf, this.#start + scanned, this.#end);
      if (headEnd >= 0) break;
      scanned = Math.max(0, this.#end - this.#start - 3);
      if (!await this.#fill()) throw new Error("Connection closed before the response head");
    }
    const head = decoder.decode(this.#buf.subarray(this.#start, headEnd));
    this.#start = headEnd + 4;
    const status = Number(head.slice(9, 12));
    let contentLength = -1;
    let chunked = false;
    let close = head.startsWith("HTTP/1.0");
    for (const line of head.split("\r\n").slice(1)) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      if (name === "content-length") contentLength = Number(line.slice(colon + 1).trim());
      else if (name === "transfer-encoding") chunked = /chunked/i.test(line);
      else if (name === "connection") close = /close/i.test(line);
    }
    const noBody = options.head || status === 204 || status === 304 ||
      (status >= 100 && status < 200);
    if (noBody) return { status, keepAlive: !close };
    const onBody = options.onBody;
    if (chunked) {
      const done = await this.#readChunked(onBody);
      return { status, keepAlive: done && !close };
    }
    if (contentLength >= 0) {
      const done = await this.#readLength(contentLength, onBody);
      return { status, keepAlive: done && !close };
    }
    await this.#readToEof(onBody);
    return { status, keepAlive: false };
  }

  /** Reads more bytes into the buffer, compacting or growing it first; false on EOF. */
  async #fill(): Promise<boolean> {
    if (this.#start === this.#end) {
      this.#start = 0;
      this.#end = 0;
    } else if (this.#end === this.#buf.length) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      } else {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /** Consumes `length` body bytes; false when `onBody` stopped early. */
  async #readLength(length: number, onBody?: ReadOptions["onBody"]): Promise<boolean> {
    let left = length;
    while (left > 0) {
      if (this.#start === this.#end && !await this.#fill()) {
        throw new Error("Connection closed inside the response body");
      }
      const take = Math.min(left, this.#end - this.#start);
      const piece = this.#buf.subarray(this.#start, this.#start + take);
      this.#start += take;
      left -= take;
      if (onBody?.(piece)) return false;
    }
    return true;
  }

  async #readToEof(onBody?: ReadOptions["onBody"]): Promise<void> {
    for (;;) {
      if (this.#start < this.#end) {
        const piece = this.#buf.subarray(this.#start, this.#end);
        this.#start = this.#end;
        if (onBody?.(piece)) return;
      }
      if (!await this.#fill()) return;
    }
  }

  /** Reads one CRLF-terminated line (without the CRLF). */
  async #readLine(): Promise<string> {
    let from = this.#start;
    for (;;) {
      for (let i = from; i + 1 < this.#end; i++) {
        if (this.#buf[i] === CR && this.#buf[i + 1] === LF) {
          const line = decoder.decode(this.#buf.subarray(this.#start, i));
          this.#start = i + 2;
          return line;
        }
      }
      const offset = Math.max(0, this.#end - 1 - this.#start);
      if (!await this.#fill()) throw new Error("Connection closed inside a chunked body");
      from = this.#start + offset;
    }
  }

  /** RFC 9112 §7.1 chunked framing; false when `onBody` stopped early. */
  async #readChunked(onBody?: ReadOptions["onBody"]): Promise<boolean> {
    for (;;) {
      const sizeLine = await this.#readLine();
      const semi = sizeLine.indexOf(";");
      const size = parseInt(semi < 0 ? sizeLine : sizeLine.slice(0, semi), 16);
      if (!Number.isFinite(size)) throw new Error(`Invalid chunk size "${sizeLine}"`);
      if (size === 0) {
        // Trailer section ends with an empty line.
        while ((await this.#readLine()) !== "");
        return true;
      }
      if (!await this.#readLength(size, onBody)) return false;
      if ((await this.#readLine()) !== "") throw new Error("Missing CRLF after a chunk");
    }
  }
}

function findHeadEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 3 < end; i++) {
    if (buf[i] === CR && buf[i + 1] === LF && buf[i + 2] === CR && buf[i + 3] === LF) return i;
  }
  return -1;
}

/** Options for {@linkcode buildRequest}. */
export interface RequestSpec {
  method: string;
  path: string;
  /** `host:port` for the Host header. */
  host: string;
  headers?: Record<string, string>;
  body?: string;
}

/** Serialises one HTTP/1.1 request once, so the load loop only writes bytes. */
export function buildRequest(spec: RequestSpec): Uint8Array {
  const body = spec.body ?? "";
  let head = `${spec.method} ${spec.path} HTTP/1.1\r\nHost: ${spec.host}\r\n`;
  for (const [name, value] of Object.entries(spec.headers ?? {})) head += `${name}: ${value}\r\n`;
  if (body !== "" || spec.method === "POST" || spec.method === "PUT") {
    head += `Content-Length: ${new TextEncoder().encode(body).length}\r\n`;
  }
  return new TextEncoder().encode(`${head}\r\n${body}`);
}

/** Counts SSE event terminators (a blank line, `\n\n`) across body pieces. */
export class SseCounter {
  #prev = 0;
  /** Events seen so far. */
  events = 0;

  /** Feeds one body piece; returns the new event count. */
  feed(bytes: Uint8Array): number {
    let prev = this.#prev;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === LF && prev === LF) this.events++;
      if (b !== CR) prev = b;
    }
    this.#prev = prev;
    return this.events;
  }
}
