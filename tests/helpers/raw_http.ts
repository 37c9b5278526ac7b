/**
 * A one-shot HTTP/1.1 client over a raw socket, for what `fetch` cannot do in tests: send repeated
 * header lines or a forged Host, and read a compressed body without decompressing it.
 */
import { concatBytes } from "./bytes.ts";

/** A request to send as written. */
export interface RawRequestInit {
  method: string;
  /** Request target, sent verbatim (no normalisation of `..` or `%2e`). */
  path: string;
  /** Field lines in order; repeated names are sent as separate lines. */
  headers?: [string, string][];
  body?: Uint8Array | string;
}

/** The parsed response. */
export interface RawResponse {
  status: number;
  headers: Headers;
  /** The body bytes as they came off the wire (chunked framing removed). */
  body: Uint8Array;
}

/**
 * The request head {@linkcode rawRequest} writes, byte for byte (request line, a `host` line
 * unless `init` has one, the field lines, `content-length` when there is a body,
 * `connection: close`, the blank line).
 */
export function rawHead(port: number, init: RawRequestInit): string {
  const body = typeof init.body === "string" ? new TextEncoder().encode(init.body) : init.body;
  const lines = [`${init.method} ${init.path} HTTP/1.1`];
  const headers = init.headers ?? [];
  if (!headers.some(([n]) => n.toLowerCase() === "host")) lines.push(`host: 127.0.0.1:${port}`);
  for (const [n, v] of headers) lines.push(`${n}: ${v}`);
  if (body) lines.push(`content-length: ${body.length}`);
  lines.push("connection: close", "", "");
  return lines.join("\r\n");
}

/** Sends one request with `Connection: close` and reads the response to the end. */
export async function rawRequest(port: number, init: RawRequestInit): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const body = typeof init.body === "string" ? new TextEncoder().encode(init.body) : init.body;
    await writeAll(conn, new TextEncoder().encode(rawHead(port, init)));
    if (body) await writeAll(conn, body);
    const raw = await readAll(conn);
    return parse(raw, init.method === "HEAD");
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return concatBytes(...chunks);
}

function parse(raw: Uint8Array, head: boolean): RawResponse {
  let end = -1;
  for (let i = 0; i + 3 < raw.length; i++) {
    if (raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10) {
      end = i;
      break;
    }
  }
  if (end < 0) throw new Error("incomplete response head");
  const text = new TextDecoder("latin1").decode(raw.subarray(0, end));
  const [statusLine, ...fieldLines] = text.split("\r\n");
  const status = Number(statusLine.split(" ")[1]);
  const headers = new Headers();
  for (const l of fieldLines) {
    const i = l.indexOf(":");
    headers.append(l.slice(0, i).trim(), l.slice(i + 1).trim());
  }
  let body = raw.subarray(end + 4);
  if (head || status === 204 || status === 304) body = new Uint8Array();
  else if (headers.get("transfer-encoding")?.toLowerCase().includes("chunked")) {
    body = dechunk(body);
  } else if (headers.has("content-length")) {
    body = body.subarray(0, Number(headers.get("content-length")));
  }
  return { status, headers, body };
}

function dechunk(data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let off = 0;
  while (off < data.length) {
    let lineEnd = off;
    while (lineEnd + 1 < data.length && !(data[lineEnd] === 13 && data[lineEnd + 1] === 10)) {
      lineEnd++;
    }
    const size = parseInt(new TextDecoder().decode(data.subarray(off, lineEnd)).split(";")[0], 16);
    if (!size) break;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    off = lineEnd + 2 + size + 2;
  }
  return concatBytes(...parts);
}
