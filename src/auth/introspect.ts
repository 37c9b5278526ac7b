/**
 * Opaque access tokens: OAuth 2.0 Token Introspection (RFC 7662), docs/identity-providers.md
 * "Opaque tokens". A token that is not a compact JWS (or every token, with INTROSPECT_ALL) is
 * sent to the authorization server's introspection endpoint, and the answer is held to the same
 * rules as a JWT's claims, by the same named checks of policy.ts.
 *
 * What protects the authorization server (and the request path) from a flood:
 * - answers are cached by the token's SHA-256, never by the token itself: a positive one until the
 *   token's `exp` or INTROSPECTION_CACHE_TTL, whichever is sooner; a negative one (inactive,
 *   refused by policy) for {@linkcode NEGATIVE_TTL_MS}; both bounded in entries;
 * - concurrent requests with the same token share one call (single flight);
 * - at most {@linkcode MAX_CONCURRENT_CALLS} calls run at once; a bounded number wait for a slot
 *   within the call's deadline, more are refused at once; while the endpoint fails, one call at a
 *   time (a probe) and the other new tokens are refused at once;
 * - the handler consults the client IP's rate-limit bucket before any of this (src/handler.ts).
 * When the endpoint cannot answer, cached answers keep working and new tokens get 503 with
 * Retry-After (`introspection_unavailable`), never 401: the token may be good.
 */
import { createHash } from "node:crypto";
import { type Config, type IntrospectionFormat, issuersOf } from "../config/mod.ts";
import { GateError, redactSecrets } from "../errors.ts";
import type { IntrospectionStats, Logger } from "../ops/mod.ts";
import {
  type AsMetadataSource,
  boundedFetch,
  introspectionEndpointOf,
  readCappedBytes,
} from "./as_metadata.ts";
import {
  checkAudience,
  checkIssuer,
  checkRequiredClaims,
  checkScopes,
  checkSubject,
  checkTime,
  createPolicy,
  type Policy,
  readTimeClaims,
  type TimeClaims,
} from "./policy.ts";
import { MAX_TOKEN_BYTES, type TokenVerifier, type VerifiedToken } from "./verify.ts";

/** Introspection calls allowed in flight at once, for the whole gate. */
export const MAX_CONCURRENT_CALLS = 16;
/** Requests that may wait for a call slot; more get 503 at once. */
export const MAX_WAITING_CALLS = 256;
/** How long a negative answer (inactive, refused) is reused. */
export const NEGATIVE_TTL_MS = 10_000;
/** Entries in each of the positive and negative caches. */
export const MAX_CACHE_ENTRIES = 10_000;
/** Largest accepted introspection response. */
export const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * Whether a token has the shape of a compact JWS (RFC 7515 §7.1: three dot-separated parts).
 * Anything else (an opaque string, a five-part JWE) can only be checked by introspection.
 */
export function isJwsShaped(token: string): boolean {
  const d1 = token.indexOf(".");
  if (d1 < 0) return false;
  const d2 = token.indexOf(".", d1 + 1);
  return d2 >= 0 && token.indexOf(".", d2 + 1) < 0;
}

/**
 * The cache key of a token: its SHA-256, in hex. The cache never holds the token itself, so a
 * heap dump or a cache listing gives nothing that can be replayed. Hex, because it is the
 * cheapest digest encoding of node:crypto here (measured with Deno 2.9.6: about half the time of
 * base64url), and this runs on every request with an opaque token (bench/run.ts "introspect").
 */
export function tokenKey(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** An answer kept for a token: the verified token, or the refusal to repeat. */
export type CachedAnswer =
  | { readonly ok: true; readonly result: VerifiedToken; readonly time: TimeClaims }
  | { readonly ok: false; readonly error: GateError };

/** The introspection answer cache; see {@linkcode createIntrospectionCache}. */
export interface IntrospectionCache {
  /** The answer for `token` while it is fresh. */
  get(token: string, nowMs: number): CachedAnswer | undefined;
  /** Keeps `answer` for `token` until `untilMs` (nothing when that is not after `nowMs`). */
  set(token: string, answer: CachedAnswer, untilMs: number, nowMs: number): void;
  delete(token: string): void;
  /** Every key held, for tests: token hashes only. */
  keys(): string[];
  readonly size: number;
}

/**
 * A bounded map from token hash to answer, positive and negative answers counted apart so that a
 * flood of garbage (negative) never evicts a good token's answer. Least recently used goes first.
 */
export function createIntrospectionCache(
  options: { maxEntries?: number } = {},
): IntrospectionCache {
  const max = options.maxEntries ?? MAX_CACHE_ENTRIES;
  type Slot = { answer: CachedAnswer; untilMs: number };
  const positive = new Map<string, Slot>();
  const negative = new Map<string, Slot>();
  const lookup = (key: string, nowMs: number): CachedAnswer | undefined => {
    for (const map of [positive, negative]) {
      const slot = map.get(key);
      if (slot === undefined) continue;
      if (nowMs >= slot.untilMs) {
        map.delete(key);
        return undefined;
      }
      map.delete(key);
      map.set(key, slot);
      return slot.answer;
    }
    return undefined;
  };
  return {
    get: (token, nowMs) => lookup(tokenKey(token), nowMs),
    set(token, answer, untilMs, nowMs) {
      if (max <= 0 || untilMs <= nowMs) return;
      const key = tokenKey(token);
      positive.delete(key);
      negative.delete(key);
      const map = answer.ok ? positive : negative;
      while (map.size >= max) map.delete(map.keys().next().value!);
      map.set(key, { answer, untilMs });
    },
    delete(token) {
      const key = tokenKey(token);
      positive.delete(key);
      negative.delete(key);
    },
    keys: () => [...positive.keys(), ...negative.keys()],
    get size() {
      return positive.size + negative.size;
    },
  };
}

/** How the introspection endpoint has been doing, for `/readyz`. */
export interface IntrospectionStatus {
  /** "unknown" before the first call; else how the latest call ended. */
  readonly state: "unknown" | "ok" | "failing";
  /** What the latest failure was, when failing. */
  readonly error?: string;
}

/** Checks opaque tokens by introspection; see {@linkcode createIntrospector}. */
export interface Introspector extends TokenVerifier, AsyncDisposable {
  status(): IntrospectionStatus;
  /** Counters for `/metrics`. */
  stats(): IntrospectionStats;
  /** The answer cache (tests inspect its keys). */
  readonly cache: IntrospectionCache;
  /** Aborts calls in flight; later tokens get 503. */
  close(): void;
}

/** Dependencies of {@linkcode createIntrospector}. */
export interface IntrospectorDeps {
  log: Logger;
  fetch?: typeof fetch;
  /** Clock in epoch milliseconds. */
  now?: () => number;
  /** The expected `iss` (the key store's issuer), read per call. */
  issuer: () => string | undefined;
  /** Where `introspection_endpoint` comes from when INTROSPECTION_URL is unset. */
  metadata?: AsMetadataSource;
  /** Overrides of the bounds, for tests. */
  maxConcurrentCalls?: number;
  maxWaitingCalls?: number;
  negativeTtlMs?: number;
}

function unavailable(detail: string): GateError {
  return new GateError("introspection_unavailable", {
    reason: "introspection_unavailable",
    detail,
  });
}

/**
 * Whether an introspection endpoint's non-200 status refuses the one token asked about (a 4xx
 * other than the client's own credentials, 401/403, or load, 408/429) rather than saying the
 * endpoint cannot answer.
 */
export function isTokenRefusal(status: number): boolean {
  return status >= 400 && status < 500 && ![401, 403, 408, 429].includes(status);
}

function invalid(reason: GateError["reason"], detail: string): GateError {
  return new GateError("invalid_token", { reason, detail });
}

/**
 * The HTTP Basic credentials of RFC 6749 §2.3.1: client id and secret each form-urlencoded
 * (application/x-www-form-urlencoded, so a space is "+"), joined by ":", base64.
 */
export function basicCredentials(clientId: string, secret: string): string {
  const enc = (s: string) => new URLSearchParams({ s }).toString().slice(2);
  const bytes = new TextEncoder().encode(`${enc(clientId)}:${enc(secret)}`);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return `Basic ${btoa(bin)}`;
}

/**
 * The checks on an introspection response (RFC 7662 §2.2), the JWT rules of docs/contract.md §4
 * by the same functions: `active` must be true; `token_type`, when present, Bearer; `exp` (when
 * present; otherwise the answer only lives for INTROSPECTION_CACHE_TTL), `nbf` and `iat` with the
 * skew; `iss`, when present, exactly the issuer; `aud` one of the audiences; `sub` non-empty;
 * then scopes (`scope`, space-separated) and required claims, 403.
 * @returns the time claims (with `expMs` filled in) or the refusal.
 */
export function checkIntrospection(
  body: Readonly<Record<string, unknown>>,
  options: { policy: Policy; issuer: string | undefined; nowMs: number; ttlMs: number },
): TimeClaims | GateError {
  const { policy, nowMs } = options;
  if (body.active !== true) {
    return invalid("inactive", "the authorization server says the token is not active");
  }
  const type = body.token_type;
  if (type !== undefined && (typeof type !== "string" || type.toLowerCase() !== "bearer")) {
    return invalid("typ", `token_type ${JSON.stringify(type)} is not Bearer`.slice(0, 200));
  }
  // Some servers (Ory Hydra) introspect refresh tokens too, with the same sub, aud and scope,
  // and say which kind in `token_use`: only an access token opens the resource.
  const use = body.token_use;
  if (use !== undefined && use !== "access_token") {
    return invalid("typ", `token_use ${JSON.stringify(use)} is not access_token`.slice(0, 200));
  }
  // RFC 7662 §2.2 makes exp optional: without one, the answer stands for the cache TTL only.
  const time = readTimeClaims(
    body.exp === undefined ? { ...body, exp: (nowMs + options.ttlMs) / 1000 } : body,
  );
  if (time instanceof GateError) return time;
  return checkTime(time, nowMs, policy.clockSkewMs) ??
    (body.iss === undefined ? undefined : checkIssuer(body.iss, options.issuer)) ??
    checkAudience(body.aud, policy.audiences) ??
    checkSubject(body.sub) ??
    checkScopes(body, policy) ??
    checkRequiredClaims(body, policy) ??
    time;
}

/**
 * What differs between introspection endpoints, and nothing else: how the token is sent, what a
 * refusing 4xx means, and how a 200 answer becomes the RFC 7662 shape that
 * {@linkcode checkIntrospection} reads. Cache, single flight, slots and failure handling are
 * shared by every dialect.
 */
export interface IntrospectionDialect {
  /** The form body of the POST and the request headers besides accept and content-type. */
  request(token: string): { form: URLSearchParams; headers: Record<string, string> };
  /** The log reason of a 4xx that refuses the token asked about ({@linkcode isTokenRefusal}). */
  readonly refusalReason: GateError["reason"];
  readonly refusalDetail: string;
  /** What to say with a 401/403 from the endpoint (the gate's own credentials). */
  readonly credentialsHint: string;
  /** The RFC 7662 shape of a 200 JSON object; throws an Error when it is no answer at all. */
  normalise(body: Record<string, unknown>, what: string): Record<string, unknown>;
}

/**
 * RFC 7662 §2.1: the token in `token` with an `access_token` hint; the gate authenticates as a
 * confidential client (RFC 6749 §2.3.1), by Basic or in the form.
 */
export function rfc7662Dialect(
  clientId: string,
  secret: string,
  method: Config["introspectionAuthMethod"],
): IntrospectionDialect {
  const basic = method === "client_secret_basic" ? basicCredentials(clientId, secret) : undefined;
  return {
    request(token): { form: URLSearchParams; headers: Record<string, string> } {
      const form = new URLSearchParams({ token, token_type_hint: "access_token" });
      if (basic) return { form, headers: { authorization: basic } };
      form.set("client_id", clientId);
      form.set("client_secret", secret);
      return { form, headers: {} };
    },
    // RFC 7662 §2.3: the endpoint answers 400 (invalid_request) to a request it cannot read,
    // which a client provokes with its own token (overlong, odd bytes).
    refusalReason: "malformed",
    refusalDetail: "the introspection endpoint refused the token",
    credentialsHint:
      ": check INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET and INTROSPECTION_AUTH_METHOD",
    normalise(body, what) {
      // RFC 7662 §2.2: `active` is REQUIRED and a boolean; anything else is no answer at all.
      if (typeof body.active !== "boolean") {
        throw new Error(`Response from ${what} has no boolean "active"`);
      }
      return body;
    },
  };
}

/** A decimal string as Google writes its times (`"1733400000"`), else NaN (refused later). */
function decimalSeconds(value: unknown): number {
  return typeof value === "string" && /^[0-9]{1,15}$/.test(value) ? Number(value) : NaN;
}

/**
 * Google's tokeninfo (docs/identity-providers.md "Google"), which has no RFC 7662 endpoint: the
 * token in the form field `access_token` of a POST (never in the URL, where access logs keep
 * it), no client authentication. A 200 answer describes a token Google issued and has not
 * expired or revoked: `active` is true; `exp` is a decimal string made a number (anything else
 * is refused as `malformed`; absent, the answer lives for INTROSPECTION_CACHE_TTL as in RFC 7662).
 * Every other member stays as Google sends it: `email_verified` is the string "true", which the
 * `claim=a|b` form of REQUIRED_CLAIMS matches alongside an `email` allow-list (a boolean would
 * match only the JSON form, which has no any-of). The answer has no `iss`: the issuer check is skipped, as for any
 * answer without one, and tokeninfo only answers for Google's own tokens. A 400
 * (`invalid_token`, "Invalid Value") is how tokeninfo says not active: an unknown, expired or
 * revoked token, or an ID token sent as an access token.
 */
export const googleTokeninfoDialect: IntrospectionDialect = Object.freeze({
  request: (token: string) => ({ form: new URLSearchParams({ access_token: token }), headers: {} }),
  refusalReason: "inactive" as const,
  refusalDetail: "Google's tokeninfo does not know the token as a valid access token",
  credentialsHint: "",
  normalise(body: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = { ...body, active: true };
    if (body.exp !== undefined) out.exp = decimalSeconds(body.exp);
    return out;
  },
});

/** The dialect INTROSPECTION_FORMAT names, with the credentials it needs. */
export function dialectOf(
  config: Pick<
    Config,
    | "introspectionFormat"
    | "introspectionClientId"
    | "introspectionClientSecret"
    | "introspectionAuthMethod"
  >,
): IntrospectionDialect {
  const format: IntrospectionFormat = config.introspectionFormat;
  if (format === "google_tokeninfo") return googleTokeninfoDialect;
  const clientId = config.introspectionClientId;
  const secret = config.introspectionClientSecret;
  if (clientId === undefined || secret === undefined) {
    throw new TypeError("Introspection is not configured: INTROSPECTION_CLIENT_ID is unset");
  }
  return rfc7662Dialect(clientId, secret, config.introspectionAuthMethod);
}

/** A counting semaphore with a bounded queue; waiters leave when their signal aborts. */
function createSlots(max: number, maxWaiting: number) {
  let inUse = 0;
  const waiting: (() => void)[] = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else inUse--;
  };
  return {
    /** Resolves with the slot's release; rejects when the queue is full or `signal` aborts. */
    acquire(signal: AbortSignal): Promise<() => void> {
      if (inUse < max) {
        inUse++;
        return Promise.resolve(release);
      }
      if (waiting.length >= maxWaiting) {
        return Promise.reject(unavailable(`more than ${maxWaiting} introspection calls waiting`));
      }
      return new Promise((resolve, reject) => {
        const grant = () => {
          signal.removeEventListener("abort", onAbort);
          resolve(release);
        };
        const onAbort = () => {
          const i = waiting.indexOf(grant);
          if (i >= 0) waiting.splice(i, 1);
          reject(unavailable("no introspection call slot became free in time"));
        };
        signal.addEventListener("abort", onAbort, { once: true });
        waiting.push(grant);
      });
    },
  };
}

/**
 * Creates the introspector from the INTROSPECTION_* configuration.
 * @throws {TypeError} when introspection is not configured (rfc7662 without
 * INTROSPECTION_CLIENT_ID).
 */
export function createIntrospector(config: Config, deps: IntrospectorDeps): Introspector {
  const dialect = dialectOf(config);
  const doFetch = deps.fetch ?? fetch;
  const now = deps.now ?? Date.now;
  const log = deps.log;
  const ttlMs = config.introspectionCacheTtlMs;
  const negativeTtlMs = Math.min(deps.negativeTtlMs ?? NEGATIVE_TTL_MS, ttlMs);
  const timeoutMs = config.introspectionTimeoutMs;
  // The first issuer's audiences (ISSUER_AUDIENCES, else EXPECTED_AUDIENCE): introspection
  // serves the first issuer.
  const base = createPolicy({ ...config, expectedAudience: issuersOf(config)[0].audiences });
  // RFC 7662 §2.2: an introspection response carries its scopes in `scope`; the configured
  // SCOPE_CLAIMS are read too (some servers copy their JWT claims into the response).
  const policy: Policy = Object.freeze({
    ...base,
    scopeClaims: [
      { text: "scope", path: ["scope"] },
      ...base.scopeClaims.filter((c) => !(c.path.length === 1 && c.path[0] === "scope")),
    ],
  });
  const cache = createIntrospectionCache();
  const inflight = new Map<string, Promise<VerifiedToken>>();
  const slots = createSlots(
    deps.maxConcurrentCalls ?? MAX_CONCURRENT_CALLS,
    deps.maxWaitingCalls ?? MAX_WAITING_CALLS,
  );
  const closer = new AbortController();
  let state: IntrospectionStatus = { state: "unknown" };
  /** Whether the one call allowed while failing is in flight. */
  let probing = false;
  const counts = { answered: 0, failed: 0, shed: 0, cacheHits: 0 };

  const endpoint = async (): Promise<string> => {
    if (config.introspectionUrl !== undefined) return config.introspectionUrl;
    if (!deps.metadata) throw new Error("No INTROSPECTION_URL and no metadata to discover it");
    return introspectionEndpointOf(await deps.metadata.get());
  };

  const failed = (message: string) => {
    if (state.state !== "failing") log.warn("introspection failing", { reason: message });
    state = { state: "failing", error: message };
  };
  const answered = () => {
    if (state.state === "failing") log.info("introspection answering again", {});
    if (state.state !== "ok") state = { state: "ok" };
  };

  /** One POST to the endpoint (RFC 7662 §2.1): the parsed JSON object, or an Error saying why. */
  const call = async (url: string, token: string, signal: AbortSignal) => {
    const { form, headers: own } = dialect.request(token);
    const headers: Record<string, string> = {
      accept: "application/json",
      "content-type": "application/x-www-form-urlencoded",
      ...own,
    };
    const what = `introspection endpoint "${url}"`;
    const res = await boundedFetch(doFetch, url, {
      init: { method: "POST", headers, body: form.toString() },
      timeoutMs,
      signal,
      what,
    });
    if (!res.ok && isTokenRefusal(res.status)) {
      // A 4xx about the token refuses this token only; counting it as the endpoint failing
      // would let one client turn every other user's new token into a 503.
      throw invalid(dialect.refusalReason, `${dialect.refusalDetail} (HTTP ${res.status})`);
    }
    if (!res.ok) {
      const hint = res.status === 401 || res.status === 403 ? dialect.credentialsHint : "";
      throw new Error(`HTTP ${res.status} from ${what}${hint}`);
    }
    const type = res.response.headers.get("content-type") ?? "";
    const media = type.split(";")[0].trim().toLowerCase();
    if (media !== "application/json") {
      await readCappedBytes(res.response, 0, what).catch(() => {});
      throw new Error(
        `Content type ${
          JSON.stringify(type.slice(0, 100))
        } from ${what}, expected application/json`,
      );
    }
    const bytes = await readCappedBytes(res.response, MAX_RESPONSE_BYTES, what);
    let body: unknown;
    try {
      body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch {
      throw new Error(`Invalid JSON from ${what}`);
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new Error(`Response from ${what} is not a JSON object`);
    }
    return dialect.normalise(body as Record<string, unknown>, what);
  };

  /** Asks the endpoint about `token` and remembers the answer. */
  const introspect = async (token: string): Promise<VerifiedToken> => {
    const signal = closer.signal;
    if (signal.aborted) throw unavailable("the gate is shutting down");
    // While the endpoint fails, one call at a time probes it and every other new token is
    // refused at once: a failure is no answer, so neither the negative cache nor the client's
    // bucket stops a flood of distinct tokens, and a failing server would get all of them.
    const probe = state.state === "failing";
    if (probe && probing) {
      counts.shed++;
      throw unavailable(
        `introspection is failing (${state.error}); one call at a time until it answers`,
      );
    }
    if (probe) probing = true;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    let release: (() => void) | undefined;
    let body: Record<string, unknown>;
    try {
      release = await slots.acquire(AbortSignal.any([signal, deadline.signal]));
      body = await call(await endpoint(), token, signal);
    } catch (e) {
      if (e instanceof GateError) {
        counts.shed++;
        throw e;
      }
      counts.failed++;
      // The endpoint's URL is configuration: a credential in its query stays out of the log.
      const message = redactSecrets(e instanceof Error ? e.message : String(e));
      if (!signal.aborted) failed(message);
      throw unavailable(message);
    } finally {
      if (probe) probing = false;
      clearTimeout(timer);
      release?.();
    }
    counts.answered++;
    answered();
    const nowMs = now();
    const checked = checkIntrospection(body, {
      policy,
      issuer: deps.issuer(),
      nowMs,
      ttlMs,
    });
    if (checked instanceof GateError) {
      const error = checked.code === "insufficient_scope"
        ? new GateError(checked.code, {
          reason: checked.reason,
          detail: checked.detail,
          subject: body.sub as string,
          issuer: typeof body.iss === "string" ? body.iss : undefined,
        })
        : checked;
      cache.set(token, { ok: false, error }, nowMs + negativeTtlMs, nowMs);
      throw error;
    }
    const claims: Record<string, unknown> = {};
    // Never keep a member that repeats the token (some servers echo it as `jti`).
    for (const [k, v] of Object.entries(body)) if (v !== token) claims[k] = v;
    const result: VerifiedToken = Object.freeze({
      sub: body.sub as string,
      claims: Object.freeze(claims),
      expMs: checked.expMs!,
    });
    cache.set(
      token,
      { ok: true, result, time: checked },
      Math.min(checked.expMs!, nowMs + ttlMs),
      nowMs,
    );
    return result;
  };

  const introspector: Introspector = {
    cache,
    status: () => state,
    stats: () => ({
      ...counts,
      cacheEntries: cache.size,
      ...(state.state === "unknown" ? {} : { up: state.state === "ok" ? 1 : 0 }),
    }),
    verify(token) {
      if (token.length > MAX_TOKEN_BYTES) {
        return Promise.reject(
          invalid("malformed", `token is longer than ${MAX_TOKEN_BYTES} bytes`),
        );
      }
      const nowMs = now();
      const hit = cache.get(token, nowMs);
      if (hit !== undefined) {
        counts.cacheHits++;
        if (!hit.ok) return Promise.reject(hit.error);
        // docs/contract.md §4: time is re-checked on every use, as for a cached JWT.
        const err = checkTime(hit.time, nowMs, policy.clockSkewMs);
        if (!err) return Promise.resolve(hit.result);
        cache.delete(token);
        return Promise.reject(err);
      }
      const key = tokenKey(token);
      let flight = inflight.get(key);
      if (flight === undefined) {
        flight = introspect(token).finally(() => inflight.delete(key));
        inflight.set(key, flight);
      }
      return flight;
    },
    close() {
      closer.abort();
    },
    async [Symbol.asyncDispose]() {
      closer.abort();
      await Promise.allSettled([...inflight.values()]);
    },
  };
  return introspector;
}

/**
 * The gate's verifier with introspection: a token shaped like a JWS goes to `jwt` unless
 * INTROSPECT_ALL, anything else to the introspector.
 */
export function withIntrospection(
  jwt: TokenVerifier,
  introspector: TokenVerifier,
  options: { all: boolean },
): TokenVerifier {
  if (options.all) return introspector;
  return {
    verify: (token) => isJwsShaped(token) ? jwt.verify(token) : introspector.verify(token),
  };
}
