/**
 * Every document a source file cites is in the repository: a `docs/<name>.md` citation names a
 * file that exists, and the contract and the spec notes are cited by their path in docs/, never by
 * a bare name that points outside the repository (the shared copies they were taken from).
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url);

/** Where citations live: the code, the scripts, the deploy files and the CI entry. */
const SCAN = [
  "main.ts",
  "Dockerfile",
  ".ci/run",
  "src",
  "tests",
  "bench",
  "demo",
  "scripts",
  "deploy",
];
const EXTENSIONS = /\.(ts|sh|lua|ya?ml|json|service|example)$/;
const SKIP_DIRS = new Set(["node_modules", "dist", ".git"]);
/** This file quotes the bare forms on purpose, as the cases of its own check. */
const SELF = "tests/doc_refs_test.ts";

/** `docs/<name>.md`, as cited in a comment (or a test name). */
const DOCS_CITATION = /(?<![\w-])docs\/([\w.-]+\.md)/g;

/**
 * A document cited without its docs/ path: the contract by name or as "contract §n", the spec
 * notes, the peer notes and the Deno notes.
 */
const BARE_CITATION =
  /(?<!docs\/)\b(?:CONTRACT\.md|CONTRACT(?= §)|[Cc]ontract(?= §)|specs\.md|peers\.md|deno-notes\.md)/g;

/** One problem per offending citation: `file:line: message`. */
function citationProblems(
  file: string,
  text: string,
  exists: (docsName: string) => boolean,
): string[] {
  const problems: string[] = [];
  text.split("\n").forEach((line, i) => {
    for (const m of line.matchAll(DOCS_CITATION)) {
      if (!exists(m[1])) {
        problems.push(`${file}:${i + 1}: cites docs/${m[1]}, which does not exist`);
      }
    }
    for (const m of line.matchAll(BARE_CITATION)) {
      problems.push(`${file}:${i + 1}: cites "${m[0]}" without its docs/ path`);
    }
  });
  return problems;
}

async function* sourceFiles(path: string): AsyncGenerator<string> {
  const url = new URL(path, ROOT);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(url);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (info.isFile) {
    yield path;
    return;
  }
  for await (const entry of Deno.readDir(url)) {
    if (entry.isDirectory && !SKIP_DIRS.has(entry.name)) {
      yield* sourceFiles(`${path}/${entry.name}`);
    } else if (entry.isFile && EXTENSIONS.test(entry.name)) {
      yield `${path}/${entry.name}`;
    }
  }
}

Deno.test("citationProblems() finds missing docs/ files and bare citations", async (t) => {
  const exists = (name: string) => name === "contract.md" || name === "specs.md";
  const cases: [string, string, number][] = [
    ["a docs/ citation of an existing file", "// see docs/contract.md §3.8", 0],
    ["the spec notes by path", " * (docs/specs.md §12.4).", 0],
    ["a docs/ citation of a missing file", "// see docs/nowhere.md", 1],
    ["the contract by its shared name", "/** (CONTRACT.md §6) */", 1],
    ["the contract in capitals", "// CONTRACT §5: no token bytes", 1],
    ["the contract in lower case", "// contract §4 order", 1],
    ["the contract at a sentence start", "// Contract §4: time is re-checked", 1],
    ["the spec notes by bare name", "// specs.md §0.1", 1],
    ["the spec notes under reference/", "// reference/specs.md §8", 1],
    ["the peer notes", "// peers.md", 1],
    ["the Deno notes", "// deno-notes.md", 1],
    ["a constant that only starts with the word", "const CONTRACT_VARIABLES = new Set();", 0],
    ["a relative path inside docs/", "[contract](../docs/contract.md)", 0],
  ];
  for (const [name, line, want] of cases) {
    await t.step(name, () => {
      assert.equal(citationProblems("x.ts", line, exists).length, want, line);
    });
  }
});

Deno.test("every document a source file cites is in docs/ and cited by its path there", async () => {
  const docs = new Set<string>();
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.isFile) docs.add(entry.name);
  }
  const problems: string[] = [];
  let scanned = 0;
  for (const path of SCAN) {
    for await (const file of sourceFiles(path)) {
      if (file === SELF) continue;
      scanned++;
      const text = await Deno.readTextFile(new URL(file, ROOT));
      problems.push(...citationProblems(file, text, (name) => docs.has(name)));
    }
  }
  assert.ok(scanned > 50, `scanned ${scanned} files`);
  assert.deepEqual(problems, []);
});

/**
 * A repository path named in prose: `src/…`, `tests/…` and the like, with a file extension. The
 * layout moved once already; a path a document names must still be there.
 */
const REPO_PATH =
  /(?<![\w/.-])((?:src|tests|bench|demo|scripts|deploy|docs)\/[\w./-]+\.(?:ts|md|ya?ml|json|sh|service|example))/g;

Deno.test("every repository path the README and docs/ name exists", async () => {
  // docs/specs.md quotes paths inside other projects (the MCP SDK's src/client/...).
  const documents = ["README.md"];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.isFile && entry.name.endsWith(".md") && entry.name !== "specs.md") {
      documents.push(`docs/${entry.name}`);
    }
  }
  const missing: string[] = [];
  let named = 0;
  for (const doc of documents) {
    const text = await Deno.readTextFile(new URL(doc, ROOT));
    for (const [, path] of text.matchAll(REPO_PATH)) {
      named++;
      try {
        await Deno.stat(new URL(path, ROOT));
      } catch {
        missing.push(`${doc}: ${path}`);
      }
    }
  }
  assert.ok(documents.length > 5 && named > 30, `${named} paths in ${documents.length} documents`);
  assert.deepEqual(missing, []);
});
