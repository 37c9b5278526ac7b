/**
 * The listener under descriptor exhaustion: the gate runs as a child process under a low
 * `ulimit -n` (bash sets it; Deno cannot), idle sockets use up its descriptors, and the gate must
 * stay up and serve again. Runs `deno run main.ts`, or the executable named by MCP_GATE_BIN.
 */
import assert from "node:assert/strict";
import { spawnGate } from "./helpers/process.ts";

/** Low enough that a few dozen idle sockets exhaust it, high enough for the gate to start. */
const FD_LIMIT = 96;

const ENV: Record<string, string> = {
  UPSTREAM_URL: "http://127.0.0.1:9",
  RESOURCE_URI: "https://mcp.example.com/mcp",
  AUTHORIZATION_SERVER: "https://auth.example.com",
  // Nothing listens there: the key store fails fast and retries, the listener is what counts.
  JWKS_URI: "http://127.0.0.1:9/jwks",
  LISTEN_ADDR: "127.0.0.1:0",
  METRICS_ADDR: "127.0.0.1:0",
};

function portOf(addr: unknown): number {
  return Number(String(addr).split(":").pop());
}

/** One GET on a fresh connection; the status, or the error text. */
async function get(port: number, path: string): Promise<string> {
  try {
    // Connection: close, so no pooled connection stays open to the gate (a Deno 2.7 server that
    // lost its listener settles only once every connection is gone).
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      headers: { connection: "close" },
      signal: AbortSignal.timeout(2_000),
    });
    const body = await res.text();
    return `${res.status} ${body}`;
  } catch (e) {
    return String(e);
  }
}

/**
 * One request on a new connection, closed after (fetch would reuse a pooled one, and the point
 * is to make the gate accept): swallows every failure.
 */
async function poke(port: number): Promise<void> {
  let conn: Deno.Conn | undefined;
  const timer = setTimeout(() => conn?.close(), 1_000);
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(
      new TextEncoder().encode("GET /livez HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    );
    await conn.read(new Uint8Array(1024));
  } catch {
    // refused, reset or closed by the timer: all fine here
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch {
      // closed by the timer
    }
  }
}

/** Resolves true when the peer closes `conn` (EOF or reset) within `ms`, else false. */
async function closedByPeer(conn: Deno.Conn, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const read = conn.read(new Uint8Array(64)).then((n) => n === null, () => true);
  const late = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  const closed = await Promise.race([read, late]);
  clearTimeout(timer);
  return closed;
}

Deno.test({
  name: "the gate survives running out of descriptors and accepts again when they free up",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using gate = await spawnGate(ENV, { fileLimit: FD_LIMIT });
    let exited: Deno.CommandStatus | undefined;
    gate.status.then((s) => (exited = s), () => {});
    const listening = await gate.waitForLog((l) => l.msg === "listening", 20_000);
    const port = portOf(listening.addr);
    const metricsPort = portOf(listening.metrics_addr);
    assert.equal(await get(port, "/livez"), '200 {"status":"ok"}');

    // Idle sockets until the gate's accept fails: more than the limit, so it must. The listener's
    // socket is closed then, so further connects are refused.
    const isFailure = (l: Record<string, unknown>) =>
      l.msg === "listener stopped accepting, re-creating it";
    const idle: Deno.Conn[] = [];
    let refused = 0;
    for (let i = 0; i < FD_LIMIT * 2 && refused < 5 && !gate.logs().some(isFailure); i++) {
      try {
        idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      } catch {
        refused++;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    try {
      // Deno 2.9 settles the dead server at once: the gate logs, sheds the idle connections (their
      // descriptors come back) and re-binds. Deno 2.7 (the compiled binary's runtime when the
      // offline toolchain builds it) settles it only once those connections are gone: the gate
      // stays up and recovers as soon as the clients leave, which the finally below makes happen.
      const failedNow = await gate.waitForLog(isFailure, 3_000).catch(() => undefined);
      if (failedNow !== undefined) {
        const shed = await Promise.all(idle.slice(0, 10).map((c) => closedByPeer(c, 2_000)));
        assert.ok(shed.every(Boolean), `idle connections still open: ${shed}`);
      }
      // Still alive: the failure used to be an unhandled rejection, exit 1.
      assert.equal(exited, undefined, `gate exited: ${gate.stderr()}`);
    } finally {
      for (const c of idle) c.close();
    }
    // A new connection wakes a runtime whose accept loop waits (2.7) to notice the failure.
    for (let i = 0; i < 20 && !gate.logs().some(isFailure); i++) {
      await poke(port);
      await new Promise((r) => setTimeout(r, 100));
    }
    const failed = await gate.waitForLog(isFailure, 5_000);
    assert.equal(failed.level, "error");
    assert.equal(failed.listener, "gate");
    assert.match(String(failed.error), /Too many open files|os error 24/);
    assert.equal(exited, undefined, `gate exited: ${gate.stderr()}`);

    await gate.waitForLog((l) => l.msg === "listener accepting again", 5_000);
    let answer = "";
    for (let i = 0; i < 20 && !answer.startsWith("200"); i++) {
      answer = await get(port, "/livez");
      if (!answer.startsWith("200")) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(answer, '200 {"status":"ok"}');
    const metrics = await get(metricsPort, "/metrics");
    assert.match(metrics, /^mcpgate_listener_failures_total\{listener="gate"\} [1-9]\d*$/m);
    assert.equal(exited, undefined);
  },
});
