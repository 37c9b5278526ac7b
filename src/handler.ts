/**
 * The request chain, in one visible place (docs/contract.md §2, §3):
 * request URL and Host checks → health → metadata (and the AS metadata mirror) → in-flight caps → origin → preflight → bearer →
 * readiness → client-IP bucket → verify → claim fields → rate limit → proxy (which owns the body
 * size limit).
 * Exactly one log line per request, written when the exchange is over (for a stream, when it
 * ends). The handler never throws: every failure becomes a response.
 */
import type { Config } from "./config/mod.ts";
import { GateError, type GateErrorCode, type RejectReason } from "./errors.ts";
import {
  annotateAuth,
  jsonNumber,
  jsonString,
  type Logger,
  type Metrics,
  type RequestSpan,
  type Route,
  type Tracing,
  truncateBytes,
} from "./ops/mod.ts";
import {
  AS_METADATA_PATH,
  type AuthOutcome,
  bearerFrom,
  chargeOf,
  createClientIpResolver,
  createCors,
  createInflightLimits,
  createMetadata,
  createRateLimiter,
  createResponder,
  HEALTH_PATHS,
  healthResponse,
  internalErrorResponse,
  isUriHost,
  type Limiter,
  loggedStatusOf,
  type MirroredDocument,
  mirrorResponse,
  outcomeOf,
  parseRequestUrl,
  requestIdFor,
  type RequestTarget,
  upstreamErrorOf,
} from "./http/mod.ts";
import { contentLengthOf, isFieldValue, splitTokens } from "./http1/mod.ts";
import type { KeyStore, TokenVerifier, VerifiedToken } from "./auth/mod.ts";
import {
  claimFieldValues,
  type ForwardContext,
  type Forwarder,
  type ForwardResult,
  type RequestFields,
} from "./proxy/mod.ts";

/** What {@linkcode createHandler} needs; every part is built once by server.ts (or a test). */
export interface HandlerDeps {
  config: Config;
  keys: Pick<KeyStore, "ready">;
  verifier: TokenVerifier;
  forwarder: Forwarder;
  log: Logger;
  metrics?: Metrics;
  /** The gate's own tracer, when OTEL_EXPORTER_OTLP_ENDPOINT is set. */
  tracing?: Tracing;
  /** Whether the listener serves TLS itself (then X-Forwarded-Proto is https). */
  tls?: boolean;
  /** Monotonic clock in ms, for durations. */
  now?: () => number;
  /** AS_METADATA_MIRROR: the authorization server's metadata, served at its RFC 8414 path. */
  asMetadata?: { get(): Promise<MirroredDocument> };
  /** What `/readyz` reports without deciding readiness (the introspection endpoint's state). */
  healthDetails?: () => Readonly<Record<string, unknown>>;
  /**
   * The per-IP and per-subject limiters when their buckets are shared (RATE_LIMIT_REDIS_URL,
   * built by server.ts); else, with RATE_LIMIT_RPS set, in-memory ones are made here.
   */
  rateLimiters?: { readonly ip: Limiter; readonly subject: Limiter };
}

/** The peer address as Deno.serve reports it. */
export interface PeerInfo {
  remoteAddr: { hostname: string; port?: number } | { transport: string };
}

export type Handler = (req: Request, info: PeerInfo) => Promise<Response>;

/** What the log line needs from the start of an exchange. */
interface Exchange {
  readonly method: string;
  readonly path: string;
  readonly started: number;
  readonly clientIp: string;
  readonly requestId: string;
  readonly fields: RequestFields;
}

/** Fields of the per-request log line that are known only at the end. */
interface Outcome {
  route: Route;
  status: number;
  auth: string;
  reason?: RejectReason;
  sub?: string;
  upstreamStatus?: number;
  bytesIn?: number;
  bytesOut?: number;
  detail?: string;
}

/** Builds the gate's request handler. All per-config work happens here, once. */
export function createHandler(deps: HandlerDeps): Handler {
  const { config, keys, verifier, forwarder, log, metrics, tracing } = deps;
  const now = deps.now ?? (() => performance.now());
  const responder = createResponder(config);
  const metadata = createMetadata(config);
  const cors = createCors(config);
  const trusted = config.trustedProxies;
  const resolveClientIp = createClientIpResolver(trusted);
  const limiting = config.rateLimitRps > 0;
  const inMemory = () =>
    createRateLimiter({ rps: config.rateLimitRps, burst: config.rateLimitBurst });
  const ipLimiter: Limiter | undefined = limiting ? deps.rateLimiters?.ip ?? inMemory() : undefined;
  const subjectLimiter: Limiter | undefined = limiting
    ? deps.rateLimiters?.subject ?? inMemory()
    : undefined;
  const inflight = createInflightLimits({
    perIp: config.maxConcurrentRequests,
    total: config.maxTotalConnections,
  });
  const claimHeaders = config.claimHeaders;
  const asMirror = config.asMetadataMirror ? deps.asMetadata : undefined;

  /**
   * Where an exchange is recorded, in one place: its auth decision goes to the metrics and the
   * trace span together (`auth`, at the moment of the decision, while the request's span is
   * active); its end goes to the log line and the request metrics together (`finish`, once the
   * exchange is over, for a stream when it ends).
   */
  const recordAuth = (
    span: RequestSpan | undefined,
    outcome: AuthOutcome,
    reason?: RejectReason,
    sub?: string,
  ) => {
    metrics?.authOutcome(outcome, reason);
    // The gate's own span (OTEL_EXPORTER_OTLP_ENDPOINT), else Deno's active one, if any.
    if (span !== undefined) span.annotate({ outcome, reason, sub });
    else annotateAuth({ outcome, reason, sub });
  };
  const finish = (x: Exchange, o: Outcome) => {
    const durationMs = now() - x.started;
    metrics?.requestFinished({ route: o.route, method: x.method, status: o.status, durationMs });
    const level = o.status >= 500 ? "warn" : "info";
    if (!log.enabled(level)) return;
    // The fields of docs/contract.md §5 in a fixed order, serialised here: the same text
    // JSON.stringify would give for them, at a fraction of its cost.
    let line = `"method":${jsonString(x.method)},"path":${jsonString(truncateBytes(x.path))},` +
      `"status":${jsonNumber(o.status)},` +
      `"duration_ms":${jsonNumber(Math.round(durationMs * 1000) / 1000)},` +
      `"client_ip":${jsonString(x.clientIp)},` +
      `"user_agent":${jsonString(truncateBytes(x.fields.userAgent ?? ""))},` +
      `"request_id":${jsonString(x.requestId)},"auth":${jsonString(o.auth)}`;
    if (o.reason) line += `,"reason":${jsonString(o.reason)}`;
    // A gateway failure's cause (connection refused, timeout, ...) goes with its warning: the
    // operator needs it to act. Other details (why a token was refused) are debug only.
    if (o.detail && (level === "warn" || log.enabled("debug"))) {
      line += `,"detail":${jsonString(o.detail)}`;
    }
    if (o.sub !== undefined) line += `,"sub":${jsonString(o.sub)}`;
    if (o.upstreamStatus !== undefined) {
      line += `,"upstream_status":${jsonNumber(o.upstreamStatus)}`;
    }
    const bytesIn = o.bytesIn ?? contentLengthOf(x.fields.contentLength) ?? 0;
    line += `,"bytes_in":${jsonNumber(bytesIn)}`;
    if (o.bytesOut !== undefined) line += `,"bytes_out":${jsonNumber(o.bytesOut)}`;
    log.writeMembers(level, "request", line);
  };

  const reject = (err: GateError, origin: string | null): Response => {
    const res = responder.respond(err);
    if (origin !== null) cors.decorate(res.headers, origin);
    return res;
  };

  /**
   * MAX_CONCURRENT_REQUESTS / MAX_TOTAL_CONNECTIONS, before any other work; health probes and
   * metadata are exempt, so an overloaded gate is not also restarted by its probes.
   * @returns the slot's release, to call once the exchange is over.
   */
  const admit = (clientIp: string): () => void => {
    const slot = inflight.enter(clientIp);
    if (typeof slot === "function") return slot;
    metrics?.inflightRejected(slot.scope);
    throw slot.scope === "ip"
      ? new GateError("rate_limited", { reason: "inflight_ip", retryAfterSeconds: 1 })
      : new GateError("overloaded", { reason: "inflight_total", retryAfterSeconds: 1 });
  };

  /**
   * Bearer token → verified token: readiness, the client IP's bucket (failed authentication
   * drains it; once empty, the client is refused before any signature work or introspection
   * call), then the verifier: a JWT's signature and claims, or an opaque token's introspection
   * (server.ts builds the verifier; src/auth/introspect.ts decides which a token gets).
   */
  const authenticate = async (
    fields: RequestFields,
    query: string,
    clientIp: string,
  ): Promise<VerifiedToken> => {
    const token = bearerFrom(fields.authorization, query);
    if (!keys.ready) {
      throw new GateError("not_ready", { reason: "keys_not_loaded", retryAfterSeconds: 5 });
    }
    if (token === undefined) throw new GateError("no_token");
    if (ipLimiter) {
      const wait = ipLimiter.peek(clientIp);
      if (wait > 0) {
        throw new GateError("rate_limited", { reason: "rate_limit", retryAfterSeconds: wait });
      }
    }
    try {
      return await verifier.verify(token);
    } catch (err) {
      throw err instanceof GateError ? err : new GateError("invalid_token", {
        reason: "malformed",
        detail: String(err),
      });
    }
  };

  /**
   * What an authenticated request may do: it is counted as authenticated, then the subject's
   * bucket decides. Returns a promise only when a shared bucket has to answer over the network.
   */
  const authorize = (
    verified: VerifiedToken,
    span: RequestSpan | undefined,
  ): void | Promise<void> => {
    recordAuth(span, "ok", undefined, verified.sub);
    if (subjectLimiter) {
      const wait = subjectLimiter.take(subjectBucket(verified.claims.iss, verified.sub));
      if (typeof wait !== "number") return wait.then(refuseWhenEmpty);
      refuseWhenEmpty(wait);
    }
    // The body limit (413) has one owner, the forwarder, which checks a declared length before
    // it reads anything and cuts a chunked body that grows past it.
  };

  /**
   * Every response the gate gives, its own and proxied, carries the exchange's `X-Request-Id`:
   * the id in its log line and sent upstream (a valid inbound one kept), set here in one place.
   */
  const handle = async (req: Request, info: PeerInfo): Promise<Response> => {
    const started = now();
    metrics?.requestStarted();
    // Every field the chain looks at, and those the upstream gets, in one pass.
    const fields = forwarder.readFields(req.headers);
    const requestId = requestIdFor(fields.requestId);
    const res = await respond(req, info, { started, fields, requestId });
    res.headers.set("x-request-id", requestId);
    return res;
  };

  const respond = async (
    req: Request,
    info: PeerInfo,
    start: { started: number; fields: RequestFields; requestId: string },
  ): Promise<Response> => {
    const { started, fields, requestId } = start;
    const target = parseRequestUrl(req.url);
    const path = typeof target === "string" ? splitTarget(req.url).path : target.path;
    const addr = info.remoteAddr;
    const peer = "hostname" in addr ? addr.hostname : "unknown";
    const { clientIp, forwardedFor, trustedPeer } = resolveClientIp(
      peer,
      trusted.length > 0 ? fields.forwardedFor : null,
    );
    const exchange: Exchange = {
      method: req.method,
      path,
      started,
      clientIp,
      requestId,
      fields,
    };
    // The gate's server span (OTEL_EXPORTER_OTLP_ENDPOINT), for every request but health probes.
    const span = tracing !== undefined && !HEALTH_PATHS.has(path)
      ? tracing.start({
        method: req.method,
        path,
        clientIp,
        requestId,
        userAgent: fields.userAgent,
        traceparent: fields.traceparent,
        tracestate: fields.tracestate,
      })
      : undefined;
    // The in-flight slot is held until the exchange is over (a stream: until it ends).
    let release: (() => void) | undefined;
    const done = (o: Outcome) => {
      release?.();
      finish(exchange, o);
      span?.end(o.status, o.reason);
    };

    // What reaches the upstream is built from these: refuse what cannot be passed on as it is,
    // before any other work (src/http/target.ts, docs/security.md).
    const malformed = requestProblem(target, fields, forwardedFor, {
      method: req.method,
      maxHeaderBytes: config.maxHeaderBytes,
    });
    if (malformed !== undefined) {
      const err = new GateError(PROBLEM_CODES[malformed] ?? "bad_request", { reason: malformed });
      recordAuth(span, outcomeOf(err.code), malformed);
      const res = reject(err, null);
      done({ route: "rejected", status: res.status, auth: outcomeOf(err.code), reason: malformed });
      return res;
    }
    const checked = target as RequestTarget;

    const healthRes = healthResponse(req.method, path, keys.ready, deps.healthDetails);
    if (healthRes !== undefined) {
      done({ route: "health", status: healthRes.status, auth: "exempt" });
      return healthRes;
    }
    if (metadata.matches(path)) {
      const res = metadata.respond(req);
      done({ route: "metadata", status: res.status, auth: "exempt" });
      return res;
    }
    if (asMirror !== undefined && path === AS_METADATA_PATH) {
      let detail: string | undefined;
      const doc = req.method === "GET" || req.method === "HEAD"
        ? await asMirror.get().catch((e: unknown) => {
          detail = String(e);
          return undefined;
        })
        : undefined;
      const res = mirrorResponse(req, doc);
      done({ route: "metadata", status: res.status, auth: "exempt", detail });
      return res;
    }

    const origin = fields.origin;
    let sub: string | undefined;
    try {
      release = admit(clientIp);
      // docs/contract.md §3.1: a present, unlisted Origin is refused before anything else.
      if (!cors.originAllowed(origin)) {
        throw new GateError("forbidden", { reason: "origin" });
      }
      // §3.2: preflight carries no credentials by design (Fetch standard), so no auth.
      if (cors.isPreflight(req)) {
        const res = cors.preflight(req);
        done({ route: "preflight", status: res.status, auth: "exempt" });
        return res;
      }
      const verified = await authenticate(fields, checked.query, clientIp);
      // Claim fields come before the request counts as authenticated: a claim that cannot be
      // sent faithfully refuses it (403, charged to the subject like any other 403).
      const claimed = claimHeaders.length > 0
        ? claimFieldValues(claimHeaders, verified.claims)
        : undefined;
      // With the gate's span, the upstream gets its trace context (the inbound one is dropped:
      // src/headers/managed.ts TRACE_CONTEXT_HEADERS).
      const setHeaders = span === undefined || span.propagate.length === 0
        ? claimed
        : [...(claimed ?? []), ...span.propagate];
      sub = verified.sub;
      const authorized = authorize(verified, span);
      if (authorized) await authorized;

      const ctx: ForwardContext = {
        clientIp,
        forwardedFor,
        forwardedProto: forwardedProto(fields, deps.tls === true, trustedPeer),
        requestId,
        target: checked,
        setHeaders,
        fields,
        onDone: (r: ForwardResult) => {
          if (r.outcome === "upstream_abort") metrics?.upstreamError("reset");
          else if (r.outcome === "stream_idle") metrics?.streamIdleClosed();
          done({
            route: "proxy",
            status: r.upstreamStatus,
            auth: "ok",
            sub,
            upstreamStatus: r.upstreamStatus,
            bytesIn: r.bytesIn,
            bytesOut: r.bytesOut,
            reason: r.outcome === "body_too_large" ||
                r.outcome === "read_timeout" || r.outcome === "stream_idle"
              ? r.outcome
              : undefined,
          });
        },
      };
      const res = await forwarder.forward(req, ctx);
      if (origin !== null) cors.decorate(res.headers, origin);
      return res;
    } catch (err) {
      const gateErr = err instanceof GateError ? err : undefined;
      if (!gateErr) {
        log.error("request failed", { request_id: requestId, error: String(err) });
        const res = internalErrorResponse();
        done({ route: "rejected", status: 500, auth: sub ? "ok" : "none", sub });
        return res;
      }
      let final = gateErr;
      // The error table (http/challenge.ts) says whose bucket pays for the refusal.
      const refusedSubject = sub === undefined ? gateErr.subject : undefined;
      const charge = chargeOf(final.code);
      const limiter = charge === "ip"
        ? ipLimiter
        : charge === "subject" && refusedSubject !== undefined
        ? subjectLimiter
        : undefined;
      if (limiter !== undefined) {
        let wait = limiter.take(
          charge === "ip" ? clientIp : subjectBucket(gateErr.issuer, refusedSubject!),
        );
        if (typeof wait !== "number") wait = await wait;
        if (wait > 0) {
          final = new GateError("rate_limited", { reason: "rate_limit", retryAfterSeconds: wait });
        }
      }
      const upstreamError = upstreamErrorOf(final);
      if (upstreamError !== undefined) metrics?.upstreamError(upstreamError);
      const outcome = outcomeOf(final.code);
      // A verified request was already counted as "ok" above.
      if (sub === undefined) {
        recordAuth(span, outcome, final.reason);
      }
      const res = reject(final, origin);
      done({
        route: sub ? "proxy" : "rejected",
        status: loggedStatusOf(final, res.status),
        auth: outcome,
        reason: final.reason,
        detail: final.detail,
        sub: sub ?? refusedSubject,
      });
      return res;
    }
  };
  return handle;
}

/**
 * The key of a subject's rate-limit bucket. OIDC Core §2: `sub` is unique only within its
 * issuer, so with several issuers a partner's "alice" must not spend the home issuer's alice's
 * budget. A JSON pair, so no issuer and subject spellings can meet on one key.
 */
function subjectBucket(issuer: unknown, sub: string): string {
  return typeof issuer === "string" ? JSON.stringify([issuer, sub]) : sub;
}

/** A subject's bucket was empty: 429 with `Retry-After` of `wait` seconds. */
function refuseWhenEmpty(wait: number): void {
  if (wait > 0) {
    throw new GateError("rate_limited", { reason: "rate_limit", retryAfterSeconds: wait });
  }
}

/** Splits an absolute request URL into path and raw query without a URL parse. */
export function splitTarget(url: string): { path: string; search: string } {
  const scheme = url.indexOf("://");
  const start = url.indexOf("/", scheme < 0 ? 0 : scheme + 3);
  if (start < 0) return { path: "/", search: "" };
  const q = url.indexOf("?", start);
  return q < 0
    ? { path: url.slice(start), search: "" }
    : { path: url.slice(start, q), search: url.slice(q) };
}

/** X-Forwarded-Proto: our own TLS, else a trusted proxy's claim, else plain http. */
function forwardedProto(
  fields: RequestFields,
  tls: boolean,
  trustedPeer: boolean,
): "http" | "https" {
  if (tls) return "https";
  if (trustedPeer) {
    const p = fields.forwardedProto;
    if (p !== null && p.trim().toLowerCase() === "https") return "https";
  }
  return "http";
}

/**
 * Whether a request's Transfer-Encoding is just `chunked`, the one coding Deno.serve decodes.
 * Another coding (`gzip, chunked`) would reach the upstream still applied but no longer declared
 * (Transfer-Encoding is hop-by-hop), so it is refused (RFC 9112 §6.1: 501).
 */
function isChunkedOnly(value: string): boolean {
  const codings = splitTokens(value);
  return codings.length === 1 && codings[0] === "chunked";
}

/** The error a request problem gets, where it is not the default 400 (http/challenge.ts). */
const PROBLEM_CODES: Partial<Record<RejectReason, GateErrorCode>> = {
  unsupported_transfer_coding: "not_implemented",
  header_too_large: "header_too_large",
};

/**
 * What reaches the upstream is built from the request's URL and fields: the first reason they
 * cannot be passed on as they are (docs/security.md), or undefined.
 */
function requestProblem(
  target: RequestTarget | RejectReason,
  fields: RequestFields,
  forwardedFor: string,
  head: { method: string; maxHeaderBytes: number },
): RejectReason | undefined {
  if (typeof target === "string") return target;
  // MAX_HEADER_BYTES on the head as parsed: request line ("M /t HTTP/1.1\r\n"), field lines and
  // the blank line. Deno.serve refuses a head past its own limit first (docs/contract.md §1).
  const size = head.method.length + target.path.length + target.query.length + 12 +
    fields.headBytes + 2;
  if (size > head.maxHeaderBytes) return "header_too_large";
  if (fields.host !== null && !isUriHost(fields.host)) return "invalid_host";
  if (fields.unrepresentable !== null || !isFieldValue(forwardedFor)) return "invalid_header";
  if (fields.transferEncoding !== null && !isChunkedOnly(fields.transferEncoding)) {
    return "unsupported_transfer_coding";
  }
  return undefined;
}
