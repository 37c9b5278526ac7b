import assert from "node:assert/strict";
import fc from "fast-check";
import { REQUEST_ID_PATTERN, requestIdFor, requestIdFrom } from "./request_id.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

Deno.test("requestIdFrom() keeps a well-formed client X-Request-Id", async (t) => {
  const cases = [
    "a",
    "abc-123",
    "0f8fad5b-d9cb-469f-a165-70867728950e",
    "trace.span:1_2-3",
    "x".repeat(128),
  ];
  for (const id of cases) {
    await t.step(id.length > 40 ? `${id.length} characters` : id, () => {
      assert.equal(requestIdFrom(new Headers({ "x-request-id": id })), id);
    });
  }
});

Deno.test("requestIdFrom() replaces a missing or ill-formed X-Request-Id with a UUID", async (t) => {
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
      const id = requestIdFrom(headers);
      assert.match(id, UUID);
      assert.notEqual(id, headers.get("x-request-id"));
    });
  }
});

Deno.test("requestIdFrom() mints a different id for each request", () => {
  assert.notEqual(requestIdFrom(new Headers()), requestIdFrom(new Headers()));
});

Deno.test("requestIdFrom() always returns an id matching the pattern", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (value) => {
      let headers: Headers;
      try {
        headers = new Headers({ "x-request-id": value });
      } catch {
        return; // not a legal header value
      }
      const id = requestIdFrom(headers);
      assert.match(id, REQUEST_ID_PATTERN);
      if (id !== headers.get("x-request-id")) assert.match(id, UUID);
    }),
  );
});

Deno.test("requestIdFor() keeps a well-formed value and mints a UUID otherwise", () => {
  assert.equal(requestIdFor("abc-123"), "abc-123");
  assert.match(requestIdFor(null), UUID);
  assert.match(requestIdFor("a b"), UUID);
  assert.match(requestIdFor("x".repeat(129)), UUID);
});
