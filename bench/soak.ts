/**
 * A bounded soak of the gate as a child process (`deno task soak`, defaults: 60 s, 50 clients,
 * 4 SSE streams): valid, expired, garbage, unknown-kid and missing tokens mixed with metadata
 * probes, each with the one status it must get, plus SSE streams that run to the end or are
 * dropped mid-way. The gate's resident memory is sampled from /proc once a second.
 *
 * It fails (exit 1) on any unexpected status, a short SSE stream, a request without its log line,
 * or resident memory still growing after warm-up (the first quarter): the max over the last
 * 37.5 % of the samples may exceed the max over the 37.5 % before it by max(16 MiB, 10 %) at most
 * (`maxGrowthMiB`).
 *
 *   deno task soak [--duration=60] [--clients=50] [--sse=4]
 *
 * `runSoak()` is also the short CI version (tests/soak_test.ts). MCP_GATE_BIN soaks a binary.
 */
import { generateTestKey, mintToken, startTestIssuer } from "../tests/helpers/issuer.ts";
import { rssBytes, spawnGate } from "../tests/helpers/process.ts";

/** Options for {@linkcode runSoak}. */
export interface SoakOptions {
  durationMs: number;
  /** Concurrent request loops. */
  clients: number;
  /** Concurrent SSE stream loops. */
  sseStreams: number;
  /** RSS sampling period. Default 1000 ms. */
  sampleMs?: number;
  /**
   * Share of the run treated as warm-up (V8 sizes its heap to the load). Resident memory must
   * not grow from the first half of the rest to the second half. Default 0.25.
   */
  warmupFraction?: number;
  /** Allowed growth after warm-up: max(this many MiB, 10 % of the plateau). Default 16. */
  maxGrowthMiB?: number;
  /** Progress output (one line per sample). Default none. */
  progress?: (line: string) => void;
}

/** The kinds of request a client loop sends, each with the status it must get. */
type Kind = "valid" | "expired" | "garbage" | "unknown_kid" | "no_token" | "metadata";
const EXPECTED: Record<Kind, number> = {
  valid: 200,
  expired: 401,
  garbage: 401,
  unknown_kid: 401,
  no_token: 401,
  metadata: 200,
};
/** Cumulative weights out of 100. */
const MIX: [Kind, number][] = [
  ["valid", 60],
  ["expired", 70],
  ["garbage", 80],
  ["unknown_kid", 85],
  ["no_token", 95],
  ["metadata", 100],
];

/** What a soak found. */
export interface SoakReport {
  durationMs: number;
  requests: number;
  requestsPerSecond: number;
  byKind: Record<Kind, number>;
  /** `kind status` → count, for every answer that was not the expected one (errors as 0). */
  unexpected: Record<string, number>;
  sse: { completed: number; dropped: number; events: number; short: number };
  /** Request log lines the gate wrote (health probes excluded by not sending any). */
  logLines: number;
  rss: {
    samples: number[];
    start: number;
    /** Max over the first half of the run after warm-up. */
    plateau: number;
    /** Max over the second half after warm-up. */
    end: number;
    peak: number;
    /** end - plateau. */
    growth: number;
    /** Whether growth stayed within max(maxGrowthMiB, 10 % of plateau). */
    flat: boolean;
  };
  ok: boolean;
}

const RESOURCE = "https://mcp.example.com/mcp";
const SSE_EVENTS = 20;
const SSE_GAP_MS = 50;
const BODY = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}';
const MIB = 1024 * 1024;

/** The upstream: POST → a small JSON-RPC result; GET → an SSE stream of SSE_EVENTS events. */
function startUpstream(): Deno.HttpServer<Deno.NetAddr> {
  const enc = new TextEncoder();
  const result = enc.encode('{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}');
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    if (req.method !== "GET") {
      await req.body?.cancel();
      return new Response(result, { headers: { "content-type": "application/json" } });
    }
    let i = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (i >= SSE_EVENTS) return c.close();
        if (i > 0) await new Promise((r) => (timer = setTimeout(r, SSE_GAP_MS)));
        c.enqueue(enc.encode(`id: ${i}\nevent: message\ndata: {"n":${i++}}\n\n`));
      },
      cancel() {
        clearTimeout(timer);
      },
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
    });
  });
}

/** Runs one soak and returns its figures; everything it started is stopped when it returns. */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const sampleMs = options.sampleMs ?? 1000;
  await using issuer = await startTestIssuer({ path: "/realms/soak", audience: RESOURCE });
  const upstream = startUpstream();
  try {
    await using gate = await spawnGate({
      UPSTREAM_URL: `http://127.0.0.1:${upstream.addr.port}`,
      RESOURCE_URI: RESOURCE,
      AUTHORIZATION_SERVER: issuer.issuer,
      LOG_LEVEL: "info",
    }, { maxStdoutChars: 1 << 20 });
    await gate.waitForLog((l) => l.msg === "key set loaded");
    const base = `http://127.0.0.1:${gate.port}`;

    // Tokens, minted once: 200 subjects, and one of each bad kind.
    const valid = await Promise.all(
      Array.from({ length: 200 }, (_, i) => issuer.mint({ sub: `user-${i}` })),
    );
    const now = Math.floor(Date.now() / 1000);
    const expired = await issuer.mint({ exp: now - 600, iat: now - 1200 });
    const stranger = await generateTestKey("ES256");
    const unknownKid = await mintToken({ issuer: issuer.issuer, key: stranger });
    const [h, p] = valid[0].split(".");
    const garbage = `${h}.${p}.${"A".repeat(342)}`;

    const byKind = Object.fromEntries(MIX.map(([k]) => [k, 0])) as Record<Kind, number>;
    const unexpected: Record<string, number> = {};
    const sse = { completed: 0, dropped: 0, events: 0, short: 0 };
    const samples: number[] = [];
    const deadline = performance.now() + options.durationMs;
    const running = () => performance.now() < deadline;

    const request = async (kind: Kind, n: number): Promise<number> => {
      const headers: Record<string, string> = { "content-type": "application/json" };
      const token = kind === "valid"
        ? valid[n % valid.length]
        : kind === "expired"
        ? expired
        : kind === "garbage"
        ? garbage
        : kind === "unknown_kid"
        ? unknownKid
        : undefined;
      if (token) headers.authorization = `Bearer ${token}`;
      const res = kind === "metadata"
        ? await fetch(`${base}/.well-known/oauth-protected-resource/mcp`)
        : await fetch(`${base}/mcp`, { method: "POST", headers, body: BODY });
      await res.arrayBuffer();
      return res.status;
    };

    const client = async (id: number) => {
      let n = id;
      while (running()) {
        const roll = (n * 7919 + id * 104729) % 100;
        const kind = MIX.find(([, w]) => roll < w)![0];
        n++;
        let status: number;
        try {
          status = await request(kind, n);
        } catch {
          status = 0;
        }
        byKind[kind]++;
        if (status !== EXPECTED[kind]) {
          const key = `${kind} ${status}`;
          unexpected[key] = (unexpected[key] ?? 0) + 1;
        }
      }
    };

    const stream = async (id: number) => {
      let round = 0;
      while (running()) {
        // Every third stream is dropped after a few events (the client goes away).
        const drop = (round++ + id) % 3 === 0;
        const ac = new AbortController();
        let events = 0;
        try {
          const res = await fetch(`${base}/mcp`, {
            headers: {
              authorization: `Bearer ${valid[(id * 31 + round) % valid.length]}`,
              accept: "text/event-stream",
            },
            signal: ac.signal,
          });
          if (res.status !== 200) {
            unexpected[`sse ${res.status}`] = (unexpected[`sse ${res.status}`] ?? 0) + 1;
            await res.body?.cancel();
            continue;
          }
          const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
          while (true) {
            const { value, done } = await reader.read();
            if (done) break;
            events += value.split("\n\n").length - 1;
            if (drop && events >= 3) {
              ac.abort();
              await reader.cancel().catch(() => {});
              break;
            }
          }
          sse.events += events;
          if (drop) sse.dropped++;
          else if (events === SSE_EVENTS) sse.completed++;
          else sse.short++;
        } catch {
          if (drop) sse.dropped++;
          else unexpected["sse error"] = (unexpected["sse error"] ?? 0) + 1;
        }
      }
    };

    const sampler = (async () => {
      while (running()) {
        samples.push(await rssBytes(gate.pid));
        const last = samples[samples.length - 1];
        options.progress?.(
          `t=${samples.length * sampleMs / 1000}s rss=${(last / MIB).toFixed(1)} MiB requests=${
            Object.values(byKind).reduce((a, b) => a + b, 0)
          }`,
        );
        await new Promise((r) =>
          setTimeout(r, Math.max(0, Math.min(sampleMs, deadline - performance.now())))
        );
      }
      samples.push(await rssBytes(gate.pid));
    })();

    const started = performance.now();
    await Promise.all([
      ...Array.from({ length: options.clients }, (_, i) => client(i)),
      ...Array.from({ length: options.sseStreams }, (_, i) => stream(i)),
      sampler,
    ]);
    const durationMs = performance.now() - started;
    const requests = Object.values(byKind).reduce((a, b) => a + b, 0);

    // Every request and stream is over: the gate's log must have one line for each.
    const expectedLines = requests + sse.completed + sse.dropped + sse.short;
    const logDeadline = performance.now() + 5000;
    while (countRequestLines(gate) < expectedLines && performance.now() < logDeadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const logLines = countRequestLines(gate);

    const warm = Math.floor(samples.length * (options.warmupFraction ?? 0.25));
    const mid = warm + Math.max(1, Math.floor((samples.length - warm) / 2));
    const plateau = Math.max(...samples.slice(warm, mid));
    const end = Math.max(...samples.slice(mid));
    const growth = end - plateau;
    const flat = growth <= Math.max((options.maxGrowthMiB ?? 16) * MIB, plateau * 0.1);
    const ok = Object.keys(unexpected).length === 0 && sse.short === 0 && flat &&
      logLines === expectedLines;
    gate.kill("SIGTERM");
    await gate.exited(10_000);
    return {
      durationMs,
      requests,
      requestsPerSecond: requests / (durationMs / 1000),
      byKind,
      unexpected,
      sse,
      logLines,
      rss: { samples, start: samples[0], plateau, end, peak: Math.max(...samples), growth, flat },
      ok,
    };
  } finally {
    await upstream.shutdown();
  }
}

/** Request log lines so far: the gate writes exactly one per finished exchange. */
function countRequestLines(gate: { requestLines: number }): number {
  return gate.requestLines;
}

/** The report as a short markdown block. */
export function renderReport(r: SoakReport, options: SoakOptions): string {
  const mib = (b: number) => `${(b / MIB).toFixed(1)} MiB`;
  return [
    `soak: ${(r.durationMs / 1000).toFixed(1)} s, ${options.clients} clients, ` +
    `${options.sseStreams} SSE loops`,
    "",
    "| figure | value |",
    "|---|---|",
    `| requests | ${r.requests} (${r.requestsPerSecond.toFixed(0)}/s) |`,
    ...Object.entries(r.byKind).map(([k, v]) => `| ${k} (expects ${EXPECTED[k as Kind]}) | ${v} |`),
    `| unexpected statuses | ${
      Object.keys(r.unexpected).length === 0 ? "0" : JSON.stringify(r.unexpected)
    } |`,
    `| SSE streams completed / dropped by client / short | ${r.sse.completed} / ${r.sse.dropped} / ${r.sse.short} |`,
    `| SSE events received | ${r.sse.events} |`,
    `| gate request log lines | ${r.logLines} |`,
    `| RSS start / plateau (max, first half after warm-up) / end (max, second half) / peak | ${
      mib(r.rss.start)
    } / ${mib(r.rss.plateau)} / ${mib(r.rss.end)} / ${mib(r.rss.peak)} |`,
    `| RSS growth plateau→end | ${mib(r.rss.growth)} (${r.rss.flat ? "flat" : "GROWING"}) |`,
    `| RSS samples (MiB) | ${r.rss.samples.map((s) => (s / MIB).toFixed(0)).join(" ")} |`,
    `| verdict | ${r.ok ? "ok" : "FAILED"} |`,
  ].join("\n");
}

if (import.meta.main) {
  const arg = (name: string, fallback: number) => {
    const hit = Deno.args.find((a) => a.startsWith(`--${name}=`));
    const v = hit ? Number(hit.slice(name.length + 3)) : fallback;
    if (!Number.isFinite(v) || v < 0) throw new Error(`Invalid "--${name}": got "${hit}"`);
    return v;
  };
  const options: SoakOptions = {
    durationMs: arg("duration", 60) * 1000,
    clients: arg("clients", 50),
    sseStreams: arg("sse", 4),
    progress: (line) => console.error(line),
  };
  const report = await runSoak(options);
  console.log(renderReport(report, options));
  Deno.exit(report.ok ? 0 : 1);
}
