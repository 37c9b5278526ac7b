/**
 * The CLI as operators meet it: `deno run main.ts` in a clean environment, exit codes and the
 * exact stderr lines (docs/contract.md §1 and §6).
 */
import assert from "node:assert/strict";
import { VARIABLES } from "../src/config/mod.ts";
import { VERSION } from "../src/version.ts";

const ROOT = new URL("..", import.meta.url);
const RUN = ["run", "--allow-net", "--allow-env", "--allow-read", "main.ts"];

/** Only what Deno itself needs to find its cache: the gate sees no variable of its own. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

function command(args: string[], env: Record<string, string>): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [...RUN, ...args],
    cwd: ROOT,
    clearEnv: true,
    env: { ...baseEnv(), ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs `mcp-gate <args>` to completion. */
async function gate(args: string[], env: Record<string, string> = {}) {
  const { code, stdout, stderr } = await command(args, env).output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** A configuration that parses; nothing listens at the authorization server's address. */
function validEnv(listen: string): Record<string, string> {
  return {
    UPSTREAM_URL: "http://127.0.0.1:9",
    RESOURCE_URI: "https://mcp.example.com/mcp",
    AUTHORIZATION_SERVER: "http://127.0.0.1:9",
    JWKS_URI: "http://127.0.0.1:9/jwks",
    LISTEN_ADDR: listen,
    METRICS_ADDR: "",
  };
}

Deno.test("mcp-gate without configuration exits 2 naming each missing variable on one stderr line", async () => {
  const { code, stdout, stderr } = await gate([]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.equal(
    stderr,
    'mcp-gate: invalid configuration: Missing "UPSTREAM_URL": required; ' +
      'Missing "RESOURCE_URI": required; Missing "AUTHORIZATION_SERVER": required\n',
  );
});

Deno.test("mcp-gate serve exits 2 listing every bad variable on one stderr line", async () => {
  const { code, stdout, stderr } = await gate(["serve"], {
    ...validEnv("127.0.0.1:0"),
    UPSTREAM_URL: "ftp://x",
    ALLOWED_ALGS: "none",
    MAX_REQUEST_BODY: "10MB",
  });
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.equal(
    stderr,
    "mcp-gate: invalid configuration: " +
      'Invalid "UPSTREAM_URL": expected an http or https URL, got "ftp://x"; ' +
      'Invalid "ALLOWED_ALGS": symmetric and "none" algorithms are never allowed, got "none"; ' +
      'Invalid "MAX_REQUEST_BODY": expected a size in bytes or with a KiB, MiB or GiB suffix, ' +
      'like "10MiB", got "10MB"\n',
  );
});

Deno.test("mcp-gate --version prints the version that deno.json carries, the revision and Deno's version", async () => {
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  assert.equal(VERSION, denoJson.version);
  for (const arg of ["--version", "-V", "version", "-version"]) {
    const { code, stdout, stderr } = await gate([arg]);
    assert.equal(code, 0);
    // deno run: no build file, so no revision.
    assert.equal(stdout, `mcp-gate ${VERSION} (revision unknown, deno ${Deno.version.deno})\n`);
    assert.equal(stderr, "");
  }
});

Deno.test("mcp-gate --help lists every variable with its default and the exit codes", async () => {
  const { code, stdout, stderr } = await gate(["--help"]);
  assert.equal(code, 0);
  assert.equal(stderr, "");
  for (const v of VARIABLES) {
    const shown = v.default === "required" ? "(required)" : `(default: ${v.default})`;
    assert.ok(stdout.includes(`  ${v.name} ${shown}\n`), `${v.name} missing from --help`);
  }
  assert.match(
    stdout,
    /Exit codes:\n {2}0 {2}ok\n {2}1 {2}runtime failure.*\n {2}2 {2}bad configuration/,
  );
});

Deno.test("mcp-gate with an unknown command exits 2 with a usage hint on stderr", async () => {
  const { code, stdout, stderr } = await gate(["frobnicate"]);
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.equal(
    stderr,
    'mcp-gate: unknown command "frobnicate"\nRun "mcp-gate --help" for usage.\n',
  );
});

Deno.test("mcp-gate exits 2 naming TLS_CERT_FILE and TLS_KEY_FILE when they cannot be read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { code, stdout, stderr } = await gate(["serve"], {
      ...validEnv("127.0.0.1:0"),
      TLS_CERT_FILE: `${dir}/cert.pem`,
      TLS_KEY_FILE: `${dir}/key.pem`,
    });
    assert.equal(code, 2);
    assert.equal(stdout, "");
    assert.equal(
      stderr,
      "mcp-gate: invalid configuration: " +
        `Invalid "TLS_CERT_FILE": expected a readable file (not found), got "${dir}/cert.pem"; ` +
        `Invalid "TLS_KEY_FILE": expected a readable file (not found), got "${dir}/key.pem"\n`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mcp-gate exits 1 with one stderr line naming the listener whose address is in use", async (t) => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = busy.addr.port;
  await t.step("LISTEN_ADDR", async () => {
    const { code, stdout, stderr } = await gate(["serve"], validEnv(`127.0.0.1:${port}`));
    assert.equal(code, 1);
    assert.match(
      stderr,
      new RegExp(
        `^mcp-gate: failed to start: Cannot listen on LISTEN_ADDR "127\\.0\\.0\\.1:${port}": ` +
          `Address already in use \\(os error \\d+\\)\n$`,
      ),
    );
    assert.ok(!stdout.includes('"msg":"listening"'), stdout);
  });
  await t.step("METRICS_ADDR", async () => {
    const env = { ...validEnv("127.0.0.1:0"), METRICS_ADDR: `127.0.0.1:${port}` };
    const { code, stdout, stderr } = await gate(["serve"], env);
    assert.equal(code, 1);
    assert.match(
      stderr,
      new RegExp(
        `^mcp-gate: failed to start: Cannot listen on METRICS_ADDR "127\\.0\\.0\\.1:${port}": ` +
          `Address already in use \\(os error \\d+\\)\n$`,
      ),
    );
    assert.ok(!stdout.includes('"msg":"listening"'), stdout);
  });
});

Deno.test("mcp-gate serve runs until SIGTERM, drains and exits 0", async () => {
  const child = command(["serve"], validEnv("127.0.0.1:0")).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  const readUntil = async (stop: (text: string) => boolean) => {
    while (!stop(stdout)) {
      const { value, done } = await reader.read();
      if (done) return;
      stdout += value;
    }
  };
  try {
    // The logger batches lines, so read until the listener's lifecycle line shows up.
    await readUntil((text) => text.includes('"msg":"listening"'));
    assert.ok(stdout.includes('"msg":"listening"'), stdout);
  } finally {
    try {
      child.kill("SIGTERM");
    } catch { /* already exited: the assertions below say why */ }
  }
  await readUntil(() => false);
  const status = await child.status;
  assert.equal(await stderr, "");
  assert.equal(status.code, 0);
  assert.ok(stdout.includes('"msg":"stopped"'), stdout);
});
