/**
 * A small HTTP/1.1 client for one upstream origin, over `Deno.connect` / `Deno.connectTls`, with
 * a keep-alive connection pool. Built for a reverse proxy: bytes pass through untouched (no
 * decompression, unlike `fetch`), bodies stream both ways, redirects are never followed, and a
 * connection goes back to the pool only after a fully read response and a fully written request.
 *
 * Framing per RFC 9112 §6: request bodies are sent with the caller's Content-Length or chunked;
 * response bodies are delimited by Content-Length, chunked coding (framing stripped, payload bytes
 * untouched), or connection close; HEAD, 1xx, 204 and 304 responses carry no body.
 */
import {
  ChunkedDecoder,
  encodeChunk,
  findHeadEnd,
  Http1ProtocolError,
  LAST_CHUNK,
  parseResponseHead,
  type ResponseHead,
} from "./parse.ts";
import { encodeHead, Http1HeadError, isByteString } from "./head.ts";

export { Http1ProtocolError, type ResponseHead } from "./parse.ts";

/** Why a request failed before the response head arrived. */
export type Http1ErrorKind =
  /** Could not connect (refused, DNS, TLS handshake). */
  | "connect"
  /** No response head within the deadline. */
  | "timeout"
  /** The connection broke or closed before a complete response head. */
  | "closed"
  /** The upstream sent something that is not HTTP/1.1. */
  | "protocol"
  /** A chunked request body grew past the limit. */
  | "body_too_large"
  /** The caller aborted (the client went away, or its body broke off). */
  | "aborted";

/** A failed exchange; `message` never names the upstream host. */
export class Http1Error extends Error {
  readonly kind: Http1ErrorKind;
  constructor(kind: Http1ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "Http1Error";
    this.kind = kind;
  }
}

/** How an exchange whose response head arrived ended. */
export type Http1Outcome = "complete" | "client_abort" | "upstream_abort" | "body_too_large";

/** Reported once per exchange whose `request()` resolved. */
export interface Http1ExchangeResult {
  status: number;
  outcome: Http1Outcome;
  /** Request body bytes read from the caller's stream. */
  bytesSent: number;
  /** Response body (payload) bytes handed to the caller. */
  bytesReceived: number;
}

/** One request. The head is built by the caller; the client adds nothing to it. */
export interface Http1Request {
  /** Request line and header fields, each line ending in CRLF, plus the final CRLF. A byte string. */
  head: string;
  /** Method, to know HEAD responses have no body and which requests are safe to retry. */
  method: string;
  /** Body bytes already in hand (sent right after the head), or a stream, or null. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  /** Encode a stream body with the chunked coding (the head says `transfer-encoding: chunked`). */
  chunked: boolean;
  /** Chunked bodies larger than this are cut and the request aborted. */
  maxChunkedBodyBytes?: number;
  /** Deadline for the response head (connect + send + wait), in ms. Bodies are never cut by it. */
  headersTimeoutMs: number;
  /**
   * Aborts the exchange at any point: before the head (rejects) or while streaming. A function
   * is called only once the head takes longer than one deadline tick (at most 100 ms): fast
   * exchanges then never create the signal (for Deno.serve's `req.signal` that saves an op and
   * two listener calls per request; while streaming, a cancelled body stream is the abort).
   */
  signal?: AbortSignal | (() => AbortSignal) | null;
  /** Called once when the exchange is over, only if `request()` resolved. */
  onEnd?(result: Http1ExchangeResult): void;
}

/** The response head and a body that streams from the upstream connection. */
export interface Http1Response {
  readonly status: number;
  readonly head: ResponseHead;
  /**
   * Null when the response has no body; a Uint8Array when the whole body arrived with the head
   * (the common small JSON reply: lets Deno.serve answer without a JS stream); else a stream.
   */
  readonly body: Uint8Array | ReadableStream<Uint8Array> | null;
}

/** Options for {@linkcode Http1Client}. */
export interface Http1ClientOptions {
  hostname: string;
  port: number;
  tls?: boolean;
  /** Extra PEM root certificates for https upstreams (tests). */
  caCerts?: string[];
  /** Most idle connections kept. Default 256. */
  maxIdle?: number;
  /**
   * An idle connection older than this is not reused. Default 4 s: below the 5 s keep-alive
   * timeout of Node and uvicorn servers, so the gate closes first and never races their close.
   */
  idleTimeoutMs?: number;
  /** Largest response head accepted. Default 64 KiB. */
  maxHeadBytes?: number;
}

/**
 * First read size: a typical response head with a small JSON body fits. Grows while a large body
 * flows. Small because an idle event stream pins its read buffer in the pending read.
 */
const READ_SIZE = 8 * 1024;
/** Per-connection buffer for request heads (and small bodies sent with them). */
const SCRATCH_SIZE = 8 * 1024;
const utf8 = new TextEncoder();
const MAX_READ_SIZE = 256 * 1024;
/** Payloads up to this size are copied out so the read buffer can be reused. */
const COPY_BELOW = 4096;

/** Methods safe to send again after a reused connection died silently (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/**
 * Microtask turns a pooled connection waits before a request is written on it; see
 * {@linkcode Http1Client.release} for why. Deno settles `TcpConn.read()`'s promise one turn after
 * the read op's own promise (checked by the test "Http1Client discards a pooled connection whose
 * stray bytes arrive in the same event-loop turn as its reuse"), so our check below runs 2 turns
 * after the op result reaches JS: 8 leaves room for a deeper wrapper in a later Deno.
 */
const SETTLE_TURNS = 8;

async function settle(): Promise<void> {
  for (let i = 0; i < SETTLE_TURNS; i++) await undefined;
}

/** One upstream connection with its read state. */
class Connection {
  readonly conn: Deno.Conn;
  /** Came out of the pool (a dead keep-alive connection is then expected, not an error). */
  reused = false;
  idle = false;
  closed = false;
  /**
   * A request may be (or is being) written: bytes read from now on may be its response. False
   * while the connection is pooled, until the next request's write starts (Exchange.#arm).
   */
  armed = true;
  /** Bytes or EOF arrived while not armed: the connection was closed, nothing may read them. */
  stray = false;
  lastUsed = 0;
  /** Bytes read but not consumed yet (after a head, or past a body). */
  leftover: Uint8Array | null = null;
  #pending: Promise<Uint8Array | null> | null = null;
  #buf: Uint8Array | null = null;
  #readSize = READ_SIZE;
  #scratch: Uint8Array | null = null;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Next bytes from the connection (leftover first); null at EOF. The caller owns them. */
  next(): Promise<Uint8Array | null> {
    const left = this.leftover;
    if (left !== null) {
      this.leftover = null;
      return Promise.resolve(left);
    }
    const p = this.#pending ?? this.#read();
    this.#pending = null;
    return p;
  }

  /** Starts a read now (for an idle connection, so a close by the peer is noticed). */
  readAhead(): Promise<Uint8Array | null> {
    return this.#pending ??= this.#read();
  }

  /** Gives a buffer returned by next() back for reuse, once its bytes are no longer referenced. */
  recycle(bytes: Uint8Array): void {
    if (bytes.buffer.byteLength === this.#readSize) this.#buf = new Uint8Array(bytes.buffer);
  }

  /** Asks for a bigger read buffer (a large body is streaming). */
  grow(): void {
    if (this.#readSize < MAX_READ_SIZE) {
      this.#readSize *= 2;
      this.#buf = null;
    }
  }

  /** A streaming response may stay open for hours: no need to keep the write buffer. */
  dropScratch(): void {
    this.#scratch = null;
  }

  /** Back to the small buffer for an idle pooled connection. */
  shrink(): void {
    if (this.#readSize !== READ_SIZE) {
      this.#readSize = READ_SIZE;
      this.#buf = null;
    }
  }

  async #read(): Promise<Uint8Array | null> {
    const buf = this.#buf ?? new Uint8Array(this.#readSize);
    this.#buf = null;
    let n: number | null;
    try {
      n = await this.conn.read(buf);
    } catch (e) {
      this.#unsolicited();
      throw e;
    }
    // Checked in the first turn after the read resolved, so that a request that takes this
    // connection meanwhile sees it closed before its write starts (see Http1Client.release).
    this.#unsolicited();
    if (n === null) return null;
    return buf.subarray(0, n);
  }

  /** Whatever resolves a read while no request is armed is not a response: discard the conn. */
  #unsolicited(): void {
    if (this.armed) return;
    this.stray = true;
    this.close();
  }

  /**
   * The request head (a byte string) followed by `tail`, in one buffer for one write. ASCII heads
   * are encoded into a per-connection scratch buffer (free again once the previous write on this
   * connection completed, which precedes any new exchange on it): far cheaper than encode().
   */
  compose(head: string, tail: Uint8Array | null): Uint8Array {
    const tailLength = tail === null ? 0 : tail.length;
    if (head.length + tailLength <= SCRATCH_SIZE) {
      const scratch = this.#scratch ??= new Uint8Array(SCRATCH_SIZE);
      const { read, written } = utf8.encodeInto(head, scratch);
      // One byte per char means all ASCII (a byte string's chars 0x80-0xFF take two bytes in
      // UTF-8): no separate scan of the head. Otherwise the scratch bytes are just ignored.
      if (read === head.length && written === head.length) {
        if (tail !== null) scratch.set(tail, written);
        return scratch.subarray(0, written + tailLength);
      }
    }
    // Throws for a char above 0xFF: a head is never truncated into other bytes.
    const bytes = encodeHead(head);
    return tail === null ? bytes : concat(bytes, tail);
  }

  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(off ? bytes.subarray(off) : bytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed by the peer's reset
    }
  }
}

/**
 * An HTTP/1.1 client with a keep-alive pool for one origin. Not a general client: it sends what
 * the caller framed, and reports failures as {@linkcode Http1Error}.
 */
export class Http1Client {
  readonly #hostname: string;
  readonly #port: number;
  readonly #tls: boolean;
  readonly #caCerts?: string[];
  readonly #maxIdle: number;
  readonly #idleTimeoutMs: number;
  readonly maxHeadBytes: number;
  #idle: Connection[] = [];
  #closed = false;
  /**
   * Exchanges waiting for a response head, checked by one shared timer (see watch()): an
   * intrusive doubly-linked list. With a Set here, finished exchanges (and the request objects
   * behind them) survived young-generation GCs until the next full one: measured under load at
   * about 3 MB promoted per scavenge and 10-20 ms per scavenge; with the list, about 1 ms.
   */
  #waitHead: Exchange | null = null;
  #waitCount = 0;
  #tick: ReturnType<typeof setTimeout> | undefined;
  #tickMs = 1000;
  /** Exchanges whose response body is streaming (see {@linkcode Http1Client.cutStreams}). */
  #streaming = new Set<Exchange>();

  constructor(options: Http1ClientOptions) {
    this.#hostname = options.hostname;
    this.#port = options.port;
    this.#tls = options.tls ?? false;
    this.#caCerts = options.caCerts;
    this.#maxIdle = options.maxIdle ?? 256;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 4000;
    this.maxHeadBytes = options.maxHeadBytes ?? 64 * 1024;
  }

  /** Idle pooled connections (for tests and metrics). */
  get idleCount(): number {
    return this.#idle.length;
  }

  /**
   * Sends one request. Resolves with the response head once it arrived (1xx interim responses
   * skipped); the body then streams from the connection.
   * @throws {Http1Error} when no response head was obtained.
   * @throws {Http1HeadError} when the head has a char above 0xFF (nothing is sent).
   */
  request(req: Http1Request): Promise<Http1Response> {
    // Checked before any connection is taken: a head that is not a byte string is refused whole
    // (Http1HeadError), never truncated, and never half-sent.
    if (!isByteString(req.head)) {
      return Promise.reject(new Http1HeadError("value", "Head has a character above 0xFF"));
    }
    return new Exchange(this, req).run();
  }

  /** Responses whose body is still streaming from the upstream. */
  get streamingCount(): number {
    return this.#streaming.size;
  }

  /**
   * Ends every response body still streaming: each body stream errors with `reason` (so its
   * reader, e.g. Deno.serve, ends the client's response as broken) and the exchange ends as
   * `client_abort` with its upstream connection closed. For a shutdown drain that timed out.
   * @returns how many streams were cut.
   */
  cutStreams(reason: Error): number {
    const open = [...this.#streaming];
    for (const ex of open) ex.cut(reason);
    return open.length;
  }

  /** Tracks an exchange while its response body streams. */
  streamStarted(ex: Exchange): void {
    this.#streaming.add(ex);
  }

  streamEnded(ex: Exchange): void {
    this.#streaming.delete(ex);
  }

  /** Closes idle connections; connections in use close when their exchange ends. */
  close(): void {
    this.#closed = true;
    for (const c of this.#idle.splice(0)) c.close();
    if (this.#waitCount === 0) this.#stopTick();
  }

  /**
   * Head deadlines share one coarse timer instead of a timer per request (a timer costs more
   * than the rest of a small exchange): an exchange expires between its deadline and one tick
   * (a tenth of the timeout, 5 to 100 ms) after it.
   */
  watch(ex: Exchange, timeoutMs: number): void {
    const tick = Math.min(Math.max(Math.floor(timeoutMs / 10), 5), 100);
    if (tick < this.#tickMs) {
      this.#tickMs = tick;
      this.#stopTick();
    }
    if (ex.waiting) return;
    ex.waiting = true;
    ex.waitNext = this.#waitHead;
    if (this.#waitHead !== null) this.#waitHead.waitPrev = ex;
    this.#waitHead = ex;
    this.#waitCount++;
    this.#tick ??= setTimeout(this.#onTick, this.#tickMs);
  }

  unwatch(ex: Exchange): void {
    if (!ex.waiting) return;
    ex.waiting = false;
    if (ex.waitPrev !== null) ex.waitPrev.waitNext = ex.waitNext;
    else this.#waitHead = ex.waitNext;
    if (ex.waitNext !== null) ex.waitNext.waitPrev = ex.waitPrev;
    ex.waitPrev = null;
    ex.waitNext = null;
    this.#waitCount--;
  }

  #onTick = (): void => {
    this.#tick = undefined;
    const now = Date.now();
    for (let ex = this.#waitHead; ex !== null;) {
      // expire() and tick() may unwatch exchanges: take the successor first.
      const next = ex.waitNext;
      if (ex.deadline <= now) {
        this.unwatch(ex);
        ex.expire();
      } else {
        ex.tick();
      }
      ex = next;
    }
    // Keeps ticking while heads are awaited; an idle client holds no timer.
    if (this.#waitCount > 0) this.#tick = setTimeout(this.#onTick, this.#tickMs);
  };

  #stopTick(): void {
    if (this.#tick !== undefined) {
      clearTimeout(this.#tick);
      this.#tick = undefined;
    }
  }

  /** A pooled connection that is still fresh, or null. */
  take(): Connection | null {
    const now = Date.now();
    let c: Connection | undefined;
    while ((c = this.#idle.pop()) !== undefined) {
      c.idle = false;
      if (!c.closed && now - c.lastUsed <= this.#idleTimeoutMs) return c;
      c.close();
    }
    return null;
  }

  async connect(signal: AbortSignal): Promise<Connection> {
    const opts = { hostname: this.#hostname, port: this.#port, signal };
    if (!this.#tls) return new Connection(await Deno.connect(opts));
    const conn = await Deno.connectTls({ ...opts, caCerts: this.#caCerts });
    try {
      // Handshake now, so certificate problems count as connect failures.
      await conn.handshake();
    } catch (e) {
      conn.close();
      throw e;
    }
    return new Connection(conn);
  }

  /**
   * Returns a connection after a complete exchange.
   *
   * What a pooled connection guarantees (the "unsolicited response on idle channel" rule of Go's
   * transport, in Deno's terms): bytes, EOF or an error whose read result reached JS (the read
   * op's promise settled) before the next request's write is started are never handed to that
   * request: the connection is closed and the request goes to another connection, nothing of it
   * written. How: an idle connection keeps a read pending and is disarmed (`armed = false`);
   * whatever that read delivers while disarmed closes the connection (Connection.#unsolicited),
   * in the second microtask turn after the op result. A request that takes a pooled connection
   * waits SETTLE_TURNS microtask turns before its first write and checks the connection is
   * still open, and only then arms it (Exchange.#arm). Op results reach JS in a batch before
   * the microtasks run, and microtasks run in order, so a read that resolved in the same
   * event-loop turn as the take (the race that let stray bytes become another client's
   * response) is seen before the write; later turns saw it anyway. Not guaranteed, and not
   * knowable from userland (nor by Go): bytes the kernel or Deno's IO driver holds but has not
   * delivered to JS when the write starts; the peer cannot answer a request it has not received,
   * but such bytes are indistinguishable from a fast response. Worse, a peer's kernel holds a
   * small write back while its previous segment is unacknowledged (Nagle), and our ACK rides on
   * the next request: bytes an upstream writes separately after a response usually arrive just
   * after the next request on that connection. So a connection is also never reused with bytes
   * left over after a complete response, nor after a response that carries no body by status or
   * method (HEAD, 204, 304): a body an upstream sends anyway is what lands there (see
   * Exchange.#reusable).
   * Cost: SETTLE_TURNS awaits per reused request, about 0.25 µs (measured in Deno 2.9).
   */
  release(c: Connection): void {
    if (this.#closed || c.closed || c.leftover !== null) return c.close();
    c.reused = true;
    c.idle = true;
    c.armed = false;
    c.lastUsed = Date.now();
    c.shrink();
    // Keep a read pending: a close (or stray bytes) from the peer while idle removes the
    // connection at once (Connection.#unsolicited closes it, #drop unlists it) instead of
    // failing the next request sent on it.
    c.readAhead().then(
      () => this.#drop(c),
      () => this.#drop(c),
    );
    this.#idle.push(c);
    if (this.#idle.length > this.#maxIdle) this.#idle.shift()!.close();
    // take() pops the freshest; connections left stale at the bottom are closed here.
    while (c.lastUsed - this.#idle[0].lastUsed > this.#idleTimeoutMs) {
      const stale = this.#idle.shift()!;
      stale.idle = false;
      stale.close();
    }
  }

  #drop(c: Connection): void {
    if (!c.idle) return;
    c.idle = false;
    const i = this.#idle.indexOf(c);
    if (i !== -1) this.#idle.splice(i, 1);
    c.close();
  }
}

/**
 * Why an exchange was cut short from outside its own reads and writes: the head deadline, the
 * caller's abort (its signal, or its body stream broke off), or the chunked body limit. Mostly
 * set once; when two happen before the failure is reported, the stronger one is kept
 * (body_too_large over aborted over timeout, see END_RANK), so the report does not depend on
 * which of two racing events ran first.
 */
type EndReason = "timeout" | "aborted" | "body_too_large";

const END_RANK: Readonly<Record<EndReason, number>> = {
  timeout: 1,
  aborted: 2,
  body_too_large: 3,
};

/**
 * The response side. Per attempt until the head arrived:
 * - "wait": no response byte on this attempt's connection yet (connecting, writing, waiting);
 * - "head": response bytes arrived (a 1xx head counts): the attempt is never retried.
 * Then, once:
 * - "body": `request()` resolved; the body streams (or its end is reported in a microtask);
 * - "done": over: the connection was released or closed (and onEnd called if it resolved).
 */
type ResponsePhase = "wait" | "head" | "body" | "done";

/**
 * The request writer of the current attempt. Only moves forward; a writer that fails stays in
 * the phase where it stopped (whether it still runs is {@linkcode Exchange}'s `#writer`).
 * - "idle": nothing handed to the socket (arming a pooled connection, or waiting for the
 *   caller's first body chunk);
 * - "head": the first write (the head, with the whole body or its first chunk) is in flight,
 *   or failed: nothing is known to have reached the upstream;
 * - "body": the first write completed; what remains of a streamed body follows;
 * - "done": the whole request was written.
 */
type WritePhase = "idle" | "head" | "body" | "done";

/** One request/response exchange, possibly retried once on a fresh connection. */
class Exchange {
  readonly #client: Http1Client;
  readonly #req: Http1Request;
  #phase: ResponsePhase = "wait";
  #end: EndReason | null = null;
  #conn: Connection | null = null;
  /** Date.now() by which the response head must have arrived. */
  deadline = 0;
  /** Links in the client's list of exchanges waiting for a head (see Http1Client.watch). */
  waiting = false;
  waitPrev: Exchange | null = null;
  waitNext: Exchange | null = null;
  #connectAbort: AbortController | null = null;
  #onAbort: (() => void) | null = null;
  #signal: AbortSignal | null = null;
  #lazySignal: (() => AbortSignal) | null = null;
  // The caller's request body, kept across a retry.
  #reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  /** Body bytes read from the caller but not known to be written (replayed on retry). */
  #unsent: Uint8Array | null = null;
  /** The caller's body was read to its end (or was not a stream): nothing to cancel. */
  #bodyRead = false;
  #bytesSent = 0;
  // The request writer of the current attempt.
  #writePhase: WritePhase = "idle";
  /** The writer, until it returned (it may hold the body reader while it runs). */
  #writer: Promise<void> | null = null;
  /** The first write, once started. */
  #firstSend: Promise<void> | null = null;
  // The response.
  #head: ResponseHead | null = null;
  #bytesReceived = 0;
  #controller: ReadableStreamDefaultController<Uint8Array> | null = null;

  constructor(client: Http1Client, req: Http1Request) {
    this.#client = client;
    this.#req = req;
  }

  async run(): Promise<Http1Response> {
    const req = this.#req;
    const signal = req.signal;
    if (typeof signal === "function") {
      this.#lazySignal = signal;
    } else if (signal) {
      if (signal.aborted) throw new Http1Error("aborted", "Request aborted by the caller");
      this.#listen(signal);
    }
    this.deadline = Date.now() + req.headersTimeoutMs;
    this.#client.watch(this, req.headersTimeoutMs);
    try {
      for (let attempt = 0;; attempt++) {
        const conn = this.#client.take() ?? await this.#connect();
        this.#startAttempt(conn);
        try {
          const head = await this.#readHead(conn);
          this.#client.unwatch(this);
          return this.#respond(conn, head);
        } catch (e) {
          if (attempt === 0 && this.#lostIdle(conn, e)) {
            // Closing first makes a write still in flight settle, so the write phase is exact.
            conn.close();
            const first = this.#firstSend;
            await first?.catch(() => {});
            // The writer settles promptly unless it waits on the caller's body stream (first
            // chunk not read yet, or sent and reading on): never retried then, see #mayRetry.
            const streaming = this.#req.body instanceof ReadableStream;
            if (!streaming || (first !== null && this.#writePhase === "head")) await this.#writer;
            if (this.#mayRetry()) continue;
          }
          throw e;
        }
      }
    } catch (e) {
      this.#client.unwatch(this);
      this.#phase = "done";
      this.#cleanup();
      this.#conn?.close();
      throw this.#failure(e);
    }
  }

  /** Resets the per-attempt state and starts writing the request on `conn`. */
  #startAttempt(conn: Connection): void {
    this.#conn = conn;
    this.#phase = "wait";
    this.#writePhase = "idle";
    this.#firstSend = null;
    const writer: Promise<void> = this.#write(conn).finally(() => {
      if (this.#writer === writer) this.#writer = null;
    });
    this.#writer = writer;
  }

  /**
   * The attempt failed the way a pooled connection the upstream closed while idle fails: lost
   * before any response byte. The request may then be sent again on a fresh connection, if
   * #mayRetry agrees once the writer settled.
   */
  #lostIdle(conn: Connection, e: unknown): boolean {
    return conn.reused && this.#phase === "wait" && isConnectionLoss(e);
  }

  /**
   * Send again only when nothing can be processed twice (RFC 9110 §9.2.2). Nothing reached the
   * socket: any request (body bytes read so far are kept in #unsent). Otherwise only an
   * idempotent request without a body; a POST whose body was sent is never repeated.
   */
  #mayRetry(): boolean {
    if (this.#end !== null) return false;
    // A writer still waiting for the caller's body would race a new one for the same reader.
    if (this.#writer !== null) return false;
    const sent = this.#writePhase === "body" || this.#writePhase === "done";
    return !sent || (this.#req.body === null && IDEMPOTENT.has(this.#req.method));
  }

  /** Whether the response head is still awaited (connect, write or read). */
  #beforeResponse(): boolean {
    return this.#phase === "wait" || this.#phase === "head";
  }

  /** Records why the exchange is cut short; a stronger reason replaces a weaker one. */
  #endWith(reason: EndReason): void {
    const end = this.#end;
    if (end === null || END_RANK[reason] > END_RANK[end]) this.#end = reason;
  }

  /** A deadline tick passed while waiting for the head: time to watch the caller's signal. */
  tick(): void {
    const get = this.#lazySignal;
    if (get === null || !this.#beforeResponse()) return;
    this.#lazySignal = null;
    const signal = get();
    if (signal.aborted) this.#abort();
    else this.#listen(signal);
  }

  #listen(signal: AbortSignal): void {
    this.#signal = signal;
    this.#onAbort = () => this.#abort();
    signal.addEventListener("abort", this.#onAbort);
  }

  /** The head deadline passed (called by the client's tick). */
  expire(): void {
    this.#endWith("timeout");
    this.#interrupt();
  }

  #abort(): void {
    if (this.#phase === "done") return;
    this.#endWith("aborted");
    if (this.#phase === "body") {
      this.#fail("client_abort", null);
    } else {
      this.#interrupt();
    }
  }

  /** Stops whatever the head phase is waiting on: connect, write or read. */
  #interrupt(): void {
    this.#connectAbort?.abort();
    this.#conn?.close();
  }

  async #connect(): Promise<Connection> {
    this.#connectAbort = new AbortController();
    try {
      return await this.#client.connect(this.#connectAbort.signal);
    } catch (e) {
      if (this.#end !== null) throw e;
      throw new Http1Error("connect", `Connect failed: ${errorText(e)}`, { cause: e });
    } finally {
      this.#connectAbort = null;
    }
  }

  /**
   * Before the first write on a pooled connection: lets any read result already in JS reach
   * Connection.#unsolicited, then arms the connection in the same turn as the write starts
   * (see Http1Client.release).
   */
  async #arm(conn: Connection): Promise<void> {
    await settle();
    if (conn.closed) throw new Http1Error("closed", "Connection closed while idle");
    conn.armed = true;
  }

  #failure(e: unknown): Http1Error {
    switch (this.#end) {
      case "body_too_large":
        return new Http1Error("body_too_large", "Request body too large");
      case "aborted":
        return new Http1Error("aborted", "Request aborted by the caller");
      case "timeout":
        return new Http1Error("timeout", "No response headers before the deadline");
    }
    if (e instanceof Http1Error) return e;
    if (e instanceof Http1ProtocolError) {
      return new Http1Error("protocol", `Invalid response: ${e.message}`, { cause: e });
    }
    return new Http1Error("closed", `Connection failed: ${errorText(e)}`, { cause: e });
  }

  // ---- request side ----

  /** The first write of an attempt: moves the write phase from "idle" through "head" to "body". */
  async #send(conn: Connection, bytes: Uint8Array): Promise<void> {
    if (!conn.armed) await this.#arm(conn);
    const p = conn.write(bytes);
    this.#firstSend = p;
    this.#writePhase = "head";
    await p;
    this.#writePhase = "body";
  }

  /**
   * Writes the request. Never throws: a failed write ends the request side, and the response
   * side decides what it means (an upstream may answer early, e.g. 413, and close its read side).
   */
  async #write(conn: Connection): Promise<void> {
    const req = this.#req;
    try {
      const body = req.body;
      if (body === null || body instanceof Uint8Array) {
        // The whole request in one write.
        this.#bodyRead = true;
        await this.#send(conn, this.#compose(conn, body));
        this.#writePhase = "done";
        return;
      }
      // Coalesce the head with the first body chunk: one write for a typical small request.
      let first = this.#unsent;
      if (first === null) {
        this.#reader ??= body.getReader();
        first = await this.#readBody();
        if (first === null) {
          await this.#send(conn, conn.compose(req.head, req.chunked ? LAST_CHUNK : null));
          this.#writePhase = "done";
          return;
        }
        this.#unsent = first;
      }
      await this.#send(conn, conn.compose(req.head, req.chunked ? encodeChunk(first) : first));
      this.#unsent = null;
      for (;;) {
        const chunk = await this.#readBody();
        if (chunk === null) break;
        if (conn.closed) return;
        await conn.write(req.chunked ? encodeChunk(chunk) : chunk);
      }
      if (req.chunked) await conn.write(LAST_CHUNK);
      this.#writePhase = "done";
    } catch {
      // See above: the writer's phase tells how far it got.
    }
  }

  /** The head with a body in hand (framed if chunked), or with none. */
  #compose(conn: Connection, body: Uint8Array | null): Uint8Array {
    const req = this.#req;
    if (body === null) return conn.compose(req.head, null);
    this.#bytesSent = body.length;
    return conn.compose(req.head, req.chunked ? frame(body) : body);
  }

  /** Next request body chunk, or null at its end. Enforces the chunked body limit. */
  async #readBody(): Promise<Uint8Array | null> {
    let r: ReadableStreamReadResult<Uint8Array>;
    try {
      r = await this.#reader!.read();
    } catch (e) {
      // The client's body broke off (disconnect, bad framing): abort the upstream request.
      this.#endWith("aborted");
      this.#abortExchange("client_abort");
      throw e;
    }
    if (r.done) {
      this.#bodyRead = true;
      return null;
    }
    this.#bytesSent += r.value.length;
    const max = this.#req.maxChunkedBodyBytes;
    if (max !== undefined && this.#req.chunked && this.#bytesSent > max) {
      this.#endWith("body_too_large");
      this.#reader!.cancel().catch(() => {});
      this.#abortExchange("body_too_large");
      throw new Http1Error("body_too_large", "Request body too large");
    }
    return r.value;
  }

  /** The request side failed in a way that ends the whole exchange. */
  #abortExchange(outcome: Http1Outcome): void {
    if (this.#phase === "body") {
      this.#fail(outcome, null);
    } else if (this.#beforeResponse()) {
      this.#interrupt();
    }
  }

  // ---- response side ----

  async #readHead(conn: Connection): Promise<ResponseHead> {
    const max = this.#client.maxHeadBytes;
    let acc: Uint8Array | null = null;
    for (;;) {
      const chunk = await conn.next();
      if (conn.stray) {
        // Bytes (or EOF) the connection received while idle: never a response, and the request
        // was not written (#arm saw the connection closed), so it may be retried.
        throw new Http1Error("closed", "Unsolicited bytes on an idle connection");
      }
      if (chunk === null) {
        throw new Http1Error("closed", "Connection closed before a response");
      }
      this.#phase = "head";
      const from = acc === null ? 0 : acc.length;
      const data: Uint8Array = acc === null ? chunk : concat(acc, chunk);
      const end = findHeadEnd(data, from);
      if (end === -1) {
        if (data.length > max) throw new Http1ProtocolError("Response head too large");
        // Owned copy: the read buffer may be reused.
        acc = acc === null ? data.slice() : data;
        continue;
      }
      if (end > max) throw new Http1ProtocolError("Response head too large");
      const head = parseResponseHead(data.subarray(0, end));
      const rest = end < data.length ? data.subarray(end) : null;
      if (head.status >= 100 && head.status < 200) {
        // 101 would switch protocols; the gate never asks for it (Upgrade is hop-by-hop).
        if (head.status === 101) throw new Http1ProtocolError("Unexpected 101 response");
        acc = rest === null ? null : rest.slice();
        if (acc !== null) {
          const again = findHeadEnd(acc);
          if (again !== -1) {
            conn.leftover = acc;
            acc = null;
          }
        }
        continue;
      }
      if (head.status < 200 || head.status > 599) {
        throw new Http1ProtocolError("Invalid status code");
      }
      conn.leftover = rest;
      // Nothing points into the read buffer unless the leftover is a view of it.
      if (rest === null || data !== chunk) conn.recycle(chunk);
      return head;
    }
  }

  #respond(conn: Connection, head: ResponseHead): Http1Response {
    this.#head = head;
    const status = head.status;
    if (hasNoBody(this.#req.method, status)) {
      // (Never reused: see #reusable.)
      this.#finishSoon("complete");
      return { status, head, body: null };
    }
    if (head.contentLength === 0) {
      this.#finishSoon("complete");
      return { status, head, body: new Uint8Array(0) };
    }
    // Fast path: the whole body came with the head.
    const rest = conn.leftover;
    if (rest !== null && !head.untilClose && (head.chunked || head.contentLength !== -1)) {
      let whole: Uint8Array | null = null;
      if (!head.chunked && rest.length >= head.contentLength) {
        whole = rest.slice(0, head.contentLength);
        conn.leftover = rest.length > head.contentLength ? rest.subarray(head.contentLength) : null;
      } else if (head.chunked) {
        const decoder = new ChunkedDecoder();
        const parts: Uint8Array[] = [];
        const used = decoder.push(rest, parts);
        if (decoder.done) {
          whole = join(parts);
          conn.leftover = used < rest.length ? rest.subarray(used) : null;
        }
      }
      if (whole !== null) {
        if (conn.leftover === null) conn.recycle(rest);
        this.#bytesReceived = whole.length;
        this.#finishSoon("complete");
        return { status, head, body: whole };
      }
    }
    this.#phase = "body";
    conn.dropScratch();
    const body = this.#bodyStream(conn, head);
    this.#client.streamStarted(this);
    return { status, head, body };
  }

  #bodyStream(conn: Connection, head: ResponseHead): ReadableStream<Uint8Array> {
    const decoder = head.chunked ? new ChunkedDecoder() : null;
    let remaining = head.contentLength; // -1: until close
    const parts: Uint8Array[] = [];
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: async (controller) => {
        for (;;) {
          let chunk: Uint8Array | null;
          try {
            chunk = await conn.next();
          } catch (e) {
            return this.#fail("upstream_abort", e);
          }
          if (this.#phase !== "body") return;
          if (chunk === null) {
            if (decoder === null && remaining === -1) return this.#finish("complete");
            return this.#fail("upstream_abort", new Error("Upstream closed mid-body"));
          }
          // Bigger reads while a large body flows; back to small ones for a trickle (an idle
          // event stream then pins only a small buffer in its pending read).
          if (chunk.length === chunk.buffer.byteLength) conn.grow();
          else if (chunk.length < READ_SIZE) conn.shrink();
          let payload: Uint8Array | null;
          let done = false;
          if (decoder !== null) {
            let used: number;
            try {
              used = decoder.push(chunk, parts);
            } catch (e) {
              return this.#fail("upstream_abort", e);
            }
            payload = parts.length === 0 ? null : parts.length === 1 ? parts[0] : join(parts);
            parts.length = 0;
            done = decoder.done;
            if (done && used < chunk.length) conn.leftover = chunk.subarray(used);
          } else if (remaining === -1) {
            payload = chunk;
          } else {
            payload = chunk.length <= remaining ? chunk : chunk.subarray(0, remaining);
            if (payload !== chunk) conn.leftover = chunk.subarray(remaining);
            remaining -= payload.length;
            done = remaining === 0;
          }
          if (payload !== null && payload.length > 0) {
            if (payload.buffer !== chunk.buffer) {
              if (conn.leftover === null) conn.recycle(chunk);
            } else if (payload.length < COPY_BELOW) {
              payload = payload.slice();
              if (conn.leftover === null) conn.recycle(chunk);
            }
            this.#bytesReceived += payload.length;
            controller.enqueue(payload);
          }
          if (done) return this.#finish("complete");
          if (payload !== null && payload.length > 0) return;
        }
      },
      cancel: () => {
        // The client went away (Deno.serve cancels the body): abort the upstream request.
        if (this.#phase === "body") this.#finish("client_abort");
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Ends a streaming body early. An upstream failure errors the stream so the client sees a
   * broken response, never a short one that looks complete; for a client that went away there is
   * nobody to tell, so the stream just closes (Deno.serve reports stream errors to its onError).
   */
  #fail(outcome: Http1Outcome, error: unknown): void {
    if (this.#phase !== "body") return;
    const c = this.#controller;
    this.#finish(outcome);
    try {
      if (outcome === "client_abort") c?.close();
      else c?.error(error instanceof Http1Error ? error : streamError(outcome, error));
    } catch {
      // already closed, errored or cancelled
    }
  }

  /** Ends a streaming body with `reason` (a shutdown drain); see Http1Client.cutStreams. */
  cut(reason: Error): void {
    if (this.#phase !== "body") return;
    const c = this.#controller;
    this.#finish("client_abort");
    try {
      c?.error(reason);
    } catch {
      // already closed, errored or cancelled
    }
  }

  /** For responses complete at once: report after `request()` has resolved. */
  #finishSoon(outcome: Http1Outcome): void {
    this.#phase = "body";
    queueMicrotask(() => this.#finish(outcome));
  }

  #finish(outcome: Http1Outcome): void {
    if (this.#phase === "done") return;
    this.#phase = "done";
    if (this.#controller !== null) this.#client.streamEnded(this);
    const conn = this.#conn!;
    const head = this.#head!;
    if (outcome === "complete") {
      try {
        this.#controller?.close();
      } catch {
        // cancelled meanwhile
      }
    }
    this.#cleanup();
    if (this.#reusable(outcome, conn, head)) this.#client.release(conn);
    else conn.close();
    this.#req.onEnd?.({
      status: head.status,
      outcome,
      bytesSent: this.#bytesSent,
      bytesReceived: this.#bytesReceived,
    });
  }

  /**
   * Whether the connection may carry another request after this exchange: a complete response
   * the upstream did not mark `connection: close`, and
   * - a response that has a body: one the upstream sends anyway after a HEAD, 204 or 304 cannot
   *   be told from stray bytes (see Http1Client.release);
   * - a request fully written before its response ended: an upstream that answered early may not
   *   read the rest of the body, and then parse it as the next request on the connection (the
   *   Expect-based desync): closing costs one connection, reuse could cost another user's
   *   exchange.
   */
  #reusable(outcome: Http1Outcome, conn: Connection, head: ResponseHead): boolean {
    return outcome === "complete" && !head.close && !conn.closed &&
      !hasNoBody(this.#req.method, head.status) && this.#writePhase === "done";
  }

  #cleanup(): void {
    if (this.#onAbort !== null) {
      this.#signal!.removeEventListener("abort", this.#onAbort);
      this.#onAbort = null;
    }
    if (!this.#bodyRead && this.#reader !== null) {
      this.#reader.cancel().catch(() => {});
    }
  }
}

/** A response to HEAD, a 204 or a 304 has no body (RFC 9112 §6.3). */
function hasNoBody(method: string, status: number): boolean {
  return method === "HEAD" || status === 204 || status === 304;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function join(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0].slice();
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function frame(body: Uint8Array): Uint8Array {
  return body.length === 0 ? LAST_CHUNK : concat(encodeChunk(body), LAST_CHUNK);
}

function streamError(outcome: Http1Outcome, cause: unknown): Http1Error {
  return outcome === "body_too_large"
    ? new Http1Error("body_too_large", "Request body too large")
    : new Http1Error("closed", `Upstream response broke off: ${errorText(cause)}`, { cause });
}

/** The peer closed or reset the connection (what a stale keep-alive connection looks like). */
function isConnectionLoss(e: unknown): boolean {
  return (e instanceof Http1Error && e.kind === "closed") ||
    e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe ||
    e instanceof Deno.errors.ConnectionAborted || e instanceof Deno.errors.UnexpectedEof;
}

function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}
