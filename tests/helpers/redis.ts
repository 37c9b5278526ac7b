/**
 * A real Redis or Valkey server for the shared rate limiter's tests (RATE_LIMIT_REDIS_URL).
 *
 * `MCP_GATE_TEST_REDIS_URL` (set by .ci/run, which installs the Debian package) names a running
 * server; otherwise, and always when a test must stop or restart the server itself, the helper
 * starts `redis-server` or `valkey-server` from PATH on a free loopback port, without persistence,
 * and kills it at dispose. With neither, {@linkcode redisUnavailable} says why and the tests are
 * skipped with that message.
 */
import { closedPort } from "./net.ts";

/** A running server. */
export interface TestRedis extends AsyncDisposable {
  /** `redis://127.0.0.1:<port>` (with the password when one is required). */
  readonly url: string;
  readonly port: number;
  /** Sends one command and returns its reply (RESP2 as text lines): for assertions. */
  command(...args: string[]): Promise<string>;
  /** SIGKILL the server and wait for it to be gone (own servers only). */
  kill(): Promise<void>;
  /** Starts the server again on the same port (own servers only). */
  restart(): Promise<void>;
  /** SIGSTOP: the server keeps its connections but answers nothing until {@linkcode resume}. */
  pause(): void;
  /** SIGCONT after {@linkcode pause}. */
  resume(): void;
  close(): Promise<void>;
}

/** The server binary on PATH, or undefined. */
export const REDIS_BIN: string | undefined = findBinary(["redis-server", "valkey-server"]);
const SHARED_URL = Deno.env.get("MCP_GATE_TEST_REDIS_URL") || undefined;

/** Why the tests that need a server cannot run here, or undefined when they can. */
export function redisUnavailable(options: { own?: boolean } = {}): string | undefined {
  if (REDIS_BIN) return undefined;
  if (SHARED_URL && !options.own) return undefined;
  return "SKIPPED: no redis-server or valkey-server on PATH" +
    (options.own ? "" : " and MCP_GATE_TEST_REDIS_URL unset") +
    " (.ci/run installs one; apt-get install redis-server)";
}

/** Prints the skip reason once per test file, so a skipped suite is visible in the output. */
export function announceSkip(file: string, options: { own?: boolean } = {}): boolean {
  const why = redisUnavailable(options);
  if (why) console.warn(`${file}: ${why}`);
  return why !== undefined;
}

/** PEM files for a server that speaks only TLS (`rediss://`). */
export interface RedisTls {
  cert: string;
  key: string;
  /** The CA file (also what the helper's own probe trusts). */
  ca: string;
}

/**
 * A server for one test. `own`: start a private one even when MCP_GATE_TEST_REDIS_URL is set
 * (to kill it, or to require a password). `password`: started with `requirepass`. `port`: listen
 * there (a port a gate was already told about) instead of a free one. `tls`: TLS only.
 */
export async function startRedis(
  options: { own?: boolean; password?: string; port?: number; tls?: RedisTls } = {},
): Promise<TestRedis> {
  if (
    SHARED_URL && !options.own && options.password === undefined && !options.port && !options.tls
  ) {
    const url = new URL(SHARED_URL);
    const port = Number(url.port || 6379);
    const noop = () => Promise.resolve();
    return {
      url: SHARED_URL,
      port,
      command: (...args) => sendCommand({ port }, args, url.password || undefined),
      kill: () => Promise.reject(new Error("a shared test server cannot be killed")),
      pause: () => {
        throw new Error("a shared test server cannot be paused");
      },
      resume: () => {},
      restart: () => Promise.reject(new Error("a shared test server cannot be restarted")),
      close: noop,
      [Symbol.asyncDispose]: noop,
    };
  }
  if (!REDIS_BIN) throw new Error(redisUnavailable({ own: true }));
  const bin = REDIS_BIN;
  const port = options.port ?? closedPort();
  const tls = options.tls;
  const caCerts = tls ? [await Deno.readTextFile(tls.ca)] : undefined;
  const target = { port, caCerts };
  const listen = tls
    ? [
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--tls-cert-file",
      tls.cert,
      "--tls-key-file",
      tls.key,
      "--tls-ca-cert-file",
      tls.ca,
      "--tls-auth-clients",
      "no",
    ]
    : ["--port", String(port)];
  const args = [
    ...listen,
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--daemonize",
    "no",
    "--loglevel",
    "warning",
    ...(options.password === undefined ? [] : ["--requirepass", options.password]),
  ];
  let child: Deno.ChildProcess | undefined;
  const launch = async () => {
    child = new Deno.Command(bin, { args, stdin: "null", stdout: "null", stderr: "null" })
      .spawn();
    const deadline = Date.now() + 10_000;
    while (true) {
      try {
        const reply = await sendCommand(target, ["PING"], options.password);
        if (reply.startsWith("+PONG")) return;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) throw new Error(`${bin} did not start on port ${port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c) return;
    try {
      c.kill("SIGKILL");
      c.kill("SIGCONT");
    } catch { /* already gone */ }
    await c.status;
  };
  await launch();
  const auth = options.password === undefined ? "" : `:${encodeURIComponent(options.password)}@`;
  const close = stop;
  return {
    url: `${tls ? "rediss" : "redis"}://${auth}127.0.0.1:${port}`,
    port,
    command: (...a) => sendCommand(target, a, options.password),
    kill: stop,
    pause: () => child?.kill("SIGSTOP"),
    resume: () => child?.kill("SIGCONT"),
    restart: async () => {
      await stop();
      await launch();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** One command over a fresh connection (RESP2, TLS when `caCerts`); the reply's raw text. */
async function sendCommand(
  to: { port: number; caCerts?: string[] },
  args: string[],
  password?: string,
): Promise<string> {
  const conn = to.caCerts
    ? await Deno.connectTls({ hostname: "127.0.0.1", port: to.port, caCerts: to.caCerts })
    : await Deno.connect({ hostname: "127.0.0.1", port: to.port });
  try {
    const encode = (a: string[]) =>
      `*${a.length}\r\n` + a.map((x) => `$${new TextEncoder().encode(x).length}\r\n${x}\r\n`)
        .join("");
    const text = (password === undefined ? "" : encode(["AUTH", password])) + encode(args);
    await conn.write(new TextEncoder().encode(text));
    let reply = "";
    const buf = new Uint8Array(65536);
    const deadline = Date.now() + 5_000;
    // Enough for the simple replies the tests read: complete once each expected reply ends.
    while (Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      reply += new TextDecoder().decode(buf.subarray(0, n));
      const replies = password === undefined ? 1 : 2;
      if (complete(reply, replies)) break;
    }
    return password === undefined ? reply : reply.slice(reply.indexOf("\r\n") + 2);
  } finally {
    conn.close();
  }
}

/** Whether `text` holds `count` whole RESP2 replies (simple, integer, bulk, arrays of those). */
function complete(text: string, count: number): boolean {
  let pos = 0;
  const one = (): boolean => {
    const end = text.indexOf("\r\n", pos);
    if (end < 0) return false;
    const type = text[pos];
    const head = text.slice(pos + 1, end);
    pos = end + 2;
    if (type === "$") {
      const len = Number(head);
      if (len < 0) return true;
      if (text.length < pos + len + 2) return false;
      pos += len + 2;
      return true;
    }
    if (type === "*") {
      for (let i = 0; i < Number(head); i++) if (!one()) return false;
    }
    return true;
  };
  for (let i = 0; i < count; i++) if (!one()) return false;
  return true;
}

function findBinary(names: string[]): string | undefined {
  const path = Deno.env.get("PATH") ?? "";
  for (const name of names) {
    for (const dir of path.split(":")) {
      if (!dir) continue;
      try {
        const p = `${dir}/${name}`;
        if (Deno.statSync(p).isFile) return p;
      } catch { /* not here */ }
    }
  }
  return undefined;
}

/**
 * A throwaway CA and a server certificate it signed for 127.0.0.1 (openssl CLI), in `dir`: what a
 * `rediss://` server needs, and the CA a client must trust.
 */
export async function redisTlsFiles(dir: string): Promise<RedisTls> {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    })
      .output();
    if (!out.success) {
      throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
    }
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "1",
    "-subj",
    "/CN=mcp-gate test redis ca",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  );
  await run("req", ...ec, "-keyout", "redis.key", "-out", "redis.csr", "-subj", "/CN=127.0.0.1");
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
  );
  await run(
    "x509",
    "-req",
    "-in",
    "redis.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "redis.crt",
    "-days",
    "1",
    "-extfile",
    "ext.cnf",
  );
  return { cert: `${dir}/redis.crt`, key: `${dir}/redis.key`, ca: `${dir}/ca.crt` };
}
