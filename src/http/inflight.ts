/**
 * In-flight request caps (MAX_CONCURRENT_REQUESTS per client IP, MAX_TOTAL_CONNECTIONS in total),
 * the counterpart of the Go gate's limits. Pure counting, no clock and no I/O: the handler enters
 * when a request arrives and releases when its response has ended (for a stream, when the stream
 * ends), so a long SSE stream holds its slot for as long as it runs.
 *
 * The total counts requests, not connections: Deno.serve exposes no connection count, and idle or
 * half-sent connections never reach the handler (see docs/controls.md).
 */

/** Which cap refused a request: the client's own (`ip`, answer 429) or the gate's (`total`, 503). */
export type InflightScope = "ip" | "total";

/** A refused {@linkcode InflightLimits.enter}. */
export interface InflightRefusal {
  readonly scope: InflightScope;
}

/** Gives the slot back. Idempotent: only the first call counts. */
export type InflightRelease = () => void;

/** Options for {@linkcode createInflightLimits}. */
export interface InflightOptions {
  /** Requests in flight per client IP; 0 = unlimited. */
  perIp: number;
  /** Requests in flight in total; 0 = unlimited. */
  total: number;
}

/** The in-flight counters of one gate. */
export interface InflightLimits {
  /**
   * Takes a slot for a request from `ip`: a release function, or the refusal naming the cap that
   * is full (the per-IP cap is checked first, so one client at its cap is told 429 even while the
   * gate as a whole is full). A refusal takes nothing and needs no release.
   */
  enter(ip: string): InflightRelease | InflightRefusal;
  /** Requests in flight now, in total. */
  readonly total: number;
  /** Requests in flight now from `ip` (always 0 when the per-IP cap is off: nothing is kept). */
  count(ip: string): number;
  /** Client IPs with at least one request in flight (the size of the per-IP map). */
  readonly trackedIps: number;
}

/** The two refusals, allocated once: refusing costs nothing under a flood. */
const REFUSED_IP: InflightRefusal = Object.freeze({ scope: "ip" });
const REFUSED_TOTAL: InflightRefusal = Object.freeze({ scope: "total" });

/**
 * Creates the counters. Memory is bounded by what is in flight: the per-IP map holds only IPs with
 * a request in flight, and is not kept at all when `perIp` is 0.
 * @throws {RangeError} when a cap is not a whole number, 0 or more.
 */
export function createInflightLimits(opts: InflightOptions): InflightLimits {
  for (const [name, value] of [["perIp", opts.perIp], ["total", opts.total]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(
        `Invalid "${name}": expected a whole number, 0 or more, got "${value}"`,
      );
    }
  }
  const perIp = opts.perIp;
  const cap = opts.total;
  const byIp = new Map<string, number>();
  let total = 0;

  const leave = (ip: string | undefined) => {
    total--;
    if (ip === undefined) return;
    const n = byIp.get(ip)! - 1;
    if (n === 0) byIp.delete(ip);
    else byIp.set(ip, n);
  };

  return {
    enter(ip) {
      let tracked: string | undefined;
      if (perIp > 0) {
        const n = byIp.get(ip) ?? 0;
        if (n >= perIp) return REFUSED_IP;
        if (cap > 0 && total >= cap) return REFUSED_TOTAL;
        byIp.set(ip, n + 1);
        tracked = ip;
      } else if (cap > 0 && total >= cap) return REFUSED_TOTAL;
      total++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        leave(tracked);
      };
    },
    get total() {
      return total;
    },
    count(ip) {
      return byIp.get(ip) ?? 0;
    },
    get trackedIps() {
      return byIp.size;
    },
  };
}
