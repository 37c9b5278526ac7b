import assert from "node:assert/strict";
import { connect as netConnect } from "node:net";
import fc from "fast-check";
import { describeError, REDACTED, redactSecrets } from "./errors.ts";
import { parseConfig } from "./config/mod.ts";
import { HAVE_OPENSSL, selfSignedCert } from "../tests/helpers/tls.ts";
import { closedPort } from "../tests/helpers/net.ts";

/** The error a promise rejects with. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

Deno.test('describeError() names the real reason of a failed fetch, not just "fetch failed"', async (t) => {
  await t.step("a closed port: connection refused", async () => {
    const e = await rejection(fetch(`http://127.0.0.1:${closedPort()}/jwks`));
    assert.match(describeError(e), /^connection refused \(.*Connection refused/);
  });
  await t.step(
    "an unresolvable host name (*.invalid, RFC 6761 §6.4): DNS lookup failed",
    async () => {
      const e = await rejection(fetch("http://key-set.invalid/jwks"));
      assert.match(describeError(e), /^DNS lookup failed \(/);
    },
  );
  await t.step("a deadline: timed out", async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = listener.accept();
    const e = await rejection(
      fetch(`http://127.0.0.1:${listener.addr.port}/`, { signal: AbortSignal.timeout(100) }),
    );
    (await accepted).close();
    assert.match(describeError(e), /^timed out/);
  });
  await t.step({
    name: "a TLS server whose certificate nobody trusts: TLS certificate rejected",
    ignore: !HAVE_OPENSSL,
    async fn() {
      const dir = await Deno.makeTempDir();
      try {
        const files = await selfSignedCert({ dir });
        await using server = Deno.serve({
          hostname: "127.0.0.1",
          port: 0,
          cert: await Deno.readTextFile(files.cert),
          key: await Deno.readTextFile(files.key),
          onListen() {},
        }, () => new Response("ok"));
        const e = await rejection(fetch(`https://127.0.0.1:${server.addr.port}/`));
        assert.match(describeError(e), /^TLS certificate rejected \(.*UnknownIssuer/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
  await t.step("Deno.connect's own error is already specific", async () => {
    const e = await rejection(Deno.connect({ hostname: "127.0.0.1", port: closedPort() }));
    assert.match(describeError(e), /^Connection refused \(os error \d+\)$/);
  });
  await t.step("node:net (an AggregateError over the addresses tried, or one error)", async () => {
    const port = closedPort();
    const e = await new Promise((resolve) => {
      const socket = netConnect({ host: "localhost", port });
      socket.once("error", (err) => {
        socket.destroy();
        resolve(err);
      });
    });
    assert.match(describeError(e), /^connection refused \(.*ECONNREFUSED/);
  });
});

Deno.test("describeError() walks cause and AggregateError.errors and keeps each message once", () => {
  const inner = new Error("tcp connect error: Connection refused (os error 111)");
  const mid = new Error(
    "error sending request for url (http://127.0.0.1:9/): client error (Connect): " + inner.message,
    { cause: inner },
  );
  assert.equal(
    describeError(new TypeError("fetch failed", { cause: mid })),
    "connection refused (tcp connect error: Connection refused (os error 111))",
  );
  assert.equal(
    describeError(new AggregateError([new Error("a"), new Error("b")], "all failed")),
    "all failed: a: b",
  );
  assert.equal(describeError("plain"), "plain");
  assert.equal(describeError(new TypeError("fetch failed")), "fetch failed");
  const loop = new Error("loop");
  (loop as { cause?: unknown }).cause = loop;
  assert.equal(describeError(loop), "loop");
});

Deno.test("redactSecrets() hides URL user info and credential query values", async (t) => {
  const rows: [string, string][] = [
    ["https://user:pass@as.example.com/jwks", `https://${REDACTED}@as.example.com/jwks`],
    ["http://token@127.0.0.1:9/", `http://${REDACTED}@127.0.0.1:9/`],
    ['got "redis://:s3cret@cache:6379/0"', `got "redis://${REDACTED}@cache:6379/0"`],
    ["https://h/jwks?token=abc&x=1", `https://h/jwks?token=${REDACTED}&x=1`],
    ["https://h/?a=1&password=p%40ss#f", `https://h/?a=1&password=${REDACTED}#f`],
    ["https://h/?client_secret=x", `https://h/?client_secret=${REDACTED}`],
    ["https://h/p@th/x", "https://h/p@th/x"],
    ["no url here", "no url here"],
  ];
  for (const [input, want] of rows) {
    await t.step(input, () => assert.equal(redactSecrets(input), want));
  }
});

/** A password of 12+ characters from URL user info's own alphabet and some that need escapes. */
const password = fc.string({
  unit: fc.constantFrom(
    ..."abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!$&'()*+,;=@:/?#[]% ",
  ),
  minLength: 12,
  maxLength: 40,
});

Deno.test("no generated password ever appears in an error message or a configuration problem", async () => {
  const closed = closedPort();
  await fc.assert(
    fc.asyncProperty(password, fc.constantFrom("user", ""), async (pw, user) => {
      const escaped = encodeURIComponent(pw);
      const withUserinfo = `http://${user}:${escaped}@127.0.0.1:${closed}/jwks`;
      const withQuery = `http://127.0.0.1:${closed}/jwks?token=${escaped}&secret=${escaped}`;
      const texts: string[] = [];
      for (const url of [withUserinfo, withQuery]) {
        texts.push(describeError(await rejection(fetch(url))));
        texts.push(describeError(new Error(`Failed fetching "${url}"`)));
      }
      try {
        parseConfig({
          UPSTREAM_URL: withUserinfo,
          RESOURCE_URI: withQuery,
          AUTHORIZATION_SERVER: withUserinfo,
          JWKS_URI: withQuery,
        });
      } catch (e) {
        texts.push((e as Error).message);
      }
      // Those that quote the URL show where the credential was.
      assert.ok(
        texts.slice(1).every((t, i) => i % 2 === 1 || t.includes(REDACTED)),
        texts.join("\n"),
      );
      for (const text of texts) {
        assert.ok(!text.includes(escaped), `${text} shows ${escaped}`);
        assert.ok(!text.includes(pw), `${text} shows ${pw}`);
      }
    }),
    { numRuns: 40 },
  );
});
