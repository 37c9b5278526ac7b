/**
 * Small upstream servers for proxy tests, on 127.0.0.1 port 0. `startUpstream` runs Deno.serve and
 * records every request it receives (method, raw target, headers, body bytes, the TCP connection
 * it came on, and whether it was aborted); handlers for the usual upstream behaviours are below.
 * `startRawUpstream` listens with Deno.listen for upstreams that must misbehave on the wire.
 * Both are `AsyncDisposable`: `await using up = await startUpstream(...)`.
 */
import type { Upstream as UpstreamConfig } from "../../src/config/mod.ts";

/** One request as the upstream saw it. */
export interface RecordedRequest {
  method: string;
  /** Raw request target: path and query as sent. */
  target: string;
  /** Field lines in Deno's order (lower-case names, repeated fields combined). */
  headers: [string, string][];
  /** The request body (unless `readBody` was false); complete once `bodyDone` resolved. */
  body: Uint8Array;
  /** Resolves when the body was read to its end (or broke off: see `aborted`). */
  bodyDone: Promise<void>;
  /** Client port of the TCP connection the request came on. */
  connection: number;
  /**
   * Set when the request body broke off or Deno reported the response as not delivered (a
   * cancelled response stream may still count as delivered: use an `sse` onCancel for that).
   */
  aborted: boolean;
  /** Resolves when the upstream noticed the exchange was cut (body read error, response not sent). */
  abortedEvent: Promise<void>;
  /** Resolves (true) when the response was fully delivered, false when it was not. */
  delivered: Promise<boolean>;
  /** Header value by lower-case name, or null. */
  header(name: string): string | null;
  /** Records an abort noticed by a handler (e.g. a streamed request body that broke off). */
  markAborted(): void;
}

/** What a handler may wait on. */
export interface UpstreamContext {
  /** Resolves when the upstream starts closing: parked handlers and streams end then. */
  readonly closing: Promise<void>;
}

/** Answers a recorded request; the body is already read unless `readBody` was false. */
export type UpstreamHandler = (
  req: Request,
  rec: RecordedRequest,
  ctx: UpstreamContext,
) => Response | Promise<Response>;

/** A running recording upstream. */
export interface Upstream extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
  /** Distinct TCP connections seen. */
  readonly connections: Set<number>;
  /** Resolves with the n-th request (0-based) once it arrived. */
  request(n: number): Promise<RecordedRequest>;
  /** Releases handlers parked on `never()`/`hold` and stops the server. */
  close(): Promise<void>;
  /** Resolves when close() starts: lets handlers stop waiting. */
  readonly closing: Promise<void>;
}

/** Options for {@linkcode startUpstream}. */
export interface UpstreamOptions {
  /** Read the request body before calling the handler (default true). */
  readBody?: boolean;
}

/** Starts a recording upstream. The default handler answers 200 "ok". */
export function startUpstream(
  handler: UpstreamHandler = () => new Response("ok"),
  options: UpstreamOptions = {},
): Promise<Upstream> {
  const readBody = options.readBody ?? true;
  const requests: RecordedRequest[] = [];
  const connections = new Set<number>();
  const waiters = new Map<number, (r: RecordedRequest) => void>();
  let closeNow!: () => void;
  const closing = new Promise<void>((r) => closeNow = r);
  const pending = new Set<Promise<unknown>>();
  const server = Deno.serve(
    {
      port: 0,
      hostname: "127.0.0.1",
      onListen() {},
      onError: () => new Response(null, { status: 500 }),
    },
    async (req, info) => {
      const rec = record(req, info, readBody);
      connections.add(rec.connection);
      const n = requests.push(rec) - 1;
      waiters.get(n)?.(rec);
      if (readBody) await rec.bodyDone;
      return await handler(req, rec, { closing });
    },
  );
  function record(
    req: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
    readBody: boolean,
  ): RecordedRequest {
    const url = req.url;
    const start = url.indexOf("/", url.indexOf("//") + 2);
    let markAborted!: () => void;
    const abortedEvent = new Promise<void>((r) => markAborted = r);
    const rec: RecordedRequest = {
      method: req.method,
      target: start === -1 ? "/" : url.slice(start),
      headers: [...req.headers],
      body: new Uint8Array(0),
      bodyDone: Promise.resolve(),
      connection: info.remoteAddr.port,
      aborted: false,
      abortedEvent,
      delivered: info.completed.then(() => true, () => false),
      header: (name) => req.headers.get(name),
      markAborted: () => abort(),
    };
    const abort = () => {
      rec.aborted = true;
      markAborted();
    };
    rec.delivered.then((ok) => ok || abort());
    if (readBody && req.body !== null) {
      const done = new Response(req.body).bytes().then(
        (b) => void (rec.body = b),
        () => abort(),
      );
      pending.add(done);
      rec.bodyDone = done;
    }
    return rec;
  }
  const port = server.addr.port;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    closeNow();
    await server.shutdown();
    await Promise.allSettled([...pending]);
  };
  return Promise.resolve({
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    connections,
    closing,
    request(n) {
      if (requests[n]) return Promise.resolve(requests[n]);
      return new Promise((r) => waiters.set(n, r));
    },
    close,
    [Symbol.asyncDispose]: close,
  });
}

// ---- handlers ----

/** A fixed status with optional headers and body (202/204/304/404/405/406, redirects...). */
export function status(
  code: number,
  init: { headers?: HeadersInit; body?: BodyInit | null } = {},
): UpstreamHandler {
  return () => new Response(init.body ?? null, { status: code, headers: init.headers });
}

/** Echoes the request body back with the request's content type. */
export function echo(): UpstreamHandler {
  return (req, rec) =>
    new Response(rec.body.slice(), {
      headers: { "content-type": req.headers.get("content-type") ?? "application/octet-stream" },
    });
}

/**
 * Streams the request body back as it arrives (use with `readBody: false`); a request body that
 * breaks off marks the request aborted.
 */
export function echoStream(): UpstreamHandler {
  return (req, rec) => {
    const reader = req.body!.getReader();
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        try {
          const r = await reader.read();
          if (r.done) c.close();
          else c.enqueue(r.value);
        } catch (e) {
          rec.markAborted();
          c.error(e);
        }
      },
      cancel(reason) {
        rec.markAborted();
        return reader.cancel(reason);
      },
    });
    return new Response(body, {
      headers: { "content-type": req.headers.get("content-type") ?? "application/octet-stream" },
    });
  };
}

/** Bytes with an explicit Content-Length (and any extra headers, e.g. Content-Encoding). */
export function bytes(body: Uint8Array, headers: Record<string, string> = {}): UpstreamHandler {
  return () =>
    new Response(body.slice(), {
      headers: { "content-length": String(body.length), ...headers },
    });
}

/** Gzip-compresses `text` once and serves it with Content-Encoding and Content-Length. */
export async function gzip(text: string): Promise<{ handler: UpstreamHandler; bytes: Uint8Array }> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  const compressed = new Uint8Array(await new Response(stream).arrayBuffer());
  return {
    bytes: compressed,
    handler: bytes(compressed, {
      "content-encoding": "gzip",
      "content-type": "application/json",
      vary: "accept-encoding",
    }),
  };
}

/** A chunked (no Content-Length) body sent as the given pieces. */
export function chunked(pieces: string[]): UpstreamHandler {
  return () => {
    const enc = new TextEncoder();
    let i = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(c) {
          if (i < pieces.length) c.enqueue(enc.encode(pieces[i++]));
          else c.close();
        },
      }),
      { headers: { "content-type": "text/plain" } },
    );
  };
}

/** Options for {@linkcode sse}. */
export interface SseOptions {
  /** Event data strings, sent as `data: ...` events. */
  events: string[];
  /** Before each event after the first, wait for this promise (lets a test gate the stream). */
  gate?: (index: number) => Promise<void>;
  /** Keep the stream open after the last event until the client leaves or close(). */
  hold?: boolean;
  /** Called when the stream is cancelled (the gate's client went away). */
  onCancel?: () => void;
}

/** A text/event-stream response the way the MCP TypeScript SDK sends it. */
export function sse(options: SseOptions): UpstreamHandler {
  return (_req, _rec, up) => {
    const enc = new TextEncoder();
    let i = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(c) {
          if (i < options.events.length) {
            if (i > 0 && options.gate) await options.gate(i);
            c.enqueue(enc.encode(`event: message\ndata: ${options.events[i++]}\n\n`));
            return;
          }
          if (options.hold) await up.closing;
          c.close();
        },
        cancel() {
          options.onCancel?.();
        },
      }),
      {
        headers: {
          "content-type": "text/event-stream",
          "cache-control": "no-cache, no-transform",
          connection: "keep-alive",
        },
      },
    );
  };
}

/** Never answers (until the upstream closes, then 503). For timeout tests. */
export function never(): UpstreamHandler {
  return async (_req, _rec, up) => {
    await up.closing;
    return new Response(null, { status: 503 });
  };
}

/** Answers after `ms` milliseconds. */
export function slow(
  ms: number,
  inner: UpstreamHandler = () => new Response("slow"),
): UpstreamHandler {
  return async (req, rec, up) => {
    await new Promise((r) => setTimeout(r, ms));
    return inner(req, rec, up);
  };
}

/** `size` bytes of a repeating pattern, streamed in 64 KiB pieces with Content-Length. */
export function large(size: number): UpstreamHandler {
  return () => {
    let sent = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(c) {
          if (sent >= size) return c.close();
          const n = Math.min(65536, size - sent);
          c.enqueue(pattern(sent, n));
          sent += n;
        },
      }),
      { headers: { "content-length": String(size), "content-type": "application/octet-stream" } },
    );
  };
}

/** Deterministic bytes for offset `from`, length `n`. */
export function pattern(from: number, n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (from + i) * 31 % 251;
  return out;
}

/** Hex SHA-256 of bytes. */
export async function sha256(data: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- raw upstream ----

/** A raw TCP upstream: the test writes whatever bytes it wants. */
export interface RawUpstream extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  /** Number of accepted connections. */
  readonly accepted: number;
  /** Resolves with the n-th accepted connection's handling promise result. */
  close(): Promise<void>;
}

/** Per connection: `onConn` gets the socket and owns it until it returns (the helper then closes it). */
export function startRawUpstream(
  onConn: (conn: Deno.TcpConn, index: number) => Promise<void>,
): RawUpstream {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const conns = new Set<Deno.TcpConn>();
  const tasks = new Set<Promise<void>>();
  let accepted = 0;
  const loop = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const task = onConn(conn, accepted++).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // closed by the handler
        }
      });
      tasks.add(task);
    }
  })().catch(() => {});
  const port = (listener.addr as Deno.NetAddr).port;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    listener.close();
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    await loop;
    await Promise.allSettled([...tasks]);
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get accepted() {
      return accepted;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Reads from `conn` until a full request head arrived; returns it as text (or null at EOF). */
export async function readRequestHead(conn: Deno.Conn): Promise<string | null> {
  const buf = new Uint8Array(65536);
  let text = "";
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return null;
    text += new TextDecoder().decode(buf.subarray(0, n));
    if (text.includes("\r\n\r\n")) return text;
  }
}

/** Writes all of `text` (latin1) to `conn`. */
export async function writeText(conn: Deno.Conn, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** The Config `upstream` block for an upstream base URL (as parseConfig would split it). */
export function upstreamOf(url: string): UpstreamConfig {
  const u = new URL(url);
  const protocol = u.protocol as "http:" | "https:";
  const port = u.port === "" ? (protocol === "https:" ? 443 : 80) : Number(u.port);
  return {
    url,
    protocol,
    hostname: u.hostname,
    port,
    host: u.host,
    basePath: u.pathname.replace(/\/+$/, ""),
  };
}
