/**
 * A strict raw-socket upstream and the intended-behaviour oracle for the request-smuggling suites
 * (tests/smuggling_test.ts, tests/wire_property_test.ts).
 *
 * The upstream listens with Deno.listen on 127.0.0.1:0 and parses what arrives strictly per
 * RFC 9112, with its own parser (never the gate's): request-line = method SP origin-form SP
 * "HTTP/1.1" CRLF, the target made of RFC 3986 characters only; field-line = token ":" OWS
 * field-value OWS CRLF, values of VCHAR / obs-text / SP / HTAB; exactly one Host; body framed by
 * Content-Length or chunked. Every request is recorded per connection; every deviation is a
 * {@linkcode Violation}. Like a real server it answers pipelined requests in order (recording
 * the pipelining as a violation), so a smuggled request has the consequences it would have on
 * a Node or Go upstream. A parse error gets a 400 and the connection is closed.
 *
 * The oracle half encodes what the gate must send after the smuggling fix, independently of the
 * gate's code: {@linkcode MANAGED_HEADERS}, {@linkcode expectedTarget},
 * {@linkcode isValidAuthority}.
 */
import { startTestIssuer, type TestIssuer } from "./issuer.ts";
import { startGate, type TestGate } from "./gate.ts";
import { gateEnv, ready, RESOURCE } from "./rig.ts";

// ---- the strict upstream -------------------------------------------------------------------

/** One request as the strict upstream parsed it. */
export interface StrictRequest {
  /** 0-based, over the whole upstream. */
  readonly seq: number;
  /** 0-based index of the TCP connection it came on. */
  readonly connection: number;
  readonly method: string;
  /** The request target exactly as sent. */
  readonly target: string;
  /** Field lines in order: the name as sent and the value bytes (OWS around it removed). */
  readonly fields: readonly (readonly [string, Uint8Array])[];
  readonly framing: "none" | "content-length" | "chunked";
  /** The body bytes (chunked framing removed). */
  readonly body: Uint8Array;
  /** The value (latin1) of the field named `name` (case-insensitive); repeats joined by ", ". */
  header(name: string): string | null;
  /** How many field lines have this exact name (case-insensitive, `_` and `-` distinct). */
  count(name: string): number;
}

/** Something that arrived and is not a well-formed, unpipelined HTTP/1.1 request. */
export interface Violation {
  readonly connection: number;
  readonly kind:
    | "request-line"
    | "target"
    | "field-line"
    | "framing"
    | "host"
    | "chunked"
    | "line-ending"
    | "too-large"
    | "incomplete"
    | "pipelined";
  readonly detail: string;
}

/** Options for {@linkcode startStrictUpstream}. */
export interface StrictUpstreamOptions {
  /** Milliseconds to wait before answering a request (a slow upstream endpoint). */
  delayMs?: (req: StrictRequest) => number;
}

/** A running strict upstream. */
export interface StrictUpstream extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly requests: StrictRequest[];
  readonly violations: Violation[];
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Every byte received on connection `n`, printable (CR, LF, non-ASCII escaped). */
  wire(connection: number): string;
  /** Resolves once `count` requests were recorded (rejects after `timeoutMs`). */
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  /** A one-line-per-request summary plus the violations, for assertion messages. */
  describe(): string;
  close(): Promise<void>;
}

/** The JSON body every answer carries: which request it answers. */
export interface EchoBody {
  seq: number;
  connection: number;
  method: string;
  target: string;
  /** X-Auth-Subject as the upstream saw it. */
  subject: string | null;
  /** X-Test-Id as the upstream saw it (tests put a per-request id there). */
  test: string | null;
  /** The body received, latin1, first 200 bytes. */
  body: string;
}

/** Bytes as a string of U+0000-U+00FF, one char per byte (TextDecoder "latin1" is windows-1252). */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}
const HEAD_LIMIT = 64 * 1024;
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9112 §3.2.1 origin-form = absolute-path [ "?" query ], RFC 3986 §3.3, §3.4. */
const ORIGIN_FORM =
  /^(?:\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)+(?:\?(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?$/;

class ParseError extends Error {
  constructor(readonly kind: Violation["kind"], detail: string) {
    super(detail);
  }
}

/** Printable form of wire bytes: CR, LF, HTAB, other controls and non-ASCII escaped. */
export function printable(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) {
    if (b === 13) s += "\\r";
    else if (b === 10) s += "\\n";
    else if (b === 9) s += "\\t";
    else if (b === 0x5c) s += "\\\\";
    else if (b < 0x20 || b >= 0x7f) s += `\\x${b.toString(16).padStart(2, "0")}`;
    else s += String.fromCharCode(b);
  }
  return s;
}

/** One connection's receive buffer, filled by a pump, read by the parser. */
class Inbox {
  buf = new Uint8Array(0);
  off = 0;
  eof = false;
  all: number[] = [];
  #wake: (() => void) | null = null;
  push(chunk: Uint8Array) {
    const rest = this.buf.subarray(this.off);
    const next = new Uint8Array(rest.length + chunk.length);
    next.set(rest);
    next.set(chunk, rest.length);
    this.buf = next;
    this.off = 0;
    for (const b of chunk) this.all.push(b);
    this.#notify();
  }
  end() {
    this.eof = true;
    this.#notify();
  }
  #notify() {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }
  get available(): number {
    return this.buf.length - this.off;
  }
  /** Waits until more bytes arrived (or EOF); false at EOF. */
  async more(): Promise<boolean> {
    if (this.eof) return false;
    await new Promise<void>((r) => this.#wake = r);
    return true;
  }
  /** Reads one CRLF-terminated line (without the CRLF), null at EOF before any byte. */
  async line(limit: number): Promise<Uint8Array | null> {
    for (;;) {
      const view = this.buf.subarray(this.off);
      for (let i = 0; i < view.length; i++) {
        if (view[i] === 10) {
          if (i === 0 || view[i - 1] !== 13) {
            throw new ParseError("line-ending", `bare LF in "${printable(view.subarray(0, i))}"`);
          }
          const line = view.slice(0, i - 1);
          const cr = line.indexOf(13);
          if (cr !== -1) {
            throw new ParseError("line-ending", `bare CR in "${printable(line)}"`);
          }
          this.off += i + 1;
          return line;
        }
      }
      if (view.length > limit) throw new ParseError("too-large", "line longer than 64 KiB");
      if (!(await this.more())) {
        if (this.available === 0) return null;
        throw new ParseError("incomplete", `EOF inside "${printable(view.subarray(0, 200))}"`);
      }
    }
  }
  async bytes(n: number): Promise<Uint8Array> {
    while (this.available < n) {
      if (!(await this.more())) {
        throw new ParseError("incomplete", `EOF after ${this.available} of ${n} body bytes`);
      }
    }
    const out = this.buf.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }
}

function isFieldValueByte(b: number): boolean {
  return b === 9 || b === 32 || (b >= 0x21 && b <= 0x7e) || b >= 0x80;
}

function trimOws(v: Uint8Array): Uint8Array {
  let s = 0;
  let e = v.length;
  while (s < e && (v[s] === 32 || v[s] === 9)) s++;
  while (e > s && (v[e - 1] === 32 || v[e - 1] === 9)) e--;
  return v.slice(s, e);
}

async function readFields(inbox: Inbox): Promise<[string, Uint8Array][]> {
  const fields: [string, Uint8Array][] = [];
  let size = 0;
  for (;;) {
    const line = await inbox.line(HEAD_LIMIT);
    if (line === null) throw new ParseError("incomplete", "EOF inside the field section");
    size += line.length + 2;
    if (size > HEAD_LIMIT) throw new ParseError("too-large", "field section over 64 KiB");
    if (line.length === 0) return fields;
    if (line[0] === 32 || line[0] === 9) {
      throw new ParseError("field-line", `obs-fold line "${printable(line)}"`);
    }
    const colon = line.indexOf(0x3a);
    const name = colon === -1 ? "" : latin1(line.subarray(0, colon));
    if (colon === -1 || !TCHAR.test(name)) {
      throw new ParseError("field-line", `not token ":" value: "${printable(line)}"`);
    }
    const value = trimOws(line.subarray(colon + 1));
    if (!value.every(isFieldValueByte)) {
      throw new ParseError("field-line", `control byte in the value of "${printable(line)}"`);
    }
    fields.push([name, value]);
  }
}

async function readRequest(
  inbox: Inbox,
  seq: () => number,
  connection: number,
): Promise<StrictRequest | null> {
  const first = await inbox.line(HEAD_LIMIT);
  if (first === null) return null;
  const parts = latin1(first).split(" ");
  if (parts.length !== 3 || !TCHAR.test(parts[0]) || parts[2] !== "HTTP/1.1") {
    throw new ParseError("request-line", `"${printable(first)}"`);
  }
  const [method, target] = parts;
  if (first.some((b) => b >= 0x80) || !ORIGIN_FORM.test(target)) {
    throw new ParseError("target", `not an RFC 3986 origin-form: "${printable(first)}"`);
  }
  const fields = await readFields(inbox);
  const named = (n: string) => fields.filter(([k]) => k.toLowerCase() === n);
  const hosts = named("host");
  if (hosts.length !== 1) {
    throw new ParseError("host", `${hosts.length} Host field lines (RFC 9112 §3.2 wants one)`);
  }
  const te = named("transfer-encoding");
  const cl = named("content-length");
  let framing: StrictRequest["framing"] = "none";
  let body: Uint8Array = new Uint8Array(0);
  if (te.length > 0) {
    if (cl.length > 0) throw new ParseError("framing", "both Transfer-Encoding and Content-Length");
    const v = te.map(([, b]) => latin1(b)).join(", ");
    if (te.length !== 1 || v.toLowerCase() !== "chunked") {
      throw new ParseError("framing", `Transfer-Encoding "${printable(te[0][1])}"`);
    }
    framing = "chunked";
    body = await readChunked(inbox);
  } else if (cl.length > 0) {
    const v = latin1(cl[0][1]);
    if (cl.length !== 1 || !/^[0-9]{1,15}$/.test(v)) {
      throw new ParseError(
        "framing",
        `Content-Length ${JSON.stringify(cl.map(([, b]) => latin1(b)))}`,
      );
    }
    framing = "content-length";
    body = await inbox.bytes(Number(v));
  }
  return request(seq(), connection, method, target, fields, framing, body);
}

async function readChunked(inbox: Inbox): Promise<Uint8Array<ArrayBuffer>> {
  const parts: Uint8Array[] = [];
  for (;;) {
    const line = await inbox.line(HEAD_LIMIT);
    if (line === null) throw new ParseError("incomplete", "EOF before a chunk size");
    const text = latin1(line);
    const m = /^([0-9A-Fa-f]{1,15})((?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:=[^;]*)?)*)$/
      .exec(text);
    if (!m) throw new ParseError("chunked", `chunk-size line "${printable(line)}"`);
    const size = parseInt(m[1], 16);
    if (size === 0) {
      await readFields(inbox); // trailer section
      break;
    }
    parts.push(await inbox.bytes(size));
    const end = await inbox.bytes(2);
    if (end[0] !== 13 || end[1] !== 10) {
      throw new ParseError("chunked", `chunk data not followed by CRLF: "${printable(end)}"`);
    }
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
}

function request(
  seq: number,
  connection: number,
  method: string,
  target: string,
  fields: [string, Uint8Array][],
  framing: StrictRequest["framing"],
  body: Uint8Array,
): StrictRequest {
  return {
    seq,
    connection,
    method,
    target,
    fields,
    framing,
    body,
    header(name) {
      const n = name.toLowerCase();
      const vs = fields.filter(([k]) => k.toLowerCase() === n).map(([, v]) => latin1(v));
      return vs.length === 0 ? null : vs.join(", ");
    },
    count(name) {
      const n = name.toLowerCase();
      return fields.filter(([k]) => k.toLowerCase() === n).length;
    },
  };
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function answer(req: StrictRequest): Uint8Array {
  const echo: EchoBody = {
    seq: req.seq,
    connection: req.connection,
    method: req.method,
    target: req.target,
    subject: req.header("x-auth-subject"),
    test: req.header("x-test-id"),
    body: latin1(req.body.subarray(0, 200)),
  };
  const body = new TextEncoder().encode(JSON.stringify(echo));
  const head = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n` +
    `x-upstream-seq: ${req.seq}\r\ncontent-length: ${body.length}\r\n\r\n`;
  const out = new Uint8Array(head.length + (req.method === "HEAD" ? 0 : body.length));
  out.set(new TextEncoder().encode(head));
  if (req.method !== "HEAD") out.set(body, head.length);
  return out;
}

/** Starts a strict upstream; close it with `await using` or `close()`. */
export function startStrictUpstream(options: StrictUpstreamOptions = {}): StrictUpstream {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const requests: StrictRequest[] = [];
  const violations: Violation[] = [];
  const inboxes: Inbox[] = [];
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let waiters: (() => void)[] = [];
  let closing = false;
  let wakeClosing!: () => void;
  const closed = new Promise<void>((r) => wakeClosing = r);
  const notify = () => {
    const ws = waiters;
    waiters = [];
    for (const w of ws) w();
  };

  async function serve(conn: Deno.Conn, index: number): Promise<void> {
    const inbox = new Inbox();
    inboxes[index] = inbox;
    const pump = pumpInto(conn, inbox);
    try {
      for (;;) {
        let req: StrictRequest | null;
        try {
          req = await readRequest(inbox, () => requests.length, index);
        } catch (e) {
          if (!(e instanceof ParseError)) throw e;
          if (!(closing && e.kind === "incomplete")) {
            violations.push({ connection: index, kind: e.kind, detail: e.message });
            notify();
          }
          if (e.kind !== "incomplete") {
            await writeAll(
              conn,
              new TextEncoder().encode(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
              ),
            ).catch(() => {});
          }
          break;
        }
        if (req === null) break;
        requests.push(req);
        notify();
        const delay = options.delayMs?.(req) ?? 0;
        if (delay > 0) {
          let timer: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([
            new Promise((r) => timer = setTimeout(r, delay)),
            closed,
          ]);
          clearTimeout(timer);
        }
        if (inbox.available > 0) {
          // The next request's bytes arrived before this one was answered: a proxy that sends
          // one request per exchange never does that (RFC 9112 §9.3.2 pipelining).
          violations.push({
            connection: index,
            kind: "pipelined",
            detail: `"${
              printable(inbox.buf.subarray(inbox.off, inbox.off + 120))
            }" arrived before ${req.method} ${req.target} was answered`,
          });
          notify();
        }
        if (closing) break;
        await writeAll(conn, answer(req));
        if (/(^|,)\s*close\s*(,|$)/i.test(req.header("connection") ?? "")) break;
      }
    } catch { /* the peer went away */ }
    try {
      conn.close();
    } catch { /* already closed */ }
    await pump;
  }

  const loop = (async () => {
    let n = 0;
    try {
      for await (const conn of listener) {
        conns.add(conn);
        const task = serve(conn, n++).finally(() => conns.delete(conn));
        tasks.add(task);
        task.finally(() => tasks.delete(task));
      }
    } catch { /* listener closed */ }
  })();

  const close = async () => {
    if (closing) return;
    closing = true;
    wakeClosing();
    listener.close();
    for (const c of conns) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    await loop;
    await Promise.allSettled([...tasks]);
    notify();
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    violations,
    get accepted() {
      return inboxes.length;
    },
    wire(n) {
      return printable(Uint8Array.from(inboxes[n]?.all ?? []));
    },
    async waitForRequests(count, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (requests.length < count) {
        const left = deadline - Date.now();
        if (left <= 0 || closing) {
          throw new Error(
            `upstream got ${requests.length} of ${count} requests\n${this.describe()}`,
          );
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((r) => {
          waiters.push(r);
          timer = setTimeout(r, Math.min(left, 100));
        });
        clearTimeout(timer);
      }
    },
    describe() {
      const lines = requests.map((r) =>
        `  #${r.seq} conn ${r.connection}: ${r.method} ${r.target} | ` +
        r.fields.map(([k, v]) => `${k}: ${printable(v)}`).join(" | ") +
        (r.body.length > 0 ? ` | body ${JSON.stringify(printable(r.body.subarray(0, 120)))}` : "")
      );
      const bad = violations.map((v) => `  conn ${v.connection} ${v.kind}: ${v.detail}`);
      inboxes.forEach((box, i) => {
        // Bytes that never became a complete request (a head still waiting for its body...).
        if (box.available > 0) {
          bad.push(
            `  conn ${i} unparsed: "${printable(box.buf.subarray(box.off, box.off + 400))}"`,
          );
        }
      });
      return `upstream connections accepted: ${inboxes.length}, bytes received: ${
        inboxes.reduce((n, b) => n + b.all.length, 0)
      }\nupstream requests (${requests.length}):\n${lines.join("\n") || "  (none)"}\n` +
        `upstream violations (${violations.length}):\n${bad.join("\n") || "  (none)"}`;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

// ---- the oracle: what the gate must send after the fix -------------------------------------

/**
 * Inbound header names the gate manages, lower-case with `-`: a client field whose name equals
 * one of them after lower-casing and mapping `_` to `-` never reaches the upstream. Besides
 * these: every field named in the request's Connection (RFC 9110 §7.6.1), every configured
 * CLAIM_HEADERS header, and `credentials` only while FORWARD_AUTHORIZATION is false.
 */
export const MANAGED_HEADERS = Object.freeze(
  {
    /** RFC 9112 §6: the gate re-frames the body and names the upstream host. */
    framing: ["host", "content-length", "transfer-encoding"],
    /** RFC 9110 §7.6.1, §6.6.2, §11.7.1-2. */
    hopByHop: [
      "connection",
      "keep-alive",
      "proxy-connection",
      "te",
      "trailer",
      "upgrade",
      "proxy-authenticate",
      "proxy-authorization",
    ],
    /** Set by the gate itself (RFC 7239 `forwarded` included). */
    gateSet: [
      "x-forwarded-for",
      "x-forwarded-proto",
      "x-forwarded-host",
      "x-real-ip",
      "x-request-id",
      "forwarded",
    ],
    /** Client-address and rewrite headers some upstream or framework trusts. */
    clientAddress: [
      "true-client-ip",
      "x-client-ip",
      "cf-connecting-ip",
      "fastly-client-ip",
      "x-cluster-client-ip",
      "x-forwarded",
      "forwarded-for",
      "x-forwarded-port",
      "x-forwarded-prefix",
      "x-forwarded-server",
      "x-forwarded-ssl",
      "x-forwarded-scheme",
      "x-forwarded-uri",
      "x-forwarded-path",
      "x-original-url",
      "x-original-uri",
      "x-rewrite-url",
      "x-original-host",
      "x-original-forwarded-for",
      "x-envoy-external-address",
    ],
    /** Consumed by the gate's side: Deno.serve already answered `Expect: 100-continue`. */
    consumed: ["expect"],
    /** Dropped unless FORWARD_AUTHORIZATION=true. */
    credentials: ["authorization", "cookie"],
  } as const,
);

/** The always-managed names of {@linkcode MANAGED_HEADERS} (credentials left out). */
export const ALWAYS_MANAGED: ReadonlySet<string> = new Set([
  ...MANAGED_HEADERS.framing,
  ...MANAGED_HEADERS.hopByHop,
  ...MANAGED_HEADERS.gateSet,
  ...MANAGED_HEADERS.clientAddress,
  ...MANAGED_HEADERS.consumed,
]);

/** A field name as the managed-name rule compares it: lower case, `_` read as `-`. */
export function canonicalName(name: string): string {
  return name.toLowerCase().replaceAll("_", "-");
}

/** Whether an inbound field named `name` must be dropped. */
export function isManaged(
  name: string,
  options: {
    claimHeaders: readonly string[];
    forwardAuthorization: boolean;
    /** The tokens of the request's Connection field(s). */
    connectionTokens: readonly string[];
  },
): boolean {
  const c = canonicalName(name);
  if (ALWAYS_MANAGED.has(c)) return true;
  if (!options.forwardAuthorization && (c === "authorization" || c === "cookie")) return true;
  if (options.claimHeaders.some((h) => canonicalName(h) === c)) return true;
  return options.connectionTokens.some((t) => canonicalName(t) === c);
}

/** The tokens of a Connection field value (RFC 9110 §7.6.1), lower case. */
export function connectionTokens(value: string | null): string[] {
  if (value === null) return [];
  return value.split(",").map((t) => t.trim().toLowerCase()).filter((t) => TCHAR.test(t));
}

const PCHAR = /[A-Za-z0-9\-._~!$&'()*+,;=:@]/;
const HEX2 = /^[0-9A-Fa-f]{2}$/;

function serialise(part: string, extra: string): string | null {
  let out = "";
  const cps = [...part];
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i];
    if (c === "%") {
      const hex = (cps[i + 1] ?? "") + (cps[i + 2] ?? "");
      if (!HEX2.test(hex)) return null;
      out += "%" + hex;
      i += 2;
    } else if (PCHAR.test(c) || extra.includes(c)) out += c;
    else {
      for (const b of new TextEncoder().encode(c)) {
        out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
      }
    }
  }
  return out;
}

function isAccessTokenParam(param: string): boolean {
  const eq = param.indexOf("=");
  const name = (eq === -1 ? param : param.slice(0, eq)).replaceAll("+", " ");
  try {
    return decodeURIComponent(name) === "access_token";
  } catch {
    return false;
  }
}

/**
 * The upstream request target for a client path and query as Deno.serve decoded them (code
 * points; `query` without the `?`, null when there is none), or null when the gate must answer
 * 400 (a `%` without two hex digits). Base path + path and query re-serialised: RFC 3986 pchar,
 * `/` (and `?` in the query) and valid `%XX` pass as they are, every other code point is
 * percent-encoded as its UTF-8 bytes in upper-case hex; `access_token` parameters are removed.
 */
export function expectedTarget(
  basePath: string,
  path: string,
  query: string | null,
): string | null {
  const p = serialise(path, "/");
  if (p === null) return null;
  if (query === null) return basePath + p;
  const q = serialise(query, "/?");
  if (q === null) return null;
  const kept = q.split("&").filter((x) => !isAccessTokenParam(x));
  if (kept.length === q.split("&").length) return `${basePath}${p}?${q}`;
  return kept.length === 0 ? basePath + p : `${basePath}${p}?${kept.join("&")}`;
}

const DEC_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const IPV4 = new RegExp(`^${DEC_OCTET}(?:\\.${DEC_OCTET}){3}$`);

function isIpv6(s: string): boolean {
  let text = s;
  const lastColon = text.lastIndexOf(":");
  if (lastColon !== -1 && text.slice(lastColon + 1).includes(".")) {
    // An embedded IPv4address stands for two 16-bit groups.
    if (!IPV4.test(text.slice(lastColon + 1))) return false;
    text = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = text.split("::");
  if (halves.length > 2) return false;
  const groups = (h: string) => h === "" ? [] : h.split(":");
  const all = halves.flatMap(groups);
  if (!all.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  const n = all.length;
  return halves.length === 2 ? n <= 7 : n === 8;
}

/**
 * RFC 9110 §7.2 Host = uri-host [ ":" port ] (RFC 3986 §3.2.2-3): IP-literal, IPv4address or
 * reg-name (unreserved / pct-encoded / sub-delims, possibly empty), port = *DIGIT. No userinfo,
 * no `/ ? #`, no whitespace, nothing outside ASCII.
 */
export function isValidAuthority(text: string): boolean {
  let host = text;
  const m = /^(.*?)(?::([0-9]*))?$/.exec(text);
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close === -1) return false;
    const rest = text.slice(close + 1);
    if (rest !== "" && !/^:[0-9]*$/.test(rest)) return false;
    const lit = text.slice(1, close);
    if (/^v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+$/.test(lit)) return true;
    return isIpv6(lit);
  }
  if (m === null) return false;
  host = m[1];
  return /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$/.test(host);
}

// ---- a rig around the strict upstream --------------------------------------------------------

/** An issuer, a strict upstream and a gate in front of it. */
export interface StrictRig extends AsyncDisposable {
  issuer: TestIssuer;
  upstream: StrictUpstream;
  gate: TestGate;
  close(): Promise<void>;
}

/** Options for {@linkcode startStrictRig}. */
export interface StrictRigOptions {
  /** Extra gate variables. */
  env?: Record<string, string>;
  /** Appended to the upstream URL (UPSTREAM_URL's base path), e.g. "/up". */
  basePath?: string;
  upstream?: StrictUpstreamOptions;
}

/** Starts an issuer, a strict upstream and a gate, and waits until the gate is ready. */
export async function startStrictRig(options: StrictRigOptions = {}): Promise<StrictRig> {
  const issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  const upstream = startStrictUpstream(options.upstream);
  let gate: TestGate;
  try {
    gate = await startGate(
      gateEnv(issuer, { url: upstream.url + (options.basePath ?? "") }, options.env),
    );
    try {
      await ready(gate);
    } catch (err) {
      await gate.close();
      throw err;
    }
  } catch (err) {
    await upstream.close();
    await issuer.close();
    throw err;
  }
  let done: Promise<void> | undefined;
  const close = () =>
    done ??= (async () => {
      await gate.close();
      await upstream.close();
      await issuer.close();
    })();
  return { issuer, upstream, gate, close, [Symbol.asyncDispose]: close };
}

// ---- a raw client ----------------------------------------------------------------------------

/** A response read off a raw socket. */
export interface WireResponse {
  status: number;
  /** Field lines, names lower-cased, values latin1. */
  headers: [string, string][];
  body: Uint8Array;
  /** The body as UTF-8 text. */
  text: string;
}

/** Latin1 string → bytes (each char must be ≤ U+00FF). */
export function bytesOf(latin1Text: string): Uint8Array {
  return Uint8Array.from(latin1Text, (c) => {
    const n = c.charCodeAt(0);
    if (n > 0xff) throw new Error(`bytesOf: U+${n.toString(16)} is not a byte`);
    return n;
  });
}

/** UTF-8 bytes of `s` as a latin1 string (to splice raw UTF-8 into a latin1 request text). */
export function utf8(s: string): string {
  return latin1(new TextEncoder().encode(s));
}

/**
 * Sends `request` (raw bytes) to `port` and reads one response: framed by Content-Length or
 * chunked, else to EOF. null when the server closed without a response head. Rejects after
 * `timeoutMs`.
 */
export async function wireExchange(
  port: number,
  request: Uint8Array,
  timeoutMs = 10_000,
): Promise<WireResponse | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  const inbox = new Inbox();
  const pump = pumpInto(conn, inbox);
  let res: WireResponse | null = null;
  try {
    // A server that refuses the request early may reset before all of it is written.
    await writeAll(conn, request).catch(() => {});
    res = await readResponse(inbox).catch((e) => {
      if (e instanceof ParseError) return null;
      throw e;
    });
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
    await pump;
  }
  if (timedOut) throw new Error(`no response within ${timeoutMs} ms`);
  return res;
}

async function readResponse(inbox: Inbox): Promise<WireResponse | null> {
  const status = await inbox.line(HEAD_LIMIT);
  if (status === null) return null;
  const code = Number(latin1(status).split(" ")[1]);
  const fields = await readFields(inbox);
  const headers = fields.map(([k, v]) => [k.toLowerCase(), latin1(v)] as [string, string]);
  const get = (n: string) => headers.find(([k]) => k === n)?.[1];
  let body: Uint8Array;
  if (code === 204 || code === 304) body = new Uint8Array(0);
  else if (get("transfer-encoding")?.toLowerCase() === "chunked") body = await readChunked(inbox);
  else if (get("content-length") !== undefined) {
    body = await inbox.bytes(Number(get("content-length")));
  } else {
    while (await inbox.more()) { /* to EOF */ }
    body = inbox.buf.slice(inbox.off);
  }
  return { status: code, headers, body, text: new TextDecoder().decode(body) };
}

/** Reads `conn` into `inbox` until EOF, a reset or a close by us, then ends the inbox. */
async function pumpInto(conn: Deno.Conn, inbox: Inbox): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      inbox.push(buf.slice(0, n));
    }
  } catch { /* reset, or closed by us */ }
  inbox.end();
}
