/**
 * The black-box rig of the adversarial, controls and faults suites: a test issuer (discovery and
 * JWKS at a path, Keycloak style), a recording upstream, and the gate in front of it, started and
 * stopped together. `upstream.requests` is the record every "never reaches the upstream"
 * assertion reads.
 */
import assert from "node:assert/strict";
import { startTestIssuer, type TestIssuer } from "./issuer.ts";
import { startUpstream, type Upstream, type UpstreamHandler } from "./upstream.ts";
import { startGate, type TestGate } from "./gate.ts";

/** The resource every rig protects. */
export const RESOURCE = "https://mcp.example.com/mcp";
/** Its path-inserted metadata URL (RFC 9728 §3.1), as every challenge must carry it. */
export const META = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
/** The bare challenge for a request without a token (SCOPES_SUPPORTED is "mcp:tools"). */
export const BARE_CHALLENGE = `Bearer resource_metadata="${META}", scope="mcp:tools"`;

/** Every path the metadata is served at: the root form and both slash forms of /mcp. */
export const METADATA_PATHS: readonly string[] = [
  "/.well-known/oauth-protected-resource",
  "/.well-known/oauth-protected-resource/mcp",
  "/.well-known/oauth-protected-resource/mcp/",
];

/** The metadata document (RFC 9728 §2) a gate for `issuer` must publish, from config alone. */
export function expectedMetadata(issuer: { issuer: string }): Record<string, unknown> {
  return {
    resource: RESOURCE,
    authorization_servers: [issuer.issuer],
    bearer_methods_supported: ["header"],
    scopes_supported: ["mcp:tools"],
  };
}

/** The gate's environment for `issuer` and `upstream`, plus `extra`. */
export function gateEnv(
  issuer: { issuer: string },
  upstream: { url: string },
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    UPSTREAM_URL: upstream.url,
    RESOURCE_URI: RESOURCE,
    AUTHORIZATION_SERVER: issuer.issuer,
    SCOPES_SUPPORTED: "mcp:tools",
    ...extra,
  };
}

/** Waits until /readyz answers 200 (the key set loads in the background). */
export async function ready(gate: TestGate, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const res = await fetch(`${gate.origin}/readyz`);
    await res.body?.cancel();
    if (res.status === 200) return;
    await gate.waitForLog((l) => l.msg === "key set loaded", deadline - Date.now()).catch(() => {});
  }
  throw new Error("gate did not become ready");
}

/** A started issuer + upstream + gate. */
export interface Rig extends AsyncDisposable {
  issuer: TestIssuer;
  upstream: Upstream;
  gate: TestGate;
  /** `${gate.origin}/mcp` */
  url: string;
  /** Asserts the upstream has received no request at all. */
  assertUpstreamUntouched(message?: string): void;
}

/** Options for {@linkcode startRig}. */
export interface RigOptions {
  /** Upstream behaviour (default: 200 "ok"). */
  handler?: UpstreamHandler;
  /** Extra gate variables. */
  env?: Record<string, string>;
  /** Upstream options (e.g. `readBody: false`). */
  upstream?: Parameters<typeof startUpstream>[1];
}

/** Starts a rig and waits until the gate is ready. */
export async function startRig(options: RigOptions = {}): Promise<Rig> {
  const issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  const upstream = await startUpstream(options.handler, options.upstream);
  let gate: TestGate;
  try {
    gate = await startGate(gateEnv(issuer, upstream, options.env));
    await ready(gate);
  } catch (err) {
    await upstream.close();
    await issuer.close();
    throw err;
  }
  return {
    issuer,
    upstream,
    gate,
    url: `${gate.origin}/mcp`,
    assertUpstreamUntouched(message) {
      assert.deepEqual(
        upstream.requests.map((r) => `${r.method} ${r.target}`),
        [],
        message ?? "the upstream received a request",
      );
    },
    async [Symbol.asyncDispose]() {
      await gate.close();
      await upstream.close();
      await issuer.close();
    },
  };
}

/**
 * Asserts that no token, and no signature (or payload) segment of one, appears anywhere in
 * `logText` (docs/contract.md §5: no token bytes ever). Segments shorter than 8 characters are
 * skipped: they are too short to identify a token and could match by chance.
 */
export function assertNoTokenBytes(logText: string, tokens: readonly string[]): void {
  for (const token of tokens) {
    assert.ok(!logText.includes(token), "a whole token appears in the log");
    const parts = token.split(".");
    const secret = parts.length >= 3 ? [parts[1], parts[parts.length - 1]] : [token];
    for (const seg of secret) {
      if (seg.length >= 8) {
        assert.ok(
          !logText.includes(seg),
          `a token segment appears in the log: ${seg.length} chars`,
        );
      }
    }
  }
}
