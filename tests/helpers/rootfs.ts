/**
 * A minimal root file system for the compiled binary, built the way the distroless runtime image
 * holds it: the executable at {@linkcode IMAGE_BINARY_PATH} and the shared libraries `ldd` lists,
 * nothing else (no shell, no Deno, no /etc). Run it as {@linkcode IMAGE_USER} with
 * `unshare --fork --pid --mount --mount-proc=ROOT/proc chroot --userspec=UID:GID ROOT /mcp-gate`.
 *
 * The Dockerfile's runtime stage must match these constants; tests/deploy_test.ts checks that.
 */

/** Where the Dockerfile puts the binary, and where the rootfs test puts it. */
export const IMAGE_BINARY_PATH = "/mcp-gate";

/** The distroless `nonroot` user the image runs as (`USER 65532:65532`). */
export const IMAGE_USER = { uid: 65532, gid: 65532 } as const;

/** The runtime base image of the Dockerfile's last stage. */
export const IMAGE_RUNTIME_BASE = "gcr.io/distroless/cc-debian12:nonroot";

/**
 * Shared objects that distroless `cc-debian12` ships (glibc from libc6, plus libgcc-s1). The
 * binary may link only these, or the image would fail at start-up where this machine succeeds.
 */
export const DISTROLESS_CC_LIBRARIES: ReadonlySet<string> = new Set([
  "libc.so.6",
  "libm.so.6",
  "libdl.so.2",
  "libpthread.so.0",
  "librt.so.1",
  "libresolv.so.2",
  "libgcc_s.so.1",
  "ld-linux-x86-64.so.2",
  "ld-linux-aarch64.so.1",
]);

/** Absolute paths of the shared libraries `ldd` resolves for `binary` (vDSO excluded). */
export async function lddLibraries(binary: string): Promise<string[]> {
  const out = await new Deno.Command("ldd", { args: [binary], stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`ldd failed for "${binary}": ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  const libs: string[] = [];
  for (const line of text.split("\n")) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m) libs.push(m[1]);
    else if (/not found/.test(line)) throw new Error(`ldd: ${line.trim()}`);
  }
  return libs;
}

/** A temporary root directory, removed on dispose. */
export interface MinimalRootfs extends AsyncDisposable {
  readonly root: string;
  /** Paths inside the root, e.g. "/mcp-gate", "/lib/x86_64-linux-gnu/libc.so.6", "/proc". */
  readonly entries: readonly string[];
}

/**
 * Builds the root: `binary` at /mcp-gate, each `ldd` library at its own path, an empty /proc to
 * mount on (Deno-compiled programs read /proc/self/exe) and nothing else.
 */
export async function buildMinimalRootfs(binary: string): Promise<MinimalRootfs> {
  const root = await Deno.makeTempDir({ prefix: "mcp-gate-rootfs-" });
  // makeTempDir creates 0700; the unprivileged user must be able to walk "/".
  await Deno.chmod(root, 0o755);
  const entries: string[] = [];
  const place = async (inside: string, from: string) => {
    const target = root + inside;
    await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true, mode: 0o755 });
    await Deno.copyFile(from, target); // follows symlinks: the real file lands at the ldd path
    // Keep the source's mode: the dynamic loader must stay executable for the kernel to run it.
    await Deno.chmod(target, (await Deno.stat(from)).mode! & 0o755);
    entries.push(inside);
  };
  try {
    await place(IMAGE_BINARY_PATH, binary);
    for (const lib of await lddLibraries(binary)) await place(lib, lib);
    await Deno.mkdir(root + "/proc", { mode: 0o555 });
    entries.push("/proc");
  } catch (e) {
    await Deno.remove(root, { recursive: true });
    throw e;
  }
  return {
    root,
    entries,
    async [Symbol.asyncDispose]() {
      await Deno.remove(root, { recursive: true });
    },
  };
}

/** Why the minimal-rootfs test cannot run here, or undefined when it can. */
export function rootfsUnavailableReason(): string | undefined {
  if (Deno.build.os !== "linux") return "needs Linux (unshare, chroot, /proc)";
  if (Deno.uid() !== 0) return "needs root for unshare --mount and chroot";
  for (const tool of [UNSHARE, CHROOT, "/usr/bin/ldd"]) {
    try {
      Deno.statSync(tool);
    } catch {
      return `${tool} not found`;
    }
  }
  return undefined;
}

/** Absolute paths, since the child runs with an empty environment (no PATH). */
export const UNSHARE = "/usr/bin/unshare";
export const CHROOT = "/usr/sbin/chroot";

/** Options for {@linkcode chrootCommand}. */
export interface ChrootCommandOptions {
  /** The complete environment of the gate: nothing is inherited. */
  env: Record<string, string>;
  /** Arguments after /mcp-gate. */
  args?: string[];
  /** Working directory of unshare itself (the gate then runs in "/" of its root). */
  cwd?: string;
}

/**
 * Sends `signal` to the gate that `unshare` forked (PID 1 of its namespace, so only a signal it
 * handles, or SIGKILL, reaches it). Signalling unshare itself would not: chroot's setuid clears
 * any parent-death signal. Falls back to unshare when the gate is already gone. The child list
 * is read with `cat`, since Deno wants --allow-all to read /proc.
 */
export async function signalChrooted(child: Deno.ChildProcess, signal: Deno.Signal): Promise<void> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${child.pid}/task/${child.pid}/children`],
    stdout: "piped",
    stderr: "null",
  }).output();
  const pids = new TextDecoder().decode(out.stdout).trim().split(/\s+/).filter((p) => p !== "")
    .map(Number);
  for (const pid of pids) {
    try {
      Deno.kill(pid, signal);
    } catch {
      // exited meanwhile
    }
  }
  if (pids.length === 0) {
    try {
      child.kill(signal);
    } catch {
      // exited meanwhile
    }
  }
}

/**
 * `unshare --fork --pid --mount --mount-proc=ROOT/proc chroot --userspec=65532:65532 ROOT /mcp-gate`:
 * its own PID and mount namespaces (so /proc is mounted only for it and vanishes with it), the
 * host network (so tests reach it on 127.0.0.1), the image's user, an empty environment.
 */
export function chrootCommand(root: string, options: ChrootCommandOptions): Deno.Command {
  return new Deno.Command(UNSHARE, {
    args: [
      "--fork",
      "--pid",
      "--mount",
      `--mount-proc=${root}/proc`,
      CHROOT,
      `--userspec=${IMAGE_USER.uid}:${IMAGE_USER.gid}`,
      root,
      IMAGE_BINARY_PATH,
      ...(options.args ?? []),
    ],
    env: options.env,
    clearEnv: true,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}
