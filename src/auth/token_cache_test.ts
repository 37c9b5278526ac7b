import { deepStrictEqual as assertEquals, equal } from "node:assert/strict";
import { createTokenCache, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_TOKEN_BYTES } from "./token_cache.ts";

const entry = (expMs: number, id = "v") => ({ expMs, id });

Deno.test("createTokenCache() returns a stored entry by the exact token string", () => {
  const cache = createTokenCache<{ expMs: number; id: string }>();
  equal(cache.set("a.b.c", entry(2000, "x"), 1000), true);
  assertEquals(cache.get("a.b.c", 1000), { expMs: 2000, id: "x" });
  equal(cache.get("a.b.c ", 1000), undefined);
  equal(cache.get("a.b.C", 1000), undefined);
  equal(cache.size, 1);
  equal(cache.bytes, 5);
});

Deno.test("createTokenCache() never serves an entry at or after its exp, and drops it", () => {
  const cache = createTokenCache<{ expMs: number; id: string }>();
  cache.set("t", entry(2000), 1000);
  equal(cache.get("t", 1999)?.id, "v");
  equal(cache.get("t", 2000), undefined);
  equal(cache.size, 0);
  equal(cache.bytes, 0);
});

Deno.test("createTokenCache() does not store an already expired token", () => {
  const cache = createTokenCache<{ expMs: number; id: string }>();
  equal(cache.set("t", entry(1000), 1000), false);
  equal(cache.size, 0);
});

Deno.test("createTokenCache() does not store tokens larger than maxTokenBytes", async (t) => {
  await t.step("default limit is 8 KiB", () => {
    const cache = createTokenCache<{ expMs: number; id: string }>();
    equal(DEFAULT_MAX_TOKEN_BYTES, 8192);
    equal(cache.set("x".repeat(8192), entry(2000), 0), true);
    equal(cache.set("y".repeat(8193), entry(2000), 0), false);
    equal(cache.size, 1);
  });
  await t.step("custom limit", () => {
    const cache = createTokenCache<{ expMs: number; id: string }>({ maxTokenBytes: 4 });
    equal(cache.set("abcd", entry(2000), 0), true);
    equal(cache.set("abcde", entry(2000), 0), false);
  });
});

Deno.test("createTokenCache() evicts the least recently used entry when full", () => {
  equal(DEFAULT_MAX_ENTRIES, 10_000);
  const cache = createTokenCache<{ expMs: number; id: string }>({ maxEntries: 3 });
  cache.set("a", entry(9000, "a"), 0);
  cache.set("b", entry(9000, "b"), 0);
  cache.set("c", entry(9000, "c"), 0);
  cache.get("a", 0); // a is now the most recently used
  cache.set("d", entry(9000, "d"), 0);
  equal(cache.size, 3);
  equal(cache.get("b", 0), undefined);
  equal(cache.get("a", 0)?.id, "a");
  equal(cache.get("c", 0)?.id, "c");
  equal(cache.get("d", 0)?.id, "d");
});

Deno.test("createTokenCache() stays within maxTotalBytes", () => {
  const cache = createTokenCache<{ expMs: number; id: string }>({ maxTotalBytes: 10 });
  cache.set("aaaa", entry(9000, "a"), 0);
  cache.set("bbbb", entry(9000, "b"), 0);
  cache.set("cccc", entry(9000, "c"), 0);
  equal(cache.bytes, 8);
  equal(cache.get("aaaa", 0), undefined);
  equal(cache.get("cccc", 0)?.id, "c");
});

Deno.test("createTokenCache() replaces an entry stored twice without double counting", () => {
  const cache = createTokenCache<{ expMs: number; id: string }>();
  cache.set("t", entry(9000, "1"), 0);
  cache.set("t", entry(9000, "2"), 0);
  equal(cache.size, 1);
  equal(cache.bytes, 1);
  equal(cache.get("t", 0)?.id, "2");
  cache.delete("t");
  cache.delete("t");
  equal(cache.bytes, 0);
  cache.set("u", entry(9000), 0);
  cache.clear();
  equal(cache.size, 0);
  equal(cache.bytes, 0);
});

Deno.test("createTokenCache() with maxEntries 0 stores nothing", () => {
  const cache = createTokenCache<{ expMs: number; id: string }>({ maxEntries: 0 });
  equal(cache.set("t", entry(9000), 0), false);
  equal(cache.size, 0);
});
