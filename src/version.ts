/** The release version: the one place in code (deno.json's `version` carries the same). */
export const VERSION = "0.1.0";

/** What `--version` and `mcpgate_build_info` report. */
export interface BuildInfo {
  /** {@linkcode VERSION}. */
  readonly version: string;
  /** The git revision the binary was built from (`-dirty` with uncommitted changes), or "unknown". */
  readonly revision: string;
  /** The Deno runtime running the gate (a compiled binary: the runtime it embeds). */
  readonly deno: string;
}

/**
 * Where scripts/compile.sh leaves the build's revision for `deno compile --include`: written just
 * before the compile and removed right after, so it exists only inside the binary (a source run
 * finds no file, never a stale one). Nothing generated is committed.
 */
const BUILD_FILE = new URL("../dist/build_info.json", import.meta.url);

let cached: BuildInfo | undefined;

/** The build's identity, read once. A source run's revision is "unknown". */
export function buildInfo(): BuildInfo {
  cached ??= Object.freeze({ version: VERSION, revision: readRevision(), deno: Deno.version.deno });
  return cached;
}

function readRevision(): string {
  try {
    const { revision } = JSON.parse(Deno.readTextFileSync(BUILD_FILE));
    if (typeof revision === "string" && /^[0-9a-f]{7,40}(?:-dirty)?$/.test(revision)) {
      return revision;
    }
  } catch {
    // No build file (a source run) or no read permission: nothing to report.
  }
  return "unknown";
}

/** The one line `mcp-gate --version` prints (without the newline). */
export function versionLine(info: BuildInfo = buildInfo()): string {
  return `mcp-gate ${info.version} (revision ${info.revision}, deno ${info.deno})`;
}
