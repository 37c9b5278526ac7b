import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createLogger,
  createMemorySink,
  createStdoutSink,
  jsonNumber,
  jsonString,
  truncateBytes,
} from "./log.ts";

const T0 = Date.UTC(2026, 10, 28, 10, 0, 0);

Deno.test("createLogger() writes one JSON object per line: time, level, msg, then the fields", () => {
  const sink = createMemorySink();
  const log = createLogger({ level: "info", sink, now: () => T0 });
  log.info("request", { method: "GET", status: 200, nested: { a: [1, "x"] } });
  log.warn("plain");
  assert.deepEqual(sink.lines, [
    '{"time":"2026-11-28T10:00:00.000Z","level":"info","msg":"request","method":"GET",' +
    '"status":200,"nested":{"a":[1,"x"]}}\n',
    '{"time":"2026-11-28T10:00:00.000Z","level":"warn","msg":"plain"}\n',
  ]);
  for (const line of sink.lines) JSON.parse(line);
});

Deno.test("createLogger() drops lines below its level and says which levels are on", () => {
  const sink = createMemorySink();
  const log = createLogger({ level: "warn", sink });
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  assert.deepEqual(sink.lines.map((l) => JSON.parse(l).level), ["warn", "error"]);
  assert.equal(log.enabled("info"), false);
  assert.equal(log.enabled("error"), true);
});

Deno.test("createLogger() never throws on fields it cannot serialise", () => {
  const sink = createMemorySink();
  const log = createLogger({ sink });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  log.info("a", { big: 1n });
  log.info("b", cyclic);
  log.info("c", {});
  assert.deepEqual(sink.lines.map((l) => JSON.parse(l).log_error ?? JSON.parse(l).msg), [
    "unserialisable fields",
    "unserialisable fields",
    "c",
  ]);
});

Deno.test("createLogger() escapes the message so a line stays one line", () => {
  const sink = createMemorySink();
  createLogger({ sink }).info('evil\n{"level":"error"}');
  assert.equal(sink.lines.length, 1);
  assert.equal(sink.lines[0].split("\n").length, 2);
  assert.equal(JSON.parse(sink.lines[0]).msg, 'evil\n{"level":"error"}');
});

Deno.test("truncateBytes() keeps at most 512 UTF-8 bytes and marks the cut", async (t) => {
  const enc = new TextEncoder();
  await t.step("short strings are untouched", () => assert.equal(truncateBytes("/mcp"), "/mcp"));
  await t.step("ASCII over the limit", () => {
    const out = truncateBytes("a".repeat(600));
    assert.equal(enc.encode(out).length, 512);
    assert.ok(out.endsWith("…(truncated)"));
  });
  await t.step("multi-byte characters are never split", () => {
    const out = truncateBytes("é".repeat(400));
    assert.ok(enc.encode(out).length <= 512);
    assert.ok(!out.includes("\uFFFD"));
    assert.ok(out.endsWith("…(truncated)"));
  });
  await t.step("exactly 512 bytes are kept whole", () => {
    const s = "b".repeat(512);
    assert.equal(truncateBytes(s), s);
  });
});

Deno.test("createStdoutSink() batches lines into one write and flushes on demand", () => {
  const writes: string[] = [];
  const sink = createStdoutSink({
    intervalMs: 60_000,
    writeSync: (b) => void writes.push(new TextDecoder().decode(b)),
  });
  sink.write("a\n");
  sink.write("b\n");
  assert.deepEqual(writes, []);
  sink.flush();
  assert.deepEqual(writes, ["a\nb\n"]);
  sink.flush();
  assert.deepEqual(writes, ["a\nb\n"]);
});

Deno.test("createStdoutSink() writes at once when the buffer is full", () => {
  const writes: string[] = [];
  const sink = createStdoutSink({
    intervalMs: 60_000,
    maxBufferedChars: 8,
    writeSync: (b) => void writes.push(new TextDecoder().decode(b)),
  });
  sink.write("12345\n");
  assert.deepEqual(writes, []);
  sink.write("6789\n");
  assert.deepEqual(writes, ["12345\n6789\n"]);
  sink.flush();
});

Deno.test("createStdoutSink() flushes on its timer without keeping the process alive", async () => {
  const { promise, resolve } = Promise.withResolvers<string>();
  const sink = createStdoutSink({
    intervalMs: 5,
    writeSync: (b) => resolve(new TextDecoder().decode(b)),
  });
  // The sink's own timer is unref'd (it never keeps the process alive): hold the loop open here.
  const hold = setTimeout(() => {}, 10_000);
  sink.write("x\n");
  assert.equal(await promise, "x\n");
  clearTimeout(hold);
});

Deno.test("createStdoutSink() survives a failing write (closed stdout) and keeps writing", () => {
  const attempts: string[] = [];
  let closed = true;
  const sink = createStdoutSink({
    intervalMs: 60_000,
    writeSync: (b) => {
      attempts.push(new TextDecoder().decode(b));
      if (closed) throw new Deno.errors.BrokenPipe("closed");
    },
  });
  sink.write("x\n");
  assert.doesNotThrow(() => sink.flush());
  assert.deepEqual(attempts, ["x\n"]);
  // The failed batch is dropped, not retried; later lines still go out.
  closed = false;
  sink.write("y\n");
  assert.doesNotThrow(() => sink.flush());
  assert.deepEqual(attempts, ["x\n", "y\n"]);
});

Deno.test("createLogger() writes the time as Date.toISOString() would, for every clock value", () => {
  const times = [
    Date.UTC(2026, 10, 28, 10, 0, 0, 0),
    Date.UTC(2026, 10, 28, 10, 0, 0, 7),
    Date.UTC(2026, 10, 28, 10, 0, 0, 42),
    Date.UTC(2026, 10, 28, 10, 0, 0, 999),
    Date.UTC(2026, 10, 28, 10, 0, 1, 0),
    Date.UTC(2026, 10, 28, 10, 0, 0, 500), // back in time: a stepped clock
    Date.UTC(2026, 10, 28, 10, 0, 0, 500) + 0.75, // fractional
    0,
    -1500, // before 1970
    253402300799999, // the last millisecond of year 9999
    253402300800000, // year 10000: "+010000-..."
  ];
  let i = 0;
  const sink = createMemorySink();
  const log = createLogger({ sink, now: () => times[i] });
  for (i = 0; i < times.length; i++) log.info("tick");
  const got = sink.lines.map((l) => JSON.parse(l).time);
  assert.deepEqual(got, times.map((t) => new Date(t).toISOString()));
});

Deno.test("jsonString() and jsonNumber() give exactly JSON.stringify's text", async (t) => {
  await t.step("strings, including quotes, controls, lone and paired surrogates", () => {
    for (
      const v of [
        "",
        "plain",
        'q"q',
        "b\\s",
        "\n\t\u0000\u001f",
        "\ud800",
        "a\udfffb",
        "😀",
        "\u2028é",
      ]
    ) {
      assert.equal(jsonString(v), JSON.stringify(v), JSON.stringify(v));
    }
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 40 }), (v) => {
      assert.equal(jsonString(v), JSON.stringify(v));
    }));
  });
  await t.step("numbers, including -0, fractions and non-finite ones", () => {
    for (const v of [0, -0, 1, 200, 1.5, 0.001, 12.345, 1e21, -3, NaN, Infinity, -Infinity]) {
      assert.equal(jsonNumber(v), JSON.stringify(v), String(v));
    }
    fc.assert(fc.property(fc.double(), (v) => assert.equal(jsonNumber(v), JSON.stringify(v))));
  });
});

Deno.test("Logger.writeMembers() writes the same line as the fields would, and honours the level", () => {
  const a = createMemorySink();
  const b = createMemorySink();
  const viaFields = createLogger({ level: "info", sink: a, now: () => T0 });
  const viaMembers = createLogger({ level: "info", sink: b, now: () => T0 });
  const fields = { method: "GET", status: 200, sub: 'a"b' };
  viaFields.info("request", fields);
  viaMembers.writeMembers(
    "info",
    "request",
    `"method":${jsonString("GET")},"status":${jsonNumber(200)},"sub":${jsonString('a"b')}`,
  );
  viaFields.warn("plain");
  viaMembers.writeMembers("warn", "plain", "");
  viaMembers.writeMembers("debug", "hidden", '"x":1');
  assert.deepEqual(b.lines, a.lines);
});
