import assert from "node:assert/strict";
import fc from "fast-check";
import { claimRef, type Config } from "../config/mod.ts";
import { Http1HeadError, type Http1Response, parseResponseHead } from "../http1/mod.ts";
import { GateError } from "../errors.ts";
import { parseRequestUrl, type RequestTarget } from "../http/mod.ts";
import {
  buildHead,
  claimFieldValues,
  CLIENT_ADDRESS_HEADERS,
  CONSUMED_HEADERS,
  createPlan,
  fieldLineBytes,
  type ForwardContext,
  GATE_SET_HEADERS,
  HOP_BY_HOP_HEADERS,
  managedKey,
  MAX_CLAIM_VALUE_BYTES,
  readRequestFields,
  responseHeaders,
  stripAccessToken,
  upstreamTarget,
} from "./forwarder.ts";

function config(overrides: Partial<Config> = {}): Config {
  return {
    upstream: {
      url: "http://127.0.0.1:3000/api",
      protocol: "http:",
      hostname: "127.0.0.1",
      port: 3000,
      host: "127.0.0.1:3000",
      basePath: "/api",
    },
    forwardAuthorization: false,
    claimHeaders: [],
    preserveHost: false,
    maxRequestBodyBytes: 1024,
    upstreamTimeoutMs: 1000,
    ...overrides,
  } as Config;
}

const CTX: ForwardContext = {
  clientIp: "203.0.113.7",
  forwardedFor: "203.0.113.7",
  forwardedProto: "https",
  requestId: "rid-1",
};

function lines(head: string): string[] {
  assert.ok(head.endsWith("\r\n\r\n"));
  return head.slice(0, -4).split("\r\n");
}

Deno.test("HOP_BY_HOP_HEADERS lists the RFC 9110 §7.6.1 fields in lower case", () => {
  assert.deepEqual([...HOP_BY_HOP_HEADERS].sort(), [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
  ]);
});

function target(url: string): RequestTarget {
  const t = parseRequestUrl(url);
  assert.ok(typeof t !== "string", `${url}: ${t}`);
  return t;
}

Deno.test("upstreamTarget() appends the checked path and query to the base path", async (t) => {
  const cases: [string, string, string][] = [
    ["", "http://gate.example/mcp", "/mcp"],
    ["", "http://gate.example/", "/"],
    ["/api", "http://gate.example/mcp?x=%2F&y", "/api/mcp?x=%2F&y"],
    ["/api", "http://gate.example/a/../b/%7e", "/api/a/../b/%7e"],
    ["", "http://[::1]:8080/mcp?access_token=t", "/mcp"],
    ["", "http://gate.example", "/"],
  ];
  for (const [base, url, expected] of cases) {
    await t.step(
      `${base} + ${url}`,
      () => assert.equal(upstreamTarget(base, target(url)), expected),
    );
  }
});

Deno.test("stripAccessToken() removes every access_token parameter and nothing else", async (t) => {
  const cases: [string, string][] = [
    ["?access_token=abc", ""],
    ["?access_token", ""],
    ["?a=1&access_token=abc", "?a=1"],
    ["?access_token=1&access_token=2&b", "?b"],
    ["?access%5Ftoken=abc&c=3", "?c=3"],
    ["?%61ccess_token=abc&c=3", "?c=3"],
    ["?access_token_hint=1", "?access_token_hint=1"],
    ["?x=access_token", "?x=access_token"],
    ["?q=a+b%2Fc&z=%E2%82%AC", "?q=a+b%2Fc&z=%E2%82%AC"],
    ["?bad=%zz&access_token=1", "?bad=%zz"],
    ["?", "?"],
    ["?x=1;access_token=SECRET", "?x=1"],
    ["?access_token=a;b=2&c=3", "?b=2&c=3"],
    ["?a=1;b=2", "?a=1;b=2"],
  ];
  for (const [query, expected] of cases) {
    await t.step(`${query} -> ${expected}`, () => assert.equal(stripAccessToken(query), expected));
  }
});

Deno.test("buildHead() writes the request line, Host, X-Forwarded-* and X-Real-IP once", () => {
  const plan = createPlan(config());
  const req = new Request("http://gate.example/mcp?x=1", {
    headers: { "x-forwarded-for": "10.0.0.1", "x-request-id": "theirs" },
  });
  const { head, contentLength, chunked } = buildHead(plan, req, CTX);
  assert.deepEqual(lines(head), [
    "GET /api/mcp?x=1 HTTP/1.1",
    "host: 127.0.0.1:3000",
    "x-forwarded-for: 203.0.113.7",
    "x-forwarded-proto: https",
    "x-forwarded-host: gate.example",
    "x-real-ip: 203.0.113.7",
    "x-request-id: rid-1",
  ]);
  assert.equal(contentLength, null);
  assert.equal(chunked, false);
});

Deno.test("buildHead() drops hop-by-hop fields and those named in Connection", () => {
  const plan = createPlan(config());
  const req = new Request("http://gate.example/", {
    headers: {
      connection: "x-private, close",
      "x-private": "1",
      "keep-alive": "timeout=1",
      te: "trailers",
      upgrade: "h2c",
      "proxy-authorization": "Basic x",
      "x-kept": "2",
    },
  });
  const out = lines(buildHead(plan, req, CTX).head);
  assert.ok(out.includes("x-kept: 2"));
  for (
    const name of ["connection", "x-private", "keep-alive", "te", "upgrade", "proxy-authorization"]
  ) {
    assert.equal(out.find((l) => l.startsWith(`${name}:`)), undefined, name);
  }
});

Deno.test("buildHead() frames a body with its Content-Length or chunked, and GET never", async (t) => {
  const plan = createPlan(config());
  await t.step("Content-Length is passed through", () => {
    const req = new Request("http://g/", {
      method: "POST",
      headers: { "content-length": "3" },
      body: "abc",
    });
    const h = buildHead(plan, req, CTX);
    assert.equal(h.contentLength, 3);
    assert.ok(lines(h.head).includes("content-length: 3"));
  });
  await t.step("a body without a length goes chunked", () => {
    const req = new Request("http://g/", {
      method: "POST",
      headers: { "transfer-encoding": "chunked" },
      body: new ReadableStream(),
    });
    const h = buildHead(plan, req, CTX);
    assert.equal(h.chunked, true);
    assert.ok(lines(h.head).includes("transfer-encoding: chunked"));
  });
  await t.step("GET with a declared length sends none (Deno.serve drops such bodies)", () => {
    const req = new Request("http://g/", { headers: { "content-length": "3" } });
    const h = buildHead(plan, req, CTX);
    assert.equal(h.contentLength, null);
    assert.ok(!h.head.includes("content-length"));
  });
});

Deno.test("buildHead() sends claim fields as given, after dropping inbound copies", () => {
  const plan = createPlan(
    config({ claimHeaders: [{ claim: claimRef("sub"), header: "x-auth-subject" }] }),
  );
  const req = new Request("http://g/", {
    headers: { "x-auth-subject": "forged", "x_auth_subject": "forged2" },
  });
  const setHeaders = claimFieldValues(
    [{ claim: claimRef("sub"), header: "X-Auth-Subject" }, {
      claim: claimRef("name"),
      header: "x-auth-name",
    }],
    { sub: "user-1", name: "Zo\u00eb \u20ac" },
  );
  const head = buildHead(plan, req, { ...CTX, setHeaders }).head;
  assert.deepEqual(lines(head).slice(-2), [
    "x-auth-subject: user-1",
    // Claims are Unicode: sent as UTF-8 bytes.
    "x-auth-name: Zo\u00c3\u00ab \u00e2\u0082\u00ac",
  ]);
  assert.ok(!head.includes("forged"));
});

Deno.test("buildHead() refuses, never cleans, a value that would corrupt the head", async (t) => {
  const cases: [string, Partial<ForwardContext>][] = [
    ["CR LF in the request id", { requestId: "a\r\nx-injected: 1" }],
    ["NUL in X-Forwarded-For", { forwardedFor: "1.2.3.4\0" }],
    ["LF in a claim value", { setHeaders: [["x-auth-evil", "a\nx-injected: 1"]] }],
    ["a claim name that is not a token", { setHeaders: [["bad name", "v"]] }],
    ["a char above 0xFF", { setHeaders: [["x-auth-a", "\u010d\u010ax-injected: 1"]] }],
  ];
  for (const [name, extra] of cases) {
    await t.step(name, () => {
      assert.throws(
        () => buildHead(createPlan(config()), new Request("http://g/"), { ...CTX, ...extra }),
        Http1HeadError,
      );
    });
  }
});

Deno.test("buildHead() drops every spelling of a managed field", () => {
  const claim = { claim: claimRef("email"), header: "X-Auth-Email" };
  const plan = createPlan(config({ claimHeaders: [claim] }));
  const managed = [
    ...GATE_SET_HEADERS,
    ...CLIENT_ADDRESS_HEADERS,
    ...HOP_BY_HOP_HEADERS,
    ...CONSUMED_HEADERS,
  ]
    .filter((n) => n !== "host" && n !== "content-length" && n !== "transfer-encoding");
  const headers = new Headers({ "x-keep": "1", "x_keep_too": "2" });
  for (const name of [...managed, "x-auth-email", "authorization", "cookie"]) {
    headers.append(name.toUpperCase(), "forged");
    headers.append(name.replaceAll("-", "_"), "forged");
  }
  const req = new Request("http://g/", { headers });
  const out = lines(buildHead(plan, req, CTX).head);
  assert.ok(out.every((l) => !l.endsWith(": forged")), out.join("\n"));
  assert.ok(out.includes("x-keep: 1"));
  assert.ok(out.includes("x_keep_too: 2"));
  assert.ok(out.includes("x-real-ip: 203.0.113.7"));
});

Deno.test("managedKey() maps underscores to hyphens, as CGI does", () => {
  assert.equal(managedKey("x_auth_email"), "x-auth-email");
  assert.equal(managedKey("x-auth-email"), "x-auth-email");
});

Deno.test("claimFieldValues() refuses a claim that cannot be sent faithfully", async (t) => {
  const pairs = [{ claim: claimRef("sub"), header: "x-auth-subject" }];
  const refused: [string, unknown][] = [
    ["NUL", "adm\u0000in"],
    ["leading tab", "\tadmin"],
    ["LF", "ad\nmin"],
    ["CR", "ad\rmin"],
    ["DEL", "ad\u007fmin"],
    ["trailing space", "admin "],
    ["leading space", " admin"],
    ["lone surrogate", "ad\ud800min"],
    ["too long", "a".repeat(MAX_CLAIM_VALUE_BYTES + 1)],
    ["too long in UTF-8", "\u00e9".repeat(MAX_CLAIM_VALUE_BYTES / 2 + 1)],
    ["array with a control character", ["a", "b\u0001"]],
  ];
  for (const [name, value] of refused) {
    await t.step(name, () => {
      assert.throws(() => claimFieldValues(pairs, { sub: value }), (e: unknown) => {
        assert.ok(e instanceof GateError);
        assert.equal(e.code, "claim_unrepresentable");
        assert.equal(e.reason, "claim_unrepresentable");
        return true;
      });
    });
  }
  await t.step("what can be sent is sent as it is", () => {
    assert.deepEqual(
      claimFieldValues([
        { claim: claimRef("a"), header: "x-a" },
        { claim: claimRef("b"), header: "x-b" },
        { claim: claimRef("c"), header: "x-c" },
        { claim: claimRef("d"), header: "X-D" },
        { claim: claimRef("e"), header: "x-e" },
        { claim: claimRef("f"), header: "x-f" },
        { claim: claimRef("/g/h"), header: "x-g" },
      ], {
        a: "in side",
        b: 42,
        c: ["r1", "r2"],
        d: { k: "v" },
        e: "a".repeat(4096),
        f: ["r1", 3],
        g: { h: ["x", "y"] },
      }),
      [
        ["x-a", "in side"],
        ["x-b", "42"],
        ["x-c", "r1,r2"],
        ["x-d", '{"k":"v"}'],
        ["x-e", "a".repeat(4096)],
        ["x-f", '["r1",3]'],
        ["x-g", "x,y"],
      ],
    );
  });
});

function response(text: string): Http1Response {
  const bytes = new TextEncoder().encode(text);
  const head = parseResponseHead(bytes);
  return { status: head.status, head, body: null };
}

Deno.test("responseHeaders() drops hop-by-hop and Connection-named fields, keeps the rest", () => {
  const out = responseHeaders(response(
    "HTTP/1.1 200 OK\r\nConnection: x-a\r\nX-A: 1\r\nKeep-Alive: 5\r\nSet-Cookie: a=1\r\n" +
      "Set-Cookie: b=2\r\nContent-Length: 10\r\nMcp-Session-Id: s1\r\n\r\n",
  ));
  assert.deepEqual(out, [
    ["set-cookie", "a=1"],
    ["set-cookie", "b=2"],
    ["content-length", "10"],
    ["mcp-session-id", "s1"],
  ]);
});

Deno.test("responseHeaders() drops Content-Length when Transfer-Encoding framed the body", () => {
  const out = responseHeaders(response(
    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n",
  ));
  assert.deepEqual(out, []);
});

Deno.test("responseHeaders() sets X-Accel-Buffering: no on event streams only", async (t) => {
  await t.step("event stream", () => {
    const out = responseHeaders(response(
      "HTTP/1.1 200 OK\r\nX-Accel-Buffering: yes\r\nContent-Type: text/event-stream\r\n\r\n",
    ));
    assert.deepEqual(out, [["content-type", "text/event-stream"], ["x-accel-buffering", "no"]]);
  });
  await t.step("JSON", () => {
    const out = responseHeaders(response(
      "HTTP/1.1 200 OK\r\nX-Accel-Buffering: yes\r\nContent-Type: application/json\r\n\r\n",
    ));
    assert.deepEqual(out, [["x-accel-buffering", "yes"], ["content-type", "application/json"]]);
  });
});

Deno.test("buildHead() frames the body by Transfer-Encoding over Content-Length, never a bad length", async (t) => {
  const plan = createPlan(config());
  const post = (headers: [string, string][]) =>
    new Request("http://gate/mcp", { method: "POST", headers, body: "hello" });
  await t.step(
    "Transfer-Encoding and Content-Length: chunked, no Content-Length (RFC 9112 §6.3)",
    () => {
      const { head, contentLength, chunked } = buildHead(
        plan,
        post([["content-length", "40"], ["transfer-encoding", "chunked"]]),
        CTX,
      );
      assert.equal(contentLength, null);
      assert.equal(chunked, true);
      assert.ok(lines(head).includes("transfer-encoding: chunked"));
      assert.ok(!head.includes("content-length"));
    },
  );
  await t.step("the same length on two lines goes up once, as that length", () => {
    const { head, contentLength } = buildHead(plan, post([["content-length", "5, 5"]]), CTX);
    assert.equal(contentLength, 5);
    assert.ok(lines(head).includes("content-length: 5"));
  });
  await t.step("an unusable length is replaced by chunked framing", () => {
    const { head, contentLength, chunked } = buildHead(
      plan,
      post([["content-length", "5, 6"]]),
      CTX,
    );
    assert.equal(contentLength, null);
    assert.equal(chunked, true);
    assert.ok(!head.includes("content-length"));
    assert.ok(!head.includes("NaN"));
  });
});

Deno.test("readRequestFields() gives each value as Headers.get() does, and serialises the forwarded fields", () => {
  const plan = createPlan(config());
  const sent: [string, string][] = [
    ["Authorization", "Bearer a"],
    ["authorization", "Bearer b"],
    ["Origin", "https://app.example"],
    ["X-Request-Id", "rid"],
    ["User-Agent", "ua/1"],
    ["X-Forwarded-For", "198.51.100.1"],
    ["X-Forwarded-Proto", "https"],
    ["Content-Length", "5"],
    ["Host", "gate.example"],
    ["Transfer-Encoding", "chunked"],
    ["Connection", "keep-alive"],
    ["Accept", "application/json"],
    ["x-multi", "1"],
    ["X-Multi", "2"],
    ["cookie", "c=1"],
  ];
  const headers = new Headers(sent);
  const f = readRequestFields(plan, headers);
  const names = [
    ["authorization", f.authorization],
    ["origin", f.origin],
    ["x-request-id", f.requestId],
    ["user-agent", f.userAgent],
    ["x-forwarded-for", f.forwardedFor],
    ["x-forwarded-proto", f.forwardedProto],
    ["content-length", f.contentLength],
    ["host", f.host],
    ["transfer-encoding", f.transferEncoding],
    ["connection", f.connection],
  ] as const;
  for (const [name, value] of names) assert.equal(value, headers.get(name), name);
  assert.equal(f.authorization, "Bearer a, Bearer b");
  // Dropped: authorization, cookie (FORWARD_AUTHORIZATION off), hop-by-hop and gate-set fields.
  assert.equal(
    f.forwarded,
    "accept: application/json\r\norigin: https://app.example\r\nuser-agent: ua/1\r\n" +
      "x-multi: 1, 2\r\n",
  );
  assert.equal(f.drop, plan.drop);

  // Every field line as sent ("name: value\r\n"), a repeated field line by line, not as Headers
  // joins them.
  const lines = sent.reduce((n, [name, value]) => n + `${name}: ${value}\r\n`.length, 0);
  assert.equal(f.headBytes, lines);

  const none = readRequestFields(plan, new Headers());
  for (const key of Object.keys(none) as (keyof typeof none)[]) {
    if (!["forwarded", "drop", "headBytes", "readAt"].includes(key)) {
      assert.equal(none[key], null, key);
    }
  }
  assert.equal(none.forwarded, "");
  assert.equal(none.headBytes, 0);
  assert.ok(none.readAt > 0 && none.readAt <= performance.now());
});

Deno.test('readRequestFields().headBytes is never below the wire size of the field lines, exact without ", " in a value', () => {
  const plan = createPlan(config());
  const tchar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&'*+.^`|~");
  const name = fc.oneof(
    fc.string({ unit: tchar, minLength: 1, maxLength: 20 }),
    fc.constant("cookie"),
  );
  // Field values as Deno hands them on: visible ASCII, inner spaces and tabs, no outer ones.
  const vchar = fc.constantFrom(...'abc,; =\t"/:0123456789');
  const value = fc.string({ unit: vchar, maxLength: 30 }).map((v) => v.trim());
  const lines = fc.array(fc.tuple(name, value), { maxLength: 30 }).chain((ls) =>
    // Repetition: some names sent again.
    fc.array(fc.nat(Math.max(0, ls.length - 1)), { maxLength: ls.length > 0 ? 20 : 0 })
      .map((picks) => [...ls, ...picks.map((i) => ls[i])])
  );
  fc.assert(fc.property(lines, (sent) => {
    const headers = new Headers();
    for (const [n, v] of sent) headers.append(n, v);
    const measured = readRequestFields(plan, headers).headBytes;
    const wire = sent.reduce((n, [k, v]) => n + `${k}: ${v}\r\n`.length, 0);
    assert.ok(measured >= wire, `measured ${measured} < wire ${wire}`);
    // The over-estimate: name + 2 per ", " a value itself holds ("; " too in a cookie).
    const extra = sent.reduce((n, [k, v]) => {
      const seps = v.split(", ").length - 1 + (k === "cookie" ? v.split("; ").length - 1 : 0);
      return n + seps * (k.length + 2);
    }, 0);
    assert.ok(measured <= wire + extra, `measured ${measured} > wire ${wire} + ${extra}`);
  }));
});

Deno.test('fieldLineBytes() counts each ", " as a line boundary: name + 2 more bytes', () => {
  assert.equal(fieldLineBytes("x-a", "v"), "x-a: v\r\n".length);
  assert.equal(fieldLineBytes("x-a", "v, w, "), "x-a: v\r\nx-a: w\r\nx-a: \r\n".length);
  assert.equal(fieldLineBytes("x-a", ", "), "x-a: \r\nx-a: \r\n".length);
  // A "," without the space Headers joins with is a character of one line.
  assert.equal(fieldLineBytes("x-a", "a,b"), "x-a: a,b\r\n".length);
  // Deno.serve joins cookie lines with "; ".
  assert.equal(fieldLineBytes("cookie", "a=1; b=2"), "cookie: a=1\r\ncookie: b=2\r\n".length);
  assert.equal(fieldLineBytes("x-a", "a=1; b=2"), "x-a: a=1; b=2\r\n".length);
});

Deno.test("createPlan() gives a frozen plan whose drop set holds every managed name", () => {
  const plan = createPlan(
    config({ claimHeaders: [{ claim: claimRef("sub"), header: "X_Auth_Subject" }] }),
  );
  assert.ok(Object.isFrozen(plan));
  for (const name of [...HOP_BY_HOP_HEADERS, ...GATE_SET_HEADERS, "x-auth-subject", "cookie"]) {
    assert.ok(plan.drop.has(name), name);
  }
});

Deno.test("buildHead() gives the same head from fields the handler read as from the request", async (t) => {
  const cases: [string, Config, RequestInit & { url: string }][] = [
    ["POST with a length", config(), {
      url: "http://gate.example/mcp?access_token=x&a=1",
      method: "POST",
      body: "hello",
      headers: { "content-type": "text/plain", authorization: "Bearer t", "x-a": "1" },
    }],
    ["Connection naming a field", config(), {
      url: "http://gate.example/",
      headers: { connection: "x-private", "x-private": "1", "x-kept": "2" },
    }],
    [
      "FORWARD_AUTHORIZATION and PRESERVE_HOST",
      config({
        forwardAuthorization: true,
        preserveHost: true,
      }),
      {
        url: "http://gate.example/x",
        headers: { authorization: "Bearer t", cookie: "c=1" },
      },
    ],
  ];
  for (const [name, cfg, init] of cases) {
    await t.step(name, () => {
      const plan = createPlan(cfg);
      const req = new Request(init.url, init);
      const fields = readRequestFields(plan, req.headers);
      assert.deepEqual(buildHead(plan, req, { ...CTX, fields }), buildHead(plan, req, CTX));
    });
  }
  await t.step("fields read with another plan are not used", () => {
    const req = new Request("http://gate.example/", {
      headers: { authorization: "Bearer t", "x-kept": "1" },
    });
    const other = readRequestFields(
      createPlan(config({ forwardAuthorization: true })),
      req.headers,
    );
    const plan = createPlan(config());
    const { head } = buildHead(plan, req, { ...CTX, fields: other });
    assert.equal(lines(head).find((l) => l.startsWith("authorization:")), undefined);
    assert.deepEqual(head, buildHead(plan, req, CTX).head);
  });
});
