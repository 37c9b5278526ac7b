/**
 * `mcp-gate check --env-file` reads a file as systemd's EnvironmentFile= does. systemd
 * (src/basic/env-file.c) has no BOM rule: a file saved with a UTF-8 BOM gives its first assignment
 * the name "\uFEFFNAME", which the service never sees as NAME, so check must not report NAME as
 * set from the file. (Found by review; failed before the fix.)
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url);

Deno.test("check --env-file does not take the first assignment of a file with a UTF-8 BOM", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/mcp-gate.env`;
    await Deno.writeTextFile(path, "\uFEFFLOG_LEVEL=debug\n");
    const env: Record<string, string> = {
      NO_COLOR: "1",
      RESOURCE_URI: "https://mcp.example.com/mcp",
      AUTHORIZATION_SERVER: "https://issuer.example.com",
      UPSTREAM_URL: "http://127.0.0.1:9",
    };
    for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
      const value = Deno.env.get(name);
      if (value !== undefined) env[name] = value;
    }
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "main.ts",
        "check",
        "--env-file",
        path,
      ],
      cwd: ROOT,
      clearEnv: true,
      env,
      stdin: "null",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.match(stdout, /\n {2}LOG_LEVEL +/, stdout);
    assert.doesNotMatch(stdout, /\n {2}LOG_LEVEL +debug {2}\(env file\)\n/, stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
