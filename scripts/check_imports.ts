/**
 * Module boundaries, checked by `deno task ok` and CI: a folder under `src/` that has a `mod.ts`
 * is a module, and code outside that folder may import only its `mod.ts`, never the files behind
 * it. Prints every offending import and exits 1 when there is one.
 *
 * Usage: deno run --allow-read scripts/check_imports.ts [root]
 */
import { dirname, join, relative, resolve } from "node:path";

/** One import that reaches behind a module's public face. */
export interface Violation {
  file: string;
  line: number;
  specifier: string;
  module: string;
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
        for (const mod of mods) {
          const inside = file.startsWith(mod + "/");
          if (inside || !target.startsWith(mod + "/")) continue;
          if (target === join(mod, "mod.ts")) continue;
          const line = text.slice(0, m.index + m[0].length).split("\n").length;
          out.push({
            file: relative(root, file),
            line,
            specifier: spec,
            module: relative(root, mod),
          });
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
      `${v.file}:${v.line}: imports "${v.specifier}" from behind ${v.module}/mod.ts`,
    );
  }
  if (found.length > 0) Deno.exit(1);
}
