/**
 * Summarises a V8 `.cpuprofile` (from `deno run --cpu-prof`, e.g. `deno task bench --cpu-prof=DIR`):
 * where the gate's CPU time went, by function (self and inclusive) and by module.
 *
 * Usage: deno run --allow-read bench/cpuprof.ts FILE_OR_DIR [--top=N]
 * (a directory means its newest `.cpuprofile`).
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

/** The parts of a `.cpuprofile` (Chrome DevTools protocol `Profiler.Profile`) read here. */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One line of the summary. */
export interface ProfileEntry {
  name: string;
  selfMs: number;
  totalMs: number;
}

/** Self and inclusive time by function, and self time by module, busiest first. */
export interface ProfileSummary {
  /** Sampled time that was not `(idle)`, in ms. */
  busyMs: number;
  functions: ProfileEntry[];
  modules: ProfileEntry[];
}

function shortUrl(url: string): string {
  if (url === "") return "";
  const root = new URL("..", import.meta.url).href;
  if (url.startsWith(root)) return url.slice(root.length);
  const npm = /\/npm\/[^/]+\/(.+)$/.exec(url);
  if (npm) return `npm:${npm[1]}`;
  return url;
}

/** Builds the summary; time per sample is taken from `timeDeltas`. */
export function summarise(profile: CpuProfile): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    // timeDeltas[i] is the time from sample i-1 to sample i: sample i is charged the interval
    // up to the next sample, as DevTools does.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt);
  }
  const key = (n: ProfileNode) => {
    const { functionName, url, lineNumber } = n.callFrame;
    const where = shortUrl(url);
    return where ? `${functionName || "(anonymous)"} ${where}:${lineNumber + 1}` : functionName;
  };
  const fnSelf = new Map<string, number>();
  const fnTotal = new Map<string, number>();
  const modSelf = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    if (node.callFrame.functionName === "(idle)") continue;
    busy += us;
    const k = key(node);
    fnSelf.set(k, (fnSelf.get(k) ?? 0) + us);
    const mod = shortUrl(node.callFrame.url) || node.callFrame.functionName;
    modSelf.set(mod, (modSelf.get(mod) ?? 0) + us);
    // Inclusive: charge every distinct function on the stack once.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = key(byId.get(at)!);
      if (f === "(root)" || seen.has(f)) continue;
      seen.add(f);
      fnTotal.set(f, (fnTotal.get(f) ?? 0) + us);
    }
  }
  const entries = (self: Map<string, number>, total?: Map<string, number>) =>
    [...new Set([...self.keys(), ...(total?.keys() ?? [])])].map((name) => ({
      name,
      selfMs: (self.get(name) ?? 0) / 1000,
      totalMs: (total?.get(name) ?? self.get(name) ?? 0) / 1000,
    }));
  return {
    busyMs: busy / 1000,
    functions: entries(fnSelf, fnTotal).sort((a, b) => b.selfMs - a.selfMs),
    modules: entries(modSelf).sort((a, b) => b.selfMs - a.selfMs),
  };
}

/** Renders the summary as markdown: top functions by self time, by inclusive time (own code
 * only), and modules by self time. */
export function renderSummary(s: ProfileSummary, top = 20): string {
  const pct = (v: number) => `${((100 * v) / s.busyMs).toFixed(1)} %`;
  const table = (title: string, rows: ProfileEntry[], field: "selfMs" | "totalMs") =>
    [
      `${title}`,
      "",
      "| share | ms | function |",
      "|---:|---:|---|",
      ...rows.slice(0, top).map((r) =>
        `| ${pct(r[field])} | ${r[field].toFixed(0)} | \`${r.name.replaceAll("|", "\\|")}\` |`
      ),
    ].join("\n");
  const own = s.functions.filter((f) => / (src\/|main\.ts)/.test(f.name))
    .sort((a, b) => b.totalMs - a.totalMs);
  return [
    `Busy (non-idle) sampled time: ${s.busyMs.toFixed(0)} ms`,
    "",
    table("Top functions by self time:", s.functions, "selfMs"),
    "",
    table("The gate's own functions by inclusive time:", own, "totalMs"),
    "",
    table("Modules by self time:", s.modules, "selfMs"),
  ].join("\n");
}

/** The newest `.cpuprofile` in `dir`, or undefined. */
export async function newestProfile(dir: string): Promise<string | undefined> {
  let best: { path: string; mtime: number } | undefined;
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.endsWith(".cpuprofile")) continue;
    const path = `${dir}/${e.name}`;
    const mtime = (await Deno.stat(path)).mtime?.getTime() ?? 0;
    if (!best || mtime > best.mtime) best = { path, mtime };
  }
  return best?.path;
}

if (import.meta.main) {
  const [target, ...rest] = Deno.args;
  if (!target) {
    console.error("Usage: deno run --allow-read bench/cpuprof.ts FILE_OR_DIR [--top=N]");
    Deno.exit(2);
  }
  const top = Number(rest.find((a) => a.startsWith("--top="))?.slice(6) ?? "20");
  const path = (await Deno.stat(target)).isDirectory ? await newestProfile(target) : target;
  if (!path) {
    console.error(`No .cpuprofile in "${target}"`);
    Deno.exit(1);
  }
  console.log(`Profile: ${path}\n`);
  console.log(renderSummary(summarise(JSON.parse(await Deno.readTextFile(path))), top));
}
