/**
 * Fuzz tests for the response side of the HTTP/1.1 client.
 *
 * 1. Property tests: the head parser and the chunked decoder accept exactly what a reference
 *    grammar accepts. The oracle below is written from the RFC 9112 / RFC 9110 ABNF as regular
 *    expressions, independently of parse.ts, plus the two documented leniencies of the parser: a
 *    bare LF ends a line like CRLF (RFC 9112 §2.2), and a status line may lack the SP before an
 *    empty reason phrase ("HTTP/1.1 204").
 * 2. A raw TCP upstream answering many concurrent requests through one shared client with
 *    generated responses: valid ones in random write splits, broken heads and chunk framing, stray
 *    bytes after bodies and after 204/304/HEAD, Content-Length mismatches. Each request carries a
 *    unique id; a legitimate response echoes it. Invariant: each request gets exactly its own body
 *    or an error, never bytes holding another request's id.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { Http1Client, Http1Error, type Http1Request } from "./client.ts";
import { ChunkedDecoder, findHeadEnd, Http1ProtocolError, parseResponseHead } from "./parse.ts";
import { encodeHead } from "./head.ts";
import { startRawUpstream } from "../../tests/helpers/upstream.ts";

// ---- the oracle: RFC 9112 / RFC 9110 ABNF as regular expressions ----

const TCHAR = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]";
const TOKEN = `${TCHAR}+`;
/** field-vchar = VCHAR / obs-text */
const FVCHAR = "[\\x21-\\x7e\\x80-\\xff]";
/** OWS field-value OWS: any run of SP, HTAB and field-vchar (RFC 9110 §5.5). */
const FIELD_LINE = new RegExp(`^(${TOKEN}):[ \\t]*((?:[ \\t]*${FVCHAR})*)[ \\t]*$`);
/** status-line = HTTP-version SP status-code SP [ reason-phrase ]; leniency: "SP [reason]" optional. */
const STATUS = /^HTTP\/1\.([01]) ([0-9]{3})(?: [\t \x21-\x7e\x80-\xff]*)?$/;
const QUOTED =
  '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
/** chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1, §7.1.1); leniency: bare LF. */
const CHUNK_LINE = new RegExp(
  `^([0-9A-Fa-f]+)(?:[ \\t]*;[ \\t]*${TOKEN}(?:[ \\t]*=[ \\t]*(?:${TOKEN}|${QUOTED}))?)*\\r?\\n$`,
);

interface OracleHead {
  headers: [string, string][];
  contentLength: number;
  chunked: boolean;
}

/** The oracle's verdict on a head (status line through the blank line): null when refused. */
function oracleHead(text: string): OracleHead | null {
  // Lines end in CRLF or LF; any other CR is a bare CR.
  const lines = text.split(/\r?\n/);
  if (lines.length < 3 || lines.pop() !== "" || lines.pop() !== "") return null;
  if (lines.some((l) => l.includes("\r"))) return null;
  const status = STATUS.exec(lines[0]);
  if (status === null) return null;
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const m = FIELD_LINE.exec(line);
    if (m === null) return null; // also obs-fold: a line starting with SP/HTAB is no field-line
    headers.push([m[1].toLowerCase(), m[2].replace(/[ \t]+$/, "")]);
  }
  // RFC 9110 §8.6: Content-Length = 1*DIGIT; a list of identical values counts as one (the
  // parser takes 15 digits at most and no empty list members: the documented subset).
  const lengths = headers.filter(([n]) => n === "content-length")
    .flatMap(([, v]) => v.split(",").map((p) => p.trim()));
  if (lengths.some((v) => !/^[0-9]{1,15}$/.test(v))) return null;
  if (new Set(lengths.map(Number)).size > 1) return null;
  let contentLength = lengths.length > 0 ? Number(lengths[0]) : -1;
  const codings = headers.filter(([n]) => n === "transfer-encoding")
    .flatMap(([, v]) => v.split(",").map((p) => p.trim().toLowerCase()).filter((p) => p !== ""));
  const hasTe = headers.some(([n]) => n === "transfer-encoding");
  let chunked = false;
  if (hasTe) {
    // RFC 9112 §6.1: no Transfer-Encoding in HTTP/1.0; chunked at most once, and last.
    if (status[1] === "0") return null;
    const count = codings.filter((c) => c === "chunked").length;
    chunked = codings.at(-1) === "chunked";
    if (count > 1 || (count === 1 && !chunked)) return null;
    contentLength = -1;
  }
  return { headers, contentLength, chunked };
}

/** The oracle's verdict on a chunked body: the payload, or null when refused. */
function oracleChunked(wire: string): string | null {
  let rest = wire;
  let payload = "";
  for (;;) {
    const eol = rest.indexOf("\n");
    if (eol === -1) return null;
    const m = CHUNK_LINE.exec(rest.slice(0, eol + 1));
    if (m === null) return null;
    rest = rest.slice(eol + 1);
    const size = parseInt(m[1], 16);
    if (size === 0) break;
    payload += rest.slice(0, size);
    rest = rest.slice(size);
    const crlf = /^\r?\n/.exec(rest);
    if (crlf === null) return null;
    rest = rest.slice(crlf[0].length);
  }
  // trailer-section = *( field-line CRLF ), then CRLF.
  for (;;) {
    const eol = rest.indexOf("\n");
    if (eol === -1) return null;
    const line = rest.slice(0, eol).replace(/\r$/, "");
    rest = rest.slice(eol + 1);
    if (line.includes("\r")) return null;
    if (line === "") return rest === "" ? payload : null;
    if (!FIELD_LINE.test(line)) return null;
  }
}

// ---- property tests: parser and decoder against the oracle ----

const pick = <T>(...xs: T[]) => fc.constantFrom(...xs);
/** Atoms to build field values and reason phrases from, valid and not. */
const valueAtom = pick(
  "a",
  "Z9",
  " ",
  "\t",
  "\xe9",
  "\xff",
  "\x80",
  ",",
  "\0",
  "\x01",
  "\x7f",
  "\r",
  ";",
  '"',
  ":",
  "5",
);
const value = fc.array(valueAtom, { maxLength: 6 }).map((a) => a.join(""));
const fieldName = fc.oneof(
  pick("content-length", "Content-Length", "transfer-encoding", "connection", "x-a", "X-B"),
  fc.array(pick("a", "Q", "-", "!", " ", "\t", "(", "@", "\xe9", "\0"), {
    minLength: 0,
    maxLength: 4,
  })
    .map((a) => a.join("")),
);
const framingValue = pick(
  "5",
  "007",
  "5, 5",
  "5,6",
  "",
  "1234567890123456",
  "-1",
  "chunked",
  "gzip, chunked",
  "chunked, chunked",
  "chunked, gzip",
  "gzip",
  "Chunked",
  "close",
);
const eol = fc.oneof(
  { weight: 8, arbitrary: fc.constant("\r\n") },
  { weight: 1, arbitrary: pick("\n", "\r", "\r\r\n") },
);
const fieldLine = fc.tuple(
  fieldName,
  pick(":", ": ", ":\t", " :", ""),
  fc.oneof(value, framingValue),
  eol,
).map(([n, c, v, e]) => `${n}${c}${v}${e}`);
const foldLine = fc.tuple(pick(" ", "\t"), value, eol).map(([w, v, e]) => `${w}${v}${e}`);
const statusLine = fc.oneof(
  {
    weight: 4,
    arbitrary: pick("HTTP/1.1 200 OK", "HTTP/1.0 200 OK", "HTTP/1.1 204", "HTTP/1.1 304 "),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      pick("HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1", " HTTP/1.1"),
      pick(" ", "  ", "\t"),
      pick("200", "20", "2000", "abc"),
      pick("", " ", "\t"),
      value,
    )
      .map((p) => p.join("")),
  },
);
const headText = fc.tuple(
  statusLine,
  eol,
  fc.array(fc.oneof({ weight: 6, arbitrary: fieldLine }, { weight: 1, arbitrary: foldLine }), {
    maxLength: 5,
  }),
  eol,
).map(([s, e1, fields, e2]) => `${s}${e1}${fields.join("")}${e2}`);

Deno.test("parseResponseHead() accepts exactly the heads the RFC 9112 grammar accepts, with the same framing", () => {
  let accepted = 0;
  fc.assert(
    fc.property(headText, (text) => {
      const bytes = encodeHead(text);
      const end = findHeadEnd(bytes);
      fc.pre(end !== -1);
      const head = text.slice(0, end);
      const want = oracleHead(head);
      let got: ReturnType<typeof parseResponseHead> | null = null;
      try {
        got = parseResponseHead(bytes.subarray(0, end));
      } catch (e) {
        if (!(e instanceof Http1ProtocolError)) throw e;
      }
      assert.equal(got !== null, want !== null, `${JSON.stringify(head)}: parser vs oracle`);
      if (got === null || want === null) return;
      accepted++;
      assert.deepEqual(got.headers, want.headers);
      assert.equal(got.contentLength, want.contentLength);
      assert.equal(got.chunked, want.chunked);
    }),
    { numRuns: 3000 },
  );
  assert.ok(accepted > 300, `only ${accepted} valid heads were generated`);
});

/** Atoms of a chunk-size line: hex digits, extension syntax, and bytes that do not belong. */
const lineAtom = fc.oneof(
  { weight: 3, arbitrary: pick("5", "0", "a", "F") },
  { weight: 4, arbitrary: pick(";", " ", "\t", "=", '"', "\\", "x", "y-z", '\\"') },
  { weight: 1, arbitrary: pick("\r", "\0", "\x7f", ",", "/", "\xe9", "\x01", "\n5") },
);
const ws = fc.array(pick(" ", "\t"), { maxLength: 2 }).map((a) => a.join(""));
const extToken = pick("a", "x-y", "Q9", "!#$%&'*+-.^_`|~");
const quoted = fc.array(pick("a", " ", "\t", '\\"', "\\\\", "\xe9", ";", "=", ","), {
  maxLength: 4,
})
  .map((a) => `"${a.join("")}"`);
/** chunk-ext built from the grammar: mostly valid, the atoms above supply the rest. */
const chunkExt = fc.array(
  fc.tuple(ws, ws, extToken, fc.option(fc.tuple(ws, ws, fc.oneof(extToken, quoted)))).map((
    [w1, w2, name, val],
  ) => `${w1};${w2}${name}${val === null ? "" : `${val[0]}=${val[1]}${val[2]}`}`),
  { maxLength: 3 },
).map((a) => a.join(""));
const chunkLine = fc.oneof(
  fc.tuple(
    fc.array(pick("0", "1", "3", "a", "F"), { maxLength: 3 }),
    fc.array(lineAtom, { maxLength: 10 }),
    pick("\r\n", "\r\n", "\n", "\r", ""),
  ).map(([size, ext, e]) => `${size.join("")}${ext.join("")}${e}`),
  fc.tuple(
    pick("0", "1", "3", "a", "F", "00", "0a"),
    chunkExt,
    fc.array(lineAtom, { maxLength: 1 }),
    pick("\r\n", "\r\n", "\n"),
  ).map(([size, ext, noise, e]) => `${size}${ext}${noise.join("")}${e}`),
);
const validTrailer = fc.tuple(
  extToken,
  ws,
  value.filter((v) => !["\0", "\x01", "\x7f", "\r"].some((c) => v.includes(c))),
  ws,
)
  .map(([n, w1, v, w2]) => `${n}:${w1}${v}${w2}\r\n`);
const trailerLine = fc.oneof(
  { weight: 4, arbitrary: validTrailer },
  { weight: 2, arbitrary: fieldLine },
  { weight: 1, arbitrary: foldLine },
);
/** Splits `bytes` at random points, as reads would. */
const splits = fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 8 });

function decode(wire: string, cuts: number[]): string | null {
  const bytes = encodeHead(wire);
  const d = new ChunkedDecoder();
  const out: Uint8Array[] = [];
  let i = 0;
  let k = 0;
  try {
    while (i < bytes.length && !d.done) {
      const n = Math.min(cuts[k++ % cuts.length], bytes.length - i);
      const used = d.push(bytes.subarray(i, i + n), out);
      i += used;
      if (used < n) break;
    }
  } catch (e) {
    if (e instanceof Http1ProtocolError) return null;
    throw e;
  }
  // Refused too when the body is incomplete, or bytes were left after the message.
  if (!d.done || i !== bytes.length) return null;
  return out.map((p) => String.fromCharCode(...p)).join("");
}

Deno.test("ChunkedDecoder accepts exactly the chunk-size lines and trailers the RFC 9112 grammar accepts, in any split", () => {
  let accepted = 0;
  fc.assert(
    fc.property(
      chunkLine,
      fc.array(trailerLine, { maxLength: 3 }),
      splits,
      (line, trailers, cuts) => {
        const size = /^[0-9A-Fa-f]+/.exec(line);
        const n = size === null ? 0 : parseInt(size[0], 16);
        fc.pre(n <= 4096);
        // A line the oracle accepts with a size > 0 is followed by that much data.
        const data = "d".repeat(n);
        const wire = n > 0
          ? `${line}${data}\r\n0\r\n${trailers.join("")}\r\n`
          : `${line}${trailers.join("")}\r\n`;
        const want = oracleChunked(wire);
        const got = decode(wire, cuts);
        assert.equal(got !== null, want !== null, `${JSON.stringify(wire)}: decoder vs oracle`);
        if (got !== null) {
          accepted++;
          assert.equal(got, want);
        }
      },
    ),
    { numRuns: 4000 },
  );
  assert.ok(accepted > 300, `only ${accepted} valid bodies were generated`);
});

// ---- the network fuzzer ----

/** What the upstream does for one request. */
type Behaviour =
  /** 200 with Content-Length, written in random pieces; optional stray bytes in the last write. */
  | { kind: "length"; cuts: number[]; strayInWrite: boolean }
  /** 200 chunked with random chunk sizes, extensions and trailers; optional stray bytes. */
  | { kind: "chunked"; sizes: number[]; ext: string; trailers: boolean; strayInWrite: boolean }
  /** 204 / 304, or a HEAD request, with a body (another response) sent anyway, now or later. */
  | { kind: "no_body"; status: 204 | 304 | "HEAD"; stray: "none" | "same" | "later" }
  /** A broken response head: must fail. */
  | { kind: "bad_head"; fault: number }
  /** A broken chunk-size line or trailer after a valid first chunk: must fail. */
  | { kind: "bad_chunk"; fault: number }
  /** Content-Length shorter than the body sent (excess in the same write). */
  | { kind: "short_length" }
  /** Content-Length longer than the body, then close: must fail. */
  | { kind: "long_length" };

const BAD_HEADS = [
  (cl: string) => `HTTP/1.1 200 OK\r\nContent-Length: 1\r\n ${cl.slice(1)}\r\n\r\n`, // obs-fold
  (cl: string) => `HTTP/1.1 200 OK\r\nX: a\rContent-Length: ${cl}\r\n\r\n`,
  (cl: string) => `HTTP/1.1 200 OK\r\nX: \0\r\nContent-Length: ${cl}\r\n\r\n`,
  (cl: string) => `HTTP/1.1 200 OK\r\nContent-Length : ${cl}\r\n\r\n`,
  (cl: string) => `HTTP/1.1 200\tOK\r\nContent-Length: ${cl}\r\n\r\n`,
  (cl: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${cl}\r\nContent-Length: 1${cl}\r\n\r\n`,
  (cl: string) => `HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: ${cl}\r\n\r\n`,
  (cl: string) => `HTTP/1.1 200 OK\r\nX: \x1b\r\nContent-Length: ${cl}\r\n\r\n`,
];
const BAD_CHUNKS = [
  (n: string) => `${n} 9\r\n`,
  (n: string) => `${n};\r\n`,
  (n: string) => `${n} ;\r\n`,
  () => `;a\r\n`,
  (n: string) => `${n};a=\x01\r\n`,
  (n: string) => `${n};a b\r\n`,
  (n: string) => `${n}\r\r\n`,
  () => `0\r\nX : y\r\n\r\n`,
  () => `0\r\nX: y\r\n folded\r\n\r\n`,
];

const behaviour: fc.Arbitrary<Behaviour> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("length" as const),
      cuts: fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 3 }),
      strayInWrite: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("chunked" as const),
      sizes: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }),
      ext: pick("", ";a", " ; a = b", ';q="x\\"y"'),
      trailers: fc.boolean(),
      strayInWrite: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("no_body" as const),
      status: fc.constantFrom<(204 | 304 | "HEAD")[]>(204, 304, "HEAD"),
      stray: fc.constantFrom<("none" | "same" | "later")[]>("none", "same", "later"),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("bad_head" as const),
      fault: fc.nat(BAD_HEADS.length - 1),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("bad_chunk" as const),
      fault: fc.nat(BAD_CHUNKS.length - 1),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "short_length" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "long_length" as const }) },
);

/** The body a request with this id legitimately gets: the id, framed so it can be found. */
const bodyOf = (id: string) => `<<${id}>>${"~".repeat(id.length % 7)}`;
/** A complete, valid response carrying `id`: what stray bytes look like at their most dangerous. */
const responseOf = (id: string) => {
  const b = bodyOf(id);
  return `HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n\r\n${b}`;
};

/** What the upstream writes, in order, and whether it closes after. */
interface Script {
  writes: string[];
  /** A write sent after a pause (the next turn of the upstream's loop). */
  later?: string;
  close: boolean;
}

function scriptFor(b: Behaviour, id: string): Script {
  const body = bodyOf(id);
  const stray = responseOf(id);
  switch (b.kind) {
    case "length": {
      const wire = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      const writes = cut(wire, b.cuts);
      if (b.strayInWrite) writes[writes.length - 1] += stray;
      return { writes, close: false };
    }
    case "chunked": {
      let framed = "";
      let rest = body;
      for (let i = 0; rest.length > 0; i++) {
        const n = Math.min(b.sizes[i % b.sizes.length], rest.length);
        framed += `${n.toString(16)}${b.ext}\r\n${rest.slice(0, n)}\r\n`;
        rest = rest.slice(n);
      }
      framed += `0${b.ext}\r\n${b.trailers ? "X-Sum: 1\r\nX-T:\tv\r\n" : ""}\r\n`;
      const wire = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${framed}`;
      const writes = cut(wire, [17, 5]);
      if (b.strayInWrite) writes[writes.length - 1] += stray;
      return { writes, close: false };
    }
    case "no_body": {
      const head = b.status === "HEAD"
        ? `HTTP/1.1 200 OK\r\nContent-Length: ${stray.length}\r\n\r\n`
        : `HTTP/1.1 ${b.status} X\r\n\r\n`;
      if (b.stray === "same") return { writes: [head + stray], close: false };
      if (b.stray === "later") return { writes: [head], later: stray, close: false };
      return { writes: [head], close: false };
    }
    case "bad_head":
      // Closing after broken framing keeps a parser that wrongly accepts it from hanging.
      return { writes: [BAD_HEADS[b.fault](String(body.length)) + body], close: true };
    case "bad_chunk": {
      const first = `${body.length.toString(16)}\r\n${body}\r\n`;
      const bad = BAD_CHUNKS[b.fault]("3");
      return {
        writes: [`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${first}`, bad + "abc\r\n"],
        close: true,
      };
    }
    case "short_length":
      return {
        writes: [`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}${stray}`],
        close: false,
      };
    case "long_length":
      return {
        writes: [`HTTP/1.1 200 OK\r\nContent-Length: ${body.length + 10}\r\n\r\n${body}`],
        close: true,
      };
  }
}

/** What the request must end with: its exact body (null: no body), or an error. */
function expected(b: Behaviour, id: string): { body: string | null } | "error" {
  switch (b.kind) {
    case "length":
    case "chunked":
    case "short_length":
      return { body: bodyOf(id) };
    case "no_body":
      return { body: null };
    case "bad_head":
    case "bad_chunk":
    case "long_length":
      return "error";
  }
}

function cut(wire: string, cuts: number[]): string[] {
  const out: string[] = [];
  let i = 0;
  for (const n of cuts) {
    if (i + n >= wire.length) break;
    out.push(wire.slice(i, i + n));
    i += n;
  }
  out.push(wire.slice(i));
  return out;
}

/** A raw upstream that looks up each request's behaviour by the id in its target. */
function fuzzUpstream(behaviours: Map<string, Behaviour>) {
  return startRawUpstream(async (conn) => {
    conn.setNoDelay(true);
    const buf = new Uint8Array(16 * 1024);
    let pending = "";
    for (;;) {
      let end: number;
      while ((end = pending.indexOf("\r\n\r\n")) === -1) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending += String.fromCharCode(...buf.subarray(0, n));
      }
      const request = pending.slice(0, end);
      pending = pending.slice(end + 4);
      const id = /^[A-Z]+ \/r\/([^ ]+) /.exec(request)?.[1];
      const b = id === undefined ? undefined : behaviours.get(id);
      if (id === undefined || b === undefined) return;
      const script = scriptFor(b, id);
      for (const w of script.writes) {
        await conn.write(encodeHead(w));
        if (script.writes.length > 1) await new Promise((r) => setTimeout(r, 0));
      }
      if (script.later !== undefined) {
        await new Promise((r) => setTimeout(r, 1));
        await conn.write(encodeHead(script.later));
      }
      if (script.close) return;
    }
  });
}

type Outcome = { body: string | null } | { error: unknown };

async function exchange(client: Http1Client, id: string, b: Behaviour): Promise<Outcome> {
  const method = b.kind === "no_body" && b.status === "HEAD" ? "HEAD" : "GET";
  const req: Http1Request = {
    head: `${method} /r/${id} HTTP/1.1\r\nhost: up\r\n\r\n`,
    method,
    body: null,
    chunked: false,
    headersTimeoutMs: 5000,
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const res = await client.request(req);
    if (res.body === null) return { body: null };
    if (res.body instanceof Uint8Array) return { body: String.fromCharCode(...res.body) };
    const stream = res.body;
    // A body that never ends is a failure too (not an Http1Error: the property reports it).
    const hung = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        stream.cancel().catch(() => {});
        reject(new Error(`The body of ${id} never ended`));
      }, 3000);
    });
    const bytes = new Uint8Array(await Promise.race([new Response(stream).arrayBuffer(), hung]));
    return { body: String.fromCharCode(...bytes) };
  } catch (error) {
    return { error };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("Http1Client under a hostile upstream: each of many concurrent requests gets exactly its own body or an error", async () => {
  const behaviours = new Map<string, Behaviour>();
  await using up = fuzzUpstream(behaviours);
  // One client for every run: the pool and its connections are shared by all requests.
  const client = new Http1Client({ hostname: "127.0.0.1", port: up.port });
  let run = 0;
  let exact = 0;
  let errors = 0;
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.array(behaviour, { minLength: 16, maxLength: 32 }),
        async (list) => {
          const ids = list.map((_, i) => `${run}x${i}`);
          run++;
          ids.forEach((id, i) => behaviours.set(id, list[i]));
          const outcomes = await Promise.all(ids.map((id, i) => exchange(client, id, list[i])));
          for (const [i, outcome] of outcomes.entries()) {
            const id = ids[i];
            const want = expected(list[i], id);
            if ("error" in outcome) {
              const e = outcome.error;
              assert.ok(e instanceof Http1Error, `${id}: not an Http1Error: ${e}`);
              assert.equal(want, "error", `${id} (${JSON.stringify(list[i])}) failed: ${e}`);
              errors++;
              continue;
            }
            // Never another request's bytes: every id found in the body is this one.
            for (const m of (outcome.body ?? "").matchAll(/<<([^>]*)>>/g)) {
              assert.equal(m[1], id, `${id} got bytes meant for ${m[1]}`);
            }
            assert.notEqual(want, "error", `${id} (${JSON.stringify(list[i])}) was accepted`);
            assert.deepEqual(outcome, want, `${id} (${JSON.stringify(list[i])})`);
            exact++;
          }
          for (const id of ids) behaviours.delete(id);
        },
      ),
      { numRuns: 150 },
    );
  } finally {
    client.close();
  }
  assert.ok(exact > 200 && errors > 50, `${exact} exact bodies, ${errors} errors`);
});
