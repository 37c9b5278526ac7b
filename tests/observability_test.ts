/**
 * The shipped Grafana dashboard (deploy/grafana/) and Prometheus alert rules
 * (deploy/prometheus/alerts.yml) ask only for what the gate exports: every PromQL expression is
 * parsed with Prometheus' own grammar (@prometheus-io/lezer-promql), and every metric it selects,
 * every label it matches on and every label it groups by is checked against the `/metrics` text
 * of a running gate after some traffic (a proxied 200, a 401 without a token, a 401 with a bad
 * one).
 */
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { parser } from "@prometheus-io/lezer-promql";
import { startRig } from "./helpers/rig.ts";
import { closedPort } from "./helpers/net.ts";

const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const read = (path: string) => Deno.readTextFileSync(`${repo}/${path}`);

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

const DASHBOARD = "deploy/grafana/mcp-gate-dashboard.json";
const ALERTS = "deploy/prometheus/alerts.yml";

/**
 * Metric names the gate's metrics code defines (as string literals in src/ops/, tests left out).
 * Some appear only where the runtime allows them (`process_open_fds` needs `/proc/self/fd`, which
 * Deno 2.9 refuses without --allow-all): a name missing from the scrape must be one of these.
 */
function definedInSource(): Set<string> {
  const names = new Set<string>();
  for (const entry of Deno.readDirSync(`${repo}/src/ops`)) {
    if (!entry.name.endsWith(".ts") || entry.name.endsWith("_test.ts")) continue;
    const text = read(`src/ops/${entry.name}`);
    for (const m of text.matchAll(/"((?:mcpgate|process)_[a-z_]+)"/g)) names.add(m[1]);
  }
  return names;
}

/** Labels Prometheus attaches to every scraped series. */
const TARGET_LABELS = ["instance", "job"];

/** What one PromQL expression selects and groups by. */
interface Uses {
  /** metric name -> label names its selectors match on */
  selectors: Map<string, Set<string>>;
  /** label names in `by (...)` / `without (...)` / `on (...)` / `ignoring (...)` */
  grouping: Set<string>;
}

/** Parses `expr` with Prometheus' grammar; throws on a syntax error. */
function promqlUses(expr: string): Uses {
  const tree = parser.parse(expr);
  const errors: string[] = [];
  const uses: Uses = { selectors: new Map(), grouping: new Set() };
  tree.iterate({
    enter(n) {
      if (n.type.isError) errors.push(`at ${n.from}: "${expr.slice(n.from, n.to + 10)}"`);
      if (n.name === "VectorSelector") {
        const id = n.node.getChild("Identifier");
        assert.ok(id, `a selector without a metric name in "${expr}"`);
        const name = expr.slice(id.from, id.to);
        const labels = uses.selectors.get(name) ?? new Set<string>();
        uses.selectors.set(name, labels);
        const matchers = n.node.getChild("LabelMatchers");
        if (matchers) {
          const c = matchers.cursor();
          c.iterate((m) => {
            if (m.name === "LabelName") labels.add(expr.slice(m.from, m.to));
          });
        }
      }
      if (n.name === "GroupingLabels") {
        for (const l of n.node.getChildren("LabelName")) {
          uses.grouping.add(expr.slice(l.from, l.to));
        }
      }
    },
  });
  assert.deepEqual(errors, [], `PromQL syntax error in "${expr}"`);
  return uses;
}

/** Grafana's variables, replaced by what Prometheus would receive. */
function grafanaToPromql(expr: string): string {
  return expr.replaceAll("$__rate_interval", "5m").replaceAll("$__interval", "1m")
    .replace(/\$\{?instance\}?/g, ".*");
}

/** The PromQL of the dashboard: every panel target and every query variable. */
function dashboardExprs(dashboard: Obj): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const walk = (panels: Obj[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(dashboard.panels);
  for (const v of dashboard.templating.list) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : v.query.query;
    // label_values(metric, label): the metric must exist and carry the label.
    const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(q);
    assert.ok(m, `variable "${v.name}" is a label_values() query: "${q}"`);
    out.push({ where: `variable "${v.name}"`, expr: `${m[1]}{${m[2]}!=""}` });
  }
  return out;
}

function alertRules(rules: Obj): Obj[] {
  return rules.groups.flatMap((g: Obj) => g.rules);
}

/** Metric name -> label names, from a `/metrics` exposition (histograms with their suffixes). */
function exported(text: string): Map<string, Set<string>> {
  const metrics = new Map<string, Set<string>>();
  const add = (name: string, labels: string[] = []) => {
    const set = metrics.get(name) ?? new Set<string>();
    for (const l of labels) set.add(l);
    metrics.set(name, set);
  };
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      add(type[1]);
      if (type[2] === "histogram") {
        for (const s of ["_bucket", "_sum", "_count"]) add(type[1] + s);
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /.exec(line);
    if (sample) {
      add(sample[1], [...(sample[2] ?? "").matchAll(/(\w+)="/g)].map((m) => m[1]));
    }
  }
  return metrics;
}

/** A gate's /metrics text after a proxied 200, a 401 without a token and one with a bad token. */
async function scrapeAfterTraffic(): Promise<string> {
  const metricsPort = closedPort();
  await using rig = await startRig({ env: { METRICS_ADDR: `127.0.0.1:${metricsPort}` } });
  const token = await rig.issuer.mint({ scope: "mcp:tools" });
  const statuses: number[] = [];
  for (const authorization of [`Bearer ${token}`, undefined, "Bearer not.a.token"]) {
    const res = await fetch(rig.url, {
      method: "POST",
      headers: authorization ? { authorization } : {},
      body: "{}",
    });
    await res.body?.cancel();
    statuses.push(res.status);
  }
  assert.deepEqual(statuses, [200, 401, 401]);
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(res.status, 200);
  return await res.text();
}

Deno.test("observability: every metric and label the dashboard and the alerts use is exported", async () => {
  const metrics = exported(await scrapeAfterTraffic());
  const dashboard: Obj = JSON.parse(read(DASHBOARD));
  const rules: Obj = parseYaml(read(ALERTS));
  const exprs = [
    ...dashboardExprs(dashboard).map((e) => ({ ...e, expr: grafanaToPromql(e.expr) })),
    ...alertRules(rules).map((r) => ({ where: `alert ${r.alert}`, expr: String(r.expr) })),
  ];
  assert.ok(exprs.length >= 20, `${exprs.length} expressions`);
  const problems: string[] = [];
  const used = new Set<string>();
  const defined = definedInSource();
  for (const { where, expr } of exprs) {
    const uses = promqlUses(expr);
    assert.ok(uses.selectors.size > 0, `${where} selects no metric`);
    const available = new Set(TARGET_LABELS);
    let conditional = false;
    for (const [name, labels] of uses.selectors) {
      used.add(name);
      const known = metrics.get(name);
      if (known === undefined) {
        // Not in this runtime's scrape (or not with this configuration): defined all the same.
        if (!defined.has(name)) {
          problems.push(`${where}: "${name}" is not exported`);
        }
        conditional = true;
        continue;
      }
      for (const l of known) available.add(l);
      for (const l of labels) {
        if (!known.has(l) && !TARGET_LABELS.includes(l)) {
          problems.push(`${where}: "${name}" has no label "${l}"`);
        }
      }
    }
    for (const l of uses.grouping) {
      if (!available.has(l) && !conditional) {
        problems.push(`${where}: groups by "${l}", which none of its metrics has`);
      }
    }
  }
  assert.deepEqual(problems, []);
  // Every family the gate exports has a panel (build info included).
  const families = [...metrics.keys()].filter((n) => !/_(bucket|sum|count)$/.test(n));
  const onDashboard = new Set(
    dashboardExprs(dashboard).flatMap((
      e,
    ) => [...promqlUses(grafanaToPromql(e.expr)).selectors.keys()]),
  );
  for (const f of families) {
    const histogram = metrics.has(`${f}_bucket`);
    assert.ok(onDashboard.has(histogram ? `${f}_bucket` : f), `the dashboard shows ${f}`);
  }
});

Deno.test("observability: the checker finds a misspelt metric, a wrong label and bad syntax", () => {
  const metrics = exported(
    '# TYPE mcpgate_auth_total counter\nmcpgate_auth_total{outcome="ok"} 1\n',
  );
  const misspelt = promqlUses("rate(mcpgate_auth_totals[5m])");
  assert.ok(!metrics.has([...misspelt.selectors.keys()][0]));
  const label = promqlUses('rate(mcpgate_auth_total{kind="x"}[5m])');
  assert.ok(
    !metrics.get("mcpgate_auth_total")!.has([...label.selectors.get("mcpgate_auth_total")!][0]),
  );
  assert.throws(() => promqlUses("sum(rate(mcpgate_auth_total[5m])"), /syntax error/);
  assert.throws(() => promqlUses("rate(mcpgate_auth_total[$__rate_interval])"), /syntax error/);
});

Deno.test("observability: the alert rules are well-formed Prometheus rules", () => {
  const rules: Obj = parseYaml(read(ALERTS));
  const names = new Set<string>();
  for (const rule of alertRules(rules)) {
    assert.match(rule.alert, /^McpGate[A-Z]\w+$/);
    assert.ok(!names.has(rule.alert), `one rule named ${rule.alert}`);
    names.add(rule.alert);
    assert.deepEqual(
      Object.keys(rule).filter((k) =>
        !["alert", "expr", "for", "labels", "annotations"].includes(k)
      ),
      [],
      rule.alert,
    );
    if (rule.for !== undefined) assert.match(rule.for, /^\d+[smh]$/, rule.alert);
    assert.ok(["critical", "warning"].includes(rule.labels.severity), rule.alert);
    assert.ok(rule.annotations.summary && rule.annotations.description, rule.alert);
  }
  for (const want of ["McpGateKeySetStale", "McpGateAuthFailureRatio", "McpGateUpstream5xxRatio"]) {
    assert.ok(names.has(want), want);
  }
});

Deno.test("observability: the dashboard is a Grafana dashboard on a Prometheus data source variable", () => {
  const dashboard: Obj = JSON.parse(read(DASHBOARD));
  assert.equal(dashboard.uid, "mcp-gate");
  assert.ok(dashboard.schemaVersion >= 36);
  const ids = new Set<number>();
  const walk = (panels: Obj[]) => {
    for (const p of panels) {
      assert.ok(!ids.has(p.id), `panel id ${p.id} is unique`);
      ids.add(p.id);
      if (p.type !== "row") {
        assert.deepEqual(p.datasource, { type: "prometheus", uid: "${datasource}" }, p.title);
        for (const t of p.targets) assert.ok(t.refId && t.expr, p.title);
      }
      walk(p.panels ?? []);
    }
  };
  walk(dashboard.panels);
  const ds = dashboard.templating.list.find((v: Obj) => v.name === "datasource");
  assert.equal(ds.type, "datasource");
  assert.equal(ds.query, "prometheus");
});
