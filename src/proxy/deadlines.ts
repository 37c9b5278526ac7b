/**
 * Deadlines on the request path (READ_TIMEOUT, SSE_IDLE_TIMEOUT) checked by one shared coarse
 * timer instead of a timer per request: arming a timer costs more than the rest of a small
 * exchange, and these deadlines are seconds long, so firing up to one tick late is fine. The
 * watched entries form an intrusive doubly-linked list (no Set: finished entries and what they
 * reference are then not kept alive until a full GC; see the same choice in src/http1/client.ts).
 */

/** One watched deadline; move it with {@linkcode Deadline.at}, stop it with `Deadlines.unwatch`. */
export class Deadline {
  /** performance.now() by which it expires. */
  at: number;
  readonly onExpire: () => void;
  /** @internal list links */
  prev: Deadline | null = null;
  /** @internal */
  next: Deadline | null = null;
  /** @internal */
  watched = false;

  constructor(at: number, onExpire: () => void) {
    this.at = at;
    this.onExpire = onExpire;
  }
}

/** A set of deadlines and the one timer that checks them. */
export class Deadlines {
  #head: Deadline | null = null;
  #count = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #tickMs: number;
  readonly #now: () => number;

  /**
   * `shortestMs`: the shortest timeout the owner configures; the tick is a tenth of it, from 5 ms
   * to 1 s. Fixed, not taken from each watch: a deadline already (nearly) due, such as a body
   * deadline spent during authentication, would otherwise shrink the tick for good.
   */
  constructor(shortestMs: number, now: () => number = () => performance.now()) {
    this.#tickMs = Math.min(Math.max(Math.floor(shortestMs / 10), 5), 1000);
    this.#now = now;
  }

  /** Deadlines being watched. */
  get size(): number {
    return this.#count;
  }

  /**
   * Calls `onExpire` once, between `timeoutMs` and one tick (plus timer slack) after now, unless
   * unwatched first.
   * The returned deadline's `at` may be moved later (an idle timer re-armed by traffic).
   */
  watch(timeoutMs: number, onExpire: () => void): Deadline {
    const d = new Deadline(this.#now() + timeoutMs, onExpire);
    d.watched = true;
    d.next = this.#head;
    if (this.#head !== null) this.#head.prev = d;
    this.#head = d;
    this.#count++;
    this.#timer ??= setTimeout(this.#onTick, this.#tickMs);
    return d;
  }

  /** Stops watching `d` (no-op when it expired or was unwatched). */
  unwatch(d: Deadline): void {
    if (!d.watched) return;
    d.watched = false;
    if (d.prev !== null) d.prev.next = d.next;
    else this.#head = d.next;
    if (d.next !== null) d.next.prev = d.prev;
    d.prev = null;
    d.next = null;
    this.#count--;
  }

  /** Stops the timer when nothing is watched (the owner is closing; see the forwarder). */
  close(): void {
    if (this.#count === 0) this.#stop();
  }

  #onTick = (): void => {
    this.#timer = undefined;
    const now = this.#now();
    for (let d = this.#head; d !== null;) {
      // onExpire may unwatch others: take the successor first.
      const next = d.next;
      if (d.at <= now) {
        this.unwatch(d);
        d.onExpire();
      }
      d = next;
    }
    // Keeps ticking while something is watched; an idle gate holds no timer.
    if (this.#count > 0) this.#timer = setTimeout(this.#onTick, this.#tickMs);
  };

  #stop(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }
}
