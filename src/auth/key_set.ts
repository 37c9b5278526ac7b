/**
 * The fetch-and-import of one key set, and the immutable snapshot the key store serves from
 * (looked up by `kid`, RFC 7515 §4.1.4).
 */
import { type ImportedKeySet, importKeySet, type VerificationKey } from "./jwk_import.ts";
import { type GetJson, KeySetError } from "./key_fetch.ts";

/** One key set, indexed: every key, the keys per `kid`, and membership. */
export interface KeySnapshot {
  readonly all: readonly VerificationKey[];
  readonly byKid: ReadonlyMap<string, readonly VerificationKey[]>;
  readonly members: ReadonlySet<VerificationKey>;
}

/** The snapshot before any key set is loaded. */
export const EMPTY_SNAPSHOT: KeySnapshot = { all: [], byKid: new Map(), members: new Set() };

/** Indexes `keys` by `kid` (keys without one are only in `all`). */
export function snapshotOf(keys: readonly VerificationKey[]): KeySnapshot {
  const byKid = new Map<string, VerificationKey[]>();
  for (const k of keys) {
    if (k.kid === undefined) continue;
    const list = byKid.get(k.kid);
    if (list) list.push(k);
    else byKid.set(k.kid, [k]);
  }
  return { all: keys, byKid, members: new Set(keys) };
}

/** Whether `next` holds other keys than `previous` (imported keys keep their identity). */
export function keySetChanged(previous: KeySnapshot, next: readonly VerificationKey[]): boolean {
  return next.length !== previous.all.length || next.some((k) => !previous.members.has(k));
}

/**
 * GETs the key set at `jwksUri` and imports its keys for `allowedAlgs`, reusing the `previous`
 * keys that did not change.
 * @throws {KeySetError} on a status other than 200 or a key set that cannot be imported.
 */
export async function fetchKeySet(
  jwksUri: string,
  options: {
    getJson: GetJson;
    allowedAlgs: readonly string[];
    previous: readonly VerificationKey[];
  },
): Promise<ImportedKeySet> {
  const { status, body } = await options.getJson(jwksUri, "key set");
  if (status !== 200) throw new KeySetError(`HTTP ${status} fetching key set "${jwksUri}"`);
  try {
    return await importKeySet(body, {
      allowedAlgs: options.allowedAlgs,
      previous: options.previous,
    });
  } catch (e) {
    throw new KeySetError(`${(e as Error).message} at "${jwksUri}"`);
  }
}
