import assert from "node:assert/strict";
import fc from "fast-check";
import { REQUEST_ID_PATTERN, requestIdFor } from "./request_id.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

Deno.test("requestIdFor() keeps a well-formed client X-Request-Id value", async (t) => {
  const cases = [
    "a",
    "abc-123",
    "0f8fad5b-d9cb-469f-a165-70867728950e",
    "trace.span:1_2-3",
    "x".repeat(128),
  ];
  for (const id of cases) {
    await t.step(id.length > 40 ? `${id.length} characters` : id, () => {
      assert.equal(requestIdFor(id), id);
    });
  }
});

Deno.test("requestIdFor() replaces a missing or ill-formed X-Request-Id with a UUID", async (t) => {
  const cases: [string, Headers][] = [
    ["absent", new Headers()],
    ["empty", new Headers({ "x-request-id": "" })],
    ["too long", new Headers({ "x-request-id": "x".repeat(129) })],
    ["space inside", new Headers({ "x-request-id": "a b" })],
    ["quote", new Headers({ "x-request-id": 'a"b' })],
    ["slash", new Headers({ "x-request-id": "a/b" })],
    ["non-ASCII", new Headers({ "x-request-id": "abcé" })],
    ["two headers joined", new Headers([["x-request-id", "a"], ["x-request-id", "b"]])],
  ];
  for (const [name, headers] of cases) {
    await t.step(name, () => {
      const id = requestIdFor(headers.get("x-request-id"));
      assert.match(id, UUID);
      assert.notEqual(id, headers.get("x-request-id"));
    });
  }
});

Deno.test("requestIdFor() mints a different id for each request", () => {
  assert.notEqual(requestIdFor(null), requestIdFor(null));
});

Deno.test("requestIdFor() always returns an id matching the pattern", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (value) => {
      let headers: Headers;
      try {
        headers = new Headers({ "x-request-id": value });
      } catch {
        return; // not a legal header value
      }
      const id = requestIdFor(headers.get("x-request-id"));
      assert.match(id, REQUEST_ID_PATTERN);
      if (id !== headers.get("x-request-id")) assert.match(id, UUID);
    }),
  );
});
