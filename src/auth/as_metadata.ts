/**
 * The authorization server's metadata document (RFC 8414 §3), kept as the exact bytes it was
 * served as: the AS_METADATA_MIRROR route republishes them unchanged, and token introspection
 * reads `introspection_endpoint` from them (RFC 8414 §2) when INTROSPECTION_URL is unset.
 *
 * The key store discovers the key set on its own (discovery.ts); this source is only built when
 * the mirror or a discovered introspection endpoint needs the document, and fetches it on first
 * use, then again once it is older than JWKS_REFRESH_INTERVAL. A failed refetch keeps the last
 * good document (stale on error) and is retried at most once per JWKS_MIN_REFRESH_INTERVAL.
 */
import { createHash } from "node:crypto";
import type { Config } from "../config/mod.ts";
import { describeError, redactSecrets } from "../errors.ts";
import type { Logger } from "../ops/mod.ts";
import { discoveryUrls, isAcceptableKeyUrl } from "./discovery.ts";
import { KeySetError } from "./key_fetch.ts";

/** One fetched metadata document. */
export interface AsMetadata {
  /** The body exactly as the authorization server sent it. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The parsed body (a JSON object whose `issuer` is AUTHORIZATION_SERVER). */
  readonly json: Readonly<Record<string, unknown>>;
  /** Where it was found. */
  readonly url: string;
  /** A strong validator for the bytes (RFC 9110 §8.8.3): a hash of them, quoted. */
  readonly etag: string;
}

/** The document and its lifecycle; see {@linkcode createAsMetadataSource}. */
export interface AsMetadataSource extends AsyncDisposable {
  /**
   * The current document, fetched first when none is held or it is older than the refresh
   * interval (joining a fetch in flight). Resolves with the last good document when a refetch
   * fails; rejects with an Error saying what failed when there has never been one.
   */
  get(): Promise<AsMetadata>;
  /** Aborts a fetch in flight; later calls reject. */
  close(): void;
}

/** Dependencies of {@linkcode createAsMetadataSource}. */
export interface AsMetadataDeps {
  log: Logger;
  fetch?: typeof fetch;
  /** Clock in epoch milliseconds. */
  now?: () => number;
  /** Deadline of one fetch. Default 10 s. */
  timeoutMs?: number;
}

const MAX_METADATA_BYTES = 256 * 1024;

/** Creates the source; nothing is fetched until the first {@linkcode AsMetadataSource.get}. */
export function createAsMetadataSource(
  config: Pick<
    Config,
    "authorizationServers" | "jwksRefreshIntervalMs" | "jwksMinRefreshIntervalMs"
  >,
  deps: AsMetadataDeps,
): AsMetadataSource {
  const doFetch = deps.fetch ?? fetch;
  const now = deps.now ?? Date.now;
  const timeoutMs = deps.timeoutMs ?? 10_000;
  // With several issuers, the mirror and introspection serve the first one (the one MCP clients
  // take from `authorization_servers`; docs/identity-providers.md, several issuers).
  const authorizationServer = config.authorizationServers[0];
  const closer = new AbortController();
  let current: { doc: AsMetadata; fetchedMs: number } | undefined;
  let lastAttemptMs = -Infinity;
  let lastError: Error | undefined;
  let inflight: Promise<AsMetadata> | undefined;

  const fetchOne = async (url: string): Promise<AsMetadata | string> => {
    const what = `authorization server metadata "${url}"`;
    const res = await boundedFetch(doFetch, url, {
      init: { headers: { accept: "application/json" } },
      timeoutMs,
      signal: closer.signal,
      what,
    });
    if (!res.ok) return `${url} (HTTP ${res.status})`;
    const bytes = await readCappedBytes(res.response, MAX_METADATA_BYTES, what);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch {
      throw new Error(`Invalid JSON in authorization server metadata "${url}"`);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new Error(`Invalid authorization server metadata at "${url}": not an object`);
    }
    // RFC 8414 §3.3: the issuer must be identical to the one the metadata was looked up for.
    const issuer = (json as Record<string, unknown>).issuer;
    if (issuer !== authorizationServer) {
      throw new Error(
        `Authorization server metadata at "${url}" has issuer ${
          JSON.stringify(issuer)
        }, not AUTHORIZATION_SERVER "${authorizationServer}" (RFC 8414 §3.3)`,
      );
    }
    const digest = createHash("sha256").update(bytes).digest("base64url");
    return Object.freeze({
      bytes,
      json: Object.freeze(json as Record<string, unknown>),
      url,
      etag: `"${digest}"`,
    });
  };

  const load = async (): Promise<AsMetadata> => {
    lastAttemptMs = now();
    const tried: string[] = [];
    // A known URL first; discovery's order otherwise (RFC 8414 §3.1, then OpenID Connect).
    const urls = discoveryUrls(authorizationServer);
    if (current) urls.unshift(current.doc.url);
    for (const url of new Set(urls)) {
      const got = await fetchOne(url);
      if (typeof got === "string") {
        tried.push(got);
        continue;
      }
      const changed = current === undefined || current.doc.etag !== got.etag;
      current = { doc: got, fetchedMs: now() };
      if (changed) deps.log.info("authorization server metadata fetched", { metadata_url: url });
      return got;
    }
    throw new Error(
      `No authorization server metadata found for AUTHORIZATION_SERVER "${authorizationServer}" (tried ${
        tried.join(", ")
      })`,
    );
  };

  const source: AsMetadataSource = {
    get() {
      if (closer.signal.aborted) {
        return Promise.reject(new Error("Authorization server metadata source closed"));
      }
      const t = now();
      if (current && t - current.fetchedMs < config.jwksRefreshIntervalMs) {
        return Promise.resolve(current.doc);
      }
      // Within the cooldown after a failed attempt nothing is fetched: the old document serves
      // (stale on error), or the failure is repeated. The mirror route is unauthenticated, so
      // this is also what bounds the fetches a client can cause.
      if (inflight === undefined && t - lastAttemptMs < config.jwksMinRefreshIntervalMs) {
        if (current) return Promise.resolve(current.doc);
        if (lastError) return Promise.reject(lastError);
      }
      inflight ??= load().then((doc) => {
        lastError = undefined;
        return doc;
      }, (e: unknown) => {
        if (closer.signal.aborted) throw e;
        lastError = new Error(redactSecrets(e instanceof Error ? e.message : String(e)));
        deps.log.warn(
          current
            ? "authorization server metadata refresh failed"
            : "authorization server metadata fetch failed",
          { reason: lastError.message },
        );
        if (current === undefined) throw lastError;
        return current.doc;
      }).finally(() => (inflight = undefined));
      return inflight;
    },
    close() {
      closer.abort(new KeySetError("Authorization server metadata source closed"));
    },
    async [Symbol.asyncDispose]() {
      source.close();
      await inflight?.catch(() => {});
    },
  };
  return source;
}

/**
 * The `introspection_endpoint` of a metadata document (RFC 8414 §2, RFC 7662 §4), when it is an
 * https URL (http only on loopback, like the key set's).
 * @throws {Error} saying what is missing or wrong, and that INTROSPECTION_URL overrides it.
 */
export function introspectionEndpointOf(doc: AsMetadata): string {
  const v = doc.json.introspection_endpoint;
  if (typeof v === "string" && isAcceptableKeyUrl(v)) return v;
  throw new Error(
    v === undefined
      ? `Authorization server metadata at "${doc.url}" has no introspection_endpoint; set INTROSPECTION_URL`
      : `Invalid "introspection_endpoint" in authorization server metadata at "${doc.url}": expected an https URL (http only on loopback), got ${
        JSON.stringify(v)
      }; set INTROSPECTION_URL to override`,
  );
}

/** A fetch's response, or just its status when that is not 200 (the body then cancelled). */
export type BoundedResult =
  | { readonly ok: true; readonly status: 200; readonly response: Response }
  | { readonly ok: false; readonly status: number };

/**
 * One outbound call with a deadline (headers and body alike: the timer is cleared by the caller
 * reading the body through {@linkcode readCappedBytes}, which runs under the same signal), no
 * redirects followed (`redirect: "manual"`: a 3xx is refused, not chased to another origin) and
 * errors that name the URL and the cause.
 * @throws {Error} on a network failure, the deadline, a closed owner or a redirect.
 */
export async function boundedFetch(
  doFetch: typeof fetch,
  url: string,
  options: { init: RequestInit; timeoutMs: number; signal: AbortSignal; what: string },
): Promise<BoundedResult> {
  const { timeoutMs, what } = options;
  const deadline = new AbortController();
  // A plain timer, cleared below: it bounds I/O and must not outlive the call.
  const timer = setTimeout(() => deadline.abort(), timeoutMs);
  const signal = AbortSignal.any([options.signal, deadline.signal]);
  try {
    const res = await doFetch(url, { ...options.init, redirect: "manual", signal });
    if (res.status === 200) {
      // The body is read under the same deadline: hand over a response whose reads abort with it.
      return { ok: true, status: 200, response: withDeadline(res, timer) };
    }
    await res.body?.cancel();
    clearTimeout(timer);
    if (res.status >= 300 && res.status < 400) {
      throw new Error(`Refused redirect (HTTP ${res.status}) from ${what}`);
    }
    return { ok: false, status: res.status };
  } catch (e) {
    clearTimeout(timer);
    if (options.signal.aborted) throw new Error(`Closed while fetching ${what}`);
    if (deadline.signal.aborted) throw new Error(`No answer within ${timeoutMs} ms from ${what}`);
    if (e instanceof Error && e.message.startsWith("Refused redirect")) throw e;
    throw new Error(`Failed fetching ${what}: ${describeError(e)}`);
  }
}

const DEADLINES = new WeakMap<Response, ReturnType<typeof setTimeout>>();

function withDeadline(res: Response, timer: ReturnType<typeof setTimeout>): Response {
  DEADLINES.set(res, timer);
  return res;
}

/**
 * The body of a {@linkcode boundedFetch} response as bytes, refused when it (or its
 * Content-Length) exceeds `max`; the call's deadline still applies and is cleared here.
 * @throws {Error} naming `what` when the body is too large, or the read failed or timed out.
 */
export async function readCappedBytes(
  res: Response,
  max: number,
  what: string,
): Promise<Uint8Array<ArrayBuffer>> {
  try {
    const declared = Number(res.headers.get("content-length") ?? "NaN");
    if (declared > max) {
      await res.body?.cancel();
      throw new Error(`Response too large (${declared} bytes, limit ${max}) from ${what}`);
    }
    if (!res.body) return new Uint8Array();
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let total = 0;
    while (true) {
      let step: ReadableStreamReadResult<Uint8Array>;
      try {
        step = await reader.read();
      } catch (e) {
        throw new Error(`Failed reading the body from ${what}: ${describeError(e)}`);
      }
      if (step.done) break;
      total += step.value.byteLength;
      if (total > max) {
        await reader.cancel();
        throw new Error(`Response too large (over ${max} bytes) from ${what}`);
      }
      chunks.push(step.value);
    }
    const bytes = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      bytes.set(c, off);
      off += c.byteLength;
    }
    return bytes;
  } finally {
    clearTimeout(DEADLINES.get(res));
  }
}
