import assert from "node:assert/strict";
import { type CliIo, helpText, runCli } from "./cli.ts";
import { VARIABLES } from "../config/mod.ts";
import { VERSION } from "../version.ts";

/** Captures what the CLI writes. */
function memoryIo(): CliIo & { out: () => string; err: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    stdout: (text) => void out.push(text),
    stderr: (text) => void err.push(text),
    out: () => out.join(""),
    err: () => err.join(""),
  };
}

const VALID = {
  UPSTREAM_URL: "http://127.0.0.1:3000",
  RESOURCE_URI: "https://mcp.example.com/mcp",
  AUTHORIZATION_SERVER: "https://auth.example.com",
};

Deno.test("runCli() prints version, revision and Deno version for version, --version, -V and -version", async (t) => {
  for (const arg of ["version", "--version", "-V", "-version"]) {
    await t.step(arg, async () => {
      const io = memoryIo();
      assert.equal(await runCli([arg], {}, io), 0);
      // A source run has no build file: the revision is unknown.
      assert.equal(io.out(), `mcp-gate ${VERSION} (revision unknown, deno ${Deno.version.deno})\n`);
      assert.equal(io.err(), "");
    });
  }
});

Deno.test("runCli() takes -health and --health for healthcheck (the Go gate's flag)", async (t) => {
  for (const arg of ["-health", "--health", "healthcheck"]) {
    await t.step(arg, async () => {
      const io = memoryIo();
      assert.equal(await runCli([arg, "not a url"], {}, io), 1);
      assert.equal(
        io.err(),
        'mcp-gate: healthcheck: Invalid URL: expected an http or https URL, got "not a url"\n',
      );
    });
  }
});

Deno.test("runCli() prints help with every variable and its default for help, --help and -h", async (t) => {
  for (const arg of ["help", "--help", "-h"]) {
    await t.step(arg, async () => {
      const io = memoryIo();
      assert.equal(await runCli([arg], {}, io), 0);
      assert.equal(io.out(), helpText());
      assert.equal(io.err(), "");
    });
  }
  await t.step("content", () => {
    const text = helpText();
    for (const v of VARIABLES) {
      const shown = v.default === "required" ? "(required)" : `(default: ${v.default})`;
      assert.ok(text.includes(`  ${v.name} ${shown}\n      `), v.name);
      // The description is wrapped, word order intact.
      const block = text.slice(text.indexOf(`  ${v.name} ${shown}\n`)).split("\n").slice(1);
      const words = block.slice(0, block.findIndex((l) => !l.startsWith("      ")))
        .map((l) => l.trim()).join(" ");
      assert.equal(words, v.description);
    }
    for (const line of text.split("\n")) assert.ok(line.length <= 100, line);
    for (const words of ["mcp-gate [serve]", "--version", "--help", "Exit codes:", "  2  bad"]) {
      assert.ok(text.includes(words), words);
    }
  });
});

Deno.test("runCli() refuses an unknown command or option with exit code 2 and a usage hint", async (t) => {
  const cases: [string[], string][] = [
    [["frobnicate"], 'mcp-gate: unknown command "frobnicate"'],
    [["--frobnicate"], 'mcp-gate: unknown option "--frobnicate"'],
    [["version", "extra"], 'mcp-gate: version takes no arguments, got "extra"'],
    [["serve", "--port=1"], 'mcp-gate: serve takes no arguments, got "--port=1"'],
    [["help", "serve"], 'mcp-gate: help takes no arguments, got "serve"'],
  ];
  for (const [args, first] of cases) {
    await t.step(args.join(" "), async () => {
      const io = memoryIo();
      assert.equal(await runCli(args, VALID, io), 2);
      assert.equal(io.err(), `${first}\nRun "mcp-gate --help" for usage.\n`);
      assert.equal(io.out(), "");
    });
  }
});

Deno.test("runCli() serve reports a bad configuration on one stderr line with exit code 2", async (t) => {
  for (const args of [[], ["serve"]]) {
    await t.step(`args ${JSON.stringify(args)}`, async () => {
      const io = memoryIo();
      assert.equal(await runCli(args, { LOG_LEVEL: "loud" }, io), 2);
      assert.equal(
        io.err(),
        "mcp-gate: invalid configuration: " +
          'Missing "UPSTREAM_URL": required; Missing "RESOURCE_URI": required; ' +
          'Missing "AUTHORIZATION_SERVER": required; ' +
          'Invalid "LOG_LEVEL": expected debug, info, warn or error, got "loud"\n',
      );
      assert.equal(io.out(), "");
    });
  }
});

Deno.test("runCli() serve reports unreadable or non-PEM TLS files as configuration errors", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = `${dir}/missing.pem`;
    const notPem = `${dir}/not.pem`;
    await Deno.writeTextFile(notPem, "hello\n");
    const cases: [string, string, string][] = [
      [
        missing,
        notPem,
        `Invalid "TLS_CERT_FILE": expected a readable file (not found), got "${missing}"; ` +
        `Invalid "TLS_KEY_FILE": expected a PEM private key, got "${notPem}"`,
      ],
      [
        notPem,
        dir,
        `Invalid "TLS_CERT_FILE": expected a PEM certificate, got "${notPem}"; ` +
        `Invalid "TLS_KEY_FILE": expected a readable file (a directory), got "${dir}"`,
      ],
    ];
    for (const [cert, key, message] of cases) {
      await t.step(`${cert} + ${key}`, async () => {
        const io = memoryIo();
        const env = { ...VALID, TLS_CERT_FILE: cert, TLS_KEY_FILE: key };
        assert.equal(await runCli(["serve"], env, io), 2);
        assert.equal(io.err(), `mcp-gate: invalid configuration: ${message}\n`);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
