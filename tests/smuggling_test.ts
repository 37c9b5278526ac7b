/**
 * Request smuggling through the gate (the issue "an authenticated client can inject header lines
 * and whole requests into the upstream connection"), one test per attack class. Each sends the
 * attack as raw bytes to a real gate in front of a strict RFC 9112 upstream
 * (helpers/strict_upstream.ts) and asserts what the upstream received and what every client got,
 * against the intended behaviour after the fix: every client request is at most one well-formed
 * upstream request, its target re-serialised with non-pchar code points percent-encoded as UTF-8,
 * its managed headers set by the gate only; a Host or absolute-form authority outside RFC 9110
 * §7.2 is a 400, a claim value that cannot be sent faithfully a 403 `claim_unrepresentable`.
 */
import assert from "node:assert/strict";
import {
  CLIENT_ADDRESS_HEADERS,
  CONSUMED_HEADERS,
  GATE_SET_HEADERS,
  HOP_BY_HOP_HEADERS,
} from "../src/proxy/mod.ts";
import {
  ALWAYS_MANAGED,
  bytesOf,
  canonicalName,
  type EchoBody,
  expectedTarget,
  latin1,
  MANAGED_HEADERS,
  printable,
  startStrictRig,
  type StrictRequest,
  type StrictRig,
  utf8,
  wireExchange,
  type WireResponse,
} from "./helpers/strict_upstream.ts";

const CLAIM_HEADERS = "sub=X-Auth-Subject,email=X-Auth-Email";
const ENV = { CLAIM_HEADERS, UPSTREAM_TIMEOUT: "3s" };

/** U+010D, U+010A, U+0120: CR, LF and SP once only their low 8 bits are kept. */
const CR = "\u010d";
const LF = "\u010a";
const SP = "\u0120";
/** `s` with CR, LF and SP replaced by the code points whose low byte they are. */
const disguise = (s: string) => s.replaceAll("\r", CR).replaceAll("\n", LF).replaceAll(" ", SP);

let ids = 0;
const nextId = (tag: string) => `${tag}-${++ids}-${crypto.randomUUID().slice(0, 8)}`;

interface Send {
  method?: string;
  /** The request target as a latin1 string of the bytes to send (use utf8() for non-ASCII). */
  target: string;
  token?: string;
  /** Host value (latin1 bytes); null leaves Host out. Default the gate's address. */
  host?: string | null;
  headers?: [string, string][];
  body?: string;
  testId?: string;
}

/** Sends one raw request (Connection: close) with X-Test-Id and X-Request-Id set to `testId`. */
function send(rig: StrictRig, s: Send): Promise<WireResponse | null> {
  const testId = s.testId ?? nextId("t");
  const lines = [`${s.method ?? "GET"} ${s.target} HTTP/1.1`];
  const host = s.host === undefined ? `127.0.0.1:${rig.gate.port}` : s.host;
  if (host !== null) lines.push(`Host: ${host}`);
  if (s.token) lines.push(`Authorization: Bearer ${s.token}`);
  lines.push(`X-Test-Id: ${testId}`, `X-Request-Id: ${testId}`);
  for (const [n, v] of s.headers ?? []) lines.push(`${n}: ${v}`);
  if (s.body !== undefined) lines.push(`Content-Length: ${s.body.length}`);
  lines.push("Connection: close", "", s.body ?? "");
  return wireExchange(rig.gate.port, bytesOf(lines.join("\r\n")));
}

function echoOf(res: WireResponse | null): EchoBody | null {
  if (res === null || res.status !== 200) return null;
  try {
    return JSON.parse(res.text) as EchoBody;
  } catch {
    return null;
  }
}

function show(res: WireResponse | null): string {
  return res === null ? "no response" : `${res.status} ${res.text.slice(0, 300)}`;
}

/** The request log line of the request whose X-Request-Id was `id`. */
async function logOf(rig: StrictRig, id: string): Promise<Record<string, unknown>> {
  return await rig.gate.waitForLog((l) => l.msg === "request" && l.request_id === id);
}

/**
 * Asserts the upstream received exactly `count` well-formed requests in all and no violation,
 * with a message that shows everything it did receive.
 */
function assertUpstream(rig: StrictRig, count: number, what: string): void {
  const up = rig.upstream;
  assert.ok(
    up.requests.length === count && up.violations.length === 0,
    `${what}: expected ${count} well-formed upstream request(s) and no violation, got ` +
      `${up.requests.length} request(s) and ${up.violations.length} violation(s)\n${up.describe()}`,
  );
}

/** Asserts `req` carries exactly one X-Auth-Subject line, with `sub`. */
function assertSubject(req: StrictRequest, sub: string): void {
  const lines = req.fields.filter(([n]) => canonicalName(n) === "x-auth-subject");
  assert.deepEqual(
    lines.map(([n, v]) => `${n.toLowerCase()}: ${printable(v)}`),
    [`x-auth-subject: ${sub}`],
    `upstream request #${req.seq} must carry exactly the token's subject "${sub}"`,
  );
}

/** Waits a little so that bytes smuggled behind an answered request reach the upstream parser. */
const settle = () => new Promise((r) => setTimeout(r, 150));

Deno.test("a CR LF smuggled into the path as U+010D U+010A reaches the upstream percent-encoded, as one request", async () => {
  await using rig = await startStrictRig({ env: ENV });
  const token = await rig.issuer.mint({ sub: "mallory" });
  const path = "/mcp" + disguise(" HTTP/1.1\r\nX-Auth-Subject: admin\r\nX-Pad: x");
  const res = await send(rig, { target: utf8(path), token });
  await settle();
  assertUpstream(rig, 1, "path injection");
  const want = "/mcp%C4%A0HTTP/1.1%C4%8D%C4%8AX-Auth-Subject:%C4%A0admin%C4%8D%C4%8AX-Pad:%C4%A0x";
  assert.equal(expectedTarget("", path, null), want, "the oracle agrees with the literal");
  assertSubject(rig.upstream.requests[0], "mallory");
  assert.equal(rig.upstream.requests[0].target, want);
  assert.equal(res?.status, 200, show(res));
  assert.equal(echoOf(res)?.subject, "mallory");
});

Deno.test("a CR LF smuggled into the query reaches the upstream percent-encoded, as one request", async () => {
  await using rig = await startStrictRig({ env: ENV });
  const token = await rig.issuer.mint({ sub: "mallory" });
  const query = "a=1&b=" +
    disguise(" HTTP/1.1\r\nHost: x\r\n\r\nGET /admin HTTP/1.1\r\nX-Auth-Subject: admin\r\nX: y");
  const res = await send(rig, { target: utf8(`/mcp?${query}`), token });
  await settle();
  assertUpstream(rig, 1, "query injection");
  assert.equal(rig.upstream.requests[0].target, expectedTarget("", "/mcp", query));
  assert.match(rig.upstream.requests[0].target, /^\/mcp\?a=1&b=%C4%A0HTTP\/1\.1%C4%8D%C4%8AHost:/);
  assertSubject(rig.upstream.requests[0], "mallory");
  assert.equal(res?.status, 200, show(res));
});

Deno.test("a Host containing / is refused with 400 before auth and never shapes the upstream target", async (t) => {
  await using rig = await startStrictRig({ env: ENV });
  const token = await rig.issuer.mint({ sub: "mallory" });
  const hosts: [string, string][] = [
    ["a plain path in Host", "evil/inj"],
    ["a query in Host", "evil/?x=1"],
    [
      "a disguised request line in Host",
      utf8("h/" + disguise("mcp HTTP/1.1\r\nX-Auth-Subject: admin\r\nX-Pad: x")),
    ],
  ];
  for (const [name, host] of hosts) {
    await t.step(`${name}: ${JSON.stringify(printable(bytesOf(host)))}`, async () => {
      for (const tok of [token, undefined]) {
        const before = rig.upstream.requests.length;
        const res = await send(rig, { target: "/mcp", host, token: tok });
        await settle();
        assert.equal(
          res?.status,
          400,
          `Host ${JSON.stringify(host)} ${tok ? "with" : "without"} a token: ${show(res)}\n` +
            rig.upstream.describe(),
        );
        assert.equal(rig.upstream.requests.length, before, rig.upstream.describe());
        assert.deepEqual(rig.upstream.violations, [], rig.upstream.describe());
      }
    });
  }
});

Deno.test("a non-ASCII Host or absolute-form authority (UTF-8 CR LF) gets 400 under PRESERVE_HOST", async (t) => {
  await using rig = await startStrictRig({ env: { ...ENV, PRESERVE_HOST: "true" } });
  const token = await rig.issuer.mint({ sub: "mallory" });
  const inject = disguise("h\r\nX-Auth-Subject: admin\r\nX-Pad: x");
  const cases: [string, Send][] = [
    ["Host with UTF-8 CR LF", { target: "/mcp", host: utf8(inject), token }],
    ["absolute-form with UTF-8 CR LF, no Host", {
      target: `http://${utf8(inject)}/mcp`,
      host: null,
      token,
    }],
    ["absolute-form with UTF-8 CR LF and a valid Host", {
      target: `http://${utf8(inject)}/mcp`,
      host: "mcp.example.com",
      token,
    }],
    ["Host with a UTF-8 letter", { target: "/mcp", host: utf8("b\u00fccher.example"), token }],
    ["absolute-form with userinfo", {
      target: "http://admin@mcp.example.com/mcp",
      host: null,
      token,
    }],
  ];
  for (const [name, s] of cases) {
    await t.step(name, async () => {
      const before = rig.upstream.requests.length;
      const res = await send(rig, s);
      await settle();
      assert.equal(
        res?.status,
        400,
        `${name}: ${show(res)}\n${rig.upstream.describe()}`,
      );
      assert.equal(rig.upstream.requests.length, before, rig.upstream.describe());
      assert.deepEqual(rig.upstream.violations, [], rig.upstream.describe());
    });
  }
  await t.step(
    "control: a valid absolute-form authority becomes Host and X-Forwarded-Host",
    async () => {
      const before = rig.upstream.requests.length;
      const res = await send(rig, {
        target: "http://mcp.example.com:8443/mcp?x=1",
        host: null,
        token,
      });
      assert.equal(res?.status, 200, show(res));
      assertUpstream(rig, before + 1, "valid absolute-form");
      const req = rig.upstream.requests[before];
      assert.equal(req.target, "/mcp?x=1");
      assert.equal(req.header("host"), "mcp.example.com:8443");
      assert.equal(req.header("x-forwarded-host"), "mcp.example.com:8443");
    },
  );
});

Deno.test("a forged identity smuggled in the path never reaches a pooled upstream connection", async () => {
  await using rig = await startStrictRig({ env: ENV });
  const mallory = await rig.issuer.mint({ sub: "mallory" });
  const alice = await rig.issuer.mint({ sub: "alice" });
  // One complete request for mallory, then a complete forged one for "admin"; the gate's own
  // header lines land in a trailing third request's X-Pad.
  const smuggled = disguise(
    " HTTP/1.1\r\nHost: up\r\nContent-Length: 0\r\n\r\n" +
      "GET /mcp/admin-only HTTP/1.1\r\nHost: up\r\nX-Auth-Subject: admin\r\n" +
      "Content-Length: 0\r\n\r\nGET /mcp HTTP/1.1\r\nX-Pad: x",
  );
  const idM = nextId("mallory");
  const resM = await send(rig, { target: utf8("/mcp" + smuggled), token: mallory, testId: idM });
  await settle();
  const idA = nextId("alice");
  const resA = await send(rig, { target: "/mcp", token: alice, testId: idA });
  await settle();
  const forged = rig.upstream.requests.filter((r) => r.header("x-auth-subject") === "admin");
  assert.deepEqual(
    forged.map((r) => `${r.method} ${r.target}`),
    [],
    `the upstream accepted a request with the forged identity "admin"\n${rig.upstream.describe()}`,
  );
  assertUpstream(rig, 2, "one upstream request per client request");
  assertSubject(rig.upstream.requests[0], "mallory");
  assertSubject(rig.upstream.requests[1], "alice");
  assert.equal(echoOf(resM)?.test, idM, `mallory got ${show(resM)}`);
  assert.equal(echoOf(resA)?.test, idA, `alice got ${show(resA)}`);
  assert.equal(echoOf(resA)?.subject, "alice", `alice got ${show(resA)}`);
});

Deno.test("a half-sent smuggled POST never swallows the next user's request", async () => {
  await using rig = await startStrictRig({ env: ENV });
  const mallory = await rig.issuer.mint({ sub: "mallory" });
  const bob = await rig.issuer.mint({ sub: "bob" });
  // Mallory's request ends early; a POST follows (its Host is the gate's own line) whose
  // Content-Length the gate's header lines do not fill, so it waits for the next bytes on the
  // pooled connection: bob's request.
  const smuggled = disguise(
    " HTTP/1.1\r\nHost: up\r\nContent-Length: 0\r\n\r\n" +
      "POST /mcp/steal HTTP/1.1\r\nContent-Length: 900\r\nX-Pad: x",
  );
  const idM = nextId("mallory");
  const resM = await send(rig, { target: utf8("/mcp" + smuggled), token: mallory, testId: idM });
  await settle();
  const idB = nextId("bob");
  const resB = await send(rig, {
    method: "POST",
    target: "/mcp",
    token: bob,
    testId: idB,
    headers: [["Content-Type", "application/json"]],
    body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"secret":"bob-private"}}',
  });
  await settle();
  const swallowed = rig.upstream.requests.filter((r) => latin1(r.body).includes("HTTP/1.1"));
  assert.deepEqual(
    swallowed.map((r) => `${r.method} ${r.target} body=${printable(r.body.subarray(0, 160))}`),
    [],
    `an upstream request body holds another request\n${rig.upstream.describe()}`,
  );
  assertUpstream(rig, 2, "one upstream request per client request");
  assert.equal(echoOf(resM)?.test, idM, `mallory got ${show(resM)}`);
  assert.equal(resB?.status, 200, `bob got ${show(resB)}`);
  assert.equal(echoOf(resB)?.test, idB, `bob got ${show(resB)}`);
  assert.match(echoOf(resB)?.body ?? "", /bob-private/);
});

Deno.test("a smuggled slow request never shifts the response queue: every user gets their own answer", async () => {
  await using rig = await startStrictRig({
    env: ENV,
    upstream: { delayMs: (r) => r.target.startsWith("/mcp/slow") ? 400 : 0 },
  });
  const mallory = await rig.issuer.mint({ sub: "mallory" });
  const bob = await rig.issuer.mint({ sub: "bob" });
  const carol = await rig.issuer.mint({ sub: "carol" });
  const smuggled = disguise(
    " HTTP/1.1\r\nHost: up\r\nContent-Length: 0\r\n\r\nGET /mcp/slow HTTP/1.1\r\nX-Pad: x",
  );
  const idM = nextId("mallory");
  const resM = await send(rig, { target: utf8("/mcp" + smuggled), token: mallory, testId: idM });
  const idB = nextId("bob");
  const resB = await send(rig, { target: "/mcp/bob-inbox", token: bob, testId: idB });
  const idC = nextId("carol");
  const resC = await send(rig, { target: "/mcp/carol-inbox", token: carol, testId: idC });
  await settle();
  const got = (who: string, res: WireResponse | null) => {
    const e = echoOf(res);
    return e === null ? `${who}: ${show(res)}` : `${who}: answer to ${e.subject} ${e.target}`;
  };
  assert.deepEqual(
    [got("bob", resB), got("carol", resC)],
    ["bob: answer to bob /mcp/bob-inbox", "carol: answer to carol /mcp/carol-inbox"],
    `a user received another request's answer\n${rig.upstream.describe()}`,
  );
  assert.equal(echoOf(resM)?.test, idM, `mallory got ${show(resM)}`);
  assert.equal(echoOf(resB)?.test, idB);
  assert.equal(echoOf(resC)?.test, idC);
  assertUpstream(rig, 3, "one upstream request per client request");
});

Deno.test("inbound claim headers in any case and _ spelling never reach the upstream", async () => {
  await using rig = await startStrictRig({ env: ENV });
  const token = await rig.issuer.mint({ sub: "alice", email: "alice@example.com" });
  const forged: [string, string][] = [
    ["X-Auth-Subject", "admin"],
    ["X-AUTH-SUBJECT", "admin"],
    ["x_auth_subject", "admin"],
    ["X_Auth_Email", "admin@example.com"],
    ["x-auth_email", "admin@example.com"],
  ];
  const res = await send(rig, { target: "/mcp", token, headers: forged });
  assert.equal(res?.status, 200, show(res));
  assertUpstream(rig, 1, "claim headers");
  const req = rig.upstream.requests[0];
  const claimLines = req.fields
    .filter(([n]) => ["x-auth-subject", "x-auth-email"].includes(canonicalName(n)))
    .map(([n, v]) => `${n.toLowerCase()}: ${printable(v)}`)
    .sort();
  assert.deepEqual(
    claimLines,
    ["x-auth-email: alice@example.com", "x-auth-subject: alice"],
    `forged claim headers reached the upstream\n${rig.upstream.describe()}`,
  );
});

Deno.test("client-address and gate-set headers never pass through as the client wrote them", async (t) => {
  await using rig = await startStrictRig({ env: ENV });
  const token = await rig.issuer.mint({ sub: "alice" });
  const names = [...MANAGED_HEADERS.clientAddress, ...MANAGED_HEADERS.gateSet].filter((n) =>
    n !== "x-request-id"
  );
  const gateValue: Record<string, string> = {
    "x-forwarded-for": "127.0.0.1",
    "x-real-ip": "127.0.0.1",
    "x-forwarded-proto": "http",
    "x-forwarded-host": `127.0.0.1:${rig.gate.port}`,
  };
  const title = (n: string) => n.replace(/(^|-)([a-z])/g, (_, d, c) => d + c.toUpperCase());
  for (const name of names) {
    await t.step(name, async () => {
      const spellings = [title(name), title(name).replaceAll("-", "_")];
      const before = rig.upstream.requests.length;
      const res = await send(rig, {
        target: "/mcp",
        token,
        headers: spellings.map((s, i) => [s, `6.6.6.${i + 6}`]),
      });
      assert.equal(res?.status, 200, show(res));
      assertUpstream(rig, before + 1, name);
      const req = rig.upstream.requests[before];
      const seen = req.fields
        .filter(([n]) => canonicalName(n) === name)
        .map(([n, v]) => `${n}: ${printable(v)}`);
      const want = gateValue[name] === undefined ? [] : [`${name}: ${gateValue[name]}`];
      assert.deepEqual(
        seen.map((l) => l.replace(/^[^:]+/, (n) => n.toLowerCase())),
        want,
        `${spellings.join(" / ")} sent as 6.6.6.x; the upstream got ${JSON.stringify(seen)}`,
      );
    });
  }
});

Deno.test("a claim value the gate cannot send faithfully gets 403 claim_unrepresentable and the upstream sees nothing", async (t) => {
  await using rig = await startStrictRig({ env: ENV });
  const cases: [string, Record<string, unknown>][] = [
    ["NUL inside the subject", { sub: "adm\u0000in" }],
    ["leading TAB in the subject", { sub: "\tadmin" }],
    ["LF inside the subject", { sub: "ad\nmin" }],
    ["CR LF inside the email", { sub: "alice", email: "a@x\r\nX-Auth-Subject: admin" }],
    ["DEL inside the email", { sub: "alice", email: "a\u007f@x" }],
    ["leading space in the email", { sub: "alice", email: " a@x" }],
    ["trailing space in the subject", { sub: "admin " }],
    ["4097 bytes of UTF-8 in the email", { sub: "alice", email: "\u00e9".repeat(2048) + "x" }],
  ];
  for (const [name, claims] of cases) {
    await t.step(name, async () => {
      const token = await rig.issuer.mint(claims);
      const id = nextId("claim");
      const before = rig.upstream.requests.length;
      const res = await send(rig, { target: "/mcp", token, testId: id });
      await settle();
      assert.equal(
        res?.status,
        403,
        `${name}: ${show(res)}\n${rig.upstream.describe()}`,
      );
      assert.equal(rig.upstream.requests.length, before, rig.upstream.describe());
      const line = await logOf(rig, id);
      assert.equal(line.reason, "claim_unrepresentable", JSON.stringify(line));
    });
  }
  await t.step(
    "control: a 4096-byte and a non-ASCII value are sent as their UTF-8 bytes",
    async () => {
      for (const email of ["\u00e9".repeat(2048), "zo\u00eb@b\u00fccher.example \u4e2d"]) {
        const token = await rig.issuer.mint({ sub: "alice", email });
        const before = rig.upstream.requests.length;
        const res = await send(rig, { target: "/mcp", token });
        assert.equal(res?.status, 200, show(res));
        assertUpstream(rig, before + 1, "non-ASCII claim");
        const got = rig.upstream.requests[before].fields.find(([n]) =>
          n.toLowerCase() === "x-auth-email"
        );
        assert.deepEqual(got?.[1], new TextEncoder().encode(email));
      }
    },
  );
});

Deno.test("an h2c POST without content-length reaches the upstream with its whole body", async () => {
  await using rig = await startStrictRig({ env: ENV });
  const token = await rig.issuer.mint({ sub: "alice" });
  using client = Deno.createHttpClient({ http2: true, http1: false });
  const pieces = ['{"jsonrpc":"2.0",', '"id":7,"method":"tools/list",', '"params":{}}'];
  const payload = pieces.join("");
  for (const method of ["POST", "PUT", "PATCH"]) {
    const id = nextId("h2");
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (i < pieces.length) c.enqueue(new TextEncoder().encode(pieces[i++]));
        else c.close();
      },
    });
    const before = rig.upstream.requests.length;
    const res = await fetch(`${rig.gate.origin}/mcp`, {
      method,
      client,
      body,
      headers: { authorization: `Bearer ${token}`, "x-test-id": id },
    });
    const text = await res.text();
    assert.equal(res.status, 200, `${method}: ${res.status} ${text}\n${rig.upstream.describe()}`);
    await settle();
    assertUpstream(rig, before + 1, `h2c ${method}`);
    const req = rig.upstream.requests[before];
    assert.equal(
      new TextDecoder().decode(req.body),
      payload,
      `h2c ${method} body: the upstream got ${req.framing} framing and ` +
        `${JSON.stringify(printable(req.body))}`,
    );
    assert.equal(req.method, method);
    assert.equal(req.header("x-test-id"), id);
  }
});

Deno.test("a field value the gate cannot forward as it is gets 400 invalid_header, never a 502", async (t) => {
  await using rig = await startStrictRig({ env: ENV });
  const token = await rig.issuer.mint({ sub: "alice" });
  // Deno.serve joins a repeated field whose last line is empty into "b, ": trailing whitespace
  // that a recipient would strip, so the value cannot be passed on unchanged.
  const cases: [string, [string, string][]][] = [
    ["a repeated field whose last line is empty", [["X-Custom", "b"], ["X-Custom", ""]]],
    ["three lines, the last empty", [["X-Custom", "a"], ["X-Custom", "b"], ["X-Custom", ""]]],
  ];
  for (const [name, headers] of cases) {
    await t.step(name, async () => {
      const id = nextId("hdr");
      const before = rig.upstream.requests.length;
      const res = await send(rig, { target: "/mcp", token, headers, testId: id });
      assert.equal(res?.status, 400, `${name}: ${show(res)}\n${rig.upstream.describe()}`);
      assert.equal(JSON.parse(res!.text).error, "invalid_request");
      const line = await logOf(rig, id);
      assert.equal(line.reason, "invalid_header");
      assert.ok(
        !rig.gate.logText().includes("upstream request head refused"),
        "the serialiser was never reached",
      );
      await settle();
      assert.equal(rig.upstream.requests.length, before, rig.upstream.describe());
      assert.deepEqual(rig.upstream.violations, [], rig.upstream.describe());
    });
  }
  await t.step(
    "control: a field line that is empty on its own is forwarded as the rest",
    async () => {
      const id = nextId("hdr");
      const before = rig.upstream.requests.length;
      const res = await send(rig, {
        target: "/mcp",
        token,
        headers: [["X-Custom", ""], ["X-Custom", "b"]],
        testId: id,
      });
      assert.equal(res?.status, 200, show(res));
      assertUpstream(rig, before + 1, "empty first line");
    },
  );
});

Deno.test("a trusted proxy's X-Forwarded-For with leading whitespace (HTTP/2) never makes a 502", async () => {
  const http2 = await import("node:http2");
  await using rig = await startStrictRig({ env: { ...ENV, TRUSTED_PROXIES: "127.0.0.1/32" } });
  const token = await rig.issuer.mint({ sub: "alice" });
  // HTTP/2 field values are not trimmed by Deno.serve (HTTP/1.1 ones are).
  const status = await new Promise<number>((resolve, reject) => {
    const client = http2.connect(rig.gate.origin);
    client.on("error", reject);
    const req = client.request({
      ":method": "GET",
      ":path": "/mcp",
      authorization: `Bearer ${token}`,
      "x-forwarded-for": " 1.2.3.4",
    });
    let code = 0;
    req.on("response", (h) => (code = Number(h[":status"])));
    req.on("data", () => {});
    req.on("end", () => {
      client.close();
      resolve(code);
    });
    req.on("error", reject);
  });
  assert.ok(status < 500, `got ${status}\n${rig.gate.logText().slice(-600)}`);
  assert.ok(!rig.gate.logText().includes("upstream request head refused"), "serialiser reached");
  await settle();
  const last = rig.upstream.requests.at(-1);
  assert.equal(last?.header("x-forwarded-for"), "1.2.3.4, 127.0.0.1");
  assert.equal(last?.header("x-real-ip"), "1.2.3.4");
});

Deno.test("Expect is consumed by the gate: the upstream never waits to be asked for a body", async () => {
  await using rig = await startStrictRig({ env: ENV });
  const token = await rig.issuer.mint({ sub: "alice" });
  const id = nextId("expect");
  const before = rig.upstream.requests.length;
  const res = await send(rig, {
    method: "POST",
    target: "/mcp",
    token,
    headers: [["Expect", "100-continue"]],
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    testId: id,
  });
  // The runtime may answer 100 Continue first; the final answer is the upstream's 200.
  assert.ok(res?.text.includes(id) || res?.status === 100, show(res));
  await settle();
  assertUpstream(rig, before + 1, "expect");
  assert.equal(rig.upstream.requests[before].header("expect"), null);
});

Deno.test("a transfer coding other than chunked gets 501 before auth, never reaching the upstream", async () => {
  await using rig = await startStrictRig({ env: ENV });
  const token = await rig.issuer.mint({ sub: "alice" });
  const id = nextId("te");
  const raw = [
    "POST /mcp HTTP/1.1",
    `Host: 127.0.0.1:${rig.gate.port}`,
    `Authorization: Bearer ${token}`,
    `X-Request-Id: ${id}`,
    "Transfer-Encoding: gzip, chunked",
    "Connection: close",
    "",
    "3\r\nabc\r\n0\r\n\r\n",
  ].join("\r\n");
  const res = await wireExchange(rig.gate.port, bytesOf(raw));
  assert.ok(res !== null && (res.status === 501 || res.status === 400), show(res));
  await settle();
  assertUpstream(rig, 0, "gzip transfer coding");
});

Deno.test("the oracle's managed names and the gate's documented lists are the same set", () => {
  // The oracle (tests/helpers/strict_upstream.ts) is written independently of src/proxy/forwarder.ts on
  // purpose; this keeps the two from drifting apart silently.
  const gate = new Set([
    ...HOP_BY_HOP_HEADERS,
    ...GATE_SET_HEADERS,
    ...CONSUMED_HEADERS,
    ...CLIENT_ADDRESS_HEADERS,
  ]);
  assert.deepEqual([...gate].sort(), [...ALWAYS_MANAGED].sort());
});
