/**
 * `mcp-gate check` and `mcp-gate healthcheck` (docs/contract.md §6): the warnings as a table, the
 * report against a real test issuer, the exit codes as operators meet them (a child process:
 * `deno run main.ts`, or the binary named by MCP_GATE_BIN), and the healthcheck against a real
 * gate, including TLS.
 */
import assert from "node:assert/strict";
import {
  CONFIG_ROWS,
  type ConfigWarning,
  configWarnings,
  type Env,
  GO_MCP_GATE_VARIABLES,
  mergeEnvFile,
  parseConfig,
  parseEnvFile,
  startupWarnings,
  unknownVariableWarnings,
} from "../src/config/mod.ts";
import { healthcheckTarget, localHostFor, runCheck, runHealthcheck } from "../src/cli/mod.ts";
import { generateTestKey, hmacJws, startTestIssuer } from "./helpers/issuer.ts";
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
    UPSTREAM_URL: "http://127.0.0.1:3000",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: "https://auth.example.com/realms/mcp",
    SCOPES_SUPPORTED: "mcp:tools",
    REQUIRED_SCOPES: "mcp:tools",
    ...extra,
  };
}

const ids = (warnings: readonly { id: string }[]) => warnings.map((w) => w.id);

// ---------------------------------------------------------------------------------------------
// check: warnings

Deno.test("configWarnings() is silent for a configuration that suits Claude", () => {
  assert.deepEqual(configWarnings(parseConfig(cleanEnv())), []);
});

Deno.test("configWarnings() flags settings that validate but break real clients", async (t) => {
  const rows: [string, Env, ConfigWarning["id"][]][] = [
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
      "an http authorization server on a public host (keys from JWKS_URI)",
      {
        AUTHORIZATION_SERVER: "http://auth.example.com/realms/mcp",
        JWKS_URI: "https://auth.example.com/jwks",
      },
      ["authorization_server_not_https"],
    ],
    [
      "an UPSTREAM_URL that ends with the resource path (/mcp → /mcp/mcp)",
      { UPSTREAM_URL: "http://127.0.0.1:3000/mcp" },
      ["upstream_path_repeats_resource_path"],
    ],
    [
      "the same with a trailing slash and a longer base",
      { UPSTREAM_URL: "http://127.0.0.1:3000/api/mcp/" },
      ["upstream_path_repeats_resource_path"],
    ],
    [
      "keys from JWKS_URI and an EXPECTED_ISSUER that is not AUTHORIZATION_SERVER",
      {
        JWKS_URI: "https://auth.example.com/jwks",
        EXPECTED_ISSUER: "https://sts.example.com/tenant",
      },
      ["issuer_differs_from_authorization_server"],
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
// check: unknown variables

Deno.test("unknownVariableWarnings() flags near misses and Go mcp-gate variables, nothing else", async (t) => {
  const known = new Set(CONFIG_ROWS.map((r) => r.name));
  const rows: [string, Env, [string, string][]][] = [
    ["a typo of JWKS_URI", { JWKS_URL: "x" }, [["JWKS_URL", "JWKS_URI"]]],
    ["RESOURCE_URL for RESOURCE_URI", { RESOURCE_URL: "x" }, [["RESOURCE_URL", "RESOURCE_URI"]]],
    ["lower case", { upstream_url: "x" }, [["upstream_url", "UPSTREAM_URL"]]],
    ["underscores dropped", { LOGLEVEL: "x" }, [["LOGLEVEL", "LOG_LEVEL"]]],
    ["two edits away", { CLOCKSKEWS: "1" }, [["CLOCKSKEWS", "CLOCK_SKEW"]]],
    ["unrelated variables", { HOME: "/root", PATH: "/bin", MCP_GATE_BIN: "x", TZ: "UTC" }, []],
    ["set known variables", { LISTEN_ADDR: ":1", JWKS_URI: "x", LOG_LEVEL: "debug" }, []],
  ];
  for (const [name, env, want] of rows) {
    await t.step(name, () => {
      const got = unknownVariableWarnings(env);
      assert.deepEqual(got.map((w) => w.id), want.map(() => "unknown_variable"));
      got.forEach((w, i) => {
        assert.equal(w.variable, want[i][0]);
        assert.ok(w.message.includes(`did you mean ${want[i][1]}?`), w.message);
      });
    });
  }
  await t.step("a Go mcp-gate variable without a row here", () => {
    const unsupported = GO_MCP_GATE_VARIABLES.filter((n) => !known.has(n));
    for (const name of unsupported) {
      assert.deepEqual(ids(unknownVariableWarnings({ [name]: "1" })), ["unsupported_go_variable"]);
    }
    // Those with a row are known: read off CONFIG_ROWS, not a second list.
    for (const name of GO_MCP_GATE_VARIABLES.filter((n) => known.has(n))) {
      assert.deepEqual(unknownVariableWarnings({ [name]: "1" }), []);
    }
  });
  await t.step("every row's name in lower case is caught, and names the row", () => {
    for (const name of known) {
      const got = unknownVariableWarnings({ [name.toLowerCase()]: "1" });
      assert.equal(got.length, 1, name);
      assert.ok(got[0].message.endsWith(`did you mean ${name}?`), got[0].message);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// check: the report

/** A TCP listener standing in for the upstream (the probe only connects). */
function upstreamListener(): Deno.TcpListener {
  return Deno.listen({ hostname: "127.0.0.1", port: 0 });
}

Deno.test("runCheck() prints the configuration by variable name, the metadata, the upstream and the key set, exit 0", async () => {
  await using issuer = await startTestIssuer({ path: "/realms/mcp" });
  using upstream = upstreamListener();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
  });
  const config = parseConfig(env);
  const io = memoryIo();
  const code = await runCheck(config, { io, env });
  assert.equal(code, 0, io.err());
  const out = io.out();
  assert.match(out, new RegExp(`\\n  RESOURCE_URI +${RESOURCE.replaceAll(".", "\\.")}\\n`), out);
  assert.match(out, /\n {2}LISTEN_ADDR +0\.0\.0\.0:8080 {2}\(default\)\n/);
  assert.match(out, /\n {2}JWKS_URI +\(not set\) {2}\(default\)\n/);
  assert.match(out, /\n {2}CLOCK_SKEW +30s {2}\(default\)\n/);
  assert.match(out, /\n {2}JWKS_REFRESH_INTERVAL +10m {2}\(default\)\n/);
  assert.ok(!out.includes("resourceUri"), "no config field names");
  assert.ok(
    out.includes(
      "Protected resource metadata (RFC 9728), served at " +
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp:\n",
    ),
  );
  assert.ok(out.includes(`"authorization_servers": [\n      "${issuer.issuer}"\n    ]`), out);
  assert.ok(out.includes(`Upstream:\n  /mcp → http://127.0.0.1:${upstream.addr.port}/mcp\n`), out);
  assert.match(
    out,
    new RegExp(
      `  reachable: yes \\(TCP connect to 127\\.0\\.0\\.1:${upstream.addr.port} in \\d+ ms\\)\\n`,
    ),
  );
  assert.ok(out.includes(`  issuer tokens must carry: ${issuer.issuer}\n`));
  assert.ok(out.includes(`  discovered issuer:        ${issuer.issuer}\n`));
  assert.ok(out.includes(`  jwks_uri:                 ${issuer.jwksUri}\n`));
  assert.ok(out.includes("  keys:                     1 usable\n"));
  assert.ok(out.includes(`    kid "${issuer.current.kid}" RSA RS256\n`), out);
  assert.ok(out.endsWith("\nWarnings: none\n\nOK: configuration valid, key set loaded\n"), out);
  assert.equal(io.err(), "");
  assert.equal(issuer.discoveryFetchCount > 0, true, "discovery ran");
  assert.equal(issuer.jwksFetchCount, 1, "the key set was fetched once");
});

Deno.test("runCheck() shows where the resource path lands upstream and warns on /mcp/mcp", async () => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}/mcp`,
  });
  const io = memoryIo();
  assert.equal(await runCheck(parseConfig(env), { io, env }), 0, io.err());
  assert.ok(
    io.out().includes(`  /mcp → http://127.0.0.1:${upstream.addr.port}/mcp/mcp\n`),
    io.out(),
  );
  assert.match(
    io.out(),
    /Warnings \(1\):\n {2}- \[upstream_path_repeats_resource_path\] UPSTREAM_URL/,
  );
  assert.ok(
    io.out().includes(
      `set UPSTREAM_URL to the server's base URL ("http://127.0.0.1:${upstream.addr.port}")`,
    ),
  );
});

Deno.test("runCheck() warns, and still exits 0, when the upstream accepts no connection", async () => {
  await using issuer = await startTestIssuer();
  const port = closedPort();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${port}`,
  });
  const io = memoryIo();
  assert.equal(await runCheck(parseConfig(env), { io, env }), 0, io.err());
  assert.match(
    io.out(),
    new RegExp(`  reachable: no \\(TCP connect to 127\\.0\\.0\\.1:${port}: .+\\)\\n`),
  );
  assert.match(io.out(), /Warnings \(1\):\n {2}- \[upstream_unreachable\] UPSTREAM_URL/);
  assert.ok(io.out().endsWith("\nOK: configuration valid, key set loaded\n"));
});

Deno.test("runCheck() probes an https upstream with the TLS handshake, its certificate verified", async (t) => {
  if (!HAVE_OPENSSL) {
    await t.step({ name: "openssl is not available", ignore: true, fn() {} });
    return;
  }
  const dir = await Deno.makeTempDir();
  try {
    const files = await selfSignedCert({
      dir,
      commonName: "127.0.0.1",
      subjectAltName: "IP:127.0.0.1",
    });
    const cert = await Deno.readTextFile(files.cert);
    await using upstream = Deno.serve(
      {
        hostname: "127.0.0.1",
        port: 0,
        cert,
        key: await Deno.readTextFile(files.key),
        onListen() {},
      },
      () => new Response("ok"),
    );
    await using issuer = await startTestIssuer();
    const env = cleanEnv({
      AUTHORIZATION_SERVER: issuer.issuer,
      UPSTREAM_URL: `https://127.0.0.1:${upstream.addr.port}`,
    });
    const config = parseConfig(env);
    await t.step("a certificate nobody trusts: unreachable, a warning", async () => {
      const io = memoryIo();
      assert.equal(await runCheck(config, { io, env }), 0, io.err());
      assert.match(io.out(), / {2}reachable: no \(TLS handshake with 127\.0\.0\.1:\d+: .*\)\n/);
      assert.ok(io.out().includes("[upstream_unreachable]"));
    });
    await t.step("the same certificate trusted: reachable", async () => {
      const io = memoryIo();
      assert.equal(await runCheck(config, { io, env, upstreamCaCerts: [cert] }), 0, io.err());
      assert.match(
        io.out(),
        / {2}reachable: yes \(TLS handshake with 127\.0\.0\.1:\d+ in \d+ ms\)\n/,
      );
      assert.ok(io.out().includes("Warnings: none\n"), io.out());
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runCheck() exits 1 and says why when the key set cannot be fetched", async () => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  issuer.jwksMode("503");
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
  });
  const io = memoryIo();
  const code = await runCheck(parseConfig(env), { io, env, fetchTimeoutMs: 2000 });
  assert.equal(code, 1);
  assert.match(io.err(), /^mcp-gate: check failed: .*503.*\n$/m);
  assert.ok(
    io.out().includes("Configuration (from the environment):\n"),
    "the config is printed anyway",
  );
  assert.ok(!io.out().includes("OK:"));
});

Deno.test("runCheck() exits 1 when discovery finds no authorization server", async () => {
  await using issuer = await startTestIssuer({ discovery: "none" });
  const config = parseConfig(cleanEnv({ AUTHORIZATION_SERVER: issuer.issuer }));
  const io = memoryIo();
  assert.equal(await runCheck(config, { io, fetchTimeoutMs: 2000, probeTimeoutMs: 500 }), 1);
  assert.ok(
    io.out().includes("  issuer tokens must carry: (unknown: discovery failed)\n"),
    io.out(),
  );
  assert.match(io.err(), /^mcp-gate: check failed: /m);
});

Deno.test("runCheck() fails when EXPECTED_ISSUER contradicts the discovered issuer: every token would be rejected", async () => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
    EXPECTED_ISSUER: `${issuer.issuer}/other`,
  });
  const io = memoryIo();
  assert.equal(await runCheck(parseConfig(env), { io, env }), 1);
  assert.match(
    io.err(),
    new RegExp(
      `^mcp-gate: check failed: EXPECTED_ISSUER "${issuer.issuer}/other" differs from the issuer "${issuer.issuer}" .* every token is rejected`,
      "m",
    ),
  );
  assert.ok(!io.out().includes("OK:"));
});

Deno.test("runCheck() warns when keys come from JWKS_URI and EXPECTED_ISSUER is not AUTHORIZATION_SERVER", async () => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  // Nothing is discovered: tokens must carry EXPECTED_ISSUER; clients still compare the AS metadata.
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
    JWKS_URI: issuer.jwksUri,
    EXPECTED_ISSUER: `${issuer.issuer}/other`,
  });
  const io = memoryIo();
  assert.equal(await runCheck(parseConfig(env), { io, env }), 0, io.err());
  assert.ok(
    io.out().includes("Warnings (1):\n  - [issuer_differs_from_authorization_server]"),
    io.out(),
  );
});

Deno.test("runCheck() lists every warning at the end, unknown variables included, still exit 0", async () => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
    RESOURCE_URI: `${RESOURCE}/`,
    SCOPES_SUPPORTED: "",
    REQUIRED_SCOPES: "",
    JWKS_URL: "https://typo.example.com/jwks",
  });
  const io = memoryIo();
  assert.equal(await runCheck(parseConfig(env), { io, env }), 0);
  const out = io.out();
  const at = out.indexOf("Warnings (3):\n");
  assert.ok(at > out.indexOf("Authorization server:\n"), out);
  assert.ok(out.includes("  - [resource_trailing_slash] RESOURCE_URI"));
  assert.ok(out.includes("  - [no_scopes_supported] SCOPES_SUPPORTED is empty"));
  assert.ok(out.includes("  - [unknown_variable] JWKS_URL is not a variable of this gate"));
});

// serve logs "setting not fully applied" for IDLE_TIMEOUT (src/server.ts runtimeLimits); check and
// serve know the same things, and the migration guide says check names what cannot be honoured.
Deno.test("runCheck() warns that a set IDLE_TIMEOUT is not applied, as serve does at start", async () => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
    IDLE_TIMEOUT: "120s",
  });
  const io = memoryIo();
  assert.equal(await runCheck(parseConfig(env), { io, env }), 0);
  const out = io.out();
  const warnings = out.slice(Math.max(0, out.indexOf("Warnings (")));
  assert.match(warnings, /Warnings \(\d+\):\n[^]*IDLE_TIMEOUT/, out);
});

// ---------------------------------------------------------------------------------------------
// check --token

Deno.test("runCheck() with a token explains each rule against a real issuer, never printing the token", async (t) => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
  });
  const config = parseConfig(env);
  const now = Math.floor(Date.now() / 1000);
  const stranger = await generateTestKey("RS256");
  const rows: [string, () => Promise<string>, number, string[], string][] = [
    ["a good token", () => issuer.mint({ scope: "mcp:tools" }), 0, [], 'accepted for sub "user-1"'],
    [
      "the wrong audience",
      () => issuer.mint({ scope: "mcp:tools", aud: "https://other.example.com" }),
      1,
      ["aud"],
      "refused: 401 invalid_token (reason audience)",
    ],
    [
      "expired",
      () => issuer.mint({ scope: "mcp:tools", iat: now - 7200, exp: now - 3600 }),
      1,
      ["exp/nbf/iat"],
      "refused: 401 invalid_token (reason expired)",
    ],
    [
      "an algorithm not allowed (HS256 keyed with the kid of a real key)",
      () =>
        hmacJws({
          header: { alg: "HS256", kid: issuer.current.kid, typ: "at+jwt" },
          payload: {
            iss: issuer.issuer,
            aud: RESOURCE,
            sub: "u",
            exp: now + 300,
            scope: "mcp:tools",
          },
          secret: new TextEncoder().encode("secret"),
        }),
      1,
      ["alg allowed"],
      "refused: 401 invalid_token (reason alg)",
    ],
    [
      "a missing scope",
      () => issuer.mint({ scope: "other" }),
      1,
      ["scopes"],
      "refused: 403 insufficient_scope (reason scope)",
    ],
    [
      "an unknown kid",
      () => issuer.mint({ scope: "mcp:tools" }, { key: stranger }),
      1,
      ["key"],
      "refused: 401 invalid_token (reason unknown_kid)",
    ],
  ];
  for (const [name, mint, wantCode, wantFailed, verdict] of rows) {
    await t.step(name, async () => {
      const token = await mint();
      const io = memoryIo();
      const code = await runCheck(config, { io, env, token });
      assert.equal(code, wantCode, io.out() + io.err());
      const out = io.out();
      const section = out.slice(out.indexOf("Token (read from stdin, never printed):\n"));
      const failed = [...section.matchAll(/\[FAIL\] (\S+(?: \S+)?) {2,}/g)].map((m) => m[1].trim());
      assert.deepEqual(failed, wantFailed, section);
      assert.ok(section.includes(`  verdict: ${verdict}\n`), section);
      for (
        const rule of [
          "form",
          "alg allowed",
          "typ",
          "kid",
          "key",
          "signature",
          "iss",
          "aud",
          "exp/nbf/iat",
          "scopes",
        ]
      ) {
        assert.match(
          section,
          new RegExp(`\\[(pass|FAIL|skip)\\] ${rule.replace("/", "\\/")} `),
          rule,
        );
      }
      const everything = out + io.err();
      assert.ok(!everything.includes(token), "the token is never printed");
      assert.ok(!everything.includes(token.split(".")[2]), "nor its signature");
      if (wantCode === 0) {
        assert.ok(out.endsWith("OK: configuration valid, key set loaded, token accepted\n"));
      } else assert.match(io.err(), /^mcp-gate: check failed: the token would be refused/m);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// check and healthcheck as a process

/**
 * `mcp-gate <args>` as a child process: the binary when MCP_GATE_BIN is set, else deno run;
 * `stdin` is written to its standard input (else it has none).
 */
async function mcpGate(args: string[], env: Env, stdin?: string) {
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
  const child = new Deno.Command(program, {
    args: argv,
    cwd: ROOT,
    clearEnv: true,
    env: full,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
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
    assert.match(r.stderr, /^mcp-gate: check: unexpected argument "now"\n/);
  });
  await t.step("2: a token on the command line is refused", async () => {
    const r = await mcpGate(["check", "--token=eyJhbGciOi.x.y"], {});
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^mcp-gate: check: --token takes no value: the token is read from stdin\n/,
    );
    assert.ok(!r.stderr.includes("eyJhbGciOi"));
  });
});

Deno.test("mcp-gate check --env-file reads systemd EnvironmentFile= syntax, the file winning over the environment", async (t) => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/mcp-gate.env`;
    await Deno.writeTextFile(
      path,
      [
        "# systemd EnvironmentFile=",
        "; another comment",
        `AUTHORIZATION_SERVER="${issuer.issuer}"`,
        `UPSTREAM_URL='http://127.0.0.1:${upstream.addr.port}'`,
        "SCOPES_SUPPORTED=mcp:tools \\",
        "  mcp:admin",
        "export LOG_LEVEL=debug",
        "",
      ].join("\n"),
    );
    const env = {
      RESOURCE_URI: RESOURCE,
      AUTHORIZATION_SERVER: "https://overridden.example.com",
      REQUIRED_SCOPES: "mcp:tools",
    };
    await t.step(
      "0: the file's values are used, its export line ignored with a warning",
      async () => {
        const r = await mcpGate(["check", "--env-file", path], env);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(
          r.stdout.includes(`the environment and ${JSON.stringify(path)}, whose values win`),
        );
        assert.match(
          r.stdout,
          new RegExp(
            `\\n  AUTHORIZATION_SERVER +${issuer.issuer.replaceAll(".", "\\.")}  \\(env file\\)\\n`,
          ),
        );
        assert.match(r.stdout, /\n {2}SCOPES_SUPPORTED +mcp:tools,mcp:admin {2}\(env file\)\n/);
        assert.match(r.stdout, /\n {2}LOG_LEVEL +info {2}\(default\)\n/);
        assert.ok(
          r.stdout.includes(`- [env_file_ignored] ${path} line 7: "export LOG_LEVEL"`),
          r.stdout,
        );
      },
    );
    await t.step("2: a file that cannot be read", async () => {
      const r = await mcpGate(["check", "--env-file", `${dir}/missing.env`], env);
      assert.equal(r.code, 2);
      assert.match(
        r.stderr,
        /^mcp-gate: check: cannot read env file ".*missing\.env": not found\n$/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the shipped systemd env file reads cleanly by EnvironmentFile= rules and draws no warning", async () => {
  const path = "deploy/systemd/mcp-gate.env.example";
  const file = parseEnvFile(await Deno.readTextFile(new URL(path, ROOT)));
  assert.deepEqual(file.ignored, []);
  assert.deepEqual(file.commentContinuations, []);
  assert.ok("UPSTREAM_URL" in file.vars && "RESOURCE_URI" in file.vars);
  const env = mergeEnvFile({}, file);
  assert.deepEqual(ids(startupWarnings(parseConfig(env), env)), []);
});

Deno.test("mcp-gate check --token reads the token from stdin and exits 1 when it would be refused", async () => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
  });
  const good = await issuer.mint({ scope: "mcp:tools" });
  const ok = await mcpGate(["check", "--token"], env, `Bearer ${good}\n`);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(ok.stdout.includes('  verdict: accepted for sub "user-1"\n'));
  const bad = await issuer.mint({ scope: "mcp:tools", aud: "https://other.example.com" });
  const refused = await mcpGate(["check", "--token"], env, bad);
  assert.equal(refused.code, 1);
  assert.match(refused.stdout, /\[FAIL\] aud +expected aud/);
  for (const text of [ok.stdout + ok.stderr, refused.stdout + refused.stderr]) {
    assert.ok(!text.includes(good) && !text.includes(bad), "no token in the output");
    assert.ok(!text.includes(good.split(".")[2]) && !text.includes(bad.split(".")[2]));
  }
  const empty = await mcpGate(["check", "--token"], env, "");
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /stdin was empty/);
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

// ---------------------------------------------------------------------------------------------
// serve logs what check knows

Deno.test("serve logs the upstream mapping and check's warnings once at start", async () => {
  await using issuer = await startTestIssuer();
  await using gate = await startGate({
    UPSTREAM_URL: "http://127.0.0.1:9/mcp",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: issuer.issuer,
    SCOPES_SUPPORTED: "mcp:tools",
    JWKS_URL: "https://typo.example.com/jwks",
  });
  await gate.waitForLog((l) => l.msg === "key set loaded", 10_000);
  const logs = gate.logs();
  const mapping = logs.filter((l) => l.msg === "upstream mapping");
  assert.deepEqual(mapping.map((l) => [l.level, l.mapping]), [[
    "info",
    "/mcp → http://127.0.0.1:9/mcp/mcp",
  ]]);
  const warnings = logs.filter((l) => l.msg === "configuration warning");
  assert.deepEqual(warnings.map((l) => [l.level, l.warning, l.variable]), [
    ["warn", "upstream_path_repeats_resource_path", "UPSTREAM_URL"],
    ["warn", "unknown_variable", "JWKS_URL"],
  ]);
  assert.ok(String(warnings[1].reason).endsWith("did you mean JWKS_URI?"));
  assert.ok(!logs.some((l) => l.level === "error"), gate.logText());
});

Deno.test("serve logs an error once discovery shows EXPECTED_ISSUER rejects every token", async () => {
  await using issuer = await startTestIssuer();
  await using gate = await startGate({
    UPSTREAM_URL: "http://127.0.0.1:9",
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: issuer.issuer,
    SCOPES_SUPPORTED: "mcp:tools",
    EXPECTED_ISSUER: `${issuer.issuer}/other`,
  });
  const line = await gate.waitForLog((l) => l.msg === "configuration error", 10_000);
  assert.equal(line.level, "error");
  assert.equal(line.warning, "expected_issuer_differs_from_discovered");
  assert.equal(line.variable, "EXPECTED_ISSUER");
  assert.match(String(line.reason), /every token is rejected/);
  // Discovery ran first: the line names what it found.
  const order = gate.logs().map((l) => l.msg);
  assert.ok(
    order.indexOf("authorization server metadata loaded") < order.indexOf("configuration error"),
  );
});

Deno.test("runCheck() with introspection leaves an opaque token to the endpoint and says so", async () => {
  await using issuer = await startTestIssuer();
  using upstream = upstreamListener();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: issuer.issuer,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
    INTROSPECTION_CLIENT_ID: "gate",
    INTROSPECTION_CLIENT_SECRET: "s3cret",
    INTROSPECTION_URL: `${issuer.origin}/introspect`,
  });
  const token = "opaque-" + crypto.randomUUID();
  const io = memoryIo();
  assert.equal(await runCheck(parseConfig(env), { io, env, token }), 0, io.err());
  assert.ok(
    io.out().includes("  not checked: the introspection endpoint decides this token at run time"),
    io.out(),
  );
  assert.ok(!(io.out() + io.err()).includes(token));
  assert.ok(!io.out().includes("s3cret"), "the client secret is redacted");
});

Deno.test("runCheck() with several issuers explains a token against the key set its iss chooses", async (t) => {
  await using first = await startTestIssuer();
  await using second = await startTestIssuer();
  using upstream = upstreamListener();
  const env = cleanEnv({
    AUTHORIZATION_SERVER: `${first.issuer},${second.issuer}`,
    UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
  });
  const config = parseConfig(env);
  await t.step("a token of the second issuer", async () => {
    const io = memoryIo();
    const token = await second.mint({ scope: "mcp:tools" });
    assert.equal(await runCheck(config, { io, env, token }), 0, io.out() + io.err());
    assert.ok(io.out().includes(`Authorization server "${second.issuer}":\n`), io.out());
    assert.ok(
      io.out().includes(`[pass] issuer's key set  iss ${JSON.stringify(second.issuer)} chooses`),
      io.out(),
    );
  });
  await t.step("a token naming neither", async () => {
    const io = memoryIo();
    const token = await second.mint({ scope: "mcp:tools", iss: "https://elsewhere.example.com" });
    assert.equal(await runCheck(config, { io, env, token }), 1);
    assert.match(
      io.out(),
      /\[FAIL\] issuer's key set {2}iss "https:\/\/elsewhere\.example\.com" names no configured issuer/,
    );
    assert.ok(io.out().includes("verdict: refused: 401 invalid_token (reason issuer)"), io.out());
  });
});
