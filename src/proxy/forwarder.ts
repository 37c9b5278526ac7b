/**
 * The streaming reverse proxy (docs/contract.md §3.8): one authenticated request in, the same
 * request to the upstream MCP server, its response streamed back. This module owns the header
 * rules: which inbound fields are managed by the gate (never forwarded in any spelling), which it
 * sets, and how claim values become fields. Every line of the upstream head is built by the
 * serialiser of src/http1/ (`requestLine`, `fieldLine`), which refuses what it cannot send
 * exactly (docs/security.md). The upstream client is the raw HTTP/1.1 client of src/http1/: bytes
 * pass through untouched (no decompression, unlike `fetch`), bodies stream both ways, redirects
 * are never followed.
 */
import type { Config } from "../config/mod.ts";
import { describeError, GateError } from "../errors.ts";
import {
  contentLengthOf,
  fieldLine,
  Http1Client,
  Http1Error,
  type Http1ExchangeResult,
  Http1HeadError,
  type Http1Response,
  isFieldValue,
  requestLine,
  splitTokens,
  toByteString,
} from "../http1/mod.ts";
import type { Logger } from "../ops/mod.ts";
import { claimAt, claimStrings } from "../auth/mod.ts";
import { isAccessTokenParam, parseRequestUrl, type RequestTarget } from "../http/mod.ts";
import {
  HOP_BY_HOP_HEADERS,
  MANAGED_HEADERS,
  managedKey,
  TRACE_CONTEXT_HEADERS,
} from "../headers/mod.ts";
import { Deadlines } from "./deadlines.ts";

/** What the handler knows about the request, for the upstream and for the log. */
export interface ForwardContext {
  /** Resolved client IP (also sent as X-Real-IP). */
  clientIp: string;
  /** Full X-Forwarded-For value to send (the handler computes it). */
  forwardedFor: string;
  /** Public scheme for X-Forwarded-Proto. */
  forwardedProto: "http" | "https";
  /** Value for X-Request-Id. */
  requestId: string;
  /**
   * The request URL as the handler checked it (see src/http/target.ts); parsed from `req.url` when
   * absent.
   */
  target?: RequestTarget;
  /**
   * Claim fields to set: lower-case names and byte-string values, from
   * {@linkcode claimFieldValues} (which refuses values that cannot be sent as they are).
   */
  setHeaders?: readonly (readonly [string, string])[];
  /**
   * The request's fields as the handler already read them with this forwarder's `readFields`,
   * so they are not read twice; read from the request when absent (or read with other rules).
   */
  fields?: RequestFields;
  /**
   * Called exactly once when the exchange is over (response body fully sent, client gone, or
   * upstream failed mid-stream), and only when forward() resolved.
   */
  onDone?(result: ForwardResult): void;
}

/** How a proxied exchange ended. */
export interface ForwardResult {
  upstreamStatus: number;
  /** Request body bytes read from the client. */
  bytesIn: number;
  /** Response body bytes passed to the client. */
  bytesOut: number;
  /**
   * `read_timeout`: READ_TIMEOUT passed while the request body was still coming (the upstream
   * request was aborted); `stream_idle`: SSE_IDLE_TIMEOUT closed a silent response stream.
   */
  outcome:
    | "complete"
    | "client_abort"
    | "upstream_abort"
    | "body_too_large"
    | "read_timeout"
    | "stream_idle";
}

/** Forwards requests to the configured upstream. */
export interface Forwarder {
  /**
   * Sends `req` upstream and resolves with the streamed response once its head arrived.
   * @throws {GateError} `upstream_error` (unreachable, broke before headers, a head that cannot
   *   be sent as is: reason `head_unrepresentable`, or the client went away first: reason
   *   `client_closed`), `upstream_timeout`, `payload_too_large`, or `bad_request` (a URL that
   *   fails src/http/target.ts, when the context carries no checked target).
   */
  forward(req: Request, ctx: ForwardContext): Promise<Response>;
  /**
   * Reads a request's fields once, with this forwarder's rules: the values the handler looks at
   * and the fields the upstream gets (pass them back as `ForwardContext.fields`).
   */
  readFields(headers: Headers): RequestFields;
  /** Closes idle upstream connections. */
  close(): void;
}

/** The forwarder of {@linkcode createForwarder}: also ends open streams for a shutdown drain. */
export interface StreamingForwarder extends Forwarder {
  /**
   * Ends every proxied response body still streaming (SHUTDOWN_TIMEOUT reached): the client's
   * response breaks off with `reason`, the upstream request is aborted, and each exchange's
   * `onDone` runs (outcome `client_abort`).
   * @returns how many streams were cut.
   */
  cutStreams(reason: Error): number;
  /** Proxied response bodies still streaming. */
  readonly streamingCount: number;
}

/** Dependencies of {@linkcode createForwarder}. */
export interface ForwarderDeps {
  log?: Logger;
  /** Extra PEM root certificates for an https upstream (tests). */
  caCerts?: string[];
}

export {
  CLIENT_ADDRESS_HEADERS,
  CONSUMED_HEADERS,
  GATE_SET_HEADERS,
  HOP_BY_HOP_HEADERS,
  managedKey,
} from "../headers/mod.ts";

/** Bodies up to this size are read whole before sending (Deno hands them over buffered). */
const SMALL_BODY = 64 * 1024;

/** What the request path needs from Config, precomputed once (see {@linkcode planFor}). */
export interface Plan {
  readonly basePath: string;
  /** The upstream's Host line (or "" under PRESERVE_HOST). */
  readonly hostLine: string;
  /** Inbound request fields never forwarded, by {@linkcode managedKey} spelling. */
  readonly drop: ReadonlySet<string>;
  readonly preserveHost: boolean;
  readonly maxBody: number;
  readonly timeoutMs: number;
  /** READ_TIMEOUT in ms; 0 = none. */
  readonly readTimeoutMs: number;
  /** SSE_IDLE_TIMEOUT in ms; 0 = streams are never closed for silence. */
  readonly streamIdleMs: number;
}

/**
 * The plan for the request path from Config: built once by {@linkcode createForwarder}, which
 * reads request fields with it (`readFields`) and sends them. Exported for tests and stubs.
 */
export function createPlan(config: Config): Plan {
  const drop = new Set<string>(MANAGED_HEADERS);
  if (!config.forwardAuthorization) {
    drop.add("authorization");
    drop.add("cookie");
  }
  // With the gate's own tracing on, its span's trace context replaces the client's (managed.ts).
  if (config.otelEndpoint !== undefined) { for (const h of TRACE_CONTEXT_HEADERS) drop.add(h); }
  // Inbound copies of claim headers are always removed (docs/contract.md §1 CLAIM_HEADERS).
  for (const c of config.claimHeaders) drop.add(managedKey(c.header.toLowerCase()));
  return Object.freeze({
    basePath: config.upstream.basePath,
    hostLine: config.preserveHost ? "" : fieldLine("host", config.upstream.host),
    drop,
    preserveHost: config.preserveHost,
    maxBody: config.maxRequestBodyBytes,
    timeoutMs: config.upstreamTimeoutMs,
    readTimeoutMs: config.readTimeoutMs,
    streamIdleMs: config.streamIdleTimeoutMs,
  });
}

/**
 * The origin-form target for the upstream: base path + the checked path and query, with every
 * `access_token` query parameter removed (docs/contract.md §3.8) and the rest left as it is.
 */
export function upstreamTarget(basePath: string, target: RequestTarget): string {
  return basePath + target.path + stripAccessToken(target.query);
}

/**
 * Where a request for RESOURCE_URI's path lands upstream, through {@linkcode upstreamTarget} (the
 * forwarder's own joining): what `serve` logs at start and `check` prints, so an UPSTREAM_URL that
 * repeats the resource path shows as `/mcp → http://127.0.0.1:3000/mcp/mcp`.
 */
export function upstreamMapping(config: Config): { readonly from: string; readonly to: string } {
  const target = parseRequestUrl(config.resourceUri);
  // RESOURCE_URI passed the URL checks of config, so it parses; its query is not a path.
  const path = typeof target === "string" ? new URL(config.resourceUri).pathname : target.path;
  const { protocol, host, basePath } = config.upstream;
  const to = `${protocol}//${host}${
    upstreamTarget(basePath, { authority: host, path, query: "" })
  }`;
  return { from: path, to };
}

/**
 * Removes `access_token` parameters from a raw query ("?a=1&..."), also when the name is
 * percent-encoded, as URLSearchParams (and so the bearer extractor) would decode it. Returns the
 * query unchanged (same string) when there is none; "" when nothing is left.
 */
export function stripAccessToken(query: string): string {
  if (!query.includes("access") && !query.includes("%")) return query;
  // "&" separates parameters for URLSearchParams (and so for the bearer extractor); some servers
  // split on ";" as well, so a parameter after a ";" is removed too: the upstream never sees a
  // token the gate did not check.
  const parts = query.slice(1).split("&");
  let changed = false;
  const kept: string[] = [];
  for (const part of parts) {
    const sub = part.split(";");
    const rest = sub.filter((p) => !isAccessTokenParam(p));
    if (rest.length !== sub.length) changed = true;
    if (rest.length > 0) kept.push(rest.join(";"));
  }
  if (!changed) return query;
  return kept.length === 0 ? "" : "?" + kept.join("&");
}

/**
 * A request's header fields read in one pass: the values the gate itself looks at, each as
 * `Headers.get()` returns it (repeated fields joined with ", ", null when absent), and the fields
 * the upstream gets as they are, already serialised.
 */
export interface RequestFields {
  readonly authorization: string | null;
  readonly origin: string | null;
  readonly requestId: string | null;
  readonly userAgent: string | null;
  readonly forwardedFor: string | null;
  readonly forwardedProto: string | null;
  readonly contentLength: string | null;
  readonly host: string | null;
  readonly transferEncoding: string | null;
  readonly connection: string | null;
  readonly traceparent: string | null;
  readonly tracestate: string | null;
  /**
   * The size of the fields as `name: value\r\n` lines on the wire, never less (see
   * {@linkcode fieldLineBytes}): the head MAX_HEADER_BYTES limits, without its request line.
   */
  readonly headBytes: number;
  /** performance.now() when the fields were read: the start of READ_TIMEOUT. */
  readonly readAt: number;
  /** `name: value\r\n` for each field outside the plan's drop set, in Headers order. */
  readonly forwarded: string;
  /**
   * The name of a field to forward whose name or value cannot be serialised as it is (Deno's
   * parser refuses such fields first; this is the serialiser's own check), or null.
   */
  readonly unrepresentable: string | null;
  /** The drop set `forwarded` was built with. */
  readonly drop: ReadonlySet<string>;
}

/**
 * The wire size of the field lines Headers gives as one `name`/`value`, never less. Headers joins
 * repeated field lines with ", " (Fetch standard, "combine"), and Deno.serve joins `cookie` lines
 * with "; " (as RFC 9113 §8.2.3 does); Deno does not expose the raw head, so each such separator
 * is counted as a line boundary: a line "name: " + value + CRLF costs name + 4 bytes besides its
 * value, the separator stands for 2 of them, so each adds name + 2. The count is exact for
 * repeated lines and over-estimates only a value that itself holds the separator (by name + 2
 * bytes per occurrence); it sees no optional whitespace a client put around a value, which the
 * parser strips (docs/contract.md §1 MAX_HEADER_BYTES).
 */
export function fieldLineBytes(name: string, value: string): number {
  const joins = occurrences(value, ", ") + (name === "cookie" ? occurrences(value, "; ") : 0);
  return name.length + value.length + 4 + joins * (name.length + 2);
}

function occurrences(text: string, separator: string): number {
  let n = 0;
  for (let i = text.indexOf(separator); i !== -1; i = text.indexOf(separator, i + 2)) n++;
  return n;
}

/**
 * Reads a request's fields once (docs/contract.md §3.8 rules: the plan's drop set). On a
 * Deno.serve request each `Headers.get()` is a call into the server, and the `forEach` that the
 * upstream head needs anyway reads them all: one pass does both.
 */
export function readRequestFields(plan: Plan, headers: Headers): RequestFields {
  const drop = plan.drop;
  const f = {
    authorization: null as string | null,
    origin: null as string | null,
    requestId: null as string | null,
    userAgent: null as string | null,
    forwardedFor: null as string | null,
    forwardedProto: null as string | null,
    contentLength: null as string | null,
    host: null as string | null,
    transferEncoding: null as string | null,
    connection: null as string | null,
    traceparent: null as string | null,
    tracestate: null as string | null,
    headBytes: 0,
    readAt: performance.now(),
    forwarded: "",
    unrepresentable: null as string | null,
    drop,
  };
  // forEach, not for-of: several times cheaper on Deno's Headers (no iterator entries).
  headers.forEach((value, name) => {
    // get(), not the value forEach gives: Deno's iteration drops the empty values before the
    // first non-empty one of a repeated field ("", "", "x" iterate as "x"; get() gives ", , x"),
    // so only get() shows every line (measured with Deno 2.9.6; about 0.2 µs a field).
    f.headBytes += fieldLineBytes(name, headers.get(name) ?? value);
    switch (name) {
      case "authorization":
        f.authorization = value;
        break;
      case "origin":
        f.origin = value;
        break;
      case "x-request-id":
        f.requestId = value;
        break;
      case "user-agent":
        f.userAgent = value;
        break;
      case "x-forwarded-for":
        f.forwardedFor = value;
        break;
      case "x-forwarded-proto":
        f.forwardedProto = value;
        break;
      case "content-length":
        f.contentLength = value;
        break;
      case "host":
        f.host = value;
        break;
      case "transfer-encoding":
        f.transferEncoding = value;
        break;
      case "connection":
        f.connection = value;
        break;
      case "traceparent":
        f.traceparent = value;
        break;
      case "tracestate":
        f.tracestate = value;
        break;
    }
    if (drop.has(managedKey(name))) return;
    if (isFieldValue(value)) f.forwarded += `${name}: ${value}\r\n`;
    else f.unrepresentable ??= name;
  });
  return f;
}

/** The request head for the upstream and how its body is framed. Exported for tests. */
export interface UpstreamHead {
  head: string;
  /** Content-Length from the client, or null. */
  contentLength: number | null;
  /** The client sent a body without a length: forward it chunked. */
  chunked: boolean;
}

/**
 * Serialises the upstream request head (a byte string: inbound values already are). One pass
 * over the inbound fields; the fields named in Connection are dropped with it (RFC 9110 §7.6.1).
 * `unframedBody`: the request has a body that arrived without Content-Length or Transfer-Encoding
 * (HTTP/2 frames bodies itself), so it goes chunked.
 * @throws {Http1HeadError} when a part of the head cannot be sent exactly as it is.
 * @throws {GateError} `bad_request` when `ctx` has no target and `req.url` fails src/http/target.ts.
 */
export function buildHead(
  plan: Plan,
  req: Request,
  ctx: ForwardContext,
  unframedBody = false,
): UpstreamHead {
  const target = ctx.target ?? checkedTarget(req.url);
  const drop = plan.drop;
  const method = req.method;
  const hasBody = mayHaveBody(method);
  const read = ctx.fields !== undefined && ctx.fields.drop === drop
    ? ctx.fields
    : readRequestFields(plan, req.headers);
  if (read.unrepresentable !== null) {
    throw new Http1HeadError("value", `Field "${read.unrepresentable}" cannot be sent as it is`);
  }
  // Host, else the authority of an absolute-form target or HTTP/2 request (both checked as
  // uri-host [":" port] by src/http/target.ts and the handler).
  const clientHost = read.host ?? target.authority;
  let contentLength: number | null = read.contentLength === null
    ? null
    : contentLengthOf(read.contentLength) ?? -1;
  let chunked = read.transferEncoding !== null || unframedBody;
  let fields = read.forwarded;
  if (read.connection !== null) {
    // Fields named in Connection are hop-by-hop too (RFC 9110 §7.6.1); rare beyond the
    // standard ones, so the common case pays nothing for it.
    const named = splitTokens(read.connection).map(managedKey).filter((t) => !drop.has(t));
    if (named.length > 0) {
      fields = "";
      req.headers.forEach((value, name) => {
        const key = managedKey(name);
        if (!drop.has(key) && !named.includes(key)) fields += fieldLine(name, value);
      });
    }
  }
  let head = requestLine(method, upstreamTarget(plan.basePath, target));
  head += plan.preserveHost ? fieldLine("host", clientHost) : plan.hostLine;
  head += fields;
  // The upstream must not wait for a body that will not come.
  if (!hasBody) {
    contentLength = null;
    chunked = false;
  } else if (chunked || contentLength === -1) {
    // Transfer-Encoding overrides Content-Length and an intermediary must drop the latter
    // (RFC 9112 §6.3); an unusable length is never forwarded either: the body goes chunked.
    contentLength = null;
    chunked = true;
    head += "transfer-encoding: chunked\r\n";
  } else if (contentLength !== null) {
    head += `content-length: ${contentLength}\r\n`;
  }
  if (ctx.forwardedFor !== "") head += fieldLine("x-forwarded-for", ctx.forwardedFor);
  head += `x-forwarded-proto: ${ctx.forwardedProto}\r\n`;
  if (clientHost !== "") head += fieldLine("x-forwarded-host", clientHost);
  if (ctx.clientIp !== "") head += fieldLine("x-real-ip", ctx.clientIp);
  if (ctx.requestId !== "") head += fieldLine("x-request-id", ctx.requestId);
  const set = ctx.setHeaders;
  if (set !== undefined) {
    for (const [name, value] of set) head += fieldLine(name, value);
  }
  return { head: head + "\r\n", contentLength, chunked };
}

function checkedTarget(url: string): RequestTarget {
  const parsed = parseRequestUrl(url);
  if (typeof parsed === "string") throw new GateError("bad_request", { reason: parsed });
  return parsed;
}

/** Claim values longer than this (in UTF-8 bytes) are refused rather than cut. */
export const MAX_CLAIM_VALUE_BYTES = 4096;

/**
 * The claim fields for the upstream from verified claims (docs/contract.md §1 CLAIM_HEADERS),
 * each claim found by name or JSON Pointer (`claimAt`): a string as it is; a list of strings
 * (`claimStrings`: an array of strings) joined with ","; anything else (numbers, booleans,
 * objects, arrays holding a non-string) as JSON; non-ASCII as UTF-8 bytes. A value that cannot be
 * sent faithfully (a control character, leading or trailing whitespace, which a recipient strips,
 * a lone surrogate, a list element holding ",", which would read as two, or more than
 * {@linkcode MAX_CLAIM_VALUE_BYTES}) refuses the request: it is never normalised into another
 * value, which could be another user's. The refusal names the token's `sub`, so it is charged to
 * that subject.
 * @throws {GateError} `claim_unrepresentable` (403), naming the claim in the log detail.
 */
export function claimFieldValues(
  pairs: Config["claimHeaders"],
  claims: Readonly<Record<string, unknown>>,
): [string, string][] {
  const out: [string, string][] = [];
  for (const { claim, header } of pairs) {
    const v = claimAt(claims, claim);
    if (v === undefined || v === null) continue;
    let text: string;
    if (typeof v === "string") text = v;
    else {
      const list = claimStrings(v);
      if (list?.some((s) => s.includes(","))) {
        throw unrepresentable(claim.text, "has a list element holding a comma", claims);
      }
      text = list ? list.join(",") : JSON.stringify(v);
    }
    let bytes: string;
    try {
      bytes = toByteString(text);
    } catch {
      throw unrepresentable(claim.text, "is not well-formed Unicode", claims);
    }
    if (bytes.length > MAX_CLAIM_VALUE_BYTES) {
      throw unrepresentable(
        claim.text,
        `is longer than ${MAX_CLAIM_VALUE_BYTES} bytes`,
        claims,
      );
    }
    if (!isFieldValue(bytes)) {
      throw unrepresentable(
        claim.text,
        "has a control character or surrounding whitespace",
        claims,
      );
    }
    out.push([header.toLowerCase(), bytes]);
  }
  return out;
}

function unrepresentable(
  claim: string,
  why: string,
  claims: Readonly<Record<string, unknown>>,
): GateError {
  const { sub, iss } = claims;
  return new GateError("claim_unrepresentable", {
    reason: "claim_unrepresentable",
    detail: `claim ${JSON.stringify(claim.slice(0, 64))} ${why}`,
    subject: typeof sub === "string" ? sub : undefined,
    issuer: typeof iss === "string" ? iss : undefined,
  });
}

const HOP_SET: ReadonlySet<string> = new Set(HOP_BY_HOP_HEADERS);

/**
 * Response fields for the client: the upstream's, minus hop-by-hop ones and those named in its
 * Connection field; Content-Length dropped when Transfer-Encoding overrode it (RFC 9112 §6.3);
 * `X-Accel-Buffering: no` on event streams so a buffering proxy in front passes events as sent.
 */
export function responseHeaders(res: Http1Response): [string, string][] {
  const head = res.head;
  const named = head.connectionTokens;
  const framedByTe = head.chunked || head.untilClose;
  const fields = head.headers;
  let sse = false;
  let accel = false;
  let keep = true;
  for (let i = 0; i < fields.length; i++) {
    const name = fields[i][0];
    if (
      HOP_SET.has(name) || (named !== null && named.includes(name)) ||
      (name === "content-length" && framedByTe)
    ) {
      keep = false;
    } else if (name === "content-type" && isEventStream(fields[i][1])) sse = true;
    else if (name === "x-accel-buffering") accel = true;
  }
  // The common case (nothing to drop, no event stream) hands the parsed list over as is.
  if (keep && !sse) return fields;
  const out: [string, string][] = [];
  for (const h of fields) {
    const name = h[0];
    if (HOP_SET.has(name) || (named !== null && named.includes(name))) continue;
    if (name === "content-length" && framedByTe) continue;
    if (sse && accel && name === "x-accel-buffering") continue;
    out.push(h);
  }
  if (sse) out.push(["x-accel-buffering", "no"]);
  return out;
}

function isEventStream(contentType: string): boolean {
  const semi = contentType.indexOf(";");
  const type = semi === -1 ? contentType : contentType.slice(0, semi);
  return type.trim().toLowerCase() === "text/event-stream";
}

/**
 * True for the error a proxied response body stream fails with when the upstream broke off
 * mid-body (or the request body grew too large). Deno.serve hands such errors to its `onError`;
 * they are expected events already logged with the request, not crashes.
 */
export function isUpstreamStreamError(error: unknown): boolean {
  return error instanceof Http1Error || error instanceof StreamIdleError;
}

/** What a response stream closed by SSE_IDLE_TIMEOUT errors with (the client sees it cut). */
export class StreamIdleError extends Error {
  constructor() {
    super("No bytes from the upstream within SSE_IDLE_TIMEOUT");
    this.name = "StreamIdleError";
  }
}

/** Creates the forwarder for `config.upstream`, with its own connection pool. */
export function createForwarder(config: Config, deps: ForwarderDeps = {}): StreamingForwarder {
  const up = config.upstream;
  const plan = createPlan(config);
  const log = deps.log;
  const deadlines = new Deadlines(
    Math.min(...[config.readTimeoutMs, config.streamIdleTimeoutMs].filter((ms) => ms > 0), 10_000),
  );
  const client = new Http1Client({
    // URL hostnames keep IPv6 brackets; sockets want the bare address.
    hostname: up.hostname.startsWith("[") ? up.hostname.slice(1, -1) : up.hostname,
    port: up.port,
    tls: up.protocol === "https:",
    caCerts: deps.caCerts,
  });

  async function forward(req: Request, ctx: ForwardContext): Promise<Response> {
    const target = ctx.target ?? checkedTarget(req.url);
    const fields = ctx.fields !== undefined && ctx.fields.drop === plan.drop
      ? ctx.fields
      : readRequestFields(plan, req.headers);
    // MAX_REQUEST_BODY, for every method and before anything is read or sent: a declared length
    // over it is refused even where the body would not be forwarded (GET, HEAD, CONNECT).
    const declared = contentLengthOf(fields.contentLength);
    if (declared !== undefined && declared > plan.maxBody) {
      throw new GateError("payload_too_large", { reason: "body_too_large" });
    }
    // A body without Content-Length or Transfer-Encoding: HTTP/2 frames bodies itself, so such
    // a request may still carry one. HTTP/1.1 gives an empty stream here; one read tells.
    // READ_TIMEOUT runs from when the handler read the fields (the request's arrival) to the
    // body's last byte; what is left of it when forwarding starts.
    const readLeft = plan.readTimeoutMs > 0
      ? fields.readAt + plan.readTimeoutMs - performance.now()
      : 0;
    let readTimedOut = false;
    const timed = (stream: ReadableStream<Uint8Array>) =>
      plan.readTimeoutMs === 0 ? stream : watchedStream(stream, deadlines, {
        timeoutMs: Math.max(readLeft, 0),
        rearm: false,
        onExpire: () => {
          readTimedOut = true;
          return readTimeoutError();
        },
      });
    let unframed: ReadableStream<Uint8Array> | null = null;
    if (
      fields.contentLength === null && fields.transferEncoding === null && mayHaveBody(req.method)
    ) {
      unframed = req.body === null ? null : await peekBody(timed(req.body));
    }
    let built: UpstreamHead;
    try {
      built = buildHead(plan, req, { ...ctx, fields, target }, unframed !== null);
    } catch (e) {
      if (!(e instanceof Http1HeadError)) throw e;
      // The serialiser refused: nothing is sent. Not the client's doing when it passed the
      // handler's checks, so it is logged as an error and answered as a gateway failure.
      log?.error("upstream request head refused", { request_id: ctx.requestId, error: e.message });
      unframed?.cancel().catch(() => {});
      throw new GateError("upstream_error", {
        reason: "head_unrepresentable",
        detail: e.message,
        cause: e,
      });
    }
    const { head, contentLength, chunked } = built;
    let body: Uint8Array | ReadableStream<Uint8Array> | null = unframed;
    if (contentLength !== null && contentLength <= SMALL_BODY) {
      // Small bodies (every typical JSON-RPC message) are usually buffered by Deno already:
      // taking them whole skips the stream machinery and sends head and body in one write.
      try {
        body = plan.readTimeoutMs === 0
          ? await req.bytes()
          : await bytesWithin(req, deadlines, Math.max(readLeft, 0));
      } catch (e) {
        if (e instanceof GateError) throw e;
        throw new GateError("upstream_error", {
          reason: "client_closed",
          detail: "Client request body broke off",
          cause: e,
        });
      }
    } else if (unframed === null && (contentLength !== null || chunked) && req.body !== null) {
      body = timed(req.body);
    }

    const onDone = ctx.onDone;
    let delivered = false;
    let early: ForwardResult | null = null;
    let idleClosed = false;
    const onEnd = onDone === undefined ? undefined : (r: Http1ExchangeResult) => {
      const result: ForwardResult = {
        upstreamStatus: r.status,
        bytesIn: r.bytesSent,
        bytesOut: r.bytesReceived,
        outcome: readTimedOut ? "read_timeout" : idleClosed ? "stream_idle" : r.outcome,
      };
      if (delivered) onDone(result);
      else early = result;
    };

    let res: Http1Response;
    try {
      res = await client.request({
        head,
        method: req.method,
        body,
        chunked,
        maxChunkedBodyBytes: plan.maxBody,
        headersTimeoutMs: plan.timeoutMs,
        // Only read once the head is slow in coming (see Http1Request.signal).
        signal: () => req.signal,
        onEnd,
      });
    } catch (e) {
      // The body's deadline aborted the exchange: whatever was written, the upstream saw the
      // connection close before the body's end, never a complete request.
      if (readTimedOut) throw readTimeoutError();
      throw toGateError(e);
    }

    let response: Response;
    try {
      // (Our buffers are plain ArrayBuffer views; the cast only narrows the TS generic.)
      let body = res.body as Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null;
      if (plan.streamIdleMs > 0 && body instanceof ReadableStream) {
        body = watchedStream(body, deadlines, {
          timeoutMs: plan.streamIdleMs,
          rearm: true,
          onExpire: () => {
            idleClosed = true;
            return new StreamIdleError();
          },
        });
      }
      response = new Response(body, { status: res.status, headers: responseHeaders(res) });
    } catch (e) {
      // A field value the Fetch API refuses: the upstream response cannot be passed on as is.
      if (res.body instanceof ReadableStream) res.body.cancel().catch(() => {});
      throw new GateError("upstream_error", {
        reason: "upstream_unreachable",
        detail: `Invalid upstream response: ${e instanceof Error ? e.message : String(e)}`,
        cause: e,
      });
    }
    delivered = true;
    if (early !== null) {
      const result: ForwardResult = early;
      queueMicrotask(() => onDone!(result));
    }
    return response;
  }

  return {
    forward,
    readFields: (headers) => readRequestFields(plan, headers),
    close: () => {
      client.close();
      deadlines.close();
    },
    cutStreams: (reason) => client.cutStreams(reason),
    get streamingCount() {
      return client.streamingCount;
    },
  };
}

/**
 * Deno.serve gives GET, HEAD and CONNECT no body even when framed with one; reading `req.body`
 * for them would also turn a buffered body into a stream.
 */
function mayHaveBody(method: string): boolean {
  return method !== "GET" && method !== "HEAD" && method !== "CONNECT";
}

/**
 * The request body as a stream when it has at least one byte, else null (and nothing is sent).
 * @throws {GateError} `upstream_error` with reason `client_closed` when the body broke off.
 */
async function peekBody(
  stream: ReadableStream<Uint8Array>,
): Promise<ReadableStream<Uint8Array> | null> {
  const reader = stream.getReader();
  let first: ReadableStreamReadResult<Uint8Array>;
  try {
    first = await reader.read();
    while (!first.done && first.value.length === 0) first = await reader.read();
  } catch (e) {
    if (e instanceof GateError) throw e;
    throw new GateError("upstream_error", {
      reason: "client_closed",
      detail: "Client request body broke off",
      cause: e,
    });
  }
  if (first.done) return null;
  let pending: Uint8Array | null = first.value;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending !== null) {
        controller.enqueue(pending);
        pending = null;
        return;
      }
      const r = await reader.read();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

function readTimeoutError(): GateError {
  return new GateError("request_timeout", {
    reason: "read_timeout",
    detail: "The request body did not arrive within READ_TIMEOUT",
  });
}

/**
 * The whole request body, or a `request_timeout` GateError once `timeoutMs` passed without it
 * (the body already buffered by Deno wins over a deadline passed during authentication).
 */
function bytesWithin(req: Request, deadlines: Deadlines, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const d = deadlines.watch(timeoutMs, () => reject(readTimeoutError()));
    req.bytes().then((b) => {
      deadlines.unwatch(d);
      resolve(b);
    }, (e) => {
      deadlines.unwatch(d);
      reject(e);
    });
  });
}

/**
 * `src` passed through under a deadline: once it expires the returned stream errors with what
 * `onExpire` gives (so its reader fails at once) and `src` is cancelled. `rearm`: each chunk
 * moves the deadline `timeoutMs` on (an idle timeout), else it is fixed (a whole-body deadline).
 */
function watchedStream(
  src: ReadableStream<Uint8Array>,
  deadlines: Deadlines,
  opts: { timeoutMs: number; rearm: boolean; onExpire(): Error },
): ReadableStream<Uint8Array> {
  const reader = src.getReader();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let ended = false;
  const deadline = deadlines.watch(opts.timeoutMs, () => {
    if (ended) return;
    ended = true;
    const err = opts.onExpire();
    try {
      controller.error(err);
    } catch {
      // already closed or cancelled
    }
    reader.cancel(err).catch(() => {});
  });
  const end = () => {
    ended = true;
    deadlines.unwatch(deadline);
  };
  return new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    async pull(c) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        if (ended) return;
        end();
        throw e;
      }
      if (ended) return;
      if (r.done) {
        end();
        c.close();
        return;
      }
      if (opts.rearm && r.value.length > 0) deadline.at = performance.now() + opts.timeoutMs;
      c.enqueue(r.value);
    },
    cancel(reason) {
      if (!ended) end();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

function toGateError(e: unknown): GateError {
  if (e instanceof Http1HeadError) {
    return new GateError("upstream_error", {
      reason: "head_unrepresentable",
      detail: e.message,
      cause: e,
    });
  }
  if (!(e instanceof Http1Error)) {
    return new GateError("upstream_error", {
      reason: "upstream_unreachable",
      detail: describeError(e),
      cause: e,
    });
  }
  switch (e.kind) {
    case "timeout":
      return new GateError("upstream_timeout", { reason: "upstream_timeout", detail: e.message });
    case "body_too_large":
      return new GateError("payload_too_large", { reason: "body_too_large", detail: e.message });
    case "aborted":
      return new GateError("upstream_error", { reason: "client_closed", detail: e.message });
    default:
      // The log names the cause (connection refused, DNS, TLS certificate), as for every
      // network failure.
      return new GateError("upstream_error", {
        reason: "upstream_unreachable",
        detail: describeError(e),
        cause: e,
      });
  }
}
