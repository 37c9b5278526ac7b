import assert from "node:assert/strict";
import {
  Http1Client,
  type Http1ClientOptions,
  type Http1Error,
  type Http1ExchangeResult,
  type Http1Request,
  type Http1Response,
} from "./client.ts";
import { readRequestHead, startRawUpstream, writeText } from "../../tests/helpers/upstream.ts";

const dec = new TextDecoder();

function client(port: number, options: Partial<Http1ClientOptions> = {}): Http1Client & Disposable {
  const c = new Http1Client({ hostname: "127.0.0.1", port, ...options });
  return Object.assign(c, { [Symbol.dispose]: () => c.close() });
}

function get(path = "/", extra: Partial<Http1Request> = {}): Http1Request {
  return {
    head: `GET ${path} HTTP/1.1\r\nhost: up\r\n\r\n`,
    method: "GET",
    body: null,
    chunked: false,
    headersTimeoutMs: 3000,
    ...extra,
  };
}

/** A POST of `body`: framed by Content-Length for bytes, chunked for a stream. */
function post(
  path: string,
  body: Uint8Array | ReadableStream<Uint8Array>,
  extra: Partial<Http1Request> = {},
): Http1Request {
  const chunked = body instanceof ReadableStream;
  const framing = chunked ? "transfer-encoding: chunked" : `content-length: ${body.length}`;
  return {
    head: `POST ${path} HTTP/1.1\r\nhost: up\r\n${framing}\r\n\r\n`,
    method: "POST",
    body,
    chunked,
    headersTimeoutMs: 3000,
    ...extra,
  };
}

/** A GET whose exchange results (onEnd) are collected in `results`. */
function trackedGet(): { request: Http1Request; results: Http1ExchangeResult[] } {
  const results: Http1ExchangeResult[] = [];
  return { request: get("/", { onEnd: (r) => results.push(r) }), results };
}

async function text(body: Uint8Array | ReadableStream<Uint8Array> | null): Promise<string> {
  if (body === null) return "";
  if (body instanceof Uint8Array) return dec.decode(body);
  return await new Response(body).text();
}

/** A raw upstream answering each request on a connection with the next scripted reply. */
function scripted(replies: string[][]) {
  const seen: string[][] = [];
  const up = startRawUpstream(async (conn, index) => {
    seen[index] = [];
    for (const reply of replies[index] ?? []) {
      const head = await readRequestHead(conn);
      if (head === null) return;
      seen[index].push(head);
      if (reply === "") return; // close without answering
      await writeText(conn, reply);
    }
    // Keep the connection open until the client closes it.
    await conn.read(new Uint8Array(1)).catch(() => null);
  });
  return Object.assign(up, { seen });
}

const OK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

Deno.test("Http1Client skips 1xx interim responses", async () => {
  await using up = scripted([[
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" + OK,
  ]]);
  using c = client(up.port);
  const res = await c.request(get());
  assert.equal(res.status, 200);
  assert.equal(await text(res.body), "ok");
  assert.equal(res.head.headers.find(([n]) => n === "link"), undefined);
});

Deno.test("Http1Client parses a head that arrives one byte at a time", async () => {
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    for (const ch of "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello") {
      await writeText(conn, ch);
    }
    await conn.read(new Uint8Array(1)).catch(() => null);
  });
  using c = client(up.port);
  const res = await c.request(get());
  assert.deepEqual(res.head.headers[0], ["x-a", "1"]);
  assert.equal(await text(res.body), "hello");
});

Deno.test("Http1Client refuses a response head over the size limit", async () => {
  await using up = scripted([[`HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(70_000)}\r\n\r\n`]]);
  using c = client(up.port);
  await assert.rejects(c.request(get()), (e: Http1Error) => e.kind === "protocol");
});

Deno.test("Http1Client refuses a response that is not HTTP/1.x", async () => {
  await using up = scripted([["SSH-2.0-OpenSSH_9.6\r\n\r\n"]]);
  using c = client(up.port);
  await assert.rejects(c.request(get()), (e: Http1Error) => e.kind === "protocol");
});

Deno.test("Http1Client reuses a connection only after a complete, reusable response", async (t) => {
  const cases: [string, string, string, boolean][] = [
    ["content-length", OK, "ok", true],
    [
      "chunked with extensions and trailers",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n",
      "ok",
      true,
    ],
    [
      "Connection: close",
      "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
      "ok",
      false,
    ],
    ["HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", false],
    ["bytes after the body", OK + "HTTP/1.1 200 OK\r\n", "ok", false],
  ];
  for (const [name, reply, body, reused] of cases) {
    await t.step(name, async () => {
      await using up = scripted([[reply, OK], [OK]]);
      using c = client(up.port);
      const first = await c.request(get());
      assert.equal(await text(first.body), body);
      await Promise.resolve(); // the pool takes the connection back in a microtask
      const second = await c.request(get());
      assert.equal(await text(second.body), "ok");
      assert.equal(up.accepted, reused ? 1 : 2);
    });
  }
});

Deno.test("Http1Client never reuses a connection after a response with no body by status or method", async (t) => {
  const head = (path = "/") => get(path, { method: "HEAD", head: `HEAD ${path} HTTP/1.1\r\n\r\n` });
  const cases: [string, Http1Request, string][] = [
    ["204", get(), "HTTP/1.1 204 No Content\r\n\r\n"],
    ["304", get(), 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 9\r\n\r\n'],
    ["HEAD", head(), "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"],
    // What the rule is for: the body arrives after the response, where the next request would
    // read it (held back by Nagle's algorithm, it arrives right after that request).
    ["204 with a body sent anyway", get(), "HTTP/1.1 204 No Content\r\nContent-Length: 32\r\n\r\n"],
  ];
  for (const [name, request, reply] of cases) {
    await t.step(name, async () => {
      const stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY";
      await using up = scripted([[reply, stray + OK], [OK]]);
      using c = client(up.port);
      const first = await c.request(request);
      assert.equal(first.body, null);
      await new Promise((r) => setTimeout(r, 5));
      assert.equal(c.idleCount, 0);
      assert.equal(await text((await c.request(get())).body), "ok");
      assert.equal(up.accepted, 2);
    });
  }
});

Deno.test("Http1Client discards an idle pooled connection that receives any byte", async () => {
  const conns: Deno.TcpConn[] = [];
  await using up = startRawUpstream(async (conn, index) => {
    conns[index] = conn;
    conn.setNoDelay(true);
    for (;;) {
      const head = await readRequestHead(conn);
      if (head === null) return;
      await writeText(conn, OK);
    }
  });
  using c = client(up.port);
  assert.equal(await text((await c.request(get())).body), "ok");
  await new Promise((r) => setTimeout(r, 2));
  assert.equal(c.idleCount, 1);
  await conns[0].write(new Uint8Array([0x48])); // one "H", as a response would start
  const deadline = Date.now() + 3000;
  while (c.idleCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  assert.equal(c.idleCount, 0);
  assert.equal(await text((await c.request(get())).body), "ok");
  assert.equal(up.accepted, 2);
});

Deno.test("Http1Client reports response framing that breaks RFC 9112 as a protocol error", async (t) => {
  const cases: [string, string][] = [
    ["obs-fold", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n 0\r\n\r\nok"],
    ["NUL in a value", "HTTP/1.1 200 OK\r\nX: a\0\r\nContent-Length: 2\r\n\r\nok"],
    ["bare CR", "HTTP/1.1 200 OK\r\nX: a\rContent-Length: 2\r\n\r\nok"],
    ["space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"],
    ["status line", "HTTP/1.1 200\tOK\r\nContent-Length: 2\r\n\r\nok"],
    [
      "chunk size 5 9",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 9\r\nhello\r\n0\r\n\r\n",
    ],
  ];
  for (const [name, reply] of cases) {
    await t.step(name, async () => {
      await using up = scripted([[reply]]);
      using c = client(up.port);
      await assert.rejects(c.request(get()), (e: Http1Error) => e.kind === "protocol");
    });
  }
  await t.step("a bad chunk-size line mid-stream errors the body", async () => {
    await using up = startRawUpstream(async (conn) => {
      await readRequestHead(conn);
      await writeText(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n");
      await new Promise((r) => setTimeout(r, 20));
      await writeText(conn, "5;\r\nhello\r\n0\r\n\r\n");
      await conn.read(new Uint8Array(1)).catch(() => null);
    });
    using c = client(up.port);
    const res = await c.request(get());
    await assert.rejects(text(res.body));
  });
});

Deno.test("Http1Client reads a body delimited by the connection close", async () => {
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ");
    await writeText(conn, "part two");
  });
  using c = client(up.port);
  const { request, results } = trackedGet();
  const res = await c.request(request);
  assert.equal(await text(res.body), "part one, part two");
  assert.deepEqual(results, [{
    status: 200,
    outcome: "complete",
    bytesSent: 0,
    bytesReceived: 18,
  }]);
  assert.equal(c.idleCount, 0);
});

Deno.test("Http1Client streams a body spanning many reads", async () => {
  const size = 1_000_000;
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, `HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`);
    for (let i = 0; i < size; i += 100_000) await writeText(conn, "z".repeat(100_000));
    await conn.read(new Uint8Array(1)).catch(() => null);
  });
  using c = client(up.port);
  const res = await c.request(get());
  const body = await text(res.body);
  assert.equal(body.length, size);
  assert.equal(body, "z".repeat(size));
});

Deno.test("Http1Client.cutStreams() errors open response bodies, reports client_abort and closes the upstream connection", async () => {
  let eof!: () => void;
  const sawEof = new Promise<void>((r) => eof = r);
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n");
    if (await conn.read(new Uint8Array(1)).catch(() => null) === null) eof();
  });
  using c = client(up.port);
  const { request, results } = trackedGet();
  const res = await c.request(request);
  assert.ok(res.body instanceof ReadableStream);
  const reader = res.body.getReader();
  assert.equal(dec.decode((await reader.read()).value), "data: 1\n\n");
  assert.equal(c.streamingCount, 1);
  const reason = new Error("drain");
  assert.equal(c.cutStreams(reason), 1);
  await assert.rejects(reader.read(), (e) => e === reason);
  assert.deepEqual(results, [{
    status: 200,
    outcome: "client_abort",
    bytesSent: 0,
    bytesReceived: 9,
  }]);
  assert.equal(c.streamingCount, 0);
  assert.equal(c.cutStreams(reason), 0);
  await sawEof;
});

Deno.test("Http1Client counts a body as streaming only until it ends", async () => {
  let more!: () => void;
  const sendMore = new Promise<void>((r) => more = r);
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
    await sendMore;
    await writeText(conn, "world");
    await conn.read(new Uint8Array(1)).catch(() => null);
  });
  using c = client(up.port);
  const res = await c.request(get());
  assert.ok(res.body instanceof ReadableStream);
  assert.equal(c.streamingCount, 1);
  more();
  assert.equal(await text(res.body), "helloworld");
  assert.equal(c.streamingCount, 0);
  assert.equal(c.idleCount, 1);
});

Deno.test("Http1Client times out each waiting exchange on its own deadline while others complete", async () => {
  // Requests for /slow never get an answer; /fast ones are answered at once.
  await using up = startRawUpstream(async (conn) => {
    const head = await readRequestHead(conn);
    if (head?.startsWith("GET /fast")) await writeText(conn, OK);
    await conn.read(new Uint8Array(1)).catch(() => null);
  });
  using c = client(up.port);
  const started = Date.now();
  const slow = [100, 300, 200].map((ms) =>
    c.request(get("/slow", { headersTimeoutMs: ms })).then(
      () => assert.fail("a slow request resolved"),
      (e: Http1Error) => ({ kind: e.kind, ms, after: Date.now() - started }),
    )
  );
  // Completes while the others wait: unlinked from the middle of the waiting list.
  const fast = await c.request(get("/fast", { headersTimeoutMs: 5000 }));
  assert.equal(await text(fast.body), "ok");
  const results = await Promise.all(slow);
  for (const r of results) {
    assert.equal(r.kind, "timeout");
    assert.ok(r.after >= r.ms, `expired after ${r.after} ms, deadline ${r.ms} ms`);
    assert.ok(r.after < r.ms + 1000, `expired after ${r.after} ms, deadline ${r.ms} ms`);
  }
});

Deno.test("Http1Client reads a lazy signal once the head is slow, and aborts on it", async () => {
  let arrived!: () => void;
  const requestArrived = new Promise<void>((r) => arrived = r);
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    arrived();
    await conn.read(new Uint8Array(1)).catch(() => null);
  });
  using c = client(up.port);
  const ac = new AbortController();
  let asked = 0;
  let signalRead!: () => void;
  const signalWasRead = new Promise<void>((r) => signalRead = r);
  const pending = c.request(get("/", {
    headersTimeoutMs: 200, // ticks every 20 ms
    signal: () => {
      asked++;
      signalRead();
      return ac.signal;
    },
  }));
  await requestArrived;
  await signalWasRead;
  ac.abort();
  await assert.rejects(pending, (e: Http1Error) => e.kind === "aborted");
  assert.equal(asked, 1);
});

Deno.test("Http1Client sends a GET again when a pooled connection died before answering", async () => {
  await using up = scripted([[OK, ""], [OK]]);
  using c = client(up.port);
  await text((await c.request(get("/one"))).body);
  await Promise.resolve();
  const res = await c.request(get("/two"));
  assert.equal(await text(res.body), "ok");
  assert.match(up.seen[0][1], /^GET \/two /);
  assert.match(up.seen[1][0], /^GET \/two /, "sent again on a fresh connection");
});

Deno.test("Http1Client never sends a POST with a body twice", async () => {
  await using up = scripted([[OK, ""], [OK]]);
  using c = client(up.port);
  await text((await c.request(get("/one"))).body);
  await Promise.resolve();
  const tools = post("/tools", new TextEncoder().encode("{}"));
  await assert.rejects(c.request(tools), (e: Http1Error) => e.kind === "closed");
  assert.match(up.seen[0][1], /^POST \/tools /);
  assert.equal(up.accepted, 1, "no second connection was opened for it");
});

Deno.test("Http1Client drops a pooled connection the upstream closed while idle", async () => {
  let closed!: () => void;
  const upstreamClosed = new Promise<void>((r) => closed = r);
  await using up = startRawUpstream(async (conn, index) => {
    await readRequestHead(conn);
    await writeText(conn, OK);
    if (index === 0) {
      // Like a keep-alive timeout: close the idle connection after the reply.
      conn.close();
      closed();
      return;
    }
    await conn.read(new Uint8Array(1)).catch(() => null);
  });
  using c = client(up.port);
  await text((await c.request(get())).body);
  await upstreamClosed;
  // The pool notices through the read it keeps pending on idle connections.
  const deadline = Date.now() + 3000;
  while (c.idleCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(c.idleCount, 0);
  // So even a POST (never sent twice) finds a live connection.
  const res = await c.request(post("/", new TextEncoder().encode("{}")));
  assert.equal(await text(res.body), "ok");
  assert.equal(up.accepted, 2);
});

Deno.test("Http1Client aborts before the head when the signal fires", async () => {
  let eof!: () => void;
  const sawEof = new Promise<void>((r) => eof = r);
  let arrived!: () => void;
  const requestArrived = new Promise<void>((r) => arrived = r);
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    arrived();
    if (await conn.read(new Uint8Array(1)).catch(() => null) === null) eof();
  });
  using c = client(up.port);
  const ac = new AbortController();
  const pending = c.request(get("/", { signal: ac.signal }));
  await requestArrived;
  ac.abort();
  await assert.rejects(pending, (e: Http1Error) => e.kind === "aborted");
  await sawEof;
});

Deno.test("Http1Client sends a head byte for byte: ASCII, and a byte string with bytes over 0x7F", async (t) => {
  for (
    const [name, value, bytes] of [
      ["ASCII", "plain", [0x70, 0x6c, 0x61, 0x69, 0x6e]],
      ["byte string", "caf\u00e9\u00ff", [0x63, 0x61, 0x66, 0xe9, 0xff]],
    ] as const
  ) {
    await t.step(name, async () => {
      let received!: (b: Uint8Array) => void;
      const got = new Promise<Uint8Array>((r) => received = r);
      await using up = startRawUpstream(async (conn) => {
        const buf = new Uint8Array(4096);
        let all = new Uint8Array(0);
        // The head and the 4-byte body; read until the body's last byte.
        while (all.length < 4 || all[all.length - 1] !== 0x21) {
          const n = await conn.read(buf);
          if (n === null) break;
          const next = new Uint8Array(all.length + n);
          next.set(all);
          next.set(buf.subarray(0, n), all.length);
          all = next;
        }
        received(all);
        await writeText(conn, OK);
        await conn.read(new Uint8Array(1)).catch(() => null);
      });
      using c = client(up.port);
      const head = `POST / HTTP/1.1\r\nhost: up\r\nx-v: ${value}\r\ncontent-length: 4\r\n\r\n`;
      const res = await c.request({
        head,
        method: "POST",
        body: new TextEncoder().encode("body!").subarray(1),
        chunked: false,
        headersTimeoutMs: 3000,
      });
      assert.equal(await text(res.body), "ok");
      const want = [
        ...new TextEncoder().encode("POST / HTTP/1.1\r\nhost: up\r\nx-v: "),
        ...bytes,
        ...new TextEncoder().encode("\r\ncontent-length: 4\r\n\r\nody!"),
      ];
      assert.deepEqual([...await got], want);
    });
  }
});

Deno.test("Http1Client streams a request body without buffering it", async () => {
  let firstChunk!: () => void;
  const upstreamGotFirst = new Promise<void>((r) => firstChunk = r);
  await using up = startRawUpstream(async (conn) => {
    let got = await readRequestHead(conn) ?? "";
    const buf = new Uint8Array(1024);
    while (!got.includes("first")) got += dec.decode(buf.subarray(0, (await conn.read(buf))!));
    firstChunk();
    while (!got.endsWith("0\r\n\r\n")) got += dec.decode(buf.subarray(0, (await conn.read(buf))!));
    await writeText(conn, OK);
    await conn.read(new Uint8Array(1)).catch(() => null);
  });
  using c = client(up.port);
  const enc = new TextEncoder();
  let step = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(ctl) {
      if (step === 0) ctl.enqueue(enc.encode("first"));
      // The second piece only once the upstream has the first: a buffering client deadlocks.
      else if (step === 1) ctl.enqueue(await upstreamGotFirst.then(() => enc.encode("second")));
      else ctl.close();
      step++;
    },
  });
  const res = await c.request(post("/", body));
  assert.equal(await text(res.body), "ok");
});

Deno.test("Http1Client does not reuse a connection whose request body the upstream did not read", async () => {
  await using up = startRawUpstream(async (conn) => {
    await readRequestHead(conn);
    // Answer at once, before the body (e.g. a 413 from the upstream itself).
    await writeText(conn, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
    await conn.read(new Uint8Array(1)).catch(() => null);
  });
  using c = client(up.port);
  let release!: () => void;
  const never = new Promise<void>((r) => release = r);
  const body = new ReadableStream<Uint8Array>({
    async pull(ctl) {
      ctl.enqueue(new Uint8Array(10));
      await never;
    },
  });
  const ended = Promise.withResolvers<Http1ExchangeResult>();
  const res = await c.request(post("/", body, { onEnd: ended.resolve }));
  assert.equal(res.status, 413);
  assert.equal((await ended.promise).outcome, "complete");
  assert.equal(c.idleCount, 0);
  release();
});

Deno.test("Http1Client talks TLS to an https upstream with injected CA certificates", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const run = (args: string[]) =>
      new Deno.Command("openssl", { args, stdout: "null", stderr: "null" }).output();
    // A CA and a leaf it signed (rustls refuses a CA certificate as the server's own).
    const steps = [
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        .concat(["-days", "1", "-subj", "/CN=test-ca", "-keyout", `${dir}/ca.key`])
        .concat(["-out", `${dir}/ca.pem`]),
      ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        .concat(["-subj", "/CN=localhost", "-keyout", `${dir}/key.pem`, "-out", `${dir}/leaf.csr`]),
      ["x509", "-req", "-in", `${dir}/leaf.csr`, "-CA", `${dir}/ca.pem`, "-CAkey", `${dir}/ca.key`]
        .concat(["-CAcreateserial", "-days", "1", "-out", `${dir}/cert.pem`])
        .concat(["-extfile", `${dir}/ext.cnf`]),
    ];
    await Deno.writeTextFile(
      `${dir}/ext.cnf`,
      "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    for (const args of steps) {
      const made = await run(args).catch(() => null);
      if (made === null || !made.success) {
        await t.step({ name: "openssl is not available", ignore: true, fn() {} });
        return;
      }
    }
    const ca = await Deno.readTextFile(`${dir}/ca.pem`);
    const cert = await Deno.readTextFile(`${dir}/cert.pem`);
    const key = await Deno.readTextFile(`${dir}/key.pem`);
    await using server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", cert, key, onListen() {} },
      () => new Response("secure"),
    );
    await t.step("with the CA it connects", async () => {
      using c = client(server.addr.port, { hostname: "localhost", tls: true, caCerts: [ca] });
      const res = await c.request(get());
      assert.equal(await text(res.body), "secure");
    });
    await t.step("without it the certificate is refused", async () => {
      using c = client(server.addr.port, { hostname: "localhost", tls: true });
      await assert.rejects(c.request(get()), (e: Http1Error) => e.kind === "connect");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A 200 whose body is `body` (ASCII). */
function reply(body: string): string {
  return `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
}

/**
 * An upstream answering every request with its own target as the body; sockets kept in `conns`.
 * No Nagle delay: otherwise bytes written after an unacknowledged response wait in the upstream's
 * kernel for the client's next request to carry the ACK, and arrive after it.
 */
function echoTargets() {
  const conns: Deno.TcpConn[] = [];
  const up = startRawUpstream(async (conn, index) => {
    conns[index] = conn;
    conn.setNoDelay(true);
    for (;;) {
      const head = await readRequestHead(conn);
      if (head === null) return;
      await writeText(conn, reply(head.split(" ")[1]));
    }
  });
  return Object.assign(up, { conns });
}

Deno.test("Http1Client discards a pooled connection whose stray bytes arrive in the same event-loop turn as its reuse", async () => {
  await using up = echoTargets();
  using c = client(up.port);
  // A socket pair whose read result reaches JS in the same batch as the stray bytes and starts
  // the next request in its first turn, before the pooled connection's own read is looked at.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  using trigger = await Deno.connect({ hostname: "127.0.0.1", port });
  using triggered = await listener.accept();
  for (let round = 0; round < 50; round++) {
    let victim!: Promise<Http1Response>;
    const fired = trigger.read(new Uint8Array(1)).then(() => {
      victim = c.request(get(`/victim-${round}`));
    });
    assert.equal(await text((await c.request(get(`/warm-${round}`))).body), `/warm-${round}`);
    await new Promise((r) => setTimeout(r, 2));
    assert.equal(c.idleCount, 1);
    const pooled = up.conns[up.conns.length - 1];
    // Writes on TCP sockets go out at once; blocking the thread meanwhile makes both reads
    // complete in the same poll, so their results reach JS in one batch, the trigger's first
    // (in write order): the request takes the pooled connection before its read is looked at.
    const go = triggered.write(new Uint8Array([1]));
    const stray = pooled.write(new TextEncoder().encode(reply("STRAY")));
    const until = performance.now() + 2;
    while (performance.now() < until) { /* hold the event loop */ }
    await Promise.all([stray, go, fired]);
    assert.equal(await text((await victim).body), `/victim-${round}`);
  }
});

Deno.test("Http1Client never reuses a connection whose response ended before the request body was sent", async () => {
  // An upstream that answers early (a 200 before reading the body) and keeps the connection:
  // the rest of the body could be read as the next request on it (the Expect-style desync).
  const size = 4 * 1024 * 1024;
  let seen = 0;
  let drained!: () => void;
  const allRead = new Promise<void>((r) => (drained = r));
  await using up = startRawUpstream(async (conn) => {
    const head = (await readRequestHead(conn)) ?? "";
    // What came with the head (decoded as text: the body is all "a").
    seen = head.length - head.indexOf("\r\n\r\n") - 4;
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    // Read the rest slowly, so the gate's write is still under way when the response ends.
    await new Promise((r) => setTimeout(r, 100));
    const buf = new Uint8Array(64 * 1024);
    while (seen < size) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      seen += n;
    }
    drained();
    await conn.read(buf).catch(() => null);
  });
  using c = client(up.port);
  const res = await c.request({
    head: `POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: ${size}\r\n\r\n`,
    method: "POST",
    body: new Uint8Array(size).fill(0x61),
    chunked: false,
    headersTimeoutMs: 5000,
  });
  assert.equal(await text(res.body), "ok");
  await allRead;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(c.idleCount, 0, "the connection did not go back to the pool");
});
