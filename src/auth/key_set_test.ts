import assert from "node:assert/strict";
import type { VerificationKey } from "./jwk_import.ts";
import { EMPTY_SNAPSHOT, keySetChanged, snapshotOf } from "./key_set.ts";

const key = (kid?: string) => ({ kid }) as unknown as VerificationKey;

Deno.test("snapshotOf() indexes keys by kid and keeps keys without one in all only", () => {
  const a1 = key("a");
  const a2 = key("a");
  const b = key("b");
  const none = key();
  const snap = snapshotOf([a1, b, a2, none]);
  assert.deepEqual(snap.all, [a1, b, a2, none]);
  assert.deepEqual(snap.byKid.get("a"), [a1, a2]);
  assert.deepEqual(snap.byKid.get("b"), [b]);
  assert.equal(snap.byKid.size, 2);
  assert.ok(snap.members.has(none));
});

Deno.test("keySetChanged() compares key identity, not only the count", () => {
  const a = key("a");
  const b = key("b");
  const snap = snapshotOf([a, b]);
  assert.equal(keySetChanged(snap, [b, a]), false);
  assert.equal(keySetChanged(snap, [a]), true);
  assert.equal(keySetChanged(snap, [a, key("b")]), true);
  assert.equal(keySetChanged(EMPTY_SNAPSHOT, []), false);
});
