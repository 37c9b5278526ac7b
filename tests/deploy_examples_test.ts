/**
 * Every shipped example configuration gets a tool call through. Each example's gate variables are
 * taken from the file as shipped (the compose file, the Kubernetes ConfigMap, the systemd
 * environment file, and the environment snippets of README.md and docs/deploy.md); only the
 * host:port parts of its URLs and addresses are moved onto 127.0.0.1 test ports, every path stays
 * exactly as shipped. The gate (tests/helpers/gate.ts) then runs with that configuration in front
 * of the sample MCP server (for the compose file: its `mcp-server` service's own command) and a
 * test issuer serving at the example's issuer path, and the MCP SDK client completes `initialize`
 * and a tool call with a bearer token for the example's `RESOURCE_URI`.
 *
 * An `UPSTREAM_URL` that repeats the MCP endpoint's path (`http://127.0.0.1:3000/mcp` with
 * `RESOURCE_URI=https://mcp.example.com/mcp`) fails here: the gate appends the request path, so
 * the server receives `/mcp/mcp` and answers 404 to a client whose token was accepted.
 */
import assert from "node:assert/strict";
import { parse as parseYaml, parseAllDocuments } from "yaml";
// @ts-types="@modelcontextprotocol/sdk/client/index"
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
// @ts-types="@modelcontextprotocol/sdk/client/streamableHttp"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startMcpServer } from "../demo/mcp_server.ts";
import { GATE_BIN, startGate, type TestGate } from "./helpers/gate.ts";
import { startTestIssuer, type TestIssuer } from "./helpers/issuer.ts";
import { ready } from "./helpers/rig.ts";
import { closedPort } from "./helpers/net.ts";

const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const read = (path: string) => Deno.readTextFileSync(`${repo}/${path}`);

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

/** One shipped example: where it comes from and the gate variables it sets. */
interface Example {
  name: string;
  env: Record<string, string>;
  /** Starts the MCP server the example ships on `port` (default: the sample server in-process). */
  mcpServer?: (port: number) => Promise<AsyncDisposable>;
}

/** KEY=value lines of a systemd EnvironmentFile; comments and blank lines skipped. */
function envFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
  }
  return env;
}

/**
 * The gate configurations shown in a Markdown document: every fenced `sh` block that sets
 * `UPSTREAM_URL`, as `VAR=value` words (shell prefix assignments or `docker run -e VAR=value`).
 */
function markdownEnvSnippets(text: string): Record<string, string>[] {
  const snippets: Record<string, string>[] = [];
  for (const block of text.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)) {
    const env: Record<string, string> = {};
    for (const m of block[1].matchAll(/(?:^|\s)(?:-e\s+)?([A-Z][A-Z0-9_]*)=([^\s\\'"]+)/gm)) {
      env[m[1]] = m[2];
    }
    if (env.UPSTREAM_URL) snippets.push(env);
  }
  return snippets;
}

/** The compose file's `mcp-server` service, run here as its own command with `MCP_PORT=port`. */
function composeMcpServer(service: Obj): (port: number) => Promise<AsyncDisposable> {
  return async (port) => {
    const appDir = service.working_dir as string;
    const mount = (service.volumes as string[]).find((v) => v.split(":")[1] === appDir);
    assert.ok(mount, `the repository is mounted at ${appDir}`);
    assert.deepEqual(service.entrypoint, ["deno"]);
    const args = (service.command as string[]).map((a) => a.replaceAll(appDir, repo));
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: repo,
      env: { ...service.environment, MCP_PORT: String(port) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const err = new Response(child.stderr).text();
    let seen = "";
    const stop = async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await out.cancel();
      await err;
    };
    while (!seen.includes("mcp server listening")) {
      const { value, done } = await out.read();
      if (done) {
        await stop();
        throw new Error(`the compose mcp-server exited: ${seen}\n${await err}`);
      }
      seen += value;
    }
    const drainOut = (async () => {
      while (!(await out.read()).done) { /* discard */ }
    })();
    return {
      async [Symbol.asyncDispose]() {
        try {
          child.kill("SIGTERM");
        } catch { /* already gone */ }
        const status = await child.status;
        await drainOut;
        await err;
        assert.equal(status.code, 0, "the compose mcp-server stops cleanly on SIGTERM");
      },
    };
  };
}

function examples(): Example[] {
  const compose: Obj = parseYaml(read("deploy/compose/docker-compose.yml"));
  const configMap: Obj = parseAllDocuments(read("deploy/kubernetes/mcp-gate.yaml"))
    .map((d) => d.toJS()).find((d: Obj) => d.kind === "ConfigMap");
  const list: Example[] = [
    {
      name: "deploy/compose/docker-compose.yml",
      env: compose.services["mcp-gate"].environment,
      mcpServer: composeMcpServer(compose.services["mcp-server"]),
    },
    { name: "deploy/kubernetes/mcp-gate.yaml", env: configMap.data },
    {
      name: "deploy/systemd/mcp-gate.env.example",
      env: envFile(read("deploy/systemd/mcp-gate.env.example")),
    },
  ];
  for (const doc of ["README.md", "docs/deploy.md"]) {
    markdownEnvSnippets(read(doc)).forEach((env, i) =>
      list.push({ name: `${doc} snippet ${i + 1}`, env })
    );
  }
  return list;
}

/** `url` with its scheme, host and port replaced by `origin`; path and query kept as shipped. */
function moveUrl(url: string, origin: string): string {
  const u = new URL(url);
  return origin + u.pathname + u.search;
}

/** Path of an issuer URL as the test issuer takes it ("" for a bare origin). */
function issuerPath(url: string): string {
  const path = new URL(url).pathname;
  return path === "/" ? "" : path;
}

/** The MCP result's first text content. */
function textOf(result: unknown): string {
  const content = (result as { content: { type: string; text: string }[] }).content;
  return content[0].text;
}

/** An example's gate, MCP server and issuer, running on 127.0.0.1 with the paths as shipped. */
interface RunningExample extends AsyncDisposable {
  gate: TestGate;
  issuer: TestIssuer;
  /** A bearer token for the example's RESOURCE_URI with its scopes, `sub` "alice". */
  token: string;
}

async function startExample(example: Example): Promise<RunningExample> {
  const shipped = example.env;
  assert.ok(shipped.UPSTREAM_URL && shipped.RESOURCE_URI && shipped.AUTHORIZATION_SERVER);
  for (const v of ["JWKS_URI", "EXPECTED_ISSUER", "TLS_CERT_FILE", "TLS_KEY_FILE"]) {
    assert.equal(shipped[v], undefined, `${v} is not moved by this test`);
  }
  const stack = new AsyncDisposableStack();
  try {
    const port = closedPort();
    stack.use(example.mcpServer ? await example.mcpServer(port) : startMcpServer({ port }));
    const issuer = stack.use(
      await startTestIssuer({
        path: issuerPath(shipped.AUTHORIZATION_SERVER),
        audience: shipped.RESOURCE_URI,
      }),
    );
    const gate = stack.use(
      await startGate({
        ...shipped,
        UPSTREAM_URL: moveUrl(shipped.UPSTREAM_URL, `http://127.0.0.1:${port}`),
        AUTHORIZATION_SERVER: moveUrl(shipped.AUTHORIZATION_SERVER, issuer.origin),
        LISTEN_ADDR: "127.0.0.1:0",
        METRICS_ADDR: "",
      }),
    );
    await ready(gate);
    const scopes = (shipped.REQUIRED_SCOPES ?? shipped.SCOPES_SUPPORTED ?? "").replaceAll(",", " ");
    const token = await issuer.mint({ sub: "alice", scope: scopes });
    const moved = stack.move();
    return { gate, issuer, token, [Symbol.asyncDispose]: () => moved.disposeAsync() };
  } catch (err) {
    await stack.disposeAsync();
    throw err;
  }
}

Deno.test("examples: every shipped example's configuration gets an MCP tool call through", async (t) => {
  const list = examples();
  // The three files, and at least the README's quick start and the docs' docker run.
  assert.ok(list.length >= 5, list.map((e) => e.name).join(", "));
  for (const example of list) {
    await t.step(example.name, async () => {
      await using running = await startExample(example);
      const { gate, token } = running;
      const resource = example.env.RESOURCE_URI;
      // The client uses RESOURCE_URI as shipped; its fetch resolves that origin to the gate.
      const publicOrigin = new URL(resource).origin;
      const clientFetch = (input: string | URL | Request, init?: RequestInit) => {
        const req = new Request(input, init);
        return fetch(
          req.url.startsWith(publicOrigin)
            ? new Request(gate.origin + req.url.slice(publicOrigin.length), req)
            : req,
        );
      };
      const transport = new StreamableHTTPClientTransport(new URL(resource), {
        fetch: clientFetch,
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      });
      const client = new Client({ name: "deploy-examples", version: "1.0.0" });
      try {
        await client.connect(transport); // initialize + initialized
        assert.ok(transport.sessionId, "the MCP server's session id came back through the gate");
        assert.equal(
          textOf(await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })),
          "5",
        );
        const who = JSON.parse(textOf(await client.callTool({ name: "whoami" })));
        assert.equal(who.authorizationHeaderSeen, false);
        if (/\bsub=X-Auth-Subject\b/i.test(example.env.CLAIM_HEADERS ?? "")) {
          assert.equal(who.subject, "alice");
        }
        await transport.terminateSession();
      } finally {
        await client.close();
      }
    });
  }
});

Deno.test("examples: the compose walk-through's curl session in docs/deploy.md gets its tool calls through", async () => {
  const doc = read("docs/deploy.md");
  const section = doc.slice(doc.indexOf("## Local trial: docker compose"));
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  const script = blocks.find((b) => b.includes("tools/call"));
  assert.ok(script, "the walk-through has a tool call");
  assert.ok(!script.includes("TOKEN=$("), "the token comes from the step before (Keycloak)");
  const compose = examples()[0];
  const gateAddr = new URL(compose.env.RESOURCE_URI).host; // localhost:8000
  assert.ok(script.includes(`${gateAddr}/mcp`), `the commands call the gate at ${gateAddr}`);
  await using running = await startExample(compose);
  const out = await new Deno.Command("bash", {
    args: ["-euo", "pipefail", "-c", script.replaceAll(gateAddr, `127.0.0.1:${running.gate.port}`)],
    env: { TOKEN: running.token },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const results = stdout.split("\n").filter((l) => l.startsWith("data: "))
    .map((l) => JSON.parse(l.slice(6)));
  assert.deepEqual(results.map((r) => r.id), [2, 3], stdout);
  assert.equal(results[0].result.content[0].text, "5");
  assert.deepEqual(JSON.parse(results[1].result.content[0].text), {
    subject: "alice",
    authorizationHeaderSeen: false,
  });
});

/** Variables a `deno` child needs to find its cache; the gate itself reads none of them. */
const DENO_PASS_THROUGH = ["PATH", "HOME", "DENO_DIR", "XDG_CACHE_HOME", "DENO_NO_UPDATE_CHECK"];

Deno.test("examples: `check` passes every shipped configuration, run as the docs say (`deno task start check` from source)", async (t) => {
  for (const example of examples()) {
    await t.step(example.name, async () => {
      const shipped = example.env;
      await using issuer = await startTestIssuer({
        path: issuerPath(shipped.AUTHORIZATION_SERVER),
        audience: shipped.RESOURCE_URI,
      });
      // check probes the upstream (an unreachable one is a warning): something must listen.
      using upstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const env: Record<string, string> = {
        ...shipped,
        UPSTREAM_URL: moveUrl(shipped.UPSTREAM_URL, `http://127.0.0.1:${upstream.addr.port}`),
        AUTHORIZATION_SERVER: moveUrl(shipped.AUTHORIZATION_SERVER, issuer.origin),
      };
      for (const name of DENO_PASS_THROUGH) {
        const v = Deno.env.get(name);
        if (v !== undefined) env[name] = v;
      }
      const [cmd, args] = GATE_BIN
        ? [GATE_BIN, ["check"]]
        : [Deno.execPath(), ["task", "--quiet", "start", "check"]];
      const out = await new Deno.Command(cmd, {
        args,
        cwd: repo,
        env,
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, text);
      assert.match(text, /OK: configuration valid, key set loaded/);
      assert.match(text, /Warnings: none/);
    });
  }
});

Deno.test("examples: `check --env-file` reads the systemd environment file as shipped (hosts moved) and passes it", async () => {
  const shippedText = read("deploy/systemd/mcp-gate.env.example");
  const shipped = envFile(shippedText);
  await using issuer = await startTestIssuer({
    path: issuerPath(shipped.AUTHORIZATION_SERVER),
    audience: shipped.RESOURCE_URI,
  });
  // check probes the upstream with a TCP connect: something must listen there.
  using upstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  // Only the two URLs' scheme, host and port change, in place: the file keeps its syntax.
  const moved = shippedText
    .replace(
      /^UPSTREAM_URL=.*$/m,
      `UPSTREAM_URL=${moveUrl(shipped.UPSTREAM_URL, `http://127.0.0.1:${upstream.addr.port}`)}`,
    )
    .replace(
      /^AUTHORIZATION_SERVER=.*$/m,
      `AUTHORIZATION_SERVER=${moveUrl(shipped.AUTHORIZATION_SERVER, issuer.origin)}`,
    );
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/mcp-gate.env`;
    await Deno.writeTextFile(path, moved);
    const env: Record<string, string> = {};
    for (const name of DENO_PASS_THROUGH) {
      const v = Deno.env.get(name);
      if (v !== undefined) env[name] = v;
    }
    // The documented command (docs/deploy.md#systemd), from source or as the binary.
    const [cmd, args] = GATE_BIN
      ? [GATE_BIN, ["check", "--env-file", path]]
      : [Deno.execPath(), ["task", "--quiet", "start", "check", "--env-file", path]];
    const out = await new Deno.Command(cmd, {
      args,
      cwd: repo,
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /OK: configuration valid, key set loaded/);
    assert.match(text, /Warnings: none/);
    assert.ok(text.includes(shipped.RESOURCE_URI), "the file's RESOURCE_URI was read");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(
    read("docs/deploy.md").includes("mcp-gate check --env-file /etc/mcp-gate/mcp-gate.env"),
  );
  assert.ok(!/set -a;/.test(read("docs/deploy.md")), "no shell-sourcing of an EnvironmentFile");
});
