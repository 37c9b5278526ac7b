/**
 * The `process_*` series every Prometheus client library exposes (the names of the Go client's
 * process collector, which the original mcp-gate exported), read at scrape time only: nothing here
 * runs on the request path.
 *
 * What Deno lets a program read without `--allow-all` (measured with Deno 2.9.6; docs/contract.md
 * §8): CPU time (`node:process` `cpuUsage()`), resident memory (`Deno.memoryUsage()`) and the
 * process start (`performance.timeOrigin`) need no permission. Open and maximum file descriptors
 * live in `/proc/self/fd` and `/proc/self/limits`, which Deno 2.9 treats as privileged: reading
 * either needs `--allow-all` even with `--allow-read`, which the gate is not granted (Deno 2.7,
 * the compiled binary's runtime, lets `--allow-read` list `/proc/self/fd` but not read the limits).
 * Each of the two series is exposed only where its read succeeds; the first refusal is
 * remembered, so a scrape does not retry it.
 */
import process from "node:process";

/** One scrape's process figures; the descriptor counts are absent where they cannot be read. */
export interface ProcessStats {
  cpuSeconds: number;
  residentBytes: number;
  startTimeSeconds: number;
  openFds?: number;
  maxFds?: number;
}

/** Reads {@linkcode ProcessStats}; created once, called per scrape. */
export function createProcessStatsReader(): () => ProcessStats {
  // The process start as the runtime recorded it: the time origin of the main realm.
  const startTimeSeconds = performance.timeOrigin / 1000;
  let fdReadable = true;
  let limitsReadable = true;
  return () => {
    const cpu = process.cpuUsage();
    const stats: ProcessStats = {
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      residentBytes: Deno.memoryUsage().rss,
      startTimeSeconds,
    };
    // Not Linux, or no permission (see above): the series is left out from then on.
    if (fdReadable) {
      try {
        let open = 0;
        for (const _ of Deno.readDirSync("/proc/self/fd")) open++;
        stats.openFds = open;
      } catch {
        fdReadable = false;
      }
    }
    if (limitsReadable) {
      try {
        stats.maxFds = maxOpenFiles(Deno.readTextFileSync("/proc/self/limits"));
      } catch {
        limitsReadable = false;
      }
    }
    return stats;
  };
}

/**
 * The soft limit on open files from `/proc/self/limits` ("Max open files  1024  4096  files"),
 * or undefined when it is "unlimited" or the line is missing.
 */
export function maxOpenFiles(limits: string): number | undefined {
  const m = /^Max open files\s+(\d+)\s/m.exec(limits);
  return m ? Number(m[1]) : undefined;
}
