/**
 * systemd `EnvironmentFile=` syntax (systemd.exec(5)), for `mcp-gate check --env-file PATH`: the
 * check reads the file the unit reads, the way systemd reads it, so what it reports is what the
 * service gets. No npm package parses this grammar (dotenv parsers accept `export`, strip inline
 * `#` comments, expand `$VAR` and have no backslash continuation), so it is written out here as
 * the documented rules, state for state:
 *
 * - Lines are separated by LF or CR. Empty lines, lines without "=", and lines whose first
 *   non-blank character is "#" or ";" are ignored (comments only at the start of a line; since
 *   systemd 254 a comment ending in "\" does not continue onto the next line).
 * - The name is trimmed; it must be a valid name (letters, digits, "_", not starting with a
 *   digit), else systemd ignores the assignment with a log line: so `export NAME=value` is ignored.
 * - Unquoted value: leading and trailing blanks dropped, interior ones kept; "\" keeps the next
 *   character (so `\\` is "\", `\ ` a kept blank); "\" at the end of a line joins the next line,
 *   the newline dropped. Quotes after the first character are kept as they are.
 * - Single-quoted value: any character but "'" verbatim, across lines; no escapes.
 * - Double-quoted value: across lines; "\" before one of `"` `\` `` ` `` `$` gives that character,
 *   "\" before a newline joins lines, "\" before anything else is kept with that character.
 * - Blanks outside the quotes are dropped; quoted and unquoted pieces that follow each other are
 *   joined (`A="x"'y'z` is "xyz", as systemd's parser does).
 * - A later assignment of a name overrides an earlier one; a NUL ends the file. The file must be
 *   UTF-8 (the caller decodes it strictly; systemd refuses to load one that is not).
 */

/** An assignment systemd would ignore, with the 1-based line it starts on. */
export interface IgnoredAssignment {
  readonly line: number;
  readonly name: string;
  readonly reason: string;
}

/** What an environment file sets. */
export interface EnvFile {
  /** Each valid name with its last value, in the order names first appear. */
  readonly vars: Readonly<Record<string, string>>;
  /** Assignments with a name systemd refuses (`export X`, `1X`, `A-B`). */
  readonly ignored: readonly IgnoredAssignment[];
  /**
   * Lines of comments ending in "\": systemd 254 and later end the comment there, older
   * versions (Debian 12 ships 252) also treat the next line as part of the comment.
   */
  readonly commentContinuations: readonly number[];
}

const COMMENTS = "#;";
const WHITESPACE = " \t\n\r";
const NEWLINE = "\n\r";
/** Characters a backslash escapes inside double quotes (POSIX sh double-quote rules). */
const DQ_ESCAPABLE = '"\\`$';

/** A valid environment variable name as systemd checks it (bash's character set). */
export function isValidEnvName(name: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name);
}

type State =
  | "pre_key"
  | "key"
  | "pre_value"
  | "value"
  | "value_escape"
  | "single"
  | "double"
  | "double_escape"
  | "comment"
  | "comment_escape";

/**
 * Parses an environment file's text by the rules above. Never throws: every input has a meaning
 * to systemd, and this returns it.
 */
export function parseEnvFile(text: string): EnvFile {
  const nul = text.indexOf("\0");
  if (nul >= 0) text = text.slice(0, nul);
  const vars = new Map<string, string>();
  const ignored: IgnoredAssignment[] = [];
  const commentContinuations: number[] = [];

  let state: State = "pre_key";
  let key = "";
  let value = "";
  // Where trailing blanks start in `key`/`value`, or -1: they are cut when the line ends.
  let keyBlank = -1;
  let valueBlank = -1;
  let line = 1;
  let keyLine = 1;

  const push = () => {
    const name = keyBlank >= 0 ? key.slice(0, keyBlank) : key;
    if (isValidEnvName(name)) {
      vars.delete(name); // a later assignment moves nothing: keep first-appearance order
      vars.set(name, value);
    } else {
      ignored.push({ line: keyLine, name, reason: invalidNameReason(name) });
    }
    key = "";
    value = "";
  };

  for (const c of text) {
    switch (state) {
      case "pre_key":
        if (COMMENTS.includes(c)) state = "comment";
        else if (!WHITESPACE.includes(c)) {
          state = "key";
          keyBlank = -1;
          keyLine = line;
          key = c;
        }
        break;
      case "key":
        if (NEWLINE.includes(c)) {
          state = "pre_key";
          key = "";
        } else if (c === "=") {
          state = "pre_value";
          valueBlank = -1;
        } else {
          if (!WHITESPACE.includes(c)) keyBlank = -1;
          else if (keyBlank < 0) keyBlank = key.length;
          key += c;
        }
        break;
      case "pre_value":
        if (NEWLINE.includes(c)) {
          state = "pre_key";
          push();
        } else if (c === "'") state = "single";
        else if (c === '"') state = "double";
        else if (c === "\\") state = "value_escape";
        else if (!WHITESPACE.includes(c)) {
          state = "value";
          value += c;
        }
        break;
      case "value":
        if (NEWLINE.includes(c)) {
          state = "pre_key";
          if (valueBlank >= 0) value = value.slice(0, valueBlank);
          push();
        } else if (c === "\\") {
          state = "value_escape";
          valueBlank = -1;
        } else {
          if (!WHITESPACE.includes(c)) valueBlank = -1;
          else if (valueBlank < 0) valueBlank = value.length;
          value += c;
        }
        break;
      case "value_escape":
        state = "value";
        if (!NEWLINE.includes(c)) value += c;
        break;
      case "single":
        if (c === "'") state = "pre_value";
        else value += c;
        break;
      case "double":
        if (c === '"') state = "pre_value";
        else if (c === "\\") state = "double_escape";
        else value += c;
        break;
      case "double_escape":
        state = "double";
        if (DQ_ESCAPABLE.includes(c)) value += c;
        else if (c !== "\n") value += "\\" + c;
        break;
      case "comment":
        if (c === "\\") state = "comment_escape";
        else if (NEWLINE.includes(c)) state = "pre_key";
        break;
      case "comment_escape":
        if (NEWLINE.includes(c)) {
          commentContinuations.push(line);
          state = "pre_key";
        } else state = "comment";
        break;
    }
    if (c === "\n") line++;
  }
  switch (state) {
    case "value":
      if (valueBlank >= 0) value = value.slice(0, valueBlank);
      push();
      break;
    case "pre_value":
    case "value_escape":
    case "single":
    case "double":
    case "double_escape":
      push();
      break;
  }
  return { vars: Object.fromEntries(vars), ignored, commentContinuations };
}

function invalidNameReason(name: string): string {
  if (/^export\s/.test(name)) return '"export" is not allowed in an environment file';
  if (name === "") return "the name is empty";
  if (/^[0-9]/.test(name)) return "a name may not start with a digit";
  return "a name holds only letters, digits and _";
}

/**
 * The environment a systemd service with this EnvironmentFile= sees, as far as the gate is
 * concerned: the file's assignments override the same names from `base` (systemd.exec(5):
 * settings from the file override Environment=), everything else in `base` stays.
 */
export function mergeEnvFile(
  base: Readonly<Record<string, string | undefined>>,
  file: EnvFile,
): Record<string, string | undefined> {
  return { ...base, ...file.vars };
}
