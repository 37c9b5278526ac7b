/**
 * Module boundaries, checked by `deno task ok` and CI (docs/architecture.md):
 * - a folder under `src/` that has a `mod.ts` is a module, and code outside that folder may import
 *   only its `mod.ts`, never the files behind it;
 * - inside `src/`, imports point down the layers of {@linkcode LAYERS}: a module never imports
 *   from one above it (tests excepted). `src/errors.ts` and `src/version.ts` import nothing and sit below all.
 * Prints every offending import and exits 1 when there is one.
 *
 * Usage: deno run --allow-read scripts/check_imports.ts [root]
 */
import { dirname, join, relative, resolve } from "node:path";

/** One import that reaches behind a module's public face, or up the layers. */
export interface Violation {
  file: string;
  line: number;
  specifier: string;
  module: string;
  /** What rule it breaks. */
  rule: "internals" | "layers";
}

/**
 * The layers of `src/`, lowest first: a place may import its own layer and those below. Root files
 * other than the base leaves are named with their file name.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ["errors.ts", "version.ts"],
  ["net", "headers"],
  ["config"],
  ["ops"],
  ["http1", "ratelimit"],
  ["http"],
  ["auth"],
  ["proxy"],
  ["handler.ts", "server.ts"],
  ["cli"],
];

/** The layer of a path relative to `src/` ("http/cors.ts", "server.ts"), or -1 outside src. */
export function layerOf(pathInSrc: string): number {
  const first = pathInSrc.split("/")[0];
  return LAYERS.findIndex((names) => names.includes(first));
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/g;
const DYNAMIC = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** Folders (absolute) under `srcDir` that have a mod.ts. */
export async function modules(srcDir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const dir of walkDirs(srcDir)) {
    try {
      if ((await Deno.stat(join(dir, "mod.ts"))).isFile) out.push(dir);
    } catch {
      // no mod.ts: not a module
    }
  }
  return out;
}

/** Every violation of the rule in the TypeScript files under `root`. */
export async function findViolations(root: string): Promise<Violation[]> {
  const mods = await modules(join(root, "src"));
  const out: Violation[] = [];
  for await (const file of walkFiles(root)) {
    const text = await Deno.readTextFile(file);
    for (const re of [IMPORT, DYNAMIC]) {
      re.lastIndex = 0;
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        const spec = m[1];
        if (!spec.startsWith(".")) continue;
        const target = resolve(dirname(file), spec);
        const line = text.slice(0, m.index + m[0].length).split("\n").length;
        for (const mod of mods) {
          const inside = file.startsWith(mod + "/");
          if (inside || !target.startsWith(mod + "/")) continue;
          if (target === join(mod, "mod.ts")) continue;
          out.push({
            file: relative(root, file),
            line,
            specifier: spec,
            module: relative(root, mod),
            rule: "internals",
          });
        }
        const src = join(root, "src") + "/";
        // Tests are not part of the product's dependency graph: a test may reach up (a config
        // test renders --help) as long as it goes through mod.ts.
        if (file.startsWith(src) && target.startsWith(src) && !file.endsWith("_test.ts")) {
          const from = layerOf(file.slice(src.length));
          const to = layerOf(target.slice(src.length));
          if (from !== -1 && to !== -1 && to > from) {
            out.push({
              file: relative(root, file),
              line,
              specifier: spec,
              module: relative(root, dirname(target)),
              rule: "layers",
            });
          }
        }
      }
    }
  }
  return out;
}

async function* walkDirs(dir: string): AsyncGenerator<string> {
  yield dir;
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) yield* walkDirs(join(dir, e.name));
  }
}

const SKIP = new Set(["node_modules", "dist", ".git"]);

async function* walkFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    if (SKIP.has(e.name)) continue;
    const p = join(dir, e.name);
    if (e.isDirectory) yield* walkFiles(p);
    else if (e.isFile && p.endsWith(".ts")) yield p;
  }
}

if (import.meta.main) {
  const root = resolve(Deno.args[0] ?? ".");
  const found = await findViolations(root);
  for (const v of found) {
    console.error(
      v.rule === "internals"
        ? `${v.file}:${v.line}: imports "${v.specifier}" from behind ${v.module}/mod.ts`
        : `${v.file}:${v.line}: imports "${v.specifier}" from a layer above it`,
    );
  }
  if (found.length > 0) Deno.exit(1);
}
