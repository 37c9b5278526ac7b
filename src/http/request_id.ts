/**
 * Request ids: keep a well-formed client `X-Request-Id` so traces join up across hops, else mint
 * one. Pure apart from the random UUID.
 */

/** Characters and length a client-supplied id may have; anything else could corrupt logs. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Returns an `X-Request-Id` value already read (null when absent) when it matches
 * {@linkcode REQUEST_ID_PATTERN}, else a fresh `crypto.randomUUID()`.
 */
export function requestIdFor(id: string | null): string {
  return id !== null && REQUEST_ID_PATTERN.test(id) ? id : crypto.randomUUID();
}
