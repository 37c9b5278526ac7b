/**
 * `mcp-gate healthcheck [URL]` (docs/contract.md §6): a probe for images without curl (Docker
 * `HEALTHCHECK CMD ["/mcp-gate","healthcheck"]`). GET `/readyz` on the gate's own listener and
 * exit 0 on 200, 1 otherwise. Docker reserves exit code 2, so every failure here, usage errors
 * included, is 1. A URL with no path (or just `/`) is a base URL: its `/readyz` is probed.
 *
 * Where it asks, without a URL: LISTEN_ADDR with a wildcard host replaced by loopback. When the
 * listener serves TLS the plain-http metrics listener is asked instead if enabled (same
 * `/readyz`); otherwise it speaks TLS to the loopback address and accepts exactly the certificate
 * the gate serves: the one in TLS_CERT_FILE (see {@linkcode probeTls}).
 */
import { connect as connectTls, type TLSSocket } from "node:tls";
import {
  type Config,
  type Env,
  formatListenAddr,
  type ListenAddr,
  parseConfig,
} from "../config/mod.ts";
import { ConfigError, describeError, redactSecrets } from "../errors.ts";
import { parseIp } from "../net/mod.ts";

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
    /** RESOURCE_URI's host: sent as the server name (SNI) and Host, and shown. */
    readonly serverName: string;
    /** TLS_CERT_FILE: the certificate the gate serves, the only one accepted. */
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
    const url = probeUrl(args[0]);
    if (url === undefined) {
      return fail(
        `Invalid URL: expected an http or https URL, got ${JSON.stringify(redactSecrets(args[0]))}`,
      );
    }
    target = { kind: "http", url };
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
    ? `GET ${redactSecrets(target.url)}`
    : `GET https://${target.serverName}${target.path} via ${
      formatListenAddr({ hostname: target.hostname, port: target.port })
    }`;
  try {
    const status = target.kind === "http"
      ? await probeHttp(target.url, deps.fetch ?? fetch, timeoutMs)
      : await probeTls(target, timeoutMs);
    if (status !== 200) return fail(`${label}: status ${status}`);
  } catch (err) {
    // Deno's fetch says only "fetch failed": the reason (refused, DNS, TLS, timeout) is its cause.
    return fail(`${label}: ${describeError(err)}`);
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
 * The URL to GET for a healthcheck argument, or undefined when it is not an http(s) URL. A base
 * URL (no path, or just "/") means the gate's readiness path.
 */
export function probeUrl(arg: string): string | undefined {
  if (!/^https?:\/\/[^/?#]/i.test(arg) || !URL.canParse(arg)) return undefined;
  const url = new URL(arg);
  if (url.pathname === "/") url.pathname = READY_PATH;
  return url.href;
}

/**
 * HTTP/1.1 GET over TLS to a loopback address, accepting exactly the certificate the gate serves.
 *
 * Verifying it the usual way fails for the commonest self-signed certificate: `openssl req -x509`
 * makes one with CA:TRUE, and rustls (Deno.connectTls, fetch) refuses a CA certificate as a
 * server's own ("invalid peer certificate: ... CaUsedAsEndEntity"; measured with Deno 2.9.6),
 * even when it is given as `caCerts`. The probe does not need a chain of trust: it talks to its
 * own process over loopback, so it pins instead. The handshake runs without chain verification
 * and the probe proceeds only when the server's certificate is byte for byte one of those in
 * TLS_CERT_FILE, whatever its host names or CA flag (node:tls, which exposes the peer's
 * certificate; Deno.TlsConn does not).
 */
async function probeTls(
  target: Extract<HealthTarget, { kind: "tls" }>,
  timeoutMs: number,
): Promise<number> {
  const pinned = pemCertificates(await Deno.readTextFile(target.caFile));
  if (pinned.length === 0) throw new Error(`no certificate in "${target.caFile}"`);
  const socket = connectTls({
    host: target.hostname,
    port: target.port,
    // SNI takes a host name only (RFC 6066 §3).
    ...(parseIp(target.serverName) !== undefined ? {} : { servername: target.serverName }),
    ALPNProtocols: ["http/1.1"],
    // Replaced by the pin below: the certificate must be the gate's own.
    rejectUnauthorized: false,
  });
  const timer = setTimeout(
    () => socket.destroy(new Error(`Timed out after ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    const served = servedCertificate(socket);
    if (served === undefined || !pinned.some((der) => sameBytes(der, served))) {
      throw new Error(
        `the server's certificate is not the one in TLS_CERT_FILE "${target.caFile}"`,
      );
    }
    const request = `GET ${target.path} HTTP/1.1\r\nHost: ${target.serverName}\r\n` +
      "Connection: close\r\nUser-Agent: mcp-gate-healthcheck\r\n\r\n";
    socket.write(request);
    const head = await readStatusLine(socket);
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
    if (!m) throw new Error(`unexpected response ${JSON.stringify(head.slice(0, 40))}`);
    return Number(m[1]);
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

/** The DER bytes of every `CERTIFICATE` block of a PEM text (RFC 7468 §5). */
export function pemCertificates(pem: string): Uint8Array[] {
  const blocks = pem.matchAll(/-----BEGIN CERTIFICATE-----([^-]*)-----END CERTIFICATE-----/g);
  return [...blocks].map((m) =>
    Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0))
  );
}

function servedCertificate(socket: TLSSocket): Uint8Array | undefined {
  const raw = socket.getPeerCertificate()?.raw;
  return raw ? new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) : undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Reads until the first CRLF (at most 1 KiB) and returns the status line. */
function readStatusLine(socket: TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const done = (line: string) => {
      socket.off("data", onData);
      resolve(line);
    };
    const onData = (chunk: Uint8Array | string) => {
      text += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
      const end = text.indexOf("\r\n");
      if (end >= 0) done(text.slice(0, end));
      else if (text.length >= 1024) done(text);
    };
    socket.on("data", onData);
    socket.once("end", () => done(text));
    socket.once("error", reject);
  });
}
