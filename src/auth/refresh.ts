/**
 * When the key store fetches: the background loop (first load with backoff, then a refresh every
 * JWKS_REFRESH_INTERVAL, jittered so a fleet of gates does not fetch in step), the single-flight
 * that lets concurrent callers share one fetch, and the rate-limited refetch for an unknown `kid`
 * (RFC 8725 §3.10: a token cannot make the gate fetch more than once per
 * JWKS_MIN_REFRESH_INTERVAL).
 */

/** Timer functions, injectable so tests can observe and fire scheduled work. */
export interface Timers {
  setTimeout(fn: () => unknown, ms: number): TimerId;
  clearTimeout(id: TimerId): void;
}

/** A timer handle, whatever the runtime's setTimeout returns. */
export type TimerId = ReturnType<typeof setTimeout>;

/** The runtime's timers. */
export const defaultTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

/** Initial-load backoff: 0.5 s doubling to 30 s (then jittered). */
export const INITIAL_BACKOFF_MS = 500;
export const MAX_INITIAL_BACKOFF_MS = 30_000;
/** After a failed refresh (keys still loaded): 5 s doubling, at most the refresh interval. */
export const REFRESH_RETRY_BASE_MS = 5_000;

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
 * The wait after failure number `attempt`: the initial-load backoff while no key set is loaded,
 * else the refresh backoff (the loaded keys keep serving meanwhile).
 */
export function retryDelay(
  options: { loaded: boolean; attempt: number; refreshIntervalMs: number; random: () => number },
): number {
  const { attempt, refreshIntervalMs, random } = options;
  return options.loaded
    ? backoffDelay({
      attempt,
      baseMs: Math.min(REFRESH_RETRY_BASE_MS, refreshIntervalMs),
      maxMs: refreshIntervalMs,
      random,
    })
    : backoffDelay({
      attempt,
      baseMs: INITIAL_BACKOFF_MS,
      maxMs: MAX_INITIAL_BACKOFF_MS,
      random,
    });
}

/** One shared run of an async task; see {@linkcode singleFlight}. */
export interface SingleFlight {
  /** Starts the task, or joins the run in flight. */
  run(): Promise<void>;
  /** The run in flight, if any. */
  readonly inflight: Promise<void> | undefined;
}

/** Concurrent callers of `run()` share one run of `task`; the next call after it settles starts another. */
export function singleFlight(task: () => Promise<void>): SingleFlight {
  let inflight: Promise<void> | undefined;
  return {
    run() {
      if (inflight) return inflight;
      const p = task().finally(() => {
        if (inflight === p) inflight = undefined;
      });
      inflight = p;
      return p;
    },
    get inflight() {
      return inflight;
    },
  };
}

/** The background loop of {@linkcode refreshLoop}. */
export interface RefreshLoop {
  /** Runs the first load on the next turn, so the caller returns at once. */
  start(): void;
  /** Cancels the next run; a run in flight finishes but schedules nothing. */
  close(): void;
}

/** Options of {@linkcode refreshLoop}. */
export interface RefreshLoopOptions {
  /** One load; rejects on failure. */
  load: () => Promise<void>;
  /** Whether a key set has been loaded (picks the backoff). */
  loaded: () => boolean;
  refreshIntervalMs: number;
  random: () => number;
  timers: Timers;
  /** Told of each failure before the retry is scheduled `retryInMs` later. */
  onFailure: (err: unknown, attempt: number, retryInMs: number) => void;
}

/**
 * Loads, then reloads every `refreshIntervalMs` (jittered); after a failure retries with backoff
 * ({@linkcode retryDelay}) and starts the backoff over after a success.
 */
export function refreshLoop(options: RefreshLoopOptions): RefreshLoop {
  const { timers, random } = options;
  let closed = false;
  let timer: TimerId | undefined;
  let failures = 0;

  const schedule = (ms: number): void => {
    if (closed) return;
    if (timer !== undefined) timers.clearTimeout(timer);
    timer = timers.setTimeout(() => {
      timer = undefined;
      return tick();
    }, ms);
  };

  const tick = async (): Promise<void> => {
    if (closed) return;
    try {
      await options.load();
      failures = 0;
      schedule(jittered(options.refreshIntervalMs, random));
    } catch (e) {
      if (closed) return;
      failures++;
      const delay = retryDelay({
        loaded: options.loaded(),
        attempt: failures,
        refreshIntervalMs: options.refreshIntervalMs,
        random,
      });
      options.onFailure(e, failures, delay);
      schedule(delay);
    }
  };

  return {
    start: () => schedule(0),
    close() {
      if (closed) return;
      closed = true;
      if (timer !== undefined) timers.clearTimeout(timer);
      timer = undefined;
    },
  };
}

/** Options of {@linkcode unknownKidRefetch}. */
export interface UnknownKidRefetchOptions {
  flight: SingleFlight;
  /** JWKS_MIN_REFRESH_INTERVAL. */
  minIntervalMs: number;
  now: () => number;
  /** When the last key-set fetch started (-Infinity before any). */
  lastFetchStartMs: () => number;
  /** False before the first load (the background loop owns fetching) and after close. */
  active: () => boolean;
  /** Told that a refetch starts. */
  onStart: (kid: string) => void;
  /** Told of a failed refetch, unless closed meanwhile. */
  onFailure: (err: unknown) => void;
}

/**
 * The refetch for a token naming an unknown `kid`: joins a fetch in flight, else fetches at most
 * once per `minIntervalMs`. The returned function never rejects.
 */
export function unknownKidRefetch(
  options: UnknownKidRefetchOptions,
): (kid: string) => Promise<void> {
  const { flight } = options;
  return async (kid) => {
    if (!options.active()) return;
    // Join a fetch in flight; whoever started it reports its failure.
    if (flight.inflight) return void (await flight.inflight.catch(() => {}));
    if (options.now() - options.lastFetchStartMs() < options.minIntervalMs) return;
    options.onStart(kid);
    try {
      await flight.run();
    } catch (e) {
      if (!options.active()) return;
      options.onFailure(e);
    }
  };
}
