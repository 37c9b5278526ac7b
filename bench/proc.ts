/**
 * Reading a process's CPU time and memory from /proc (Linux only). CPU time is the gate's own
 * user + system time over all its threads: unlike requests per second it does not move when the
 * load generator or another process takes the core.
 */

let ticksPerSecond = 100;

/** Reads the clock tick rate once (`getconf CLK_TCK`); keeps 100 when that fails. */
export async function initClockTicks(): Promise<void> {
  try {
    const out = await new Deno.Command("getconf", {
      args: ["CLK_TCK"],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    if (Number.isInteger(n) && n > 0) ticksPerSecond = n;
  } catch {
    // getconf missing: 100 Hz is the Linux default
  }
}

/** utime + stime of process `pid` (all threads, live and exited), in microseconds. */
export async function cpuMicros(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name, which is in parentheses and may contain spaces (proc(5)).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1e6) / ticksPerSecond;
}

/** Resident memory of process `pid`: current (VmRSS) and peak (VmHWM), in bytes. */
export async function memory(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kib = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss: kib("VmRSS") * 1024, peak: kib("VmHWM") * 1024 };
}

/** The CPU model name and core count, for the table's header. */
export async function machine(): Promise<{ cpu: string; cores: number }> {
  let cpu = "unknown CPU";
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux
  }
  return { cpu, cores: navigator.hardwareConcurrency };
}

/** CPUs for the process under test (the gate, or the upstream when measured directly) and for
 * everything else (load generator, upstream behind the gate, this process), as taskset lists. */
export interface CpuPlan {
  readonly sut: string;
  readonly rest: string;
}

/** Parses a cpulist such as "0-3,6" (cpuset(7)). */
function parseCpuList(list: string): number[] {
  const cpus: number[] = [];
  for (const part of list.trim().split(",")) {
    const [a, b] = part.split("-").map(Number);
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}

/** Splits this process's allowed CPUs: the first for the process under test, the rest for the
 * others. Undefined when taskset is missing or fewer than two CPUs are allowed. */
export async function cpuPlan(): Promise<CpuPlan | undefined> {
  try {
    const out = await new Deno.Command("taskset", {
      args: ["-c", "-p", String(Deno.pid)],
      stdout: "piped",
      stderr: "null",
    }).output();
    const list = /list:\s*(\S+)/.exec(new TextDecoder().decode(out.stdout))?.[1];
    if (!out.success || !list) return undefined;
    const cpus = parseCpuList(list);
    if (cpus.length < 2) return undefined;
    return { sut: String(cpus[0]), rest: cpus.slice(1).join(",") };
  } catch {
    return undefined;
  }
}

/** Moves every thread of `pid` to `cpus` (a taskset list). */
export async function pin(pid: number, cpus: string): Promise<void> {
  const out = await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", cpus, String(pid)],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `Cannot pin process ${pid} to CPUs "${cpus}": ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

/** A command line wrapped in `taskset -c cpus` when `cpus` is given. */
export function onCpus(cpus: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpus ? ["taskset", ["-c", cpus, cmd, ...args]] : [cmd, args];
}
