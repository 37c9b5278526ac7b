/**
 * `mcp-gate healthcheck [URL]` (docs/contract.md §6): a probe for images without curl (Docker
 * `HEALTHCHECK CMD ["/mcp-gate","healthcheck"]`). GET `/readyz` on the gate's own listener and
 * exit 0 on 200, 1 otherwise. Docker reserves exit code 2, so every failure here, usage errors
 * included, is 1.
 *
 * Where it asks, without a URL: LISTEN_ADDR with a wildcard host replaced by loopback. When the
 * listener serves TLS the plain-http metrics listener is asked instead if enabled (same
 * `/readyz`); otherwise it speaks TLS to the loopback address while verifying the certificate
 * for RESOURCE_URI's host name, trusting TLS_CERT_FILE in addition to the usual roots, so a
 * self-signed certificate works too.
 */
import {
  type Config,
  type Env,
  formatListenAddr,
  type ListenAddr,
  parseConfig,
} from "../config/mod.ts";
import { ConfigError } from "../errors.ts";

/** Where the healthcheck writes. */
export interface HealthcheckIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Options for {@linkcode runHealthcheck}. */
export interface HealthcheckDeps {
  io: HealthcheckIo;
  fetch?: typeof fetch;
  /** Whole-probe deadline. Default 3 s (below Docker's usual 5 s HEALTHCHECK timeout). */
  timeoutMs?: number;
}

/** What to probe. */
export type HealthTarget =
  | { readonly kind: "http"; readonly url: string }
  | {
    readonly kind: "tls";
    /** Loopback address to connect to. */
    readonly hostname: string;
    readonly port: number;
    /** Name the certificate must be valid for (RESOURCE_URI's host). */
    readonly serverName: string;
    /** TLS_CERT_FILE, trusted as an extra root (self-signed certificates). */
    readonly caFile: string;
    readonly path: string;
  };

/** The healthcheck's exit codes. */
export const HEALTHCHECK_EXIT = Object.freeze({ healthy: 0, unhealthy: 1 });

const READY_PATH = "/readyz";
const DEFAULT_TIMEOUT_MS = 3000;

/** Loopback host to reach a listener bound to `addr` ("0.0.0.0" → 127.0.0.1, "::" → ::1). */
export function localHostFor(addr: ListenAddr): string {
  if (addr.hostname === "0.0.0.0" || addr.hostname === "") return "127.0.0.1";
  if (addr.hostname === "::" || addr.hostname === "[::]") return "::1";
  return addr.hostname;
}

function httpUrl(addr: ListenAddr, path: string): string {
  return `http://${formatListenAddr({ hostname: localHostFor(addr), port: addr.port })}${path}`;
}

/** Decides what to probe for a configuration (pure). */
export function healthcheckTarget(config: Config): HealthTarget {
  if (config.tlsCertFile === undefined) {
    return { kind: "http", url: httpUrl(config.listen, READY_PATH) };
  }
  if (config.metricsListen) return { kind: "http", url: httpUrl(config.metricsListen, READY_PATH) };
  return {
    kind: "tls",
    hostname: localHostFor(config.listen),
    port: config.listen.port,
    serverName: new URL(config.resourceUri).hostname.replace(/^\[|\]$/g, ""),
    caFile: config.tlsCertFile,
    path: READY_PATH,
  };
}

/** Runs the healthcheck and returns 0 (ready) or 1. */
export async function runHealthcheck(
  args: readonly string[],
  env: Env,
  deps: HealthcheckDeps,
): Promise<number> {
  const { io } = deps;
  const fail = (what: string) => {
    io.stderr(`mcp-gate: healthcheck: ${what}\n`);
    return HEALTHCHECK_EXIT.unhealthy;
  };
  if (args.length > 1) return fail(`expected at most one URL, got ${args.length} arguments`);

  let target: HealthTarget;
  if (args.length === 1) {
    if (!/^https?:\/\/[^/?#]/i.test(args[0]) || !URL.canParse(args[0])) {
      return fail(`Invalid URL: expected an http or https URL, got ${JSON.stringify(args[0])}`);
    }
    target = { kind: "http", url: args[0] };
  } else {
    try {
      target = healthcheckTarget(parseConfig(env));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      // The gate cannot be running with this configuration either.
      return fail(`invalid configuration: ${err.message}`);
    }
  }

  const timeoutMs = deps.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const label = target.kind === "http"
    ? `GET ${target.url}`
    : `GET https://${target.serverName}${target.path} via ${
      formatListenAddr({ hostname: target.hostname, port: target.port })
    }`;
  try {
    const status = target.kind === "http"
      ? await probeHttp(target.url, deps.fetch ?? fetch, timeoutMs)
      : await probeTls(target, timeoutMs);
    if (status !== 200) return fail(`${label}: status ${status}`);
  } catch (err) {
    return fail(`${label}: ${err instanceof Error ? err.message : String(err)}`);
  }
  io.stdout(`ok: ${label}: 200\n`);
  return HEALTHCHECK_EXIT.healthy;
}

async function probeHttp(url: string, doFetch: typeof fetch, timeoutMs: number): Promise<number> {
  const res = await doFetch(url, {
    redirect: "manual",
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.body?.cancel();
  return res.status;
}

/**
 * HTTP/1.1 GET over TLS to a loopback address, verifying the certificate for `serverName`
 * (fetch cannot connect to one address while verifying another name).
 */
async function probeTls(
  target: Extract<HealthTarget, { kind: "tls" }>,
  timeoutMs: number,
): Promise<number> {
  const caCerts = [await Deno.readTextFile(target.caFile)];
  const tcp = await Deno.connect({ hostname: target.hostname, port: target.port });
  const timer = setTimeout(() => tcp.close(), timeoutMs);
  let conn: Deno.Conn = tcp;
  try {
    const tls = await Deno.startTls(tcp, {
      hostname: target.serverName,
      caCerts,
      alpnProtocols: ["http/1.1"],
    });
    conn = tls;
    const request = `GET ${target.path} HTTP/1.1\r\nHost: ${target.serverName}\r\n` +
      "Connection: close\r\nUser-Agent: mcp-gate-healthcheck\r\n\r\n";
    await writeAll(tls, new TextEncoder().encode(request));
    const head = await readStatusLine(tls);
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
    if (!m) throw new Error(`unexpected response ${JSON.stringify(head.slice(0, 40))}`);
    return Number(m[1]);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // already closed by the deadline
    }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** Reads until the first CRLF (at most 1 KiB) and returns the status line. */
async function readStatusLine(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(1024);
  let len = 0;
  while (len < buf.length) {
    const n = await conn.read(buf.subarray(len));
    if (n === null) break;
    len += n;
    const text = new TextDecoder().decode(buf.subarray(0, len));
    const end = text.indexOf("\r\n");
    if (end >= 0) return text.slice(0, end);
  }
  return new TextDecoder().decode(buf.subarray(0, len));
}
