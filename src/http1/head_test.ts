import assert from "node:assert/strict";
import fc from "fast-check";
import {
  encodeHead,
  fieldLine,
  Http1HeadError,
  isFieldValue,
  requestLine,
  toByteString,
} from "./head.ts";

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

// Values rich in what breaks heads: CR, LF, NUL, other controls, code points whose low byte is
// one of those, obs-text, and whitespace at the ends.
const nasty = fc.array(
  fc.oneof(
    fc.constantFrom("\r", "\n", "\0", "\t", " ", "\x01", "\x7f", "\u010d", "\u010a", "\u0100"),
    fc.constantFrom("\u00e9", "\u00ff", "a", ":", "x-injected: 1", "\r\n"),
    fc.string({ unit: "binary", maxLength: 4 }),
  ),
  { maxLength: 12 },
).map((a) => a.join(""));

Deno.test("fieldLine() gives exactly one line carrying the value unchanged, or throws", () => {
  fc.assert(
    fc.property(fc.oneof(fc.constantFrom("x-a", "bad name", "", "a:b"), nasty), nasty, (n, v) => {
      let line: string;
      try {
        line = fieldLine(n, v);
      } catch (e) {
        assert.ok(e instanceof Http1HeadError);
        assert.ok(!TOKEN.test(n) || !isFieldValue(v));
        return;
      }
      assert.ok(TOKEN.test(n));
      assert.equal(line, `${n}: ${v}\r\n`);
      // One line: its only CR and LF are the terminator; every char is a byte.
      assert.equal(line.indexOf("\r"), line.length - 2);
      assert.equal(line.indexOf("\n"), line.length - 1);
      assert.ok(!line.includes("\0"));
      assert.ok([...line].every((c) => c.charCodeAt(0) <= 0xff));
      assert.ok(!/^[ \t]|[ \t]$/.test(v), "no whitespace a recipient would strip");
    }),
    { numRuns: 5000 },
  );
});

Deno.test("requestLine() refuses a target that is not origin-form in RFC 3986 characters", () => {
  fc.assert(
    fc.property(nasty, (t) => {
      const target = "/" + t;
      let line: string;
      try {
        line = requestLine("GET", target);
      } catch (e) {
        assert.ok(e instanceof Http1HeadError);
        return;
      }
      assert.equal(line.split(" ").length, 3);
      assert.match(target, /^\/[\x21-\x7e]*$/);
    }),
    { numRuns: 3000 },
  );
  assert.throws(() => requestLine("GET", "/a%zz"), Http1HeadError);
  assert.throws(() => requestLine("GET", "*"), Http1HeadError);
  assert.throws(() => requestLine("G T", "/"), Http1HeadError);
});

Deno.test("encodeHead() maps each char to its byte or throws: it never truncates", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 40 }), (s) => {
      let bytes: Uint8Array;
      try {
        bytes = encodeHead(s);
      } catch (e) {
        assert.ok(e instanceof Http1HeadError);
        assert.ok([...s].some((c) => c.codePointAt(0)! > 0xff));
        return;
      }
      assert.equal(bytes.length, s.length);
      for (let i = 0; i < s.length; i++) assert.equal(bytes[i], s.charCodeAt(i));
    }),
    { numRuns: 3000 },
  );
  assert.throws(() => encodeHead("GET /\u010d\u010a HTTP/1.1\r\n\r\n"), Http1HeadError);
});

Deno.test("toByteString() is the UTF-8 of the text, and refuses a lone surrogate", () => {
  fc.assert(
    fc.property(fc.string({ unit: "grapheme", maxLength: 20 }), (s) => {
      const b = toByteString(s);
      assert.deepEqual(
        Uint8Array.from([...b].map((c) => c.charCodeAt(0))),
        new TextEncoder().encode(s),
      );
    }),
  );
  assert.throws(() => toByteString("a\ud800"), Http1HeadError);
});
