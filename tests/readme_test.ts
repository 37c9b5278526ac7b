import assert from "node:assert/strict";
import { normalizeTables, renderReadme } from "../scripts/readme.ts";

Deno.test("README configuration table and usage block match the code (run `deno task readme`)", async () => {
  const doc = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  assert.equal(normalizeTables(doc), normalizeTables(renderReadme(doc)));
});

Deno.test("README names the two set-up commands that CI and newcomers run", async () => {
  const doc = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const ci = await Deno.readTextFile(new URL("../.ci/run", import.meta.url));
  assert.ok(doc.includes("deno task demo"));
  assert.ok(doc.includes("deno task test"));
  assert.match(ci, /^deno task test( |$)/m, ".ci/run runs the README's test command");
});
