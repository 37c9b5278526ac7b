/**
 * parseEnvFile() against an oracle built from systemd.exec(5)'s EnvironmentFile= rules: generated
 * assignments are written out in every documented form (unquoted with escapes, single quotes,
 * double quotes with escapes, continuation lines, blanks around names and values, comments,
 * lines without "=", CRLF line ends) and must come back exactly; plus the man page's examples.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { isValidEnvName, mergeEnvFile, parseEnvFile } from "./env_file.ts";

const NAME = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,11}$/);
/** Any text without NUL (which ends the file for systemd), weighted toward the syntax's own characters. */
const VALUE = fc.array(
  fc.oneof(
    fc.constantFrom(" ", "\t", "\\", '"', "'", "#", ";", "=", "$", "`", "\n", "\r", "x", "é", "😀"),
    fc.string({ minLength: 1, maxLength: 1, unit: "grapheme" }),
  ),
  { maxLength: 16 },
).map((chars) => chars.join("").replaceAll("\0", ""));
const BLANKS = fc.stringMatching(/^[ \t]{0,2}$/);

/** Writes `value` as an unquoted value: every "\" escaped, blanks at the ends escaped, "\" + LF joins. */
function unquoted(value: string, escapeAll: boolean[], joins: boolean[]): string | undefined {
  if (/[\n\r]/.test(value)) return undefined; // no unquoted spelling of a newline
  const chars = [...value];
  return chars.map((c, i) => {
    const edge = (i === 0 && /[ \t'"]/.test(c)) ||
      (/[ \t]/.test(c) && chars.slice(i).every((d) => /[ \t]/.test(d)));
    const escaped = c === "\\" || edge || escapeAll[i % escapeAll.length] ? "\\" + c : c;
    return (joins[i % joins.length] ? "\\\n" : "") + escaped;
  }).join("");
}

/** Writes `value` in single quotes, when it has none. */
function singleQuoted(value: string): string | undefined {
  return value.includes("'") ? undefined : `'${value}'`;
}

/** Writes `value` in double quotes: `"` `\` `` ` `` `$` escaped, "\" + LF joins anywhere. */
function doubleQuoted(value: string, joins: boolean[]): string {
  const body = [...value].map((c, i) =>
    (joins[i % joins.length] ? "\\\n" : "") + ('"\\`$'.includes(c) ? "\\" + c : c)
  ).join("");
  return `"${body}"`;
}

const ASSIGNMENT = fc.record({
  name: NAME,
  value: VALUE,
  form: fc.constantFrom("unquoted", "single", "double"),
  escapes: fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }),
  joins: fc.array(fc.nat(9).map((n) => n < 2), { minLength: 1, maxLength: 5 }),
  before: BLANKS,
  aroundEq: fc.tuple(BLANKS, BLANKS),
  after: BLANKS,
});
const NOISE = fc.oneof(
  fc.constant(""),
  fc.tuple(fc.constantFrom("#", ";"), fc.stringMatching(/^[^\n\r\0]{0,12}$/)).map(([c, t]) =>
    c + t
  ),
  fc.stringMatching(/^[A-Z ]{1,8}$/), // a line without "=": ignored
);

Deno.test("parseEnvFile() reads back every assignment written in a documented form (oracle)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(ASSIGNMENT, NOISE), { maxLength: 8 }),
      fc.constantFrom("\n", "\r\n"),
      fc.boolean(),
      (items, eol, finalEol) => {
        const lines: string[] = [];
        const want = new Map<string, string>();
        for (const [a, noise] of items) {
          const written = a.form === "unquoted"
            ? unquoted(a.value, a.escapes, a.joins)
            : a.form === "single"
            ? singleQuoted(a.value)
            : doubleQuoted(a.value, a.joins);
          if (written === undefined) continue;
          // Trailing blanks after an unquoted value that ends in an escape are still cut.
          lines.push(`${a.before}${a.name}${a.aroundEq[0]}=${a.aroundEq[1]}${written}${a.after}`);
          if (noise) lines.push(noise);
          want.delete(a.name);
          want.set(a.name, a.value);
        }
        // Continuation and quoted newlines are LF; only the line ends vary.
        const text = lines.join(eol) + (finalEol ? eol : "");
        const got = parseEnvFile(text);
        assert.deepEqual(got.vars, Object.fromEntries(want), JSON.stringify(text));
        assert.deepEqual(got.ignored, []);
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("parseEnvFile() ignores, and reports, assignments whose name systemd refuses", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        NAME.map((n) => `export ${n}`),
        fc.stringMatching(/^[0-9][A-Za-z0-9_]{0,5}$/),
        fc.stringMatching(/^[A-Za-z_]{1,4}[-.:@][A-Za-z0-9_]{0,4}$/),
      ),
      VALUE.filter((v) => !/[\n\r'\\"]/.test(v)),
      (name, value) => {
        assert.equal(isValidEnvName(name), false);
        const got = parseEnvFile(`${name}='${value}'\nOK=1\n`);
        assert.deepEqual(got.vars, { OK: "1" });
        assert.deepEqual(got.ignored.map((i) => [i.line, i.name]), [[1, name]]);
      },
    ),
  );
});

Deno.test("parseEnvFile() never throws and gives valid names only", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 200 }), (text) => {
      const got = parseEnvFile(text);
      for (const name of Object.keys(got.vars)) assert.ok(isValidEnvName(name), name);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("parseEnvFile() follows systemd.exec(5)'s examples and edge cases", async (t) => {
  const rows: [string, string, Record<string, string>][] = [
    ["comments with # and ;", "# a\n; b\nA=1\n  # indented\n", { A: "1" }],
    ["# inside a value is kept", "A=x # not a comment\n", { A: "x # not a comment" }],
    ["blanks around the value dropped", "A=  x  y \t\n", { A: "x  y" }],
    ["blanks around the name dropped", "  A \t=1\n", { A: "1" }],
    ["\\\\ is one backslash", "A=a\\\\b\n", { A: "a\\b" }],
    ["an escaped trailing blank is kept", "A=x\\ \n", { A: "x " }],
    ["continuation drops the newline", "A=one\\\ntwo\n", { A: "onetwo" }],
    ["quotes after the first character are kept", 'A=x"y"\n', { A: 'x"y"' }],
    ["single quotes: verbatim, across lines", "A='a\\n $B\nc'\n", { A: "a\\n $B\nc" }],
    ["double quotes: the four escapes", 'A="\\"\\\\\\`\\$"\n', { A: '"\\`$' }],
    ["double quotes: other escapes keep the backslash", 'A="\\n\\t"\n', { A: "\\n\\t" }],
    ["double quotes: continuation", 'A="a\\\nb"\n', { A: "ab" }],
    ["double quotes across lines", 'A="a\nb"\n', { A: "a\nb" }],
    ["blanks outside quotes dropped", "A=  'x'  \n", { A: "x" }],
    ["adjacent pieces are joined", "A=\"x\"'y'z\n", { A: "xyz" }],
    ["empty values", "A=\nB=''\nC=\"\"\n", { A: "", B: "", C: "" }],
    ["a line without = is ignored", "JUST TEXT\nA=1\n", { A: "1" }],
    ["the later assignment wins", "A=1\nA=2\n", { A: "2" }],
    ["CRLF line ends", "A=1\r\nB='2'\r\n", { A: "1", B: "2" }],
    ["no final newline", "A=1", { A: "1" }],
    ["unterminated quote runs to the end", "A='x\ny", { A: "x\ny" }],
    ["= in the value", "A=b=c\n", { A: "b=c" }],
    ["a NUL ends the file", "A=1\nB=2\0C=3\n", { A: "1", B: "2" }],
    ["since systemd 254 a comment ending in \\ ends there", "# x\\\nA=1\n", { A: "1" }],
  ];
  for (const [name, text, want] of rows) {
    await t.step(name, () => assert.deepEqual(parseEnvFile(text).vars, want));
  }
  await t.step("export is refused, with its line", () => {
    const got = parseEnvFile("A=1\nexport B=2\n");
    assert.deepEqual(got.vars, { A: "1" });
    assert.deepEqual(got.ignored, [{
      line: 2,
      name: "export B",
      reason: '"export" is not allowed in an environment file',
    }]);
  });
  await t.step("a comment ending in \\ is noted (older systemd continues it)", () => {
    assert.deepEqual(parseEnvFile("A=1\n# x \\\nB=2\n").commentContinuations, [2]);
  });
});

Deno.test("mergeEnvFile() lets the file override the process environment, keeping the rest", () => {
  const file = parseEnvFile("A=file\nC=new\n");
  assert.deepEqual(mergeEnvFile({ A: "env", B: "env" }, file), { A: "file", B: "env", C: "new" });
});
