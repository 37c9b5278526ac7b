import assert from "node:assert/strict";
import { join } from "node:path";
import { findViolations, layerOf } from "./check_imports.ts";

Deno.test("findViolations() reports an import from behind a module's mod.ts, and only that", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(root, "src", "wire"), { recursive: true });
    await Deno.mkdir(join(root, "bench"));
    await Deno.writeTextFile(join(root, "src", "wire", "mod.ts"), 'export * from "./inner.ts";\n');
    await Deno.writeTextFile(join(root, "src", "wire", "inner.ts"), "export const x = 1;\n");
    await Deno.writeTextFile(join(root, "src", "ok.ts"), 'import { x } from "./wire/mod.ts";\n');
    await Deno.writeTextFile(
      join(root, "bench", "bad.ts"),
      'import { y } from "node:path";\nimport {\n  x,\n} from "../src/wire/inner.ts";\n',
    );
    const found = await findViolations(root);
    assert.deepEqual(found, [{
      file: join("bench", "bad.ts"),
      line: 4,
      specifier: "../src/wire/inner.ts",
      module: join("src", "wire"),
      rule: "internals",
    }]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("the repository keeps every module boundary", async () => {
  const root = new URL("..", import.meta.url).pathname;
  assert.deepEqual(await findViolations(root), []);
});

Deno.test("findViolations() reports an import up the layers, and not one down them", async () => {
  const root = await Deno.makeTempDir();
  try {
    for (const dir of ["net", "http"]) {
      await Deno.mkdir(join(root, "src", dir), { recursive: true });
      await Deno.writeTextFile(join(root, "src", dir, "mod.ts"), "export const x = 1;\n");
    }
    await Deno.writeTextFile(
      join(root, "src", "net", "ip.ts"),
      'import { x } from "../http/mod.ts";\n',
    );
    await Deno.writeTextFile(
      join(root, "src", "http", "cors.ts"),
      'import { x } from "../net/mod.ts";\nimport { y } from "../errors.ts";\n',
    );
    const found = await findViolations(root);
    assert.deepEqual(found.map((v) => [v.file, v.rule]), [[join("src", "net", "ip.ts"), "layers"]]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("layerOf() knows every folder and root file of src/", async () => {
  const src = new URL("../src/", import.meta.url).pathname;
  for await (const e of Deno.readDir(src)) {
    if (e.name.endsWith("_test.ts")) continue;
    assert.notEqual(layerOf(e.name), -1, `src/${e.name} has no layer in LAYERS`);
  }
});
