import assert from "node:assert/strict";
import { createProcessStatsReader, maxOpenFiles } from "./process.ts";

Deno.test("maxOpenFiles() reads the soft limit from /proc/self/limits text", async (t) => {
  const table: [string, number | undefined][] = [
    ["Max open files            1024                 524288               files     \n", 1024],
    ["Max processes  63 63 processes\nMax open files  65536  65536  files\n", 65536],
    ["Max open files            unlimited            unlimited            files\n", undefined],
    ["", undefined],
  ];
  for (const [text, want] of table) {
    await t.step(JSON.stringify(text.slice(0, 40)), () => assert.equal(maxOpenFiles(text), want));
  }
});

Deno.test("createProcessStatsReader() reports CPU, resident memory and start time of this process", () => {
  const read = createProcessStatsReader();
  const a = read();
  let x = 0;
  for (let i = 0; i < 2e6; i++) x += Math.sqrt(i);
  assert.ok(x > 0);
  const b = read();
  assert.ok(a.cpuSeconds > 0 && b.cpuSeconds >= a.cpuSeconds, `${a.cpuSeconds} ${b.cpuSeconds}`);
  assert.ok(a.residentBytes > 1024 * 1024, `rss ${a.residentBytes}`);
  const now = Date.now() / 1000;
  assert.ok(a.startTimeSeconds <= now && a.startTimeSeconds > now - 3600, `${a.startTimeSeconds}`);
  assert.equal(a.startTimeSeconds, b.startTimeSeconds);
  // Descriptors only where /proc/self is readable (Deno asks --allow-all for it).
  if (a.openFds !== undefined) assert.ok(a.openFds > 0);
});
