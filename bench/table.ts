/** The bench's one markdown table. */

/** One row: a scenario measured through the gate and, where it makes sense, directly. */
export interface Row {
  scenario: string;
  gateRps?: number;
  directRps?: number;
  /** Latency in milliseconds: p50 and p99. */
  gateLatency?: [number, number];
  directLatency?: [number, number];
  /** The gate's user + system CPU time per request, in microseconds. */
  gateCpuUs?: number;
  /** Replaces the "gate ÷ direct" cell (for rows where a ratio of rates means nothing). */
  compare?: string;
  notes?: string;
}

const DASH = "–";

function num(n: number | undefined, digits = 0): string {
  if (n === undefined || !Number.isFinite(n)) return DASH;
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** Milliseconds with 2 significant decimals below 10 ms. */
export function ms(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return DASH;
  return n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0);
}

function pair(p?: [number, number]): string {
  return p ? `${ms(p[0])} / ${ms(p[1])}` : DASH;
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Renders the rows as one GitHub-flavoured markdown table. */
export function renderTable(rows: readonly Row[]): string {
  const head = [
    "scenario",
    "gate req/s",
    "direct req/s",
    "gate ÷ direct",
    "gate p50 / p99 ms",
    "direct p50 / p99 ms",
    "gate CPU µs/req",
    "notes",
  ];
  const lines = [
    `| ${head.join(" | ")} |`,
    `|${head.map((_, i) => (i === 0 || i === head.length - 1 ? "---" : "---:")).join("|")}|`,
  ];
  for (const r of rows) {
    const ratio = r.compare ??
      (r.gateRps !== undefined && r.directRps ? `${(r.gateRps / r.directRps).toFixed(2)}` : DASH);
    lines.push(
      `| ${
        [
          r.scenario,
          num(r.gateRps),
          num(r.directRps),
          ratio,
          pair(r.gateLatency),
          pair(r.directLatency),
          num(r.gateCpuUs),
          r.notes ?? "",
        ].join(" | ")
      } |`,
    );
  }
  return lines.join("\n");
}
