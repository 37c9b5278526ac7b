/**
 * One GET of the authorization server's JSON (metadata or key set): a deadline, no redirects
 * (RFC 8725 §3.10: keys come from the configured origin only), a body cap and strict UTF-8.
 */
import { describeError, redactSecrets } from "../errors.ts";

/**
 * A fetch or validation failure, with a message that says what to fix. The URLs it quotes come
 * from configuration and metadata documents, so credentials in them are redacted here, once.
 */
export class KeySetError extends Error {
  constructor(message: string, readonly level: "warn" | "error" = "warn") {
    super(redactSecrets(message));
    this.name = "KeySetError";
  }
}

/** A GET's outcome: the status, and the parsed JSON body when the status is 200. */
export interface JsonResult {
  status: number;
  body?: unknown;
}

/** Fetches `url` (described as `what` in errors); see {@linkcode jsonGetter}. */
export type GetJson = (url: string, what: string) => Promise<JsonResult>;

/** Options of {@linkcode jsonGetter}. */
export interface JsonGetterOptions {
  fetch: typeof fetch;
  /** Deadline of one fetch, body included. */
  timeoutMs: number;
  /** Largest accepted body. */
  maxBodyBytes: number;
  /** Aborts every fetch for good (the key store closed). */
  signal: AbortSignal;
}

/**
 * A GET with a deadline, no redirects, and a body cap, returning the parsed JSON.
 * The returned function rejects with a {@linkcode KeySetError} on a refused redirect, a timeout, a
 * network failure, an oversized body, invalid UTF-8 or JSON; any other status is returned.
 */
export function jsonGetter(options: JsonGetterOptions): GetJson {
  const { fetch: doFetch, timeoutMs, maxBodyBytes, signal } = options;
  return async (url, what) => {
    const deadline = new AbortController();
    // A real timer, not the key store's injectable one: it bounds I/O, it does not schedule work.
    const t = setTimeout(
      () => deadline.abort(new KeySetError(`Timed out fetching ${what} "${url}"`)),
      timeoutMs,
    );
    try {
      const res = await doFetch(url, {
        headers: { accept: "application/json" },
        redirect: "manual",
        signal: AbortSignal.any([signal, deadline.signal]),
      });
      if (res.status !== 200) {
        await res.body?.cancel();
        if (res.status >= 300 && res.status < 400) {
          throw new KeySetError(`Refused redirect (HTTP ${res.status}) fetching ${what} "${url}"`);
        }
        return { status: res.status };
      }
      const text = await readCapped(res, maxBodyBytes, `${what} "${url}"`);
      try {
        return { status: 200, body: JSON.parse(text) };
      } catch {
        throw new KeySetError(`Invalid JSON in ${what} "${url}"`);
      }
    } catch (e) {
      if (e instanceof KeySetError) throw e;
      if (deadline.signal.aborted) throw deadline.signal.reason;
      if (signal.aborted) throw new KeySetError("Key store closed");
      // Deno's fetch says only "fetch failed"; the reason is in its cause chain.
      throw new KeySetError(`Failed fetching ${what} "${url}": ${describeError(e)}`);
    } finally {
      clearTimeout(t);
    }
  };
}

/** The body of `res` as UTF-8 text, refused when it (or its Content-Length) exceeds `max` bytes. */
export async function readCapped(res: Response, max: number, what: string): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? "NaN");
  if (declared > max) {
    await res.body?.cancel();
    throw new KeySetError(`Response too large (${declared} bytes, limit ${max}) for ${what}`);
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      throw new KeySetError(`Response too large (over ${max} bytes) for ${what}`);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    bytes.set(c, off);
    off += c.byteLength;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new KeySetError(`Invalid UTF-8 in ${what}`);
  }
}
