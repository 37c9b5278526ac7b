import assert from "node:assert/strict";
import fc from "fast-check";
import { isUriHost, parseRequestUrl } from "./target.ts";
import { requestLine } from "../http1/mod.ts";

// The oracle: RFC 3986 character classes written out again, independently of target.ts.
const UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
const SUB_DELIMS = "!$&'()*+,;=";
const PCHAR = UNRESERVED + SUB_DELIMS + ":@";
const RFC3986_TARGET = /^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-F]{2}|%[0-9a-fA-F]{2})*$/;

/** The bytes a percent-decoding recipient sees: raw chars as UTF-8, %XX as one byte. */
function decodedBytes(s: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "%") {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      const cp = s.codePointAt(i)!;
      if (cp > 0xffff) i++;
      out.push(...new TextEncoder().encode(String.fromCodePoint(cp)));
    }
  }
  return out;
}

const hasBadPercent = (s: string) => /%(?![0-9A-Fa-f]{2})/.test(s);

// Strings rich in the characters that matter: pchar, delimiters, "%" and escapes, controls,
// obs-text, code points whose low byte is CR/LF/SP, and astral characters.
const piece = fc.oneof(
  fc.constantFrom(...PCHAR.split(""), "/", "?", "#", "%", " ", '"', "<", ">", "\\", "^", "`"),
  fc.constantFrom("{", "|", "}", "\u010d", "\u010a", "\u0120", "\u00e9", "\u00ff", "\x7f"),
  fc.constantFrom("%2F", "%zz", "%a", "%0d%0A", "\u{1f600}", "\r", "\n", "\0", "\t"),
  fc.string({ unit: "grapheme", maxLength: 3 }),
);
const pathish = fc.array(piece, { maxLength: 24 }).map((p) => p.join(""));

Deno.test("parseRequestUrl() keeps meaning and emits only RFC 3986 characters", () => {
  fc.assert(
    fc.property(pathish, pathish, (p, q) => {
      const path = "/" + p.replaceAll("?", "").replaceAll("#", "%23");
      const url = `http://gate.example${path}?${q}`;
      const t = parseRequestUrl(url);
      if (hasBadPercent(path) || hasBadPercent(q)) {
        assert.equal(t, "invalid_target");
        return;
      }
      assert.ok(typeof t !== "string", String(t));
      const target = t.path + t.query;
      assert.match(target, RFC3986_TARGET);
      assert.deepEqual(decodedBytes(t.path), decodedBytes(path));
      assert.deepEqual(decodedBytes(t.query.slice(1)), decodedBytes(q));
      // What comes out goes through the serialiser unchanged and is a fixed point.
      assert.equal(requestLine("GET", target), `GET ${target} HTTP/1.1\r\n`);
      const again = parseRequestUrl(`http://gate.example${target}`);
      assert.deepEqual(again, t);
    }),
    { numRuns: 3000 },
  );
});

Deno.test("parseRequestUrl() never takes the path from the authority", async (t) => {
  const cases: [string, ReturnType<typeof parseRequestUrl>][] = [
    ["http://evil/inj/x", { authority: "evil", path: "/inj/x", query: "" }],
    ["http://h?x=1/x", "invalid_target"],
    ["http://h#x/x", "invalid_target"],
    ["http://u@h/x", "invalid_host"],
    ["http://a b/x", "invalid_host"],
    ["http://a\u010d\u010ab/x", "invalid_host"],
    ["http://h:abc/x", "invalid_host"],
    ["http://[::1]:8080/mcp", { authority: "[::1]:8080", path: "/mcp", query: "" }],
    ["http://h", { authority: "h", path: "/", query: "" }],
    ["not a url", "invalid_target"],
  ];
  for (const [url, want] of cases) {
    await t.step(url, () => assert.deepEqual(parseRequestUrl(url), want));
  }
});

const HOST_CHARS = UNRESERVED + SUB_DELIMS;
const regName = fc.array(
  fc.oneof(
    fc.constantFrom(...HOST_CHARS.split("")),
    fc.constantFrom("%41", "%2f", "%C3%A9"),
  ),
  { minLength: 1, maxLength: 20 },
).map((a) => a.join(""));
const ipv6 = fc.ipV6().map((a) => `[${a}]`);
const port = fc.option(fc.integer({ min: 0, max: 65535 }).map((n) => `:${n}`), { nil: "" });

Deno.test("isUriHost() accepts every host the RFC 3986 grammar generates", () => {
  fc.assert(
    fc.property(fc.oneof(regName, fc.ipV4(), ipv6), port, (host, p) => {
      assert.ok(isUriHost(host + p), host + p);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("isUriHost() refuses any value with a character outside the grammar", () => {
  const outside = fc.constantFrom(
    "/",
    "?",
    "#",
    "@",
    " ",
    "\t",
    "\r",
    "\n",
    "\0",
    '"',
    "<",
    "\\",
    "\u00e9",
    "\u010d",
    "\u0120",
    "%zz",
    "%g0",
  );
  fc.assert(
    fc.property(regName, outside, regName, (a, bad, b) => {
      assert.equal(isUriHost(a + bad + b), false, JSON.stringify(a + bad + b));
    }),
    { numRuns: 2000 },
  );
  assert.equal(isUriHost(""), false);
  assert.equal(isUriHost("h%"), false);
  assert.equal(isUriHost("h%4"), false);
  assert.equal(isUriHost("h:abc"), false);
});

Deno.test("parseRequestUrl() refuses a lone surrogate in the path or query, never sends U+FFFD", async (t) => {
  // A lone surrogate has no UTF-8 form: TextEncoder would write EF BF BD (U+FFFD), which
  // percent-decodes to another string than the one the gate checked.
  const cases = [
    "http://h/a\ud800b",
    "http://h/a\udc00",
    "http://h/\udbff?q=1",
    "http://h/x?q=\ud800",
    "http://h/x?q=a\udfffb",
    "http://h/%41\ud800", // the slow path after a valid escape
  ];
  for (const url of cases) {
    await t.step(JSON.stringify(url), () => {
      assert.equal(parseRequestUrl(url), "invalid_target");
    });
  }
  // Control: a well-formed surrogate pair is one code point, sent as its 4 UTF-8 bytes.
  assert.deepEqual(parseRequestUrl("http://h/\ud83d\ude00?q=\ud83d\ude00"), {
    authority: "h",
    path: "/%F0%9F%98%80",
    query: "?q=%F0%9F%98%80",
  });
});
