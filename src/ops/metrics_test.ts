import assert from "node:assert/strict";
import {
  createMetrics,
  DEFAULT_DURATION_BUCKETS,
  escapeHelp,
  escapeLabelValue,
  formatNumber,
  METRICS_CONTENT_TYPE,
} from "./metrics.ts";

/** Parsed exposition: families with HELP/TYPE and samples in order. */
interface Family {
  help?: string;
  type?: string;
  samples: { name: string; labels: Record<string, string>; value: string }[];
}

/**
 * A strict reader of text format 0.0.4, enough to check what render() promises: every sample
 * belongs to a family announced by HELP and TYPE before it, label values unescape, lines end
 * with "\n".
 */
function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith("\n"), "exposition ends with a line feed");
  const families = new Map<string, Family>();
  let current: string | undefined;
  for (const line of text.slice(0, -1).split("\n")) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta;
      const f = families.get(name) ?? { samples: [] };
      if (kind === "HELP") {
        assert.equal(f.help, undefined, `one HELP for ${name}`);
        f.help = rest;
      } else {
        assert.equal(f.type, undefined, `one TYPE for ${name}`);
        assert.equal(f.samples.length, 0, `TYPE before samples for ${name}`);
        f.type = rest;
      }
      families.set(name, f);
      current = name;
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `sample line is well formed: ${JSON.stringify(line)}`);
    const [, name, , labelText, value] = m;
    assert.ok(current !== undefined, `sample ${name} after a TYPE line`);
    const base = families.get(current)!;
    const suffixOk = name === current ||
      (base.type === "histogram" &&
        [`${current}_bucket`, `${current}_sum`, `${current}_count`].includes(name));
    assert.ok(suffixOk, `sample ${name} belongs to family ${current}`);
    assert.ok(/^([+-]Inf|NaN|-?\d+(\.\d+)?(e[+-]?\d+)?)$/.test(value), `value ${value}`);
    base.samples.push({ name, labels: parseLabels(labelText ?? ""), value });
  }
  return families;
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(text)) !== null) {
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    end = re.lastIndex;
    if (m[3] === "") break;
  }
  assert.equal(end, text.length, `labels parse fully: ${text}`);
  return labels;
}

function family(text: string, name: string): Family {
  const f = parseExposition(text).get(name);
  assert.ok(f, `family ${name} present`);
  return f;
}

function sample(f: Family, name: string, labels: Record<string, string>): string | undefined {
  return f.samples.find((s) =>
    s.name === name && Object.keys(labels).length === Object.keys(s.labels).length &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )?.value;
}

Deno.test("render() announces every family with HELP and TYPE before its samples", () => {
  const m = createMetrics({
    version: "1.2.3",
    keyStats: () => ({ keys: 2, lastRefreshMs: 1_700_000_000_500, refreshErrors: 1, fetches: 3 }),
  });
  m.requestStarted();
  m.requestFinished({ route: "proxy", method: "POST", status: 200, durationMs: 12 });
  m.authOutcome("ok");
  const families = parseExposition(m.render());
  const types = Object.fromEntries([...families].map(([n, f]) => [n, f.type]));
  assert.deepEqual(types, {
    mcpgate_build_info: "gauge",
    mcpgate_in_flight_requests: "gauge",
    mcpgate_http_requests_total: "counter",
    mcpgate_http_request_duration_seconds: "histogram",
    mcpgate_auth_total: "counter",
    mcpgate_upstream_errors_total: "counter",
    mcpgate_inflight_rejected_total: "counter",
    mcpgate_listener_failures_total: "counter",
    mcpgate_stream_idle_closed_total: "counter",
    mcpgate_rate_limit_redis_failopen_total: "counter",
    mcpgate_jwks_keys_loaded: "gauge",
    mcpgate_jwks_last_refresh_timestamp_seconds: "gauge",
    mcpgate_jwks_refresh_errors_total: "counter",
    mcpgate_jwks_fetches_total: "counter",
  });
  for (const [name, f] of families) assert.ok(f.help && f.help.length > 0, `HELP for ${name}`);
});

Deno.test("mcpgate_build_info carries the version, the git revision and the Deno version", () => {
  const text = createMetrics({ version: "0.1.0", revision: "0123456789ab", deno: "2.9.6" })
    .render();
  const f = family(text, "mcpgate_build_info");
  assert.equal(f.samples.length, 1);
  assert.equal(
    sample(f, "mcpgate_build_info", {
      version: "0.1.0",
      revision: "0123456789ab",
      deno_version: "2.9.6",
    }),
    "1",
  );
});

Deno.test("render() exposes build info, in-flight requests and key set state", () => {
  const m = createMetrics({
    version: "0.1.0",
    keyStats: () => ({ keys: 2, lastRefreshMs: 1_700_000_000_500, refreshErrors: 1, fetches: 3 }),
  });
  m.requestStarted();
  m.requestStarted();
  m.requestFinished({ route: "health", method: "GET", status: 200, durationMs: 1 });
  const text = m.render();
  assert.match(
    text,
    /^mcpgate_build_info\{version="0\.1\.0",revision="unknown",deno_version="unknown"\} 1$/m,
  );
  assert.match(text, /^mcpgate_in_flight_requests 1$/m);
  assert.match(text, /^mcpgate_jwks_keys_loaded 2$/m);
  assert.match(text, /^mcpgate_jwks_last_refresh_timestamp_seconds 1700000000\.5$/m);
  assert.match(text, /^mcpgate_jwks_refresh_errors_total 1$/m);
  assert.match(text, /^mcpgate_jwks_fetches_total 3$/m);
});

Deno.test("render() omits the last refresh timestamp until a key set was fetched", () => {
  const m = createMetrics({
    version: "0.1.0",
    keyStats: () => ({ keys: 0, refreshErrors: 4, fetches: 4 }),
  });
  const families = parseExposition(m.render());
  assert.equal(families.has("mcpgate_jwks_last_refresh_timestamp_seconds"), false);
  assert.equal(families.get("mcpgate_jwks_keys_loaded")?.samples[0].value, "0");
});

Deno.test("render() reads key set state at scrape time, not at construction", () => {
  let keys = 0;
  const m = createMetrics({
    version: "0.1.0",
    keyStats: () => ({ keys, refreshErrors: 0, fetches: 1 }),
  });
  assert.match(m.render(), /^mcpgate_jwks_keys_loaded 0$/m);
  keys = 3;
  assert.match(m.render(), /^mcpgate_jwks_keys_loaded 3$/m);
});

Deno.test("requestFinished() counts requests by route, method and status", () => {
  const m = createMetrics({ version: "0.1.0" });
  for (let i = 0; i < 3; i++) {
    m.requestStarted();
    m.requestFinished({ route: "proxy", method: "POST", status: 200, durationMs: 5 });
  }
  m.requestStarted();
  m.requestFinished({ route: "rejected", method: "POST", status: 401, durationMs: 1 });
  m.requestStarted();
  m.requestFinished({ route: "metadata", method: "GET", status: 200, durationMs: 1 });
  const f = family(m.render(), "mcpgate_http_requests_total");
  const labels = (route: string, method: string, status: string) => ({ route, method, status });
  assert.equal(sample(f, f.samples[0].name, labels("proxy", "POST", "200")), "3");
  assert.equal(sample(f, f.samples[0].name, labels("rejected", "POST", "401")), "1");
  assert.equal(sample(f, f.samples[0].name, labels("metadata", "GET", "200")), "1");
  assert.equal(f.samples.length, 3);
});

Deno.test('requestFinished() folds unknown methods into method="other"', async (t) => {
  const cases: [string, string][] = [
    ["GET", "GET"],
    ["HEAD", "HEAD"],
    ["POST", "POST"],
    ["PUT", "PUT"],
    ["DELETE", "DELETE"],
    ["OPTIONS", "OPTIONS"],
    ["PATCH", "PATCH"],
    ["PROPFIND", "other"],
    ["get", "other"],
    ['X"\n', "other"],
  ];
  for (const [method, label] of cases) {
    await t.step(`${JSON.stringify(method)} -> ${label}`, () => {
      const m = createMetrics({ version: "0.1.0" });
      m.requestStarted();
      m.requestFinished({ route: "proxy", method, status: 200, durationMs: 1 });
      const f = family(m.render(), "mcpgate_http_requests_total");
      assert.deepEqual(f.samples.map((s) => s.labels.method), [label]);
    });
  }
});

Deno.test("requestFinished() keeps one series per method label however many methods arrive", () => {
  const m = createMetrics({ version: "0.1.0" });
  for (let i = 0; i < 100; i++) {
    m.requestStarted();
    m.requestFinished({ route: "proxy", method: `M${i}`, status: 200, durationMs: 1 });
  }
  const f = family(m.render(), "mcpgate_http_requests_total");
  assert.equal(f.samples.length, 1);
  assert.equal(f.samples[0].value, "100");
});

Deno.test("the duration histogram has cumulative buckets, +Inf, _sum and _count", () => {
  const m = createMetrics({ version: "0.1.0", durationBucketsSeconds: [0.01, 0.1, 1] });
  // 5 ms, 10 ms (on the bound: le is inclusive), 50 ms, 2 s (overflow).
  for (const durationMs of [5, 10, 50, 2000]) {
    m.requestStarted();
    m.requestFinished({ route: "proxy", method: "GET", status: 200, durationMs });
  }
  const h = "mcpgate_http_request_duration_seconds";
  const f = family(m.render(), h);
  const base = { route: "proxy", method: "GET", status: "200" };
  assert.deepEqual(
    f.samples.filter((s) => s.name === `${h}_bucket`).map((s) => [s.labels.le, s.value]),
    [["0.01", "2"], ["0.1", "3"], ["1", "3"], ["+Inf", "4"]],
  );
  assert.equal(sample(f, `${h}_sum`, base), "2.065");
  assert.equal(sample(f, `${h}_count`, base), "4");
});

Deno.test("the duration histogram counts a negative or NaN duration as zero", () => {
  const m = createMetrics({ version: "0.1.0", durationBucketsSeconds: [0.01] });
  for (const durationMs of [-5, NaN]) {
    m.requestStarted();
    m.requestFinished({ route: "proxy", method: "GET", status: 200, durationMs });
  }
  const text = m.render();
  assert.match(text, /_bucket\{route="proxy",method="GET",status="200",le="0\.01"\} 2$/m);
  assert.match(text, /_sum\{route="proxy",method="GET",status="200"\} 0$/m);
});

Deno.test("the default duration buckets ascend and reach past Claude.ai's 300 s tool timeout", () => {
  for (let i = 1; i < DEFAULT_DURATION_BUCKETS.length; i++) {
    assert.ok(DEFAULT_DURATION_BUCKETS[i] > DEFAULT_DURATION_BUCKETS[i - 1]);
  }
  assert.equal(DEFAULT_DURATION_BUCKETS.at(-1), 300);
});

Deno.test("createMetrics() refuses buckets that do not ascend", () => {
  assert.throws(
    () => createMetrics({ version: "x", durationBucketsSeconds: [1, 0.5] }),
    /Invalid "durationBucketsSeconds": expected finite ascending bounds, got "1,0.5"/,
  );
  assert.throws(() => createMetrics({ version: "x", durationBucketsSeconds: [1, Infinity] }));
});

Deno.test("authOutcome() counts outcomes by reason, reason label only when given", () => {
  const m = createMetrics({ version: "0.1.0" });
  m.authOutcome("ok");
  m.authOutcome("ok");
  m.authOutcome("invalid_token", "expired");
  m.authOutcome("invalid_token", "audience");
  m.authOutcome("invalid_token", "expired");
  const f = family(m.render(), "mcpgate_auth_total");
  assert.deepEqual(
    f.samples.map((s) => [s.labels, s.value]),
    [
      [{ outcome: "ok" }, "2"],
      [{ outcome: "invalid_token", reason: "expired" }, "2"],
      [{ outcome: "invalid_token", reason: "audience" }, "1"],
    ],
  );
});

Deno.test("upstreamError() counts by kind and every kind is exposed from the start", () => {
  const m = createMetrics({ version: "0.1.0" });
  assert.match(m.render(), /^mcpgate_upstream_errors_total\{kind="timeout"\} 0$/m);
  m.upstreamError("timeout");
  m.upstreamError("timeout");
  m.upstreamError("reset");
  const f = family(m.render(), "mcpgate_upstream_errors_total");
  assert.deepEqual(
    f.samples.map((s) => [s.labels.kind, s.value]),
    [["unreachable", "0"], ["timeout", "2"], ["reset", "1"]],
  );
});

Deno.test("inflightRejected() counts by scope and both scopes are exposed from the start", () => {
  const m = createMetrics({ version: "0.1.0" });
  assert.match(m.render(), /^mcpgate_inflight_rejected_total\{scope="total"\} 0$/m);
  m.inflightRejected("ip");
  m.inflightRejected("ip");
  m.inflightRejected("total");
  const f = family(m.render(), "mcpgate_inflight_rejected_total");
  assert.deepEqual(f.samples.map((s) => [s.labels.scope, s.value]), [["ip", "2"], ["total", "1"]]);
  assert.match(f.help!, /MAX_CONCURRENT_REQUESTS/);
});

Deno.test("listenerFailed() counts by listener and both listeners are exposed from the start", () => {
  const m = createMetrics({ version: "0.1.0" });
  m.listenerFailed("gate");
  const f = family(m.render(), "mcpgate_listener_failures_total");
  assert.deepEqual(f.samples.map((s) => [s.labels.listener, s.value]), [
    ["gate", "1"],
    ["metrics", "0"],
  ]);
});

Deno.test("the in-flight gauge says it is no connection count", () => {
  const f = family(createMetrics({ version: "0.1.0" }).render(), "mcpgate_in_flight_requests");
  assert.match(f.help!, /Not a connection count/);
});

Deno.test("label values are escaped: backslash, double quote and line feed", () => {
  const m = createMetrics({ version: 'v1 "beta"\\build\nx' });
  m.authOutcome("odd", 'a"b\\c\nd');
  const text = m.render();
  assert.ok(text.includes('mcpgate_build_info{version="v1 \\"beta\\"\\\\build\\nx",'));
  const f = family(text, "mcpgate_auth_total");
  assert.deepEqual(f.samples[0].labels, { outcome: "odd", reason: 'a"b\\c\nd' });
  assert.equal(
    parseExposition(text).get("mcpgate_build_info")?.samples[0].labels.version,
    'v1 "beta"\\build\nx',
  );
});

Deno.test("escape helpers follow text format 0.0.4", async (t) => {
  const cases: [string, (s: string) => string, string, string][] = [
    ["label: quote", escapeLabelValue, 'a"b', 'a\\"b'],
    ["label: backslash", escapeLabelValue, "a\\b", "a\\\\b"],
    ["label: line feed", escapeLabelValue, "a\nb", "a\\nb"],
    ["label: plain", escapeLabelValue, "plain", "plain"],
    ["help: quote kept", escapeHelp, 'say "hi"', 'say "hi"'],
    ["help: backslash", escapeHelp, "a\\b", "a\\\\b"],
    ["help: line feed", escapeHelp, "a\nb", "a\\nb"],
  ];
  for (const [name, fn, input, want] of cases) {
    await t.step(name, () => assert.equal(fn(input), want));
  }
});

Deno.test("formatNumber() writes special floats as Prometheus reads them", () => {
  assert.equal(formatNumber(Infinity), "+Inf");
  assert.equal(formatNumber(-Infinity), "-Inf");
  assert.equal(formatNumber(NaN), "NaN");
  assert.equal(formatNumber(0.25), "0.25");
  assert.equal(formatNumber(42), "42");
});

Deno.test("METRICS_CONTENT_TYPE names text format 0.0.4", () => {
  assert.equal(METRICS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
});

Deno.test("requestFinished() costs well under a microsecond on a known series", () => {
  const m = createMetrics({ version: "0.1.0" });
  const f = { route: "proxy" as const, method: "POST", status: 200, durationMs: 3 };
  const n = 200_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    m.requestStarted();
    m.requestFinished(f);
  }
  const nsPerOp = ((performance.now() - t0) * 1e6) / n;
  // Generous bound so a loaded CI machine does not flake; typical is ~20-50 ns.
  assert.ok(nsPerOp < 1000, `${nsPerOp.toFixed(0)} ns per request`);
  assert.match(m.render(), /^mcpgate_http_requests_total\{[^}]*\} 200000$/m);
});

Deno.test("render() exposes the process_* families from a scrape-time reader, descriptors only when read", () => {
  let calls = 0;
  const metrics = createMetrics({
    version: "t",
    processStats: () => {
      calls++;
      return calls === 1
        ? { cpuSeconds: 1.5, residentBytes: 1024, startTimeSeconds: 1700000000.25 }
        : {
          cpuSeconds: 2,
          residentBytes: 2048,
          startTimeSeconds: 1700000000.25,
          openFds: 9,
          maxFds: 1024,
        };
    },
  });
  assert.equal(calls, 0, "nothing is read before a scrape");
  const first = parseExposition(metrics.render());
  assert.equal(first.get("process_cpu_seconds_total")?.type, "counter");
  assert.equal(first.get("process_cpu_seconds_total")?.samples[0].value, "1.5");
  assert.equal(first.get("process_resident_memory_bytes")?.samples[0].value, "1024");
  assert.equal(first.get("process_start_time_seconds")?.samples[0].value, "1700000000.25");
  assert.equal(first.has("process_open_fds"), false);
  assert.equal(first.has("process_max_fds"), false);
  const second = parseExposition(metrics.render());
  assert.equal(calls, 2);
  assert.equal(second.get("process_cpu_seconds_total")?.samples[0].value, "2");
  assert.equal(second.get("process_open_fds")?.samples[0].value, "9");
  assert.equal(second.get("process_max_fds")?.samples[0].value, "1024");
});

Deno.test("rateLimitFailOpen() counts requests admitted without the shared store's answer", () => {
  const m = createMetrics({ version: "1" });
  const name = "mcpgate_rate_limit_redis_failopen_total";
  const read = () => sample(family(m.render(), name), name, {});
  assert.equal(read(), "0", "exposed from the start, for dashboards and alerts");
  m.rateLimitFailOpen();
  m.rateLimitFailOpen();
  assert.equal(read(), "2");
});

Deno.test("render() exposes introspection counters only when introspection is configured", () => {
  assert.ok(!createMetrics({ version: "0.1.0" }).render().includes("mcpgate_introspection"));
  // Reassigned below and read by the closure; deno lint 2.9 misses the reassignment.
  // deno-lint-ignore prefer-const
  let up: 0 | 1 | undefined;
  const m = createMetrics({
    version: "0.1.0",
    introspectionStats: () => ({
      answered: 7,
      failed: 2,
      shed: 3,
      cacheHits: 40,
      cacheEntries: 5,
      up,
    }),
  });
  let text = m.render();
  assert.match(text, /^mcpgate_introspection_calls_total\{result="answered"\} 7$/m);
  assert.match(text, /^mcpgate_introspection_calls_total\{result="failed"\} 2$/m);
  assert.match(text, /^mcpgate_introspection_shed_total 3$/m);
  assert.match(text, /^mcpgate_introspection_cache_hits_total 40$/m);
  assert.match(text, /^mcpgate_introspection_cache_entries 5$/m);
  assert.ok(!text.includes("mcpgate_introspection_up"), "no up before the first call");
  up = 0;
  text = m.render();
  assert.match(text, /^# TYPE mcpgate_introspection_up gauge$/m);
  assert.match(text, /^mcpgate_introspection_up 0$/m);
});
