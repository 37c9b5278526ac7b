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
import { type Config, type IssuerConfig, issuerMismatch, issuersOf } from "../config/mod.ts";
import { describeError, redactSecrets } from "../errors.ts";
import type { LogFields, Logger } from "../ops/mod.ts";
import type { VerificationKey } from "./jwk_import.ts";
import { type GetJson, jsonGetter, KeySetError } from "./key_fetch.ts";
import { discover, type Discovered } from "./discovery.ts";
import {
  EMPTY_SNAPSHOT,
  fetchKeySet,
  keySetChanged,
  type KeySnapshot,
  snapshotOf,
} from "./key_set.ts";
import {
  defaultTimers,
  refreshLoop,
  singleFlight,
  type Timers,
  unknownKidRefetch,
} from "./refresh.ts";

export {
  type ImportedKeySet,
  importKeySet,
  type SkippedKey,
  SUPPORTED_ALGS,
  type VerificationKey,
} from "./jwk_import.ts";
export { discoveryUrls, isAcceptableKeyUrl } from "./discovery.ts";
export {
  backoffDelay,
  INITIAL_BACKOFF_MS,
  jittered,
  MAX_INITIAL_BACKOFF_MS,
  REFRESH_RETRY_BASE_MS,
  type TimerId,
  type Timers,
} from "./refresh.ts";

/** Counters for metrics and `/readyz`. */
export interface KeyStoreStats {
  keys: number;
  lastRefreshMs?: number;
  refreshErrors: number;
  fetches: number;
}

/** One issuer's key set and its lifecycle; see {@linkcode createKeyStore}. */
export interface KeyStore extends AsyncDisposable {
  /** The issuer this store serves, with what its tokens are checked against. */
  readonly source: IssuerConfig;
  /** True once a key set has been loaded; stays true when later refreshes fail. */
  readonly ready: boolean;
  /**
   * The effective expected issuer: EXPECTED_ISSUER, else the discovered `issuer` (identical to
   * AUTHORIZATION_SERVER by RFC 8414 §3.3), else AUTHORIZATION_SERVER. Known once ready.
   */
  readonly issuer: string | undefined;
  /** JWKS_URI, or the discovered `jwks_uri` once known. */
  readonly jwksUri: string | undefined;
  /** The `issuer` of the discovered metadata; undefined until discovery ran (never with JWKS_URI). */
  readonly discoveredIssuer: string | undefined;
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

const DEFAULT_FETCH_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
const NO_KEYS: readonly VerificationKey[] = Object.freeze([]);

/** What the key store knows; changed only by {@linkcode loadKeys} and `close()`. */
interface KeyState {
  /** Known from the start when JWKS_URI is set, else once discovery succeeded. */
  discovered: Discovered | undefined;
  current: KeySnapshot;
  ready: boolean;
  closed: boolean;
  lastFetchStartMs: number;
  readonly stats: KeyStoreStats;
  readonly markReady: () => void;
}

/**
 * One load: discovery when still needed, then the key set, which replaces the current one. On
 * failure it rejects and the current keys stay (stale on error).
 */
async function loadKeys(
  state: KeyState,
  ctx: {
    config: Config;
    source: IssuerConfig;
    getJson: GetJson;
    log: Logger;
    now: () => number;
  },
): Promise<void> {
  const { config, log, now } = ctx;
  if (!state.discovered) {
    const d = await discover(ctx.source.authorizationServer, ctx.getJson);
    state.discovered = d;
    log.info("authorization server metadata loaded", {
      metadata_url: d.metadataUrl,
      issuer: d.issuer,
      jwks_uri: redactSecrets(d.jwksUri),
    });
    // Every token would fail the iss check: say so once, loudly, where the operator looks.
    const mismatch = issuerMismatch(config, d.issuer);
    if (mismatch) {
      log.error("configuration error", {
        warning: mismatch.id,
        variable: mismatch.variable,
        reason: mismatch.message,
      });
    }
  }
  const jwksUri = state.discovered.jwksUri;
  state.stats.fetches++;
  state.lastFetchStartMs = now();
  const imported = await fetchKeySet(jwksUri, {
    getJson: ctx.getJson,
    allowedAlgs: config.allowedAlgs,
    previous: state.current.all,
  });
  if (state.closed) return;
  const changed = keySetChanged(state.current, imported.keys);
  state.current = snapshotOf(imported.keys);
  state.stats.keys = imported.keys.length;
  state.stats.lastRefreshMs = now();
  log.info("key set loaded", {
    keys: imported.keys.length,
    kids: imported.keys.map((k) => k.kid ?? null),
    jwks_uri: redactSecrets(jwksUri),
    changed,
    ...(imported.skipped.length ? { skipped: imported.skipped } : {}),
  });
  if (!state.ready) {
    state.ready = true;
    state.markReady();
  }
}

/**
 * Logs a failed background load: a warning while old keys still serve (stale on error), else a
 * warning or, for a misconfiguration, an error.
 */
function logLoadFailure(
  state: KeyState,
  log: Logger,
  failure: { err: unknown; attempt: number; retryInMs: number },
): void {
  const err = failure.err instanceof KeySetError
    ? failure.err
    : new KeySetError(describeError(failure.err));
  const fields = {
    reason: err.message,
    attempt: failure.attempt,
    retry_in_ms: failure.retryInMs,
    ...(state.discovered ? { jwks_uri: redactSecrets(state.discovered.jwksUri) } : {}),
  };
  if (state.ready) {
    log.warn("key set refresh failed", { ...fields, keys: state.current.all.length });
  } else if (err.level === "error") log.error("key set load failed", fields);
  else log.warn("key set load failed", fields);
}

/**
 * Creates the key store of one issuer, by default the first of AUTHORIZATION_SERVER. Nothing
 * happens until {@linkcode KeyStore.start} (or `refresh()`).
 *
 * Discovery runs when JWKS_URI is unset. When JWKS_URI is set the issuer is EXPECTED_ISSUER, else
 * AUTHORIZATION_SERVER, which is exactly what discovery would have yielded (RFC 8414 §3.3), so no
 * metadata fetch is made.
 */
export function createKeyStore(
  config: Config,
  deps: KeyStoreDeps,
  source: IssuerConfig = issuersOf(config)[0],
): KeyStore {
  const log = deps.log;
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const closer = new AbortController();
  const getJson = jsonGetter({
    fetch: deps.fetch ?? fetch,
    timeoutMs: deps.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS,
    maxBodyBytes: deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    signal: closer.signal,
  });

  let markReady!: () => void;
  const readyPromise = new Promise<void>((r) => (markReady = r));
  const state: KeyState = {
    discovered: source.jwksUri === undefined ? undefined : {
      issuer: source.issuer,
      jwksUri: source.jwksUri,
      metadataUrl: "",
    },
    current: EMPTY_SNAPSHOT,
    ready: false,
    closed: false,
    lastFetchStartMs: -Infinity,
    stats: { keys: 0, refreshErrors: 0, fetches: 0 },
    markReady,
  };
  let started = false;

  const flight = singleFlight(() => loadKeys(state, { config, source, getJson, log, now }));
  const loop = refreshLoop({
    load: flight.run,
    loaded: () => state.ready,
    refreshIntervalMs: config.jwksRefreshIntervalMs,
    random,
    timers: deps.timers ?? defaultTimers,
    onFailure(err, attempt, retryInMs) {
      state.stats.refreshErrors++;
      logLoadFailure(state, log, { err, attempt, retryInMs });
    },
  });
  const refetchForUnknownKid = unknownKidRefetch({
    flight,
    minIntervalMs: config.jwksMinRefreshIntervalMs,
    now,
    lastFetchStartMs: () => state.lastFetchStartMs,
    active: () => state.ready && !state.closed,
    onStart: (kid) => log.info("key set refetch for unknown kid", { kid: kid.slice(0, 128) }),
    onFailure(e) {
      state.stats.refreshErrors++;
      log.warn("key set refresh failed", {
        reason: describeError(e),
        keys: state.current.all.length,
        jwks_uri: state.discovered && redactSecrets(state.discovered.jwksUri),
      });
    },
  });

  const store: KeyStore = {
    source,
    get ready() {
      return state.ready;
    },
    get issuer() {
      // Before discovery only an EXPECTED_ISSUER is known; after it, discovery has confirmed
      // the entry (RFC 8414 §3.3).
      return state.discovered ? source.issuer : config.expectedIssuer;
    },
    get jwksUri() {
      return state.discovered?.jwksUri;
    },
    get discoveredIssuer() {
      return state.discovered?.metadataUrl ? state.discovered.issuer : undefined;
    },
    start() {
      if (started || state.closed) return;
      started = true;
      loop.start();
    },
    close() {
      if (state.closed) return;
      state.closed = true;
      loop.close();
      closer.abort(new KeySetError("Key store closed"));
    },
    async [Symbol.asyncDispose]() {
      store.close();
      await flight.inflight?.catch(() => {});
    },
    stats: () => ({ ...state.stats }),
    keysFor(kid) {
      if (kid === undefined) return state.current.all;
      return state.current.byKid.get(kid) ?? NO_KEYS;
    },
    hasKey: (key) => state.current.members.has(key),
    refetchForUnknownKid,
    refresh: () => (state.closed ? Promise.reject(new Error("Key store closed")) : flight.run()),
    whenReady: () => readyPromise,
  };
  return store;
}

/** Every issuer's key store, and what the gate as a whole needs of them; see {@linkcode createKeyStores}. */
export interface KeyStores extends AsyncDisposable {
  /** One store per AUTHORIZATION_SERVER entry, in order. */
  readonly stores: readonly KeyStore[];
  /**
   * Readiness (`/readyz`): some issuer's key set is loaded and every issuer's first load has
   * finished, loaded or failed. So a gate waits out the first fetch of each (about a second), but
   * one issuer being down does not keep the others' tokens out; its own tokens get 503 until its
   * keys load (docs/identity-providers.md, several issuers).
   */
  readonly ready: boolean;
  /** The store whose expected issuer is exactly `iss` (RFC 9068 §4: no normalisation). */
  forIssuer(iss: unknown): KeyStore | undefined;
  /** Starts every store. */
  start(): void;
  /** Closes every store. */
  close(): void;
  /** The stores' counters added up (`lastRefreshMs`: the latest). */
  stats(): KeyStoreStats;
  /** Refreshes every store; rejects with the first failure once all have settled. */
  refresh(): Promise<void>;
}

/**
 * Creates one {@linkcode KeyStore} per issuer of the configuration (issuersOf): each discovers,
 * refreshes and spends its own unknown-`kid` refetch budget independently, so one issuer's outage
 * or a flood of tokens naming it never touches another's keys. With several issuers each store's
 * log lines name it (`authorization_server`).
 */
export function createKeyStores(config: Config, deps: KeyStoreDeps): KeyStores {
  const issuers = issuersOf(config);
  const stores = issuers.map((source) =>
    createKeyStore(config, {
      ...deps,
      log: issuers.length > 1
        ? withFields(deps.log, { authorization_server: source.authorizationServer })
        : deps.log,
    }, source)
  );
  const byIssuer = new Map(stores.map((s) => [s.source.issuer, s]));
  const set: KeyStores = {
    stores,
    get ready() {
      return stores.some((s) => s.ready) &&
        stores.every((s) => s.ready || s.stats().refreshErrors > 0);
    },
    forIssuer: (iss) => (typeof iss === "string" ? byIssuer.get(iss) : undefined),
    start: () => stores.forEach((s) => s.start()),
    close: () => stores.forEach((s) => s.close()),
    async [Symbol.asyncDispose]() {
      await Promise.all(stores.map((s) => s[Symbol.asyncDispose]()));
    },
    stats() {
      const total: KeyStoreStats = { keys: 0, refreshErrors: 0, fetches: 0 };
      for (const s of stores) {
        const st = s.stats();
        total.keys += st.keys;
        total.refreshErrors += st.refreshErrors;
        total.fetches += st.fetches;
        if (st.lastRefreshMs !== undefined) {
          total.lastRefreshMs = Math.max(total.lastRefreshMs ?? 0, st.lastRefreshMs);
        }
      }
      return total;
    },
    async refresh() {
      const results = await Promise.allSettled(stores.map((s) => s.refresh()));
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    },
  };
  return set;
}

/** A logger that adds `extra` to every line's fields. */
function withFields(log: Logger, extra: LogFields): Logger {
  return {
    get level() {
      return log.level;
    },
    debug: (msg, fields) => log.debug(msg, { ...extra, ...fields }),
    info: (msg, fields) => log.info(msg, { ...extra, ...fields }),
    warn: (msg, fields) => log.warn(msg, { ...extra, ...fields }),
    error: (msg, fields) => log.error(msg, { ...extra, ...fields }),
    enabled: (level) => log.enabled(level),
    writeMembers: (level, msg, members) => log.writeMembers(level, msg, members),
    flush: () => log.flush(),
  };
}
