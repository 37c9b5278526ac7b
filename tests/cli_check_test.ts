/**
 * `mcp-gate check` and `mcp-gate healthcheck` (docs/contract.md §6): the warnings as a table, the
 * report against a real test issuer, the exit codes as operators meet them (a child process:
 * `deno run main.ts`, or the binary named by MCP_GATE_BIN), and the healthcheck against a real
 * gate, including TLS.
 */
import assert from "node:assert/strict";
import { type Env, parseConfig } from "../src/config/mod.ts";
import {
  type CheckWarning,
  configWarnings,
  healthcheckTarget,
  localHostFor,
  runCheck,
  runHealthcheck,
} from "../src/cli/mod.ts";
import { startTestIssuer } from "./helpers/issuer.ts";
import { GATE_BIN, startGate, type TestGate } from "./helpers/gate.ts";
import { closedPort } from "./helpers/net.ts";
import { HAVE_OPENSSL, selfSignedCert } from "./helpers/tls.ts";

const ROOT = new URL("..", import.meta.url);
const RESOURCE = "https://mcp.example.com/mcp";

/** An io that records what is written. */
function memoryIo() {
  let out = "";
  let err = "";
  return {
    stdout: (t: string) => void (out += t),
    stderr: (t: string) => void (err += t),
    out: () => out,
    err: () => err,
  };
}

/** A configuration without any warning: the base every warning row changes one thing of. */
function cleanEnv(extra: Env = {}): Env {
  return {
    UPSTREAM_URL: "http://127.0.0.1:3000/mcp",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: "https://auth.example.com/realms/mcp",
    SCOPES_SUPPORTED: "mcp:tools",
    REQUIRED_SCOPES: "mcp:tools",
    ...extra,
  };
}

const ids = (warnings: CheckWarning[]) => warnings.map((w) => w.id);

// ---------------------------------------------------------------------------------------------
// check: warnings

Deno.test("configWarnings() is silent for a configuration that suits Claude", () => {
  assert.deepEqual(configWarnings(parseConfig(cleanEnv())), []);
});

Deno.test("configWarnings() flags settings that validate but break real clients", async (t) => {
  const rows: [string, Env, CheckWarning["id"][]][] = [
    [
      "a RESOURCE_URI with a trailing slash",
      { RESOURCE_URI: `${RESOURCE}/` },
      ["resource_trailing_slash"],
    ],
    [
      "an origin-only RESOURCE_URI written with its slash",
      { RESOURCE_URI: "https://mcp.example.com/" },
      ["resource_trailing_slash"],
    ],
    [
      "an http resource on a public host",
      { RESOURCE_URI: "http://mcp.example.com/mcp" },
      ["resource_not_https"],
    ],
    [
      "an http authorization server on a public host",
      { AUTHORIZATION_SERVER: "http://auth.example.com/realms/mcp" },
      ["authorization_server_not_https"],
    ],
    ["no SCOPES_SUPPORTED", { SCOPES_SUPPORTED: "", REQUIRED_SCOPES: "" }, ["no_scopes_supported"]],
    [
      "a required scope clients are not told about",
      { SCOPES_SUPPORTED: "mcp:tools", REQUIRED_SCOPES: "mcp:tools mcp:admin" },
      ["required_scope_not_advertised"],
    ],
    [
      "an audience that is not the resource (a client ID)",
      { EXPECTED_AUDIENCE: "my-client-id" },
      ["audience_without_resource"],
    ],
  ];
  for (const [name, extra, want] of rows) {
    await t.step(name, () => {
      const warnings = configWarnings(parseConfig(cleanEnv(extra)));
      assert.deepEqual(ids(warnings), want);
      for (const w of warnings) assert.match(w.message, /^[A-Za-z"]/);
    });
  }
});

Deno.test("configWarnings() accepts http on loopback hosts and audiences listing the resource", async (t) => {
  const rows: [string, Env][] = [
    ["http://localhost resource", { RESOURCE_URI: "http://localhost:8000/mcp" }],
    ["http://127.0.0.1 authorization server", { AUTHORIZATION_SERVER: "http://127.0.0.1:8080" }],
    ["http://[::1] resource", { RESOURCE_URI: "http://[::1]:8000/mcp" }],
    ["audience list with the resource and a client ID", {
      EXPECTED_AUDIENCE: `my-client-id,${RESOURCE}`,
    }],
    ["audience with the resource plus a slash", { EXPECTED_AUDIENCE: `${RESOURCE}/` }],
  ];
  for (const [name, extra] of rows) {
    await t.step(
      name,
      () => assert.deepEqual(ids(configWarnings(parseConfig(cleanEnv(extra)))), []),
    );
  }
});

// ---------------------------------------------------------------------------------------------
// check: the report

Deno.test("runCheck() prints the effective config, the metadata document and the key set, exit 0", async () => {
  await using issuer = await startTestIssuer({ path: "/realms/mcp" });
  const config = parseConfig(cleanEnv({ AUTHORIZATION_SERVER: issuer.issuer }));
  const io = memoryIo();
  const code = await runCheck(config, { io });
  assert.equal(code, 0, io.err());
  const out = io.out();
  assert.ok(out.includes(`"resourceUri": "${RESOURCE}"`), out);
  assert.ok(out.includes(`"authorizationServer": "${issuer.issuer}"`));
  assert.ok(
    out.includes(
      "Protected resource metadata (RFC 9728), served at " +
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp:\n",
    ),
  );
  assert.ok(out.includes(`"authorization_servers": [\n      "${issuer.issuer}"\n    ]`), out);
  assert.ok(out.includes(`  issuer tokens must carry: ${issuer.issuer}\n`));
  assert.ok(out.includes(`  jwks_uri:                 ${issuer.jwksUri}\n`));
  assert.ok(out.includes("  keys:                     1 usable\n"));
  assert.ok(out.includes(`    kid "${issuer.current.kid}" RSA RS256\n`), out);
  assert.ok(out.includes("Warnings: none\n"));
  assert.ok(out.endsWith("\nOK: configuration valid, key set loaded\n"));
  assert.equal(io.err(), "");
  assert.equal(issuer.discoveryFetchCount > 0, true, "discovery ran");
  assert.equal(issuer.jwksFetchCount, 1, "the key set was fetched once");
});

Deno.test("runCheck() exits 1 and says why when the key set cannot be fetched", async () => {
  await using issuer = await startTestIssuer();
  issuer.jwksMode("503");
  const config = parseConfig(cleanEnv({ AUTHORIZATION_SERVER: issuer.issuer }));
  const io = memoryIo();
  const code = await runCheck(config, { io, fetchTimeoutMs: 2000 });
  assert.equal(code, 1);
  assert.match(io.err(), /^mcp-gate: check failed: .*503.*\n$/m);
  assert.ok(io.out().includes("Effective configuration:\n"), "the config is printed anyway");
  assert.ok(!io.out().includes("OK:"));
});

Deno.test("runCheck() exits 1 when discovery finds no authorization server", async () => {
  await using issuer = await startTestIssuer({ discovery: "none" });
  const config = parseConfig(cleanEnv({ AUTHORIZATION_SERVER: issuer.issuer }));
  const io = memoryIo();
  assert.equal(await runCheck(config, { io, fetchTimeoutMs: 2000 }), 1);
  assert.ok(
    io.out().includes("  issuer tokens must carry: (unknown: discovery failed)\n"),
    io.out(),
  );
  assert.match(io.err(), /^mcp-gate: check failed: /m);
});

Deno.test("runCheck() warns when the discovered issuer differs from AUTHORIZATION_SERVER", async () => {
  await using issuer = await startTestIssuer();
  // EXPECTED_ISSUER overrides what tokens must carry; clients still compare the AS metadata.
  const config = parseConfig(cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    JWKS_URI: issuer.jwksUri,
    EXPECTED_ISSUER: `${issuer.issuer}/other`,
  }));
  const io = memoryIo();
  assert.equal(await runCheck(config, { io }), 0, io.err());
  assert.ok(io.out().includes("[issuer_differs_from_authorization_server]"), io.out());
  assert.ok(io.out().includes("Warnings (1):\n"));
});

Deno.test("runCheck() lists every configuration warning in the report, still exit 0", async () => {
  await using issuer = await startTestIssuer();
  const config = parseConfig(cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    RESOURCE_URI: `${RESOURCE}/`,
    SCOPES_SUPPORTED: "",
    REQUIRED_SCOPES: "",
  }));
  const io = memoryIo();
  assert.equal(await runCheck(config, { io }), 0);
  assert.ok(io.out().includes("Warnings (2):\n"), io.out());
  assert.ok(io.out().includes("  - [resource_trailing_slash] RESOURCE_URI"));
  assert.ok(io.out().includes("  - [no_scopes_supported] SCOPES_SUPPORTED is empty"));
});

// ---------------------------------------------------------------------------------------------
// check and healthcheck as a process

/** `mcp-gate <args>` as a child process: the binary when MCP_GATE_BIN is set, else deno run. */
async function mcpGate(args: string[], env: Env) {
  const full: Record<string, string> = { NO_COLOR: "1" };
  if (!GATE_BIN) {
    // Only what Deno itself needs to find its cache; the binary gets nothing of ours.
    for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
      const value = Deno.env.get(name);
      if (value !== undefined) full[name] = value;
    }
  }
  for (const [k, v] of Object.entries(env)) if (v !== undefined) full[k] = v;
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

Deno.test("mcp-gate check exits 0 with a reachable issuer, 1 with an unreachable one, 2 on bad config", async (t) => {
  await using issuer = await startTestIssuer();
  await t.step("0: valid config, key set fetched", async () => {
    const r = await mcpGate(["check"], cleanEnv({ AUTHORIZATION_SERVER: issuer.issuer }));
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes("OK: configuration valid, key set loaded\n"));
  });
  await t.step("1: the key set cannot be fetched", async () => {
    const r = await mcpGate(
      ["check"],
      cleanEnv({ AUTHORIZATION_SERVER: "http://127.0.0.1:9", JWKS_URI: "http://127.0.0.1:9/jwks" }),
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mcp-gate: check failed: /m);
  });
  await t.step("2: bad configuration, one stderr line", async () => {
    const r = await mcpGate(["check"], { RESOURCE_URI: RESOURCE });
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.equal(
      r.stderr,
      'mcp-gate: invalid configuration: Missing "UPSTREAM_URL": required; ' +
        'Missing "AUTHORIZATION_SERVER": required\n',
    );
  });
  await t.step("2: stray arguments", async () => {
    const r = await mcpGate(["check", "now"], {});
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^mcp-gate: check takes no arguments, got "now"\n/);
  });
});

/** Waits until the gate answers /readyz with 200. */
async function ready(gate: TestGate): Promise<void> {
  await gate.waitForLog((l) => l.msg === "key set loaded", 10_000);
}

Deno.test("mcp-gate healthcheck exits 0 once the gate is ready and 1 when nothing listens", async (t) => {
  await using issuer = await startTestIssuer();
  await using gate = await startGate({
    UPSTREAM_URL: "http://127.0.0.1:9",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: issuer.issuer,
  });
  await ready(gate);
  const env = {
    UPSTREAM_URL: "http://127.0.0.1:9",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: issuer.issuer,
  };
  await t.step("0: LISTEN_ADDR 0.0.0.0:<port> is probed on 127.0.0.1", async () => {
    const r = await mcpGate(["healthcheck"], { ...env, LISTEN_ADDR: `0.0.0.0:${gate.port}` });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `ok: GET http://127.0.0.1:${gate.port}/readyz: 200\n`);
  });
  await t.step("0: an explicit URL, no configuration needed", async () => {
    const r = await mcpGate(["healthcheck", `${gate.origin}/livez`], {});
    assert.equal(r.code, 0, r.stderr);
  });
  await t.step("1: nothing listens there", async () => {
    const port = closedPort();
    const r = await mcpGate(["healthcheck"], { ...env, LISTEN_ADDR: `127.0.0.1:${port}` });
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`^mcp-gate: healthcheck: GET http://127\\.0\\.0\\.1:${port}/readyz: `),
    );
  });
  await t.step("1 (never Docker's reserved 2): invalid configuration", async () => {
    const r = await mcpGate(["healthcheck"], {});
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mcp-gate: healthcheck: invalid configuration: Missing "UPSTREAM_URL"/);
  });
});

// ---------------------------------------------------------------------------------------------
// healthcheck in-process

Deno.test("localHostFor() turns wildcard listen hosts into loopback", async (t) => {
  const rows: [string, string][] = [
    ["0.0.0.0", "127.0.0.1"],
    ["::", "::1"],
    ["127.0.0.1", "127.0.0.1"],
    ["10.1.2.3", "10.1.2.3"],
    ["::1", "::1"],
  ];
  for (const [hostname, want] of rows) {
    await t.step(
      `${hostname} -> ${want}`,
      () => assert.equal(localHostFor({ hostname, port: 1 }), want),
    );
  }
});

Deno.test("healthcheckTarget() picks the listener, the metrics listener under TLS, else TLS itself", async (t) => {
  const base = cleanEnv({ LISTEN_ADDR: ":8443", METRICS_ADDR: ":9090" });
  await t.step("plain listener: http on loopback", () => {
    assert.deepEqual(healthcheckTarget(parseConfig({ ...base, LISTEN_ADDR: "0.0.0.0:8080" })), {
      kind: "http",
      url: "http://127.0.0.1:8080/readyz",
    });
  });
  await t.step("IPv6 wildcard: [::1]", () => {
    assert.deepEqual(healthcheckTarget(parseConfig({ ...base, LISTEN_ADDR: "[::]:8080" })), {
      kind: "http",
      url: "http://[::1]:8080/readyz",
    });
  });
  const tls = { TLS_CERT_FILE: "/etc/tls/cert.pem", TLS_KEY_FILE: "/etc/tls/key.pem" };
  await t.step("TLS with a metrics listener: its plain-http /readyz", () => {
    assert.deepEqual(healthcheckTarget(parseConfig({ ...base, ...tls })), {
      kind: "http",
      url: "http://127.0.0.1:9090/readyz",
    });
  });
  await t.step("TLS without metrics: TLS to loopback, verified for RESOURCE_URI's host", () => {
    assert.deepEqual(healthcheckTarget(parseConfig({ ...base, ...tls, METRICS_ADDR: "" })), {
      kind: "tls",
      hostname: "127.0.0.1",
      port: 8443,
      serverName: "mcp.example.com",
      caFile: "/etc/tls/cert.pem",
      path: "/readyz",
    });
  });
});

Deno.test("runHealthcheck() exits 1 while the gate has no key set (503), 0 once it has", async () => {
  await using issuer = await startTestIssuer();
  issuer.jwksMode("503");
  await using gate = await startGate({
    UPSTREAM_URL: "http://127.0.0.1:9",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: issuer.issuer,
  });
  const env = {
    ...cleanEnv({ AUTHORIZATION_SERVER: issuer.issuer }),
    LISTEN_ADDR: `127.0.0.1:${gate.port}`,
  };
  const before = memoryIo();
  assert.equal(await runHealthcheck([], env, { io: before }), 1);
  assert.equal(before.err(), `mcp-gate: healthcheck: GET ${gate.origin}/readyz: status 503\n`);
  issuer.jwksMode("keys");
  await ready(gate);
  const after = memoryIo();
  assert.equal(await runHealthcheck([], env, { io: after }), 0);
  assert.equal(after.out(), `ok: GET ${gate.origin}/readyz: 200\n`);
});

Deno.test("runHealthcheck() refuses bad usage with exit 1, never 2", async (t) => {
  const rows: [string, string[], RegExp][] = [
    ["two arguments", ["http://127.0.0.1:1/readyz", "x"], /expected at most one URL, got 2/],
    ["not a URL", ["readyz"], /Invalid URL: expected an http or https URL, got "readyz"/],
    ["another scheme", ["ftp://127.0.0.1/readyz"], /Invalid URL/],
  ];
  for (const [name, args, want] of rows) {
    await t.step(name, async () => {
      const io = memoryIo();
      assert.equal(await runHealthcheck(args, {}, { io }), 1);
      assert.match(io.err(), want);
    });
  }
});

Deno.test("runHealthcheck() gives up at its deadline when the listener never answers", async () => {
  // A TCP listener that accepts and then stays silent.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const io = memoryIo();
  const t0 = performance.now();
  const code = await runHealthcheck([`http://127.0.0.1:${listener.addr.port}/readyz`], {}, {
    io,
    timeoutMs: 300,
  });
  (await accepted).close();
  assert.equal(code, 1);
  assert.ok(performance.now() - t0 < 3000);
  assert.match(io.err(), /^mcp-gate: healthcheck: GET http:\/\/127\.0\.0\.1:\d+\/readyz: /);
});

Deno.test("runHealthcheck() speaks TLS to loopback and accepts exactly the certificate in TLS_CERT_FILE", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    if (!HAVE_OPENSSL) {
      await t.step({ name: "openssl is not available", ignore: true, fn() {} });
      return;
    }
    const files = await selfSignedCert({
      dir,
      commonName: "mcp.example.com",
      subjectAltName: "DNS:mcp.example.com",
    });
    const other = await selfSignedCert({ dir, name: "other" });
    await using server = Deno.serve(
      {
        hostname: "127.0.0.1",
        port: 0,
        cert: await Deno.readTextFile(files.cert),
        key: await Deno.readTextFile(files.key),
        onListen() {},
      },
      (req) => new Response(null, { status: new URL(req.url).pathname === "/readyz" ? 200 : 404 }),
    );
    const env = cleanEnv({
      LISTEN_ADDR: `0.0.0.0:${server.addr.port}`,
      METRICS_ADDR: "",
      TLS_CERT_FILE: files.cert,
      TLS_KEY_FILE: files.key,
    });
    await t.step("0: the server's certificate is the one in TLS_CERT_FILE", async () => {
      const io = memoryIo();
      assert.equal(await runHealthcheck([], env, { io }), 0, io.err());
      assert.equal(
        io.out(),
        `ok: GET https://mcp.example.com/readyz via 127.0.0.1:${server.addr.port}: 200\n`,
      );
    });
    await t.step("0: whatever host RESOURCE_URI names (the pin is the certificate)", async () => {
      const io = memoryIo();
      const renamed = { ...env, RESOURCE_URI: "https://other.example.com/mcp" };
      assert.equal(await runHealthcheck([], renamed, { io }), 0, io.err());
    });
    await t.step("1: TLS_CERT_FILE holds another certificate than the server's", async () => {
      const io = memoryIo();
      const pinned = { ...env, TLS_CERT_FILE: other.cert, TLS_KEY_FILE: other.key };
      assert.equal(await runHealthcheck([], pinned, { io }), 1);
      assert.equal(
        io.err(),
        `mcp-gate: healthcheck: GET https://mcp.example.com/readyz via 127.0.0.1:${server.addr.port}: ` +
          `TLS certificate rejected (the server's certificate is not the one in TLS_CERT_FILE ` +
          `"${other.cert}")\n`,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
