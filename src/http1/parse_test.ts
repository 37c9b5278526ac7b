import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ChunkedDecoder,
  contentLengthOf,
  encodeChunk,
  findHeadEnd,
  Http1ProtocolError,
  isomorphicDecode,
  parseResponseHead,
} from "./parse.ts";
import { encodeHead } from "./head.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function head(text: string) {
  const bytes = enc.encode(text);
  const end = findHeadEnd(bytes);
  assert.notEqual(end, -1);
  return parseResponseHead(bytes.subarray(0, end));
}

Deno.test("findHeadEnd() finds the blank line with CRLF or bare LF line ends", async (t) => {
  const cases: [string, number][] = [
    ["HTTP/1.1 200 OK\r\n\r\nbody", 19],
    ["HTTP/1.1 200 OK\r\nA: b\r\n\r\n", 25],
    ["HTTP/1.1 200 OK\nA: b\n\nbody", 22],
    ["HTTP/1.1 200 OK\r\nA: b\r\n", -1],
    ["HTTP/1.1 200 OK\r\nA: b\r\n\r", -1],
  ];
  for (const [text, expected] of cases) {
    await t.step(JSON.stringify(text), () => {
      assert.equal(findHeadEnd(enc.encode(text)), expected);
    });
  }
});

Deno.test("findHeadEnd() resumes a search across appended bytes", () => {
  const whole = enc.encode("HTTP/1.1 200 OK\r\nA: b\r\n\r\n");
  // The terminator straddles the old end: the search from there must still see it.
  assert.equal(findHeadEnd(whole, 24), 25);
  assert.equal(findHeadEnd(whole, 25), 25);
});

Deno.test("parseResponseHead() reads status, fields and framing", () => {
  const h = head(
    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length:  12 \r\n" +
      "Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
  );
  assert.equal(h.status, 201);
  assert.equal(h.minor, 1);
  assert.equal(h.contentLength, 12);
  assert.equal(h.chunked, false);
  assert.equal(h.close, false);
  assert.deepEqual(h.headers, [
    ["content-type", "application/json"],
    ["content-length", "12"],
    ["set-cookie", "a=1"],
    ["set-cookie", "b=2"],
  ]);
});

Deno.test("parseResponseHead() lets Transfer-Encoding override Content-Length and marks close", () => {
  const h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
  assert.equal(h.chunked, true);
  assert.equal(h.contentLength, -1);
  assert.equal(h.close, true);
});

Deno.test("parseResponseHead() reads a non-chunked Transfer-Encoding until close", () => {
  const h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
  assert.equal(h.chunked, false);
  assert.equal(h.untilClose, true);
  assert.equal(h.close, true);
});

Deno.test("parseResponseHead() decides connection reuse from version and Connection", async (t) => {
  const cases: [string, boolean, string[] | null][] = [
    ["HTTP/1.1 200 OK\r\n\r\n", false, null],
    ["HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", true, ["close"]],
    ["HTTP/1.1 200 OK\r\nConnection: X-Foo, Keep-Alive\r\n\r\n", false, ["x-foo", "keep-alive"]],
    ["HTTP/1.0 200 OK\r\n\r\n", true, null],
    ["HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false, ["keep-alive"]],
  ];
  for (const [text, close, tokens] of cases) {
    await t.step(JSON.stringify(text), () => {
      const h = head(text);
      assert.equal(h.close, close);
      assert.deepEqual(h.connectionTokens, tokens);
    });
  }
});

Deno.test("parseResponseHead() refuses obs-fold, so a folded line never changes the framing (RFC 9112 §5.2)", async (t) => {
  const cases = [
    "HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n 9\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\tchunked\r\n\r\n",
  ];
  for (const text of cases) {
    await t.step(JSON.stringify(text), () => {
      assert.throws(() => head(text), {
        name: "Http1ProtocolError",
        message: "Obsolete line folding",
      });
    });
  }
});

Deno.test("parseResponseHead() keeps non-ASCII field bytes as one char per byte", () => {
  const bytes = new Uint8Array([
    ...enc.encode("HTTP/1.1 200 OK\r\nX-Name: caf"),
    0xc3,
    0xa9,
    ...enc.encode("\r\n\r\n"),
  ]);
  const h = parseResponseHead(bytes);
  assert.equal(h.headers[0][1], "caf\u00c3\u00a9");
});

Deno.test("parseResponseHead() rejects malformed heads", async (t) => {
  const cases = [
    "HTTP/2 200 OK\r\n\r\n",
    "HTTP/1.1 20 OK\r\n\r\n",
    "SSH-2.0-OpenSSH\r\n\r\n",
    "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
    "HTTP/1.1 200 OK\r\n folded-first: x\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
  ];
  for (const text of cases) {
    await t.step(JSON.stringify(text), () => {
      assert.throws(() => head(text), Http1ProtocolError);
    });
  }
});

/** Every case is refused with an Http1ProtocolError. */
async function refuses(t: Deno.TestContext, cases: string[]): Promise<void> {
  for (const text of cases) {
    await t.step(JSON.stringify(text), () => {
      assert.throws(() => head(text), Http1ProtocolError);
    });
  }
}

Deno.test("parseResponseHead() refuses a bare CR anywhere in the head (RFC 9112 §2.2)", async (t) => {
  await refuses(t, [
    "HTTP/1.1 200 OK\rX: y\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX: a\r\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 5\rTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\n\r\r\n\r\n",
  ]);
});

Deno.test("parseResponseHead() refuses CTLs other than HTAB in field values and the reason phrase", async (t) => {
  await refuses(t, [
    "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX: \x1b[31m\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX: a\x0bb\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 5\x00\r\n\r\n",
    "HTTP/1.1 200 O\x00K\r\n\r\n",
    "HTTP/1.1 200 OK\x08\r\n\r\n",
  ]);
});

Deno.test("parseResponseHead() refuses whitespace between a field name and its colon (RFC 9112 §5.1)", async (t) => {
  await refuses(t, [
    "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",
  ]);
});

Deno.test("parseResponseHead() refuses an invalid status line (RFC 9112 §4)", async (t) => {
  await refuses(t, [
    "HTTP/1.1  200 OK\r\n\r\n",
    "HTTP/1.1\t200 OK\r\n\r\n",
    "HTTP/1.1 200\tOK\r\n\r\n",
    " HTTP/1.1 200 OK\r\n\r\n",
    "http/1.1 200 OK\r\n\r\n",
    "HTTP/1.10 200 OK\r\n\r\n",
    "HTTP/1.1 2000 OK\r\n\r\n",
    "HTTP/1.1 20a OK\r\n\r\n",
    "\r\nHTTP/1.1 200 OK\r\n\r\n",
  ]);
});

Deno.test("parseResponseHead() refuses Transfer-Encoding in HTTP/1.0 and chunked applied twice (RFC 9112 §6.1)", async (t) => {
  await refuses(t, [
    "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
  ]);
});

Deno.test("parseResponseHead() accepts HTAB and obs-text in values and an empty reason phrase", () => {
  assert.deepEqual(head("HTTP/1.1 200 OK\r\nX: a\tb \t\r\n\r\n").headers, [["x", "a\tb"]]);
  assert.equal(head("HTTP/1.1 204\r\n\r\n").status, 204);
  assert.equal(head("HTTP/1.1 204 \r\n\r\n").status, 204);
  assert.equal(head("HTTP/1.1 200 Très bien\tok\r\n\r\n").status, 200);
  assert.equal(head("HTTP/1.1 200 OK\nX: y\n\n").headers[0][1], "y");
});

Deno.test("parseResponseHead() accepts repeated identical Content-Length values", () => {
  assert.equal(head("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n").contentLength, 7);
});

function decodeAll(wire: string, split = 1_000_000): { body: string; done: boolean; used: number } {
  const d = new ChunkedDecoder();
  const bytes = enc.encode(wire);
  const out: Uint8Array[] = [];
  let used = 0;
  for (let i = 0; i < bytes.length && !d.done; i += split) {
    used += d.push(bytes.subarray(i, Math.min(i + split, bytes.length)), out);
  }
  return { body: out.map((p) => dec.decode(p)).join(""), done: d.done, used };
}

Deno.test("ChunkedDecoder strips the framing and passes the payload", async (t) => {
  const wire = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n";
  for (const split of [1, 2, 3, 7, wire.length]) {
    await t.step(`in pieces of ${split} bytes`, () => {
      const r = decodeAll(wire, split);
      assert.equal(r.body, "hello 0123456789");
      assert.equal(r.done, true);
    });
  }
});

Deno.test("ChunkedDecoder stops at the end of the message", () => {
  const r = decodeAll("3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK");
  assert.equal(r.body, "abc");
  assert.equal(r.done, true);
  assert.equal(r.used, 13);
});

Deno.test("ChunkedDecoder accepts bare LF and upper-case hex", () => {
  assert.equal(decodeAll("B\nhello world\n0\n\n").body, "hello world");
});

Deno.test("ChunkedDecoder hands out payload without copying", () => {
  const bytes = enc.encode("5\r\nhello\r\n");
  const out: Uint8Array[] = [];
  new ChunkedDecoder().push(bytes, out);
  assert.equal(out[0].buffer, bytes.buffer);
});

Deno.test("ChunkedDecoder rejects malformed framing", async (t) => {
  const cases = [
    "x\r\n",
    "\r\n",
    "5\r\nhelloXX",
    "5\r\nhello\r\r",
    "fffffffffffffff\r\n",
    `1;${"e".repeat(5000)}\r\n`,
  ];
  for (const wire of cases) {
    await t.step(JSON.stringify(wire.slice(0, 30)), () => {
      assert.throws(() => decodeAll(wire), Http1ProtocolError);
    });
  }
});

Deno.test("ChunkedDecoder refuses chunk-size lines outside RFC 9112 §7.1", async (t) => {
  const cases = [
    "5 9\r\nhello\r\n0\r\n\r\n",
    "5;\r\nhello\r\n0\r\n\r\n",
    "5 ;\r\nhello\r\n0\r\n\r\n",
    "5; \r\nhello\r\n0\r\n\r\n",
    ";a\r\nhello\r\n0\r\n\r\n",
    " 5\r\nhello\r\n0\r\n\r\n",
    "5 \r\nhello\r\n0\r\n\r\n",
    "5\t\r\nhello\r\n0\r\n\r\n",
    "+5\r\nhello\r\n0\r\n\r\n",
    "0x5\r\nhello\r\n0\r\n\r\n",
    "5;a b\r\nhello\r\n0\r\n\r\n",
    "5;a=\r\nhello\r\n0\r\n\r\n",
    "5;a==b\r\nhello\r\n0\r\n\r\n",
    "5;a=b c\r\nhello\r\n0\r\n\r\n",
    "5;a=b \r\nhello\r\n0\r\n\r\n",
    "5;a \r\nhello\r\n0\r\n\r\n",
    '5;a="b\r\nhello\r\n0\r\n\r\n',
    '5;a="b"c\r\nhello\r\n0\r\n\r\n',
    '5;a="\x01"\r\nhello\r\n0\r\n\r\n',
    '5;a="\\\x01"\r\nhello\r\n0\r\n\r\n',
    "5;a=b,c\r\nhello\r\n0\r\n\r\n",
    "5;a/b\r\nhello\r\n0\r\n\r\n",
    "5;a\x00\r\nhello\r\n0\r\n\r\n",
    "5;a=\x7f\r\nhello\r\n0\r\n\r\n",
    "5\r\r\nhello\r\n0\r\n\r\n",
    "5;a\rb\r\nhello\r\n0\r\n\r\n",
    "5\rhello\r\n0\r\n\r\n",
    "0 \r\n\r\n",
    "0;\r\n\r\n",
  ];
  for (const wire of cases) {
    await t.step(JSON.stringify(wire.slice(0, 16)), () => {
      for (const split of [1, wire.length]) {
        assert.throws(() => decodeAll(wire, split), Http1ProtocolError);
      }
    });
  }
});

Deno.test("ChunkedDecoder accepts chunk extensions as RFC 9112 §7.1.1 allows, in any split", async (t) => {
  const cases = [
    "5;a\r\nhello\r\n0\r\n\r\n",
    "5;a=b\r\nhello\r\n0\r\n\r\n",
    "5 ; a = b\r\nhello\r\n0\r\n\r\n",
    '5\t;\ta\t=\t"x y"\r\nhello\r\n0\r\n\r\n',
    '5;a="q\\"\\\\";b;c=d\r\nhello\r\n0;last=1\r\n\r\n',
    "00000000000000000005\r\nhello\r\n0000\r\n\r\n",
    '5;a=""\r\nhello\r\n0\r\n\r\n',
  ];
  for (const wire of cases) {
    await t.step(JSON.stringify(wire.slice(0, 24)), () => {
      for (const split of [1, 2, 5, wire.length]) {
        const r = decodeAll(wire, split);
        assert.equal(r.body, "hello");
        assert.equal(r.done, true);
      }
    });
  }
});

Deno.test("ChunkedDecoder refuses trailer lines that are not field lines", async (t) => {
  const cases = [
    "0\r\nX : y\r\n\r\n",
    "0\r\nX: y\r\n folded\r\n\r\n",
    "0\r\n\tX: y\r\n\r\n",
    "0\r\nX: a\x01\r\n\r\n",
    "0\r\nX: a\x00\r\n\r\n",
    "0\r\nNoColon\r\n\r\n",
    "0\r\n: empty-name\r\n\r\n",
    "0\r\nX: a\rb\r\n\r\n",
    "0\r\n\r\r\n",
    "0\r\nX(y): z\r\n\r\n",
  ];
  for (const wire of cases) {
    await t.step(JSON.stringify(wire), () => {
      for (const split of [1, wire.length]) {
        assert.throws(() => decodeAll(wire, split), Http1ProtocolError);
      }
    });
  }
  await t.step("valid trailers are read and dropped", () => {
    const r = decodeAll("1\r\na\r\n0\r\nX-Sum: 1\r\nEmpty:\r\nT: a\tb c\r\n\r\n", 1);
    assert.equal(r.body, "a");
    assert.equal(r.done, true);
  });
});

Deno.test("ChunkedDecoder bounds the trailer section", () => {
  const trailers = `X-T: ${"a".repeat(1000)}\r\n`.repeat(70);
  assert.throws(() => decodeAll(`0\r\n${trailers}\r\n`), Http1ProtocolError);
});

Deno.test("encodeChunk() frames data for the chunked coding", () => {
  assert.equal(
    dec.decode(encodeChunk(enc.encode("hello world, 26 bytes long"))),
    "1a\r\nhello world, 26 bytes long\r\n",
  );
});

Deno.test("encodeHead() and isomorphicDecode() round-trip every byte", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(encodeHead(isomorphicDecode(all)), all);
  assert.deepEqual(encodeHead("plain ascii"), enc.encode("plain ascii"));
});

Deno.test("contentLengthOf() reads a length as RFC 9110 §8.6 allows, the same for every input", async (t) => {
  const cases: [string | null, number | undefined][] = [
    [null, undefined],
    ["0", 0],
    ["160", 160],
    ["007", 7],
    ["123456789012345", 123456789012345],
    ["1234567890123456", undefined], // more than 15 digits
    ["", undefined],
    [" 5", 5],
    ["5 ", 5],
    ["5, 5", 5],
    ["5,5", 5],
    ["5, 6", undefined],
    ["+5", undefined],
    ["-1", undefined],
    ["5.0", undefined],
    ["1e3", undefined],
    ["0x10", undefined],
    ["\u0665", undefined], // a non-ASCII digit
  ];
  for (const [value, want] of cases) {
    await t.step(JSON.stringify(value), () => assert.equal(contentLengthOf(value), want));
  }
  await t.step("any string of digits, commas and spaces: as the list rule says", () => {
    // The reference: every comma-separated member is 1-15 digits after trimming, all equal.
    const reference = (v: string): number | undefined => {
      const parts = v.split(",").map((p) => p.trim());
      if (!parts.every((p) => /^[0-9]{1,15}$/.test(p))) return undefined;
      const nums = parts.map(Number);
      return nums.every((n) => n === nums[0]) ? nums[0] : undefined;
    };
    fc.assert(
      fc.property(
        fc.stringMatching(/^[0-9, ]{0,20}$/),
        (v) => assert.equal(contentLengthOf(v), reference(v)),
      ),
    );
  });
});
