/**
 * JSON-lines logger with an injectable sink. Lines are built here and handed to the sink; the
 * default sink batches them and writes to stdout on a short timer, so the request path never
 * makes a synchronous write per request (see {@linkcode createStdoutSink}).
 */
import type { LogLevel } from "../config/mod.ts";

/** Fields of one log line. Values must be JSON-serialisable; never put token bytes here. */
export type LogFields = Record<string, unknown>;

/** Receives one complete line (with its trailing newline). */
export interface LogSink {
  write(line: string): void;
  /** Writes what is buffered, synchronously. */
  flush(): void;
}

export interface Logger {
  readonly level: LogLevel;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Whether a line at `level` would be written (to skip building fields). */
  enabled(level: LogLevel): boolean;
  /**
   * Writes a line whose fields are already serialised: `members` is the inside of a JSON object
   * (`"a":1,"b":"x"`, or "" for none), built with {@linkcode jsonString} and
   * {@linkcode jsonNumber}. For the per-request line, which is written on every request.
   */
  writeMembers(level: LogLevel, msg: string, members: string): void;
  flush(): void;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  level?: LogLevel;
  sink?: LogSink;
  /** Clock for the `time` field; injectable for tests. */
  now?: () => number;
}

/** Creates a logger writing one JSON object per line: `time`, `level`, `msg`, then the fields. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const sink = options.sink ?? createStdoutSink();
  const now = options.now ?? Date.now;
  const min = RANK[level];
  const isoTime = createIsoClock();
  const emit = (lvl: LogLevel, msg: string, fields?: LogFields) => {
    if (RANK[lvl] < min) return;
    // One JSON.stringify with no replacer keeps V8's fast serialiser on the request path.
    const head = `{"time":"${isoTime(now())}","level":"${lvl}","msg":${JSON.stringify(msg)}`;
    if (!fields) {
      sink.write(head + "}\n");
      return;
    }
    const body = safeStringify(fields);
    // body is "{...}" or "{}": splice its members after the head.
    sink.write(body.length > 2 ? `${head},${body.slice(1)}\n` : head + "}\n");
  };
  return {
    level,
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    enabled: (lvl) => RANK[lvl] >= min,
    writeMembers(lvl, msg, members) {
      if (RANK[lvl] < min) return;
      const head = `{"time":"${isoTime(now())}","level":"${lvl}","msg":${JSON.stringify(msg)}`;
      sink.write(members === "" ? head + "}\n" : `${head},${members}}\n`);
    },
    flush: () => sink.flush(),
  };
}

// deno-lint-ignore no-control-regex
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * `JSON.stringify(s)` for a string: quoted as it is when nothing in it needs an escape (quote,
 * backslash, control character, surrogate), else by JSON.stringify itself.
 */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/** `JSON.stringify(n)` for a number: its shortest text, or `null` when not finite. */
export function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : "null";
}

/** Date.prototype.toISOString gives "+YYYYYY-..." from year 10000 on: not the cached form. */
const YEAR_10000_MS = 253402300800000;

/**
 * `new Date(ms).toISOString()`, with the part up to the seconds cached: formatting a Date costs
 * about 1 µs, more than the rest of a log line's head, and a busy gate writes many lines per
 * second. Other times (fractional, negative, far future) are formatted in full.
 */
function createIsoClock(): (ms: number) => string {
  let second = NaN;
  let prefix = "";
  return (ms) => {
    if (!Number.isInteger(ms) || ms < 0 || ms >= YEAR_10000_MS) return new Date(ms).toISOString();
    const millis = ms % 1000;
    const s = ms - millis;
    if (s !== second) {
      second = s;
      prefix = new Date(s).toISOString().slice(0, 20); // "YYYY-MM-DDTHH:MM:SS."
    }
    return prefix + (millis < 10 ? "00" : millis < 100 ? "0" : "") + millis + "Z";
  };
}

function safeStringify(fields: LogFields): string {
  try {
    return JSON.stringify(fields);
  } catch {
    // A bigint or a cycle: never let a log line throw on the request path.
    return '{"log_error":"unserialisable fields"}';
  }
}

/**
 * Truncates `s` to at most `max` UTF-8 bytes, marking the cut (docs/contract.md §5: path,
 * user_agent).
 */
export function truncateBytes(s: string, max = 512): string {
  if (s.length <= max / 3) return s; // cannot exceed max bytes even if every char is 3 bytes
  const bytes = new TextEncoder().encode(s);
  if (bytes.length <= max) return s;
  const suffix = "…(truncated)";
  const keep = max - new TextEncoder().encode(suffix).length;
  // fatal: false drops a split multi-byte sequence at the end instead of throwing.
  return new TextDecoder().decode(bytes.subarray(0, keep)).replace(/\uFFFD$/, "") + suffix;
}

/** Options for {@linkcode createStdoutSink}. */
export interface StdoutSinkOptions {
  /** Flush interval in ms. */
  intervalMs?: number;
  /** Flush at once when this many bytes are buffered. */
  maxBufferedChars?: number;
  /** Where bytes go; defaults to stdout. */
  writeSync?: (bytes: Uint8Array) => void;
}

/**
 * Batches lines and writes them with one write per flush. The timer is unref'd so it never keeps
 * the process alive; callers flush at shutdown (server.ts) so nothing is lost on SIGTERM.
 */
export function createStdoutSink(options: StdoutSinkOptions = {}): LogSink {
  const intervalMs = options.intervalMs ?? 50;
  const maxChars = options.maxBufferedChars ?? 64 * 1024;
  const out = options.writeSync ?? ((b: Uint8Array) => writeAll(b));
  const encoder = new TextEncoder();
  let buffer: string[] = [];
  let chars = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (buffer.length === 0) return;
    const text = buffer.join("");
    buffer = [];
    chars = 0;
    try {
      out(encoder.encode(text));
    } catch {
      // stdout closed (e.g. a broken pipe): logging must never take the gate down.
    }
  };
  return {
    write(line) {
      buffer.push(line);
      chars += line.length;
      if (chars >= maxChars) return flush();
      if (timer === undefined) {
        timer = setTimeout(flush, intervalMs);
        Deno.unrefTimer(timer);
      }
    },
    flush,
  };
}

function writeAll(bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/** A sink that keeps lines in memory, for tests. */
export function createMemorySink(): LogSink & { readonly lines: string[]; text(): string } {
  const lines: string[] = [];
  return {
    lines,
    write: (line) => void lines.push(line),
    flush: () => {},
    text: () => lines.join(""),
  };
}
