/**
 * The authorization server's signing keys: discovery (RFC 8414 §3, OIDC Discovery §4), the cached
 * key set (refreshed on a jittered timer, stale on error), and the single-flight, rate-limited
 * refetch on an unknown `kid` (RFC 8725 §3.10: keys come from the key set only).
 *
 * Every key is imported once per key set (jwk_import.ts: jose `importJWK`, one WebCrypto CryptoKey
 * per algorithm it allows); verify.ts hands the key it selects here to jose. WebCrypto rather than
 * node:crypto (bench/verify_bench.ts): single verifications cost about the same, but
 * `crypto.subtle.verify` runs off the event loop, so concurrent requests verify in parallel (2-4x
 * the throughput on two cores) and streams are not stalled behind RSA math.
 */
import { isLoopbackHost } from "../net/mod.ts";
import type { Config } from "../config/mod.ts";
import { type ImportedKeySet, importKeySet, type VerificationKey } from "./jwk_import.ts";
import type { Logger } from "../ops/mod.ts";

export {
  type ImportedKeySet,
  importKeySet,
  type SkippedKey,
  SUPPORTED_ALGS,
  type VerificationKey,
} from "./jwk_import.ts";

/** Counters for metrics and `/readyz`. */
export interface KeyStoreStats {
  keys: number;
  lastRefreshMs?: number;
  refreshErrors: number;
  fetches: number;
}

/** The key set and its lifecycle; see {@linkcode createKeyStore}. */
export interface KeyStore extends AsyncDisposable {
  /** True once a key set has been loaded; stays true when later refreshes fail. */
  readonly ready: boolean;
  /**
   * The effective expected issuer: EXPECTED_ISSUER, else the discovered `issuer` (identical to
   * AUTHORIZATION_SERVER by RFC 8414 §3.3), else AUTHORIZATION_SERVER. Known once ready.
   */
  readonly issuer: string | undefined;
  /** JWKS_URI, or the discovered `jwks_uri` once known. */
  readonly jwksUri: string | undefined;
  /** Begins discovery and loading in the background with backoff. Never throws, never blocks. */
  start(): void;
  /** Stops timers and aborts in-flight fetches. */
  close(): void;
  /** Closes and waits until in-flight work has settled (for tests' sanitizers). */
  [Symbol.asyncDispose](): Promise<void>;
  stats(): KeyStoreStats;
  /** Keys of the current set with this `kid` (or every key when `kid` is undefined). */
  keysFor(kid: string | undefined): readonly VerificationKey[];
  /** Whether `key` is still part of the current key set. */
  hasKey(key: VerificationKey): boolean;
  /**
   * Refetches the key set because a token named an unknown `kid`: at most one fetch per
   * JWKS_MIN_REFRESH_INTERVAL, shared by concurrent callers. Resolves when done; never rejects.
   */
  refetchForUnknownKid(kid: string): Promise<void>;
  /**
   * Runs discovery (if still needed) and fetches the key set now, joining a fetch in flight.
   * Rejects with an Error describing the failure; old keys are kept. For `mcp-gate check`.
   */
  refresh(): Promise<void>;
  /** Resolves once the first key set is loaded. */
  whenReady(): Promise<void>;
}

/** Timer functions, injectable so tests can observe and fire scheduled work. */
export interface Timers {
  setTimeout(fn: () => unknown, ms: number): TimerId;
  clearTimeout(id: TimerId): void;
}

/** A timer handle, whatever the runtime's setTimeout returns. */
export type TimerId = ReturnType<typeof setTimeout>;

/** Dependencies of {@linkcode createKeyStore}. */
export interface KeyStoreDeps {
  log: Logger;
  fetch?: typeof fetch;
  /** Clock in ms since the epoch, for rate limits and stats. */
  now?: () => number;
  /** Source of jitter in [0, 1). */
  random?: () => number;
  timers?: Timers;
  /** Deadline of one HTTP fetch (discovery or key set). Default 10 s. */
  fetchTimeoutMs?: number;
  /** Largest accepted discovery or key-set body. Default 1 MiB. */
  maxBodyBytes?: number;
}

/** Initial-load backoff: 0.5 s doubling to 30 s (then jittered). */
export const INITIAL_BACKOFF_MS = 500;
export const MAX_INITIAL_BACKOFF_MS = 30_000;
/** After a failed refresh (keys still loaded): 5 s doubling, at most the refresh interval. */
export const REFRESH_RETRY_BASE_MS = 5_000;
const DEFAULT_FETCH_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** `base * (1 ± 10 %)`, with `random()` in [0, 1). */
export function jittered(baseMs: number, random: () => number): number {
  return Math.round(baseMs * (0.9 + 0.2 * random()));
}

/** Exponential backoff for failure number `attempt` (1-based), capped, then jittered. */
export function backoffDelay(
  options: { attempt: number; baseMs: number; maxMs: number; random: () => number },
): number {
  const exp = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(30, options.attempt - 1));
  return jittered(exp, options.random);
}

/**
 * Metadata URLs to try for an issuer, in order: RFC 8414 §3.1 (well-known inserted between host
 * and path, a terminating "/" removed), then OIDC Discovery §4 (appended to the issuer), then the
 * path-inserted OIDC form some servers use. Duplicates removed (a root issuer yields two).
 */
export function discoveryUrls(issuer: string): string[] {
  const url = new URL(issuer);
  const path = url.pathname.endsWith("/") ? url.pathname.slice(0, -1) : url.pathname;
  return [
    ...new Set([
      `${url.origin}/.well-known/oauth-authorization-server${path}`,
      `${url.origin}${path}/.well-known/openid-configuration`,
      `${url.origin}/.well-known/openid-configuration${path}`,
    ]),
  ];
}

/** A key-set or metadata URL must be https, or http on a loopback host. */
export function isAcceptableKeyUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.protocol === "https:") return true;
  return url.protocol === "http:" && isLoopbackHost(url.hostname);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** What discovery found (RFC 8414 §2). */
interface Discovered {
  issuer: string;
  jwksUri: string;
  metadataUrl: string;
}

/** A fetch or validation failure, with a message that says what to fix. */
class KeySetError extends Error {
  constructor(message: string, readonly level: "warn" | "error" = "warn") {
    super(message);
    this.name = "KeySetError";
  }
}

interface KeySnapshot {
  readonly all: readonly VerificationKey[];
  readonly byKid: ReadonlyMap<string, readonly VerificationKey[]>;
  readonly members: ReadonlySet<VerificationKey>;
}

const EMPTY: KeySnapshot = { all: [], byKid: new Map(), members: new Set() };
const NO_KEYS: readonly VerificationKey[] = Object.freeze([]);

function snapshot(keys: readonly VerificationKey[]): KeySnapshot {
  const byKid = new Map<string, VerificationKey[]>();
  for (const k of keys) {
    if (k.kid === undefined) continue;
    const list = byKid.get(k.kid);
    if (list) list.push(k);
    else byKid.set(k.kid, [k]);
  }
  return { all: keys, byKid, members: new Set(keys) };
}

const defaultTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

/**
 * Creates the key store. Nothing happens until {@linkcode KeyStore.start} (or `refresh()`).
 *
 * Discovery runs when JWKS_URI is unset. When JWKS_URI is set the issuer is EXPECTED_ISSUER, else
 * AUTHORIZATION_SERVER, which is exactly what discovery would have yielded (RFC 8414 §3.3), so no
 * metadata fetch is made.
 */
export function createKeyStore(config: Config, deps: KeyStoreDeps): KeyStore {
  const log = deps.log;
  const doFetch = deps.fetch ?? fetch;
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const timers = deps.timers ?? defaultTimers;
  const fetchTimeoutMs = deps.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const maxBodyBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const closer = new AbortController();

  let discovered: Discovered | undefined = config.jwksUri === undefined ? undefined : {
    issuer: config.expectedIssuer ?? config.authorizationServer,
    jwksUri: config.jwksUri,
    metadataUrl: "",
  };
  let current: KeySnapshot = EMPTY;
  let ready = false;
  let started = false;
  let closed = false;
  let timer: TimerId | undefined;
  let failures = 0;
  let inflight: Promise<void> | undefined;
  let lastFetchStartMs = -Infinity;
  const stats: KeyStoreStats = { keys: 0, refreshErrors: 0, fetches: 0 };
  let resolveReady!: () => void;
  const readyPromise = new Promise<void>((r) => (resolveReady = r));

  /** One GET with a deadline, no redirects, and a body cap; returns the parsed JSON. */
  async function getJson(
    url: string,
    what: string,
  ): Promise<{ status: number; body?: unknown }> {
    const deadline = new AbortController();
    // A real timer, not the injectable one: it bounds I/O, it does not schedule work.
    const t = setTimeout(
      () => deadline.abort(new KeySetError(`Timed out fetching ${what} "${url}"`)),
      fetchTimeoutMs,
    );
    try {
      const res = await doFetch(url, {
        headers: { accept: "application/json" },
        redirect: "manual",
        signal: AbortSignal.any([closer.signal, deadline.signal]),
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
      if (closer.signal.aborted) throw new KeySetError("Key store closed");
      const msg = e instanceof Error ? e.message : String(e);
      throw new KeySetError(`Failed fetching ${what} "${url}": ${msg}`);
    } finally {
      clearTimeout(t);
    }
  }

  async function discover(): Promise<Discovered> {
    const as = config.authorizationServer;
    const tried: string[] = [];
    for (const url of discoveryUrls(as)) {
      const { status, body } = await getJson(url, "authorization server metadata");
      if (status !== 200) {
        tried.push(`${url} (HTTP ${status})`);
        continue;
      }
      if (!isRecord(body)) {
        throw new KeySetError(`Invalid authorization server metadata at "${url}": not an object`);
      }
      // RFC 8414 §3.3 / OIDC Discovery §4.3: the issuer must be identical to the one used.
      if (body.issuer !== as) {
        throw new KeySetError(
          `Authorization server metadata at "${url}" has issuer ${
            JSON.stringify(body.issuer)
          }, not AUTHORIZATION_SERVER "${as}" (RFC 8414 §3.3): set AUTHORIZATION_SERVER=${
            JSON.stringify(body.issuer)
          } exactly`,
          "error",
        );
      }
      const jwksUri = body.jwks_uri;
      if (typeof jwksUri !== "string" || !isAcceptableKeyUrl(jwksUri)) {
        throw new KeySetError(
          `Invalid "jwks_uri" in authorization server metadata at "${url}": expected an https URL (http only on loopback), got ${
            JSON.stringify(jwksUri)
          }; set JWKS_URI to override`,
          "error",
        );
      }
      return { issuer: as, jwksUri, metadataUrl: url };
    }
    throw new KeySetError(
      `No authorization server metadata found for AUTHORIZATION_SERVER "${as}" (tried ${
        tried.join(", ")
      }); set JWKS_URI`,
    );
  }

  async function load(): Promise<void> {
    if (!discovered) {
      const d = await discover();
      discovered = d;
      log.info("authorization server metadata loaded", {
        metadata_url: d.metadataUrl,
        issuer: d.issuer,
        jwks_uri: d.jwksUri,
      });
    }
    const jwksUri = discovered.jwksUri;
    stats.fetches++;
    lastFetchStartMs = now();
    const { status, body } = await getJson(jwksUri, "key set");
    if (status !== 200) throw new KeySetError(`HTTP ${status} fetching key set "${jwksUri}"`);
    let imported: ImportedKeySet;
    try {
      imported = await importKeySet(body, {
        allowedAlgs: config.allowedAlgs,
        previous: current.all,
      });
    } catch (e) {
      throw new KeySetError(`${(e as Error).message} at "${jwksUri}"`);
    }
    if (closed) return;
    const changed = imported.keys.length !== current.all.length ||
      imported.keys.some((k) => !current.members.has(k));
    current = snapshot(imported.keys);
    stats.keys = imported.keys.length;
    stats.lastRefreshMs = now();
    log.info("key set loaded", {
      keys: imported.keys.length,
      kids: imported.keys.map((k) => k.kid ?? null),
      jwks_uri: jwksUri,
      changed,
      ...(imported.skipped.length ? { skipped: imported.skipped } : {}),
    });
    if (!ready) {
      ready = true;
      resolveReady();
    }
  }

  /** Single-flight: concurrent callers share one load. */
  function loadShared(): Promise<void> {
    if (inflight) return inflight;
    const p = load().finally(() => {
      if (inflight === p) inflight = undefined;
    });
    inflight = p;
    return p;
  }

  function schedule(ms: number): void {
    if (closed) return;
    if (timer !== undefined) timers.clearTimeout(timer);
    timer = timers.setTimeout(() => {
      timer = undefined;
      return tick();
    }, ms);
  }

  async function tick(): Promise<void> {
    if (closed) return;
    try {
      await loadShared();
      failures = 0;
      schedule(jittered(config.jwksRefreshIntervalMs, random));
    } catch (e) {
      if (closed) return;
      failures++;
      stats.refreshErrors++;
      const delay = ready
        ? backoffDelay({
          attempt: failures,
          baseMs: Math.min(REFRESH_RETRY_BASE_MS, config.jwksRefreshIntervalMs),
          maxMs: config.jwksRefreshIntervalMs,
          random,
        })
        : backoffDelay({
          attempt: failures,
          baseMs: INITIAL_BACKOFF_MS,
          maxMs: MAX_INITIAL_BACKOFF_MS,
          random,
        });
      const err = e instanceof KeySetError ? e : new KeySetError(String(e));
      const fields = {
        reason: err.message,
        attempt: failures,
        retry_in_ms: delay,
        ...(discovered ? { jwks_uri: discovered.jwksUri } : {}),
      };
      if (ready) log.warn("key set refresh failed", { ...fields, keys: current.all.length });
      else if (err.level === "error") log.error("key set load failed", fields);
      else log.warn("key set load failed", fields);
      schedule(delay);
    }
  }

  const store: KeyStore = {
    get ready() {
      return ready;
    },
    get issuer() {
      return config.expectedIssuer ?? discovered?.issuer;
    },
    get jwksUri() {
      return discovered?.jwksUri;
    },
    start() {
      if (started || closed) return;
      started = true;
      // Run the first load on the next turn, so start() returns at once.
      schedule(0);
    },
    close() {
      if (closed) return;
      closed = true;
      if (timer !== undefined) timers.clearTimeout(timer);
      timer = undefined;
      closer.abort(new KeySetError("Key store closed"));
    },
    async [Symbol.asyncDispose]() {
      store.close();
      await inflight?.catch(() => {});
    },
    stats: () => ({ ...stats }),
    keysFor(kid) {
      if (kid === undefined) return current.all;
      return current.byKid.get(kid) ?? NO_KEYS;
    },
    hasKey: (key) => current.members.has(key),
    async refetchForUnknownKid(kid) {
      // Before the first load the background loop owns fetching; after close nothing fetches.
      if (!ready || closed) return;
      // Join a fetch in flight; whoever started it reports its failure.
      if (inflight) return void (await inflight.catch(() => {}));
      if (now() - lastFetchStartMs < config.jwksMinRefreshIntervalMs) return;
      log.info("key set refetch for unknown kid", { kid: kid.slice(0, 128) });
      try {
        await loadShared();
      } catch (e) {
        if (closed) return;
        stats.refreshErrors++;
        log.warn("key set refresh failed", {
          reason: (e as Error).message,
          keys: current.all.length,
          jwks_uri: discovered?.jwksUri,
        });
      }
    },
    refresh: () => (closed ? Promise.reject(new Error("Key store closed")) : loadShared()),
    whenReady: () => readyPromise,
  };
  return store;
}

async function readCapped(res: Response, max: number, what: string): Promise<string> {
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
