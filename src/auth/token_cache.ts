/**
 * The verified-token cache (docs/contract.md §4): a token that passed every check is remembered by
 * its exact bytes so the next request skips the signature check, which dominates the request path.
 *
 * Only positive results enter, so a flood of garbage or forged tokens never evicts good entries.
 * Bounded in entries (least recently used evicted), in total token bytes, and per token (larger
 * tokens are not cached). An entry is never served at or after its `exp`. The caller re-checks
 * `nbf`/`exp` leeway and key membership on each hit (see verify.ts).
 */

/** Options for {@linkcode createTokenCache}. */
export interface TokenCacheOptions {
  /** Most entries kept. Default 10 000. */
  maxEntries?: number;
  /** Tokens longer than this are not cached. Default 8 KiB. */
  maxTokenBytes?: number;
  /** Most token bytes kept in total. Default 32 MiB. */
  maxTotalBytes?: number;
}

/** What a cache entry must carry: its expiry. */
export interface Expiring {
  /** The token's `exp` in epoch milliseconds. */
  readonly expMs: number;
}

/** A bounded LRU map from exact token string to a verified result. */
export interface TokenCache<V extends Expiring> {
  /** The entry for `token`, refreshed as most recently used; dropped when `nowMs >= expMs`. */
  get(token: string, nowMs: number): V | undefined;
  /** Stores `value` unless the token is too large or already expired; returns whether stored. */
  set(token: string, value: V, nowMs: number): boolean;
  delete(token: string): void;
  clear(): void;
  readonly size: number;
  /** Sum of cached token lengths. */
  readonly bytes: number;
}

export const DEFAULT_MAX_ENTRIES = 10_000;
export const DEFAULT_MAX_TOKEN_BYTES = 8 * 1024;
export const DEFAULT_MAX_TOTAL_BYTES = 32 * 1024 * 1024;

/** A cached value with the key string it was stored under. */
interface Slot<V> {
  readonly key: string;
  readonly value: V;
}

/** Creates an empty {@linkcode TokenCache}. */
export function createTokenCache<V extends Expiring>(
  options: TokenCacheOptions = {},
): TokenCache<V> {
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const maxTokenBytes = options.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES;
  const maxTotalBytes = options.maxTotalBytes ?? DEFAULT_MAX_TOTAL_BYTES;
  // A Map iterates in insertion order: re-inserting on a hit makes the first key the LRU one.
  // Each slot keeps the key string it was stored with: a hit re-inserts that one, not the
  // caller's equal copy, which is a fresh string on every request and would otherwise be kept
  // (and promoted by the GC) in its place.
  const map = new Map<string, Slot<V>>();
  let bytes = 0;

  const remove = (token: string) => {
    if (map.delete(token)) bytes -= token.length;
  };

  return {
    get(token, nowMs) {
      const slot = map.get(token);
      if (slot === undefined) return undefined;
      if (nowMs >= slot.value.expMs) {
        remove(token);
        return undefined;
      }
      map.delete(token);
      map.set(slot.key, slot);
      return slot.value;
    },
    set(token, value, nowMs) {
      // Tokens are ASCII (base64url and dots), so length is the byte count.
      if (maxEntries <= 0 || token.length > maxTokenBytes || nowMs >= value.expMs) return false;
      remove(token);
      while (map.size >= maxEntries || (map.size > 0 && bytes + token.length > maxTotalBytes)) {
        remove(map.keys().next().value!);
      }
      map.set(token, { key: token, value });
      bytes += token.length;
      return true;
    },
    delete: remove,
    clear() {
      map.clear();
      bytes = 0;
    },
    get size() {
      return map.size;
    },
    get bytes() {
      return bytes;
    },
  };
}
