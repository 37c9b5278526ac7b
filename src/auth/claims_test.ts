import assert from "node:assert/strict";
import fc from "fast-check";
import jsonpointer from "jsonpointer";
import { type ClaimRef, claimRef, parseJsonPointer, type RequiredClaim } from "../config/mod.ts";
import { claimFieldValues } from "../proxy/mod.ts";
import { claimAt, claimStrings } from "./claims.ts";
import { checkRequiredClaims, checkScopes } from "./policy.ts";

/** RFC 6901 §3 escaping, written independently of the parser under test. */
function escapeToken(token: string): string {
  return token.replaceAll("~", "~0").replaceAll("/", "~1");
}

/** Keys an independent oracle reads through the prototype chain; the gate never does. */
const INHERITED = new Set(Object.getOwnPropertyNames(Object.prototype));

const key = fc.oneof(
  fc.constantFrom("a", "b", "~", "/", "~1", "~0", "", "0", "01", "-", "a/b", "m~n"),
  fc.string({ maxLength: 6 }),
).filter((k) => !INHERITED.has(k));

const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.string({ maxLength: 4 }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(key, tie("value"), { maxKeys: 4 }),
  ),
})).value;

/** Reference tokens, biased towards paths that exist in `doc`; array tokens are digits or "-". */
function tokensInto(doc: unknown): fc.Arbitrary<string[]> {
  return fc.array(fc.nat(), { maxLength: 5 }).chain((choices) => {
    const tokens: string[] = [];
    let v = doc;
    for (const c of choices) {
      if (Array.isArray(v)) {
        const kind = c % 4;
        const t = kind === 0 ? "-" : kind === 1 ? `0${c % 10}` : String(c % (v.length + 1));
        tokens.push(t);
        v = /^(0|[1-9]\d*)$/.test(t) ? v[Number(t)] : undefined;
      } else if (typeof v === "object" && v !== null) {
        const keys = Object.keys(v);
        const t = keys.length > 0 && c % 4 !== 0 ? keys[c % keys.length] : `absent${c}`;
        tokens.push(t);
        v = (v as Record<string, unknown>)[t];
      } else {
        tokens.push(`k${c}`);
        v = undefined;
      }
    }
    return fc.constant(tokens);
  });
}

Deno.test("parseJsonPointer() inverts RFC 6901 escaping for every token list", () => {
  fc.assert(
    fc.property(fc.array(fc.string({ maxLength: 8 }), { maxLength: 6 }), (tokens) => {
      const pointer = tokens.map((t) => "/" + escapeToken(t)).join("");
      assert.deepEqual(parseJsonPointer(pointer), tokens);
    }),
    { numRuns: 500 },
  );
  // Not pointers: no leading "/", or "~" not followed by 0 or 1.
  for (const bad of ["a", "/a~", "/a~2", "/~x", "a/b"]) {
    assert.equal(parseJsonPointer(bad), undefined);
  }
  assert.deepEqual(parseJsonPointer("/~01"), ["~1"]);
});

Deno.test("claimAt() agrees with an independent RFC 6901 implementation", () => {
  fc.assert(
    fc.property(
      fc.dictionary(key, json, { maxKeys: 5 }).chain((doc) =>
        tokensInto(doc).map((tokens) => ({ doc, tokens }))
      ),
      ({ doc, tokens }) => {
        fc.pre(tokens.length > 0);
        const pointer = tokens.map((t) => "/" + escapeToken(t)).join("");
        const ref: ClaimRef = { text: pointer, path: parseJsonPointer(pointer)! };
        assert.deepEqual(claimAt(doc, ref), jsonpointer.get(doc, pointer));
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("claimAt() reads own members and array indexes only", async (t) => {
  const doc = { a: [10, 20], o: { "x/y": 1, "m~n": 2 }, n: null, s: "str" };
  const cases: [string, unknown][] = [
    ["/a/1", 20],
    ["/a/2", undefined],
    ["/a/-", undefined],
    ["/a/01", undefined],
    ["/a/length", undefined], // a property of the array, not an element
    ["/o/x~1y", 1],
    ["/o/m~0n", 2],
    ["/constructor", undefined],
    ["/__proto__", undefined],
    ["/o/toString", undefined],
    ["/n/x", undefined],
    ["/s/0", undefined],
    ["/s/length", undefined],
    ["https://example.com/roles", undefined],
  ];
  for (const [text, want] of cases) {
    await t.step(`${text} -> ${JSON.stringify(want)}`, () => {
      assert.deepEqual(claimAt(doc, claimRef(text)), want);
    });
  }
  assert.deepEqual(
    claimAt({ "https://example.com/roles": ["r"] }, claimRef("https://example.com/roles")),
    [
      "r",
    ],
  );
});

Deno.test("claimStrings() reads arrays of strings and space-separated strings as one list", () => {
  assert.deepEqual(claimStrings("a  b c"), ["a", "b", "c"]);
  assert.deepEqual(claimStrings(["a b", "c"]), ["a b", "c"]);
  assert.deepEqual(claimStrings(""), []);
  assert.deepEqual(claimStrings([]), []);
  for (const v of [1, true, null, undefined, { a: "b" }, ["a", 1], [["a"]]]) {
    assert.equal(claimStrings(v), undefined, JSON.stringify(v));
  }
});

/** Words as scopes and group names are: no space, no comma, no control, non-empty. */
const word = fc.stringMatching(/^[a-z0-9:._-]{1,8}$/);
const words = fc.uniqueArray(word, { maxLength: 5 });
/** A list and some words, mostly taken from it (so both outcomes are common). */
const listAndPick = words.chain((list) =>
  fc.tuple(fc.subarray(list), fc.array(word, { maxLength: 1 })).map(([sub, extra]) => ({
    list,
    pick: [...new Set([...sub, ...extra])],
  }))
);
/** Where the claim sits: a top-level name, or nested under a JSON Pointer. */
const place = fc.constantFrom(
  { ref: "groups", put: (v: unknown) => ({ groups: v }) },
  { ref: "/realm_access/roles", put: (v: unknown) => ({ realm_access: { roles: v } }) },
  {
    ref: "/resource_access/mcp~1x/roles",
    put: (v: unknown) => ({ resource_access: { "mcp/x": { roles: v } } }),
  },
);
/** The same list as an array and as a space-separated string. */
const shapes = (list: string[]) => [list, list.join(" "), " " + list.join("  ") + " "];

Deno.test("every claim consumer reads a list the same way, wherever the claim sits", async (t) => {
  await t.step("scopes: granted exactly when each required scope is in the list", () => {
    fc.assert(
      fc.property(listAndPick, place, ({ list: granted, pick: required }, at) => {
        fc.pre(required.length > 0);
        const want = required.every((s) => granted.includes(s));
        for (const shape of shapes(granted)) {
          const got = checkScopes(at.put(shape), {
            requiredScopes: required,
            scopeClaims: [claimRef(at.ref)],
          });
          assert.equal(got === undefined, want, JSON.stringify({ shape, required }));
        }
      }),
    );
  });
  await t.step("REQUIRED_CLAIMS claim=a|b: held exactly when one value is in the list", () => {
    fc.assert(
      fc.property(
        words,
        fc.uniqueArray(word, { minLength: 1, maxLength: 3 }),
        place,
        (have, anyOf, at) => {
          const required: RequiredClaim[] = [{
            claim: claimRef(at.ref),
            kind: "anyOf",
            values: anyOf,
          }];
          const want = anyOf.some((v) => have.includes(v));
          // A claim named in SCOPE_CLAIMS: every shape of the list is the same list.
          for (const shape of shapes(have)) {
            const got = checkRequiredClaims(at.put(shape), {
              requiredClaims: required,
              scopeClaims: [claimRef(at.ref)],
            });
            assert.equal(got === undefined, want);
          }
          // Any other claim: an array is a list, a string one whole value (never its words).
          const [array, ...strings] = shapes(have);
          const held = (shape: unknown) =>
            checkRequiredClaims(at.put(shape), { requiredClaims: required }) === undefined;
          assert.equal(held(array), want);
          for (const shape of strings) assert.equal(held(shape), anyOf.includes(shape as string));
        },
      ),
    );
  });
  await t.step(
    "REQUIRED_CLAIMS JSON form: a string value is held by an array holding it or an equal string, never by a word of a longer string",
    () => {
      fc.assert(
        fc.property(listAndPick, place, ({ list: have, pick }, at) => {
          fc.pre(pick.length > 0);
          const value = pick[0];
          const required: RequiredClaim[] = [{ claim: claimRef(at.ref), kind: "equals", value }];
          const [array, ...strings] = shapes(have);
          const held = (shape: unknown) =>
            checkRequiredClaims(at.put(shape), { requiredClaims: required }) === undefined;
          assert.equal(held(array), have.includes(value));
          // The equals form is for single-valued claims (tenant, hd, org): "evil acme" is not
          // "acme". Word lists belong to the claim=a|b form.
          for (const shape of strings) assert.equal(held(shape), shape === value);
        }),
      );
    },
  );
  await t.step(
    "CLAIM_HEADERS: an array of strings is sent joined with ',', a string as it is",
    () => {
      fc.assert(
        fc.property(fc.array(word, { minLength: 1, maxLength: 5 }), place, (list, at) => {
          const pairs = [{ claim: claimRef(at.ref), header: "x-groups" }];
          assert.deepEqual(claimFieldValues(pairs, at.put(list)), [["x-groups", list.join(",")]]);
          const text = list.join(" ");
          assert.deepEqual(claimFieldValues(pairs, at.put(text)), [["x-groups", text]]);
        }),
      );
    },
  );
  await t.step("CLAIM_HEADERS: a list element holding ',' is refused, not merged", () => {
    assert.throws(
      () => claimFieldValues([{ claim: claimRef("g"), header: "x-g" }], { sub: "u", g: ["a,b"] }),
      (e: unknown) => (e as { reason?: string }).reason === "claim_unrepresentable",
    );
  });
});
