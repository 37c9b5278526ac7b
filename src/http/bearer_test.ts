import assert from "node:assert/strict";
import fc from "fast-check";
import { bearerFrom, hasAccessTokenParam } from "./bearer.ts";
import { GateError, type GateErrorCode, type RejectReason } from "../errors.ts";

const TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln-_~+/==";

function headersOf(...values: string[]): Headers {
  const h = new Headers();
  for (const v of values) h.append("authorization", v);
  return h;
}

/** The handler's call: the Authorization value as `Headers.get()` joins it. */
function fromHeaders(headers: Headers, search: string): string | undefined {
  return bearerFrom(headers.get("authorization"), search);
}

function rejection(fn: () => unknown): { code: GateErrorCode; reason?: RejectReason } {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof GateError, `expected a GateError, got ${e}`);
    return { code: e.code, reason: e.reason };
  }
  assert.fail("expected a GateError, nothing was thrown");
}

Deno.test("bearerFrom() returns the token of a well-formed Bearer header", async (t) => {
  const cases: [string, string, string][] = [
    ["canonical scheme", `Bearer ${TOKEN}`, TOKEN],
    ["lower-case scheme", `bearer ${TOKEN}`, TOKEN],
    ["upper-case scheme", `BEARER ${TOKEN}`, TOKEN],
    ["mixed-case scheme", `bEaReR ${TOKEN}`, TOKEN],
    ["several spaces after the scheme", `Bearer    ${TOKEN}`, TOKEN],
    ["a tab after the scheme", `Bearer\t${TOKEN}`, TOKEN],
    ["surrounding whitespace", `  Bearer ${TOKEN}  `, TOKEN],
    ["one-character token", "Bearer a", "a"],
    ["padding only at the end", "Bearer abc==", "abc=="],
    ["every b64token character", "Bearer AZaz09-._~+/=", "AZaz09-._~+/="],
  ];
  for (const [name, header, want] of cases) {
    await t.step(name, () => {
      assert.equal(fromHeaders(headersOf(header), ""), want);
    });
  }
});

Deno.test("bearerFrom() returns undefined when the request carries no token", async (t) => {
  const cases: [string, Headers, string][] = [
    ["no Authorization header", new Headers(), ""],
    ["empty header", headersOf(""), ""],
    ["whitespace-only header", headersOf("   "), ""],
    ["Basic scheme", headersOf("Basic dXNlcjpwYXNz"), ""],
    ["bare Bearer", headersOf("Bearer"), ""],
    ["bare Bearer with trailing spaces", headersOf("Bearer   "), ""],
    ["scheme glued to the token", headersOf(`Bearer${TOKEN}`), ""],
    ["DPoP scheme", headersOf(`DPoP ${TOKEN}`), ""],
    ["Digest with a parameter list", headersOf('Digest username="a", realm="b"'), ""],
    ["token only in the query", new Headers(), `?access_token=${TOKEN}`],
    ["another scheme plus a query token", headersOf("Basic dXNlcjpwYXNz"), "?access_token=x"],
    ["bare Bearer plus a query token", headersOf("Bearer"), "?access_token=x"],
  ];
  for (const [name, headers, search] of cases) {
    await t.step(name, () => {
      assert.equal(fromHeaders(headers, search), undefined);
    });
  }
});

Deno.test("bearerFrom() rejects several Authorization headers with invalid_request", async (t) => {
  const cases: [string, Headers][] = [
    ["two Bearer headers", headersOf(`Bearer ${TOKEN}`, "Bearer other")],
    ["the same token twice", headersOf(`Bearer ${TOKEN}`, `Bearer ${TOKEN}`)],
    ["Basic then Bearer", headersOf("Basic dXNlcjpwYXNz", `Bearer ${TOKEN}`)],
    ["Bearer then Basic", headersOf(`Bearer ${TOKEN}`, "Basic dXNlcjpwYXNz")],
    ["Bearer then an empty header", headersOf(`Bearer ${TOKEN}`, "")],
    ["a comma inside the Bearer value", headersOf(`Bearer ${TOKEN},x`)],
    ["bare Bearer twice", headersOf("Bearer", "Bearer")],
  ];
  for (const [name, headers] of cases) {
    await t.step(name, () => {
      assert.deepEqual(rejection(() => fromHeaders(headers, "")), {
        code: "invalid_request",
        reason: "multiple_authorization",
      });
    });
  }
});

Deno.test("bearerFrom() rejects a token in both header and query with invalid_request", async (t) => {
  const cases: [string, string, string][] = [
    ["plain parameter", `Bearer ${TOKEN}`, "?access_token=abc"],
    ["among other parameters", `Bearer ${TOKEN}`, "?a=1&access_token=abc&b=2"],
    ["empty value", `Bearer ${TOKEN}`, "?access_token="],
    ["name without a value", `Bearer ${TOKEN}`, "?access_token"],
    ["percent-encoded name", `Bearer ${TOKEN}`, "?access%5Ftoken=abc"],
    ["malformed header token", 'Bearer "quoted"', "?access_token=abc"],
  ];
  for (const [name, header, search] of cases) {
    await t.step(name, () => {
      assert.deepEqual(rejection(() => fromHeaders(headersOf(header), search)), {
        code: "invalid_request",
        reason: "token_in_query",
      });
    });
  }
});

Deno.test("bearerFrom() accepts a header token when the query has no access_token", async (t) => {
  const cases = [
    "",
    "?",
    "?a=1",
    "?Access_Token=x",
    "?access_tokens=x",
    "?x=access_token",
    "?%41=1",
  ];
  for (const search of cases) {
    await t.step(JSON.stringify(search), () => {
      assert.equal(fromHeaders(headersOf(`Bearer ${TOKEN}`), search), TOKEN);
    });
  }
});

Deno.test("bearerFrom() rejects Bearer credentials that are not one b64token", async (t) => {
  const cases: [string, string][] = [
    ["space inside the token", "Bearer abc def"],
    ["quoted token", 'Bearer "abc"'],
    ["padding in the middle", "Bearer ab=c"],
    ["only padding", "Bearer =="],
    ["non-ASCII character", "Bearer abcé"],
    ["auth-param syntax", "Bearer token=abc"],
    ["semicolon", "Bearer abc;def"],
    ["backslash", "Bearer abc\\def"],
  ];
  for (const [name, header] of cases) {
    await t.step(name, () => {
      assert.deepEqual(rejection(() => fromHeaders(headersOf(header), "")), {
        code: "invalid_token",
        reason: "malformed",
      });
    });
  }
});

Deno.test("bearerFrom() never puts token bytes in the error it throws", () => {
  const secret = "c2VjcmV0LXRva2Vu";
  for (
    const [header, search] of [[`Bearer ${secret} x`, ""], [`Bearer ${secret}`, "?access_token"]]
  ) {
    try {
      fromHeaders(headersOf(header), search);
      assert.fail("expected a rejection");
    } catch (e) {
      assert.ok(e instanceof GateError);
      assert.ok(!e.message.includes(secret));
      assert.ok(!String(e.detail ?? "").includes(secret));
    }
  }
});

Deno.test("bearerFrom() throws nothing but GateError for arbitrary headers and queries", () => {
  const headerValue = fc.oneof(
    fc.string(),
    fc.string().map((s) => `Bearer ${s}`),
    fc.string().map((s) => `bearer\t${s}`),
    fc.stringMatching(/^[A-Za-z0-9\-._~+/]{1,20}=*$/).map((s) => `Bearer ${s}`),
  );
  const query = fc.oneof(
    fc.string(),
    fc.string().map((s) => `?${s}`),
    fc.string().map((s) => `?access_token=${s}`),
    fc.constant(""),
  );
  fc.assert(
    fc.property(fc.array(headerValue, { maxLength: 3 }), query, (values, search) => {
      const headers = new Headers();
      for (const v of values) {
        try {
          headers.append("authorization", v);
        } catch {
          return; // not a legal header value: a server would never hand it to us
        }
      }
      try {
        const token = fromHeaders(headers, search);
        if (token !== undefined) assert.match(token, /^[A-Za-z0-9\-._~+/]+=*$/);
      } catch (e) {
        assert.ok(e instanceof GateError, `unexpected ${e}`);
        assert.ok(["invalid_request", "invalid_token"].includes(e.code));
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("bearerFrom() returns exactly the token for any well-formed b64token", () => {
  fc.assert(
    fc.property(
      fc.stringMatching(/^[A-Za-z0-9\-._~+/]{1,64}=*$/),
      fc.constantFrom("Bearer", "bearer", "BEARER"),
      fc.constantFrom(" ", "  ", "\t"),
      (token, scheme, gap) => {
        assert.equal(fromHeaders(headersOf(`${scheme}${gap}${token}`), "?a=1"), token);
      },
    ),
  );
});

Deno.test("hasAccessTokenParam() finds the parameter by decoded name only", async (t) => {
  const cases: [string, boolean][] = [
    ["", false],
    ["?access_token=1", true],
    ["?x=1&access_token", true],
    ["?access%5ftoken=1", true],
    ["?access_token2=1", false],
    ["?my_access_token=1", false],
    ["?q=%20", false],
  ];
  for (const [search, want] of cases) {
    await t.step(JSON.stringify(search), () => assert.equal(hasAccessTokenParam(search), want));
  }
});

Deno.test("bearerFrom() gives the same answer on its fast path as the general parse", () => {
  // Values built around "Bearer <token>": the fast path must agree with the regex-based parse
  // (reproduced here) on every one of them.
  const CRED = /^([^ \t]+)(?:[ \t]+([^]*))?$/;
  const B64 = /^[A-Za-z0-9\-._~+/]+=*$/;
  const reference = (value: string): string => {
    const m = CRED.exec(value.trim());
    if (m === null || m[1].toLowerCase() !== "bearer" || !m[2]) return "none";
    return B64.test(m[2]) ? `token:${m[2]}` : "malformed";
  };
  const actual = (value: string): string => {
    try {
      const t = bearerFrom(value, "");
      return t === undefined ? "none" : `token:${t}`;
    } catch (e) {
      assert.ok(e instanceof GateError);
      return e.reason === "malformed" ? "malformed" : String(e.reason);
    }
  };
  const part = fc.constantFrom("Bearer", "bearer", "BEARER", "Basic", "Bearer:", "");
  const gap = fc.constantFrom(" ", "  ", "\t", " \t", "");
  // Includes whitespace that trim() removes but the fast path must not accept (\u000b, \u00a0).
  // deno-lint-ignore no-control-regex
  const body = fc.stringMatching(/^[A-Za-z0-9._~+/=\- \t\u00a0\u000b]{0,12}$/);
  fc.assert(
    fc.property(gap, part, gap, body, gap, (lead, scheme, mid, rest, tail) => {
      const value = lead + scheme + mid + rest + tail;
      if (value.includes(",")) return;
      assert.equal(actual(value), reference(value), JSON.stringify(value));
    }),
    { numRuns: 2000 },
  );
});

Deno.test("hasAccessTokenParam() agrees with URLSearchParams on generated queries", () => {
  const piece = fc.oneof(
    fc.constantFrom("access_token", "access", "_token", "%61", "%5F", "%5f", "+", "&", "=", ";"),
    fc.constantFrom("%zz", "%", "%C3%A9", "a", "x=1"),
    fc.string({ maxLength: 3 }),
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 10 }), (parts) => {
      const search = "?" + parts.join("");
      assert.equal(
        hasAccessTokenParam(search),
        new URLSearchParams(search).has("access_token"),
        search,
      );
    }),
    { numRuns: 3000 },
  );
});
