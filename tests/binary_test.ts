/**
 * The compiled executable itself, when MCP_GATE_BIN names one (`deno task compile` output):
 * what it links, what it was allowed, what it writes, and the minimal-rootfs run: the binary
 * alone in an empty root with only the `ldd` libraries, as the distroless image runs it, proxying
 * an authenticated request. Also prints the size, start-up time and idle memory it measured.
 *
 * The rest of the black-box suite (tests/gate_test.ts, tests/cli_check_test.ts, ...) runs against
 * the same binary through tests/helpers/gate.ts when MCP_GATE_BIN is set.
 */
import assert from "node:assert/strict";
import { startTestIssuer } from "./helpers/issuer.ts";
import { startUpstream } from "./helpers/upstream.ts";
import {
  buildMinimalRootfs,
  chrootCommand,
  DISTROLESS_CC_LIBRARIES,
  IMAGE_BINARY_PATH,
  lddLibraries,
  rootfsUnavailableReason,
  signalChrooted,
} from "./helpers/rootfs.ts";
import { VERSION } from "../src/version.ts";

const BIN = Deno.env.get("MCP_GATE_BIN") || undefined;
const NO_BIN = BIN === undefined;
const ROOTFS_REASON = NO_BIN ? "MCP_GATE_BIN is not set" : rootfsUnavailableReason();

if (NO_BIN) {
  console.warn("binary_test: MCP_GATE_BIN is not set; the compiled-binary tests are ignored");
} else if (ROOTFS_REASON) {
  console.warn(`binary_test: minimal-rootfs test ignored: ${ROOTFS_REASON}`);
}

const RESOURCE = "https://mcp.example.com/mcp";

/** A child process whose stdout is collected, with a way to wait for a JSON log line. */
class Output {
  text = "";
  #wake: (() => void)[] = [];
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        this.text += chunk;
        for (const w of this.#wake.splice(0)) w();
      }
      for (const w of this.#wake.splice(0)) w();
    })();
  }
  readonly done: Promise<void>;
  lines(): Record<string, unknown>[] {
    return this.text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  }
  async waitFor(msg: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const hit = this.lines().find((l) => l.msg === msg);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${msg}" log line within ${timeoutMs} ms:\n${this.text}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }
}

/** The port of a `listening` line's `addr` ("127.0.0.1:PORT"). */
function portOf(line: Record<string, unknown>): number {
  return Number(String(line.addr).split(":").pop());
}

/**
 * The JSON value that follows `"<key>":` in the binary's embedded metadata (deno compile writes
 * it as JSON after the program), an object or an array.
 */
async function embeddedMetadata(bin: string, key: string): Promise<unknown> {
  const bytes = await Deno.readFile(bin);
  const marker = new TextEncoder().encode(`"${key}":`);
  let at = -1;
  outer: for (let i = bytes.length - marker.length; i >= 0; i--) {
    for (let j = 0; j < marker.length; j++) if (bytes[i + j] !== marker[j]) continue outer;
    at = i + marker.length;
    break;
  }
  assert.ok(at >= 0, `the binary embeds "${key}" as JSON (deno compile metadata)`);
  const [open, close] = bytes[at] === 0x5b ? [0x5b, 0x5d] : [0x7b, 0x7d];
  let depth = 0;
  for (let k = at; k < bytes.length; k++) {
    if (bytes[k] === open) depth++;
    if (bytes[k] === close && --depth === 0) {
      return JSON.parse(new TextDecoder().decode(bytes.subarray(at, k + 1)));
    }
  }
  throw new Error(`unterminated "${key}"`);
}

/** The JSON object that follows `"permissions":` in the binary's embedded metadata. */
async function embeddedPermissions(bin: string): Promise<Record<string, unknown>> {
  return await embeddedMetadata(bin, "permissions") as Record<string, unknown>;
}

Deno.test({
  name: "binary: links only shared libraries that distroless cc-debian12 ships",
  ignore: NO_BIN,
  async fn() {
    const libs = await lddLibraries(BIN!);
    assert.ok(libs.length > 0);
    for (const lib of libs) {
      const name = lib.slice(lib.lastIndexOf("/") + 1);
      assert.ok(DISTROLESS_CC_LIBRARIES.has(name), `${lib} is not in distroless cc`);
    }
  },
});

Deno.test({
  name: "binary: was compiled with net, env and read only, no prompt, no remote import",
  ignore: NO_BIN,
  async fn() {
    const p = await embeddedPermissions(BIN!);
    // [] = granted for everything, null = not granted.
    assert.deepEqual(p.allow_net, []);
    assert.deepEqual(p.allow_env, []);
    assert.deepEqual(p.allow_read, []);
    for (const k of ["allow_run", "allow_write", "allow_ffi", "allow_sys"]) {
      assert.equal(p[k], null, `${k} not granted`);
    }
    assert.deepEqual(p.deny_import, [], "remote imports denied");
    assert.equal(p.prompt, false);
  },
});

Deno.test({
  name: "binary: runs like deno task start: deno.json's unstable features and the start task's " +
    "V8 flags are compiled in",
  ignore: NO_BIN,
  async fn() {
    const denoJson = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
    const unstable = await embeddedMetadata(BIN!, "unstable_config") as { features: string[] };
    // no-legacy-abort was once dropped here. (The offline toolchain's runtime, denort 2.7.11,
    // records it but still aborts request.signal after a successful response: measured.)
    assert.deepEqual([...unstable.features].sort(), [...denoJson.unstable].sort());
    const v8 = await embeddedMetadata(BIN!, "v8_flags") as string[];
    const start: string = denoJson.tasks.start;
    const wanted = /--v8-flags=(\S+)/.exec(start)?.[1].split(",") ?? [];
    assert.ok(wanted.length > 0, "the start task sets V8 flags");
    for (const flag of wanted) assert.ok(v8.includes(flag), `${flag} in ${JSON.stringify(v8)}`);
  },
});

/** `mcp-gate 0.1.0 (revision <12 hex>[-dirty], deno <x.y.z>)` → its revision and Deno version. */
const VERSION_LINE = new RegExp(
  `^mcp-gate ${VERSION.replaceAll(".", "\\.")} ` +
    "\\(revision ([0-9a-f]{12}(?:-dirty)?), deno (\\d+\\.\\d+\\.\\d+)\\)\n$",
);

Deno.test({
  name: "binary: --version and -version print the version, the git revision it was built from " +
    "and its Deno version, with an empty environment",
  ignore: NO_BIN,
  async fn() {
    for (const arg of ["--version", "-version"]) {
      const out = await new Deno.Command(BIN!, { args: [arg], clearEnv: true, env: {} }).output();
      assert.equal(out.code, 0);
      const text = new TextDecoder().decode(out.stdout);
      assert.match(text, VERSION_LINE);
    }
  },
});

Deno.test({
  name: "binary: mcpgate_build_info carries the same version, revision and Deno version",
  ignore: NO_BIN,
  async fn() {
    const version = await new Deno.Command(BIN!, { args: ["--version"], clearEnv: true, env: {} })
      .output();
    const [, revision, deno] = VERSION_LINE.exec(new TextDecoder().decode(version.stdout))!;
    const child = new Deno.Command(BIN!, {
      clearEnv: true,
      env: {
        UPSTREAM_URL: "http://127.0.0.1:9",
        RESOURCE_URI: RESOURCE,
        AUTHORIZATION_SERVER: "http://127.0.0.1:9",
        JWKS_URI: "http://127.0.0.1:9/jwks",
        LISTEN_ADDR: "127.0.0.1:0",
        METRICS_ADDR: "127.0.0.1:0",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const out = new Output(child.stdout);
    try {
      const listening = await out.waitFor("listening");
      const starting = out.lines().find((l) => l.msg === "starting")!;
      assert.deepEqual([starting.revision, starting.deno], [revision, deno]);
      const metricsPort = Number(String(listening.metrics_addr).split(":").pop());
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.ok(
        text.includes(
          `mcpgate_build_info{version="${VERSION}",revision="${revision}",` +
            `deno_version="${deno}"} 1\n`,
        ),
        text,
      );
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await out.done;
    }
  },
});

Deno.test({
  name: "binary: serves and stops on SIGTERM with exit 0, writing nothing to TMPDIR",
  ignore: NO_BIN,
  async fn() {
    const tmp = await Deno.makeTempDir();
    try {
      const child = new Deno.Command(BIN!, {
        clearEnv: true,
        env: {
          UPSTREAM_URL: "http://127.0.0.1:9",
          RESOURCE_URI: RESOURCE,
          AUTHORIZATION_SERVER: "http://127.0.0.1:9",
          JWKS_URI: "http://127.0.0.1:9/jwks",
          LISTEN_ADDR: "127.0.0.1:0",
          METRICS_ADDR: "",
          TMPDIR: tmp,
        },
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const out = new Output(child.stdout);
      const port = portOf(await out.waitFor("listening"));
      const res = await fetch(`http://127.0.0.1:${port}/livez`);
      await res.body?.cancel();
      assert.equal(res.status, 200);
      child.kill("SIGTERM");
      assert.equal((await child.status).code, 0);
      await out.done;
      // --no-code-cache: no V8 cache file in a shared temp directory.
      assert.deepEqual([...Deno.readDirSync(tmp)], []);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "binary: runs alone in a minimal root (binary + ldd libraries, /proc), as 65532, no " +
    "environment but the gate's, and proxies an authenticated request" +
    (ROOTFS_REASON ? ` [ignored: ${ROOTFS_REASON}]` : ""),
  ignore: ROOTFS_REASON !== undefined,
  async fn() {
    await using issuer = await startTestIssuer({ path: "/realms/mcp" });
    await using upstream = await startUpstream(() => Response.json({ upstream: "reached" }));
    await using rootfs = await buildMinimalRootfs(BIN!);
    assert.deepEqual(
      rootfs.entries.filter((e) => !e.startsWith("/lib")).sort(),
      [IMAGE_BINARY_PATH, "/proc"],
      "nothing but the binary, its libraries and the /proc mount point",
    );
    // Run from an unrelated directory, with no PATH, no HOME and no Deno anywhere in the root.
    const elsewhere = await Deno.makeTempDir();
    const env = {
      UPSTREAM_URL: upstream.url,
      RESOURCE_URI: RESOURCE,
      AUTHORIZATION_SERVER: issuer.issuer,
      SCOPES_SUPPORTED: "mcp:tools",
      REQUIRED_SCOPES: "mcp:tools",
      LISTEN_ADDR: "127.0.0.1:0",
      METRICS_ADDR: "127.0.0.1:0",
    };
    const child = chrootCommand(rootfs.root, { env, cwd: elsewhere }).spawn();
    const out = new Output(child.stdout);
    const errText = new Response(child.stderr).text();
    try {
      const port = portOf(await out.waitFor("listening"));
      await out.waitFor("key set loaded");
      const origin = `http://127.0.0.1:${port}`;

      const token = await issuer.mint({ scope: "mcp:tools" });
      const ok = await fetch(`${origin}/mcp`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
      });
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { upstream: "reached" });
      const seen = await upstream.request(0);
      assert.equal(seen.method, "POST");
      assert.equal(new TextDecoder().decode(seen.body), '{"jsonrpc":"2.0","id":1,"method":"ping"}');

      const none = await fetch(`${origin}/mcp`, { method: "POST" });
      await none.body?.cancel();
      assert.equal(none.status, 401);
      assert.equal(upstream.requests.length, 1, "the unauthenticated request never reached it");

      // The image's HEALTHCHECK, run the same way inside the same root.
      const hc = await chrootCommand(rootfs.root, {
        env: { ...env, LISTEN_ADDR: `0.0.0.0:${port}` },
        args: ["healthcheck"],
      }).output();
      assert.equal(hc.code, 0, new TextDecoder().decode(hc.stderr));
      assert.equal(
        new TextDecoder().decode(hc.stdout),
        `ok: GET http://127.0.0.1:${port}/readyz: 200\n`,
      );
    } finally {
      await signalChrooted(child, "SIGTERM");
      const status = await child.status;
      await out.done;
      const stderr = await errText;
      await Deno.remove(elsewhere, { recursive: true });
      assert.equal(status.code, 0, `graceful exit; stderr: ${stderr}`);
    }
    assert.ok(out.lines().some((l) => l.msg === "signal received, draining"), out.text);
  },
});

/** Resident set size of `pid` in KiB, from /proc (read by cat: Deno wants --allow-all for /proc). */
async function rssKiB(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped" })
    .output();
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(new TextDecoder().decode(out.stdout));
  assert.ok(m, "VmRSS in /proc/PID/status");
  return Number(m[1]);
}

Deno.test({
  name: "binary: measures size, start-up time to the first proxied 200, and idle memory",
  ignore: NO_BIN || Deno.build.os !== "linux",
  async fn() {
    await using issuer = await startTestIssuer();
    await using upstream = await startUpstream();
    const token = await issuer.mint({});
    const t0 = performance.now();
    const child = new Deno.Command(BIN!, {
      clearEnv: true,
      env: {
        UPSTREAM_URL: upstream.url,
        RESOURCE_URI: RESOURCE,
        AUTHORIZATION_SERVER: issuer.issuer,
        LISTEN_ADDR: "127.0.0.1:0",
        METRICS_ADDR: "",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const out = new Output(child.stdout);
    try {
      const port = portOf(await out.waitFor("listening"));
      const listeningMs = performance.now() - t0;
      await out.waitFor("key set loaded");
      const res = await fetch(`http://127.0.0.1:${port}/mcp`, {
        headers: { authorization: `Bearer ${token}` },
      });
      await res.body?.cancel();
      assert.equal(res.status, 200);
      const firstProxiedMs = performance.now() - t0;
      // Idle memory: measured half a second after the first exchange, nothing in flight.
      await new Promise((r) => setTimeout(r, 500));
      const rss = await rssKiB(child.pid);
      const size = (await Deno.stat(BIN!)).size;
      console.log(
        `binary measurements: size ${(size / 1e6).toFixed(1)} MB; listening after ` +
          `${listeningMs.toFixed(0)} ms; first proxied 200 after ${firstProxiedMs.toFixed(0)} ms ` +
          `(discovery + key set fetch included); idle RSS ${(rss / 1024).toFixed(1)} MiB`,
      );
      // Loose ceilings: a regression by a multiple fails, machine noise does not.
      assert.ok(size < 150e6, `size ${size}`);
      assert.ok(firstProxiedMs < 5000, `first proxied 200 after ${firstProxiedMs} ms`);
      assert.ok(rss < 200 * 1024, `RSS ${rss} KiB`);
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await out.done;
    }
  },
});
