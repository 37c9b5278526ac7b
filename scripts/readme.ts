/**
 * Keeps the README in step with the code: the configuration table comes from VARIABLES and the
 * usage block from `mcp-gate --help`. `deno task readme` rewrites both; tests/readme_test.ts fails
 * when they drift.
 */
import { VARIABLES } from "../src/config/mod.ts";
import { helpText } from "../src/cli/mod.ts";

/** The markdown configuration table. */
export function configTable(): string {
  const rows = VARIABLES.map((v) => {
    const def = v.default === "required" ? "**required**" : `\`${v.default}\``;
    const desc = v.description.replaceAll("|", "\\|");
    return `| \`${v.name}\` | ${def.replaceAll("|", "\\|")} | ${desc} |`;
  });
  return ["| variable | default | meaning |", "|---|---|---|", ...rows].join("\n");
}

/** The usage block, exactly as `mcp-gate --help` prints it. */
export function usageBlock(): string {
  return "```text\n" + helpText().trimEnd() + "\n```";
}

/** Replaces the text between `<!-- name:start -->` and `<!-- name:end -->`. */
export function replaceSection(doc: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  if (i < 0 || j < i) throw new Error(`README has no ${name} section markers`);
  return doc.slice(0, i + start.length) + "\n\n" + body + "\n\n" + doc.slice(j);
}

/** The README with both generated sections brought up to date. */
export function renderReadme(doc: string): string {
  return replaceSection(replaceSection(doc, "config", configTable()), "usage", usageBlock());
}

/** Table cells without padding, so `deno fmt`'s column alignment does not count as drift. */
export function normalizeTables(doc: string): string {
  return doc.split("\n").map((line) =>
    line.startsWith("|") ? line.replace(/\s*\|\s*/g, "|").replace(/-{3,}/g, "---") : line
  ).join("\n");
}

if (import.meta.main) {
  const path = new URL("../README.md", import.meta.url);
  const doc = await Deno.readTextFile(path);
  await Deno.writeTextFile(path, renderReadme(doc));
}
