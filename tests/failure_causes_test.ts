/**
 * Failures name their cause (issue 10): `mcp-gate check` and `mcp-gate healthcheck` as operators
 * run them (a child process: `deno run main.ts`, or the binary named by MCP_GATE_BIN) print why a
 * network operation failed (connection refused, DNS, TLS certificate), never just "fetch failed",
 * and never a credential from a URL; the TLS healthcheck accepts the certificate a real gate
 * serves, even the CA:TRUE one `openssl req -x509` makes by default.
 */
import assert from "node:assert/strict";
import { startTestIssuer } from "./helpers/issuer.ts";
import { GATE_BIN } from "./helpers/gate.ts";
import { closedPort } from "./helpers/net.ts";
import { spawnGate } from "./helpers/process.ts";
import { runHealthcheck } from "../src/cli/mod.ts";
import { HAVE_OPENSSL, selfSignedCert } from "./helpers/tls.ts";

const ROOT = new URL("..", import.meta.url);
const RESOURCE = "https://mcp.example.com/mcp";

/** `mcp-gate <args>` to completion with exactly `env` (plus what `deno` needs to find its cache). */
async function mcpGate(args: string[], env: Record<string, string> = {}) {
  const full: Record<string, string> = { NO_COLOR: "1", ...env };
  if (!GATE_BIN) {
    for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
      const value = Deno.env.get(name);
      if (value !== undefined) full[name] = value;
    }
  }
  const [program, argv] = GATE_BIN
    ? [GATE_BIN, args]
    : [Deno.execPath(), ["run", "--allow-net", "--allow-env", "--allow-read", "main.ts", ...args]];
  const { code, stdout, stderr } = await new Deno.Command(program, {
    args: argv,
    cwd: ROOT,
    clearEnv: true,
    env: full,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code, stdout: d.decode(stdout), stderr: d.decode(stderr) };
}

/** A TLS server on 127.0.0.1 with a self-signed certificate nobody trusts. */
async function untrustedTlsServer(dir: string) {
  const files = await selfSignedCert({ dir, name: "untrusted" });
  return Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(files.cert),
    key: await Deno.readTextFile(files.key),
    onListen() {},
  }, () => new Response("{}"));
}

Deno.test("mcp-gate healthcheck URL says why it could not connect", async (t) => {
  await t.step("a closed port: connection refused", async () => {
    const url = `http://127.0.0.1:${closedPort()}/readyz`;
    const r = await mcpGate(["healthcheck", url]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`^mcp-gate: healthcheck: GET ${url}: connection refused`, "i"),
    );
  });
  await t.step("an unresolvable host: DNS lookup failed", async () => {
    const r = await mcpGate(["healthcheck", "http://gate.invalid/readyz"]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^mcp-gate: healthcheck: GET http:\/\/gate\.invalid\/readyz: DNS lookup failed/,
    );
  });
  await t.step({
    name: "an untrusted certificate: TLS certificate rejected",
    ignore: !HAVE_OPENSSL,
    async fn() {
      const dir = await Deno.makeTempDir();
      try {
        await using server = await untrustedTlsServer(dir);
        const url = `https://127.0.0.1:${server.addr.port}/readyz`;
        const r = await mcpGate(["healthcheck", url]);
        assert.equal(r.code, 1);
        assert.match(
          r.stderr,
          new RegExp(`^mcp-gate: healthcheck: GET ${url}: TLS certificate rejected`),
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
  await t.step("credentials in the URL are never printed", async () => {
    const port = closedPort();
    const r = await mcpGate([
      "healthcheck",
      `http://probe:hunter2-pw@127.0.0.1:${port}/readyz?token=tkn-7`,
    ]);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr.split(": connection refused")[0],
      `mcp-gate: healthcheck: GET http://[redacted]@127.0.0.1:${port}/readyz?token=[redacted]`,
    );
    assert.ok(!/hunter2|tkn-7/.test(r.stderr), r.stderr);
  });
});

Deno.test("mcp-gate healthcheck with a base URL probes its /readyz", async (t) => {
  const paths: string[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    paths.push(path);
    return new Response(null, { status: path === "/readyz" ? 200 : 404 });
  });
  const origin = `http://127.0.0.1:${server.addr.port}`;
  for (const arg of [origin, `${origin}/`]) {
    await t.step(arg, async () => {
      const r = await mcpGate(["healthcheck", arg]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `ok: GET ${origin}/readyz: 200\n`);
    });
  }
  await t.step("a URL with a path is probed as given", async () => {
    const r = await mcpGate(["healthcheck", `${origin}/livez`]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `mcp-gate: healthcheck: GET ${origin}/livez: status 404\n`);
  });
  assert.deepEqual(paths, ["/readyz", "/readyz", "/livez"]);
});

Deno.test("mcp-gate check names the reason the key set could not be fetched", async (t) => {
  const base = {
    UPSTREAM_URL: "http://127.0.0.1:9",
    RESOURCE_URI: RESOURCE,
    METRICS_ADDR: "",
  };
  await t.step("a closed port: connection refused", async () => {
    const as = `http://127.0.0.1:${closedPort()}`;
    const r = await mcpGate(["check"], {
      ...base,
      AUTHORIZATION_SERVER: as,
      JWKS_URI: `${as}/jwks`,
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mcp-gate: check failed: .*connection refused/im);
    assert.ok(!/fetch failed/.test(r.stderr), r.stderr);
  });
  await t.step("discovery at an unresolvable host: DNS lookup failed", async () => {
    const r = await mcpGate(["check"], { ...base, AUTHORIZATION_SERVER: "https://as.invalid" });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mcp-gate: check failed: .*DNS lookup failed/m);
  });
  await t.step({
    name: "an untrusted certificate: TLS certificate rejected",
    ignore: !HAVE_OPENSSL,
    async fn() {
      const dir = await Deno.makeTempDir();
      try {
        await using server = await untrustedTlsServer(dir);
        const as = `https://127.0.0.1:${server.addr.port}`;
        const r = await mcpGate(["check"], {
          ...base,
          AUTHORIZATION_SERVER: as,
          JWKS_URI: `${as}/jwks`,
        });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /^mcp-gate: check failed: .*TLS certificate rejected/m);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
  await t.step("a credential in JWKS_URI's query is never printed", async () => {
    const as = `http://127.0.0.1:${closedPort()}`;
    const r = await mcpGate(["check"], {
      ...base,
      AUTHORIZATION_SERVER: as,
      JWKS_URI: `${as}/jwks?token=tkn-secret-9`,
    });
    assert.equal(r.code, 1);
    assert.ok(!(r.stdout + r.stderr).includes("tkn-secret-9"), r.stdout + r.stderr);
    assert.match(r.stderr, /jwks\?token=\[redacted\]/);
  });
});

Deno.test({
  name:
    "mcp-gate healthcheck accepts the CA:TRUE certificate a TLS gate serves (openssl req -x509)",
  ignore: !HAVE_OPENSSL,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await using issuer = await startTestIssuer();
      // openssl's defaults: CA:TRUE, which rustls refuses as a server's own certificate.
      const files = await selfSignedCert({ dir, commonName: "localhost", ca: true });
      const env = {
        UPSTREAM_URL: "http://127.0.0.1:9",
        RESOURCE_URI: RESOURCE,
        AUTHORIZATION_SERVER: issuer.issuer,
        TLS_CERT_FILE: files.cert,
        TLS_KEY_FILE: files.key,
        METRICS_ADDR: "",
      };
      await using gate = await spawnGate(env);
      await gate.waitForLog((l) => l.msg === "key set loaded");
      const r = await mcpGate(["healthcheck"], { ...env, LISTEN_ADDR: `0.0.0.0:${gate.port}` });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.stdout,
        `ok: GET https://mcp.example.com/readyz via 127.0.0.1:${gate.port}: 200\n`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "runHealthcheck() over TLS gives up at its deadline and says so when the listener never " +
    "completes a handshake",
  ignore: !HAVE_OPENSSL,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const files = await selfSignedCert({ dir });
      // Accepts and then stays silent: no ServerHello ever comes.
      using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const accepted = listener.accept();
      let err = "";
      const code = await runHealthcheck([], {
        UPSTREAM_URL: "http://127.0.0.1:9",
        RESOURCE_URI: RESOURCE,
        AUTHORIZATION_SERVER: "https://as.example.com",
        LISTEN_ADDR: `127.0.0.1:${listener.addr.port}`,
        METRICS_ADDR: "",
        TLS_CERT_FILE: files.cert,
        TLS_KEY_FILE: files.key,
      }, { io: { stdout: () => {}, stderr: (t) => void (err += t) }, timeoutMs: 300 });
      (await accepted).close();
      assert.equal(code, 1);
      assert.match(err, /: Timed out after 300 ms\n$/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
