import assert from "node:assert/strict";
import { Deadlines } from "./deadlines.ts";

Deno.test("Deadlines fires each expired deadline once, on the tick after it is due", async () => {
  let now = 0;
  const d = new Deadlines(50, () => now); // tick: 5 ms
  const fired: string[] = [];
  d.watch(10, () => fired.push("a"));
  const b = d.watch(10, () => fired.push("b"));
  d.watch(1000, () => fired.push("c"));
  d.unwatch(b);
  now = 20;
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(fired, ["a"]);
  assert.equal(d.size, 1);
  now = 2000;
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(fired, ["a", "c"]);
  assert.equal(d.size, 0);
  d.close();
});

Deno.test("Deadlines: a deadline moved later (an idle timer re-armed) does not fire at its first time", async () => {
  let now = 0;
  const d = new Deadlines(50, () => now);
  let fired = 0;
  const x = d.watch(10, () => fired++);
  now = 8;
  x.at = now + 10;
  now = 12;
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(fired, 0);
  now = 19;
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(fired, 1);
  d.close();
});

Deno.test("Deadlines holds no timer once nothing is watched and it is closed", () => {
  const d = new Deadlines(1000);
  const x = d.watch(60_000, () => {});
  d.unwatch(x);
  d.close(); // the test sanitizer fails on a timer left behind
  assert.equal(d.size, 0);
});
