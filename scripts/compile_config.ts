/**
 * Writes `dist/compile.json` (+ `dist/compile.lock`) for `deno compile`: the project's
 * deno.json with only the imports that main.ts actually reaches, and its `unstable` features (so
 * the binary runs with the same ones as `deno task start`; `no-legacy-abort` was once dropped
 * here). Prints the `--v8-flags=...` argument of the `start` task on stdout (empty when it has
 * none), for compile.sh to pass on: deno.json is the one place both are written.
 *
 * Why: `deno compile` embeds every npm package of the configuration's lockfile snapshot, not just
 * the ones the program imports, which would ship the test-only peers (MCP SDK, oidc-provider,
 * fast-check: about 19 MB) inside the gate. Deno 2.9's `--exclude-unused-npm` does the same, but
 * the offline toolchain (deno 2.7.11) lacks it, so this works with both.
 * The lockfile is copied so the integrity hashes of the kept packages are still checked.
 *
 * Usage: deno info --json main.ts > dist/graph.json
 *        deno run --allow-read=. --allow-write=dist scripts/compile_config.ts dist/graph.json
 */

interface Graph {
  modules: { kind: string; npmPackage?: string }[];
}

interface DenoJson {
  imports?: Record<string, string>;
  compilerOptions?: unknown;
  unstable?: string[];
  tasks?: Record<string, string>;
}

const graphPath = Deno.args[0] ?? "dist/graph.json";
const graph: Graph = JSON.parse(await Deno.readTextFile(graphPath));
const denoJson: DenoJson = JSON.parse(await Deno.readTextFile("deno.json"));

// "jose@6.2.18" or "@scope/name@1.2.3_peer@4.5.6" -> package name.
const reached = new Set(
  graph.modules.filter((m) => m.kind === "npm" && m.npmPackage).map((m) =>
    m.npmPackage!.replace(/^(@?[^@]+)@.*$/, "$1")
  ),
);

const imports: Record<string, string> = {};
for (const [key, value] of Object.entries(denoJson.imports ?? {})) {
  const npm = /^npm:\/?(@?[^@/]+(?:\/[^@/]+)?)@/.exec(value);
  // Keep non-npm mappings (none today) and the npm packages the program reaches.
  if (!npm || reached.has(npm[1])) imports[key] = value;
}

await Deno.writeTextFile("dist/compile.lock", await Deno.readTextFile("deno.lock"));
await Deno.writeTextFile(
  "dist/compile.json",
  JSON.stringify(
    {
      imports,
      compilerOptions: denoJson.compilerOptions,
      ...(denoJson.unstable ? { unstable: denoJson.unstable } : {}),
      lock: { path: "compile.lock" },
    },
    null,
    2,
  ) + "\n",
);
console.error(
  `compile_config: embedding npm packages: ${[...reached].sort().join(", ") || "none"}`,
);

// The start task's V8 flags, e.g. "--v8-flags=--max-semi-space-size=16".
const v8Flags = /(?:^|\s)(--v8-flags=\S+)/.exec(denoJson.tasks?.start ?? "")?.[1] ?? "";
console.log(v8Flags);
