/**
 * The deployment files, checked with what this machine has: the Kubernetes manifests and the
 * compose file are parsed and their fields that matter asserted; the Dockerfile's runtime stage
 * is compared with what the minimal-rootfs test runs (tests/helpers/rootfs.ts); the systemd unit
 * goes through `systemd-analyze verify` (and `security`) when the tool is present.
 */
import assert from "node:assert/strict";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { IMAGE_BINARY_PATH, IMAGE_RUNTIME_BASE, IMAGE_USER } from "./helpers/rootfs.ts";
import { configWarnings, parseConfig } from "../src/config/mod.ts";

const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const read = (path: string) => Deno.readTextFileSync(`${repo}/${path}`);

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

/** docs/contract.md §1, every variable the gate reads. */
const CONTRACT_VARIABLES = new Set([
  "UPSTREAM_URL",
  "RESOURCE_URI",
  "AUTHORIZATION_SERVER",
  "LISTEN_ADDR",
  "JWKS_URI",
  "EXPECTED_ISSUER",
  "EXPECTED_AUDIENCE",
  "REQUIRED_SCOPES",
  "SCOPES_SUPPORTED",
  "SCOPE_CLAIMS",
  "REQUIRED_CLAIMS",
  "RESOURCE_NAME",
  "RESOURCE_DOCUMENTATION",
  "ALLOWED_ALGS",
  "CLOCK_SKEW",
  "JWKS_REFRESH_INTERVAL",
  "JWKS_MIN_REFRESH_INTERVAL",
  "UPSTREAM_TIMEOUT",
  "SHUTDOWN_TIMEOUT",
  "MAX_REQUEST_BODY",
  "TRUSTED_PROXIES",
  "ALLOWED_ORIGINS",
  "FORWARD_AUTHORIZATION",
  "CLAIM_HEADERS",
  "PRESERVE_HOST",
  "RATE_LIMIT_RPS",
  "RATE_LIMIT_BURST",
  "RATE_LIMIT_REDIS_URL",
  "RATE_LIMIT_REDIS_TIMEOUT",
  "METRICS_ADDR",
  "TLS_CERT_FILE",
  "TLS_KEY_FILE",
  "LOG_LEVEL",
]);
const REQUIRED_VARIABLES = ["UPSTREAM_URL", "RESOURCE_URI", "AUTHORIZATION_SERVER"];

/** Port of a `host:port`, `:port` or `[v6]:port` address. */
function portOf(addr: string): number {
  const m = /:(\d+)$/.exec(addr);
  assert.ok(m, `address "${addr}" has a port`);
  return Number(m[1]);
}

/** Go duration or plain seconds -> seconds (enough for the examples: s, m, h). */
function seconds(text: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(text);
  assert.ok(m, `duration "${text}"`);
  return Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[m[2] ?? "s"] ?? 1);
}

function isLoopbackUrl(url: string): boolean {
  const host = new URL(url).hostname;
  return host === "localhost" || host === "[::1]" || host.startsWith("127.");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

const k8sDocs: Obj[] = parseAllDocuments(read("deploy/kubernetes/mcp-gate.yaml")).map((d) => {
  assert.deepEqual(d.errors, [], "the manifest parses");
  return d.toJS();
});
const k8s = (kind: string): Obj => {
  const found = k8sDocs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0];
};
const deployment = k8s("Deployment");
const podSpec: Obj = deployment.spec.template.spec;
const gateContainer: Obj = podSpec.containers.find((c: Obj) => c.name === "mcp-gate");
const gateEnv: Obj = k8s("ConfigMap").data;

Deno.test("kubernetes: the pod holds the MCP server and mcp-gate side by side", () => {
  assert.equal(podSpec.containers.length, 2);
  assert.ok(gateContainer, "a container named mcp-gate");
  assert.deepEqual(gateContainer.envFrom, [{
    configMapRef: { name: k8s("ConfigMap").metadata.name },
  }]);
  // The MCP server is reached over the pod's loopback, so nothing bypasses the gate.
  assert.ok(isLoopbackUrl(gateEnv.UPSTREAM_URL), gateEnv.UPSTREAM_URL);
  for (const v of REQUIRED_VARIABLES) assert.ok(gateEnv[v], `ConfigMap sets ${v}`);
  for (const v of Object.keys(gateEnv)) {
    assert.ok(CONTRACT_VARIABLES.has(v), `${v} is a contract variable`);
  }
});

Deno.test("kubernetes: the Service exposes only the gate's listener port", () => {
  const service = k8s("Service");
  const labels = deployment.spec.template.metadata.labels;
  for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(labels[k], v);
  const gateHttp = gateContainer.ports.find((p: Obj) => p.name === "http");
  assert.equal(gateHttp.containerPort, portOf(gateEnv.LISTEN_ADDR));
  assert.deepEqual(
    service.spec.ports.map((p: Obj) => p.targetPort),
    ["http"],
    "one port, the gate's http port (not metrics, not the MCP server)",
  );
  for (const c of podSpec.containers) {
    if (c.name !== "mcp-gate") assert.equal(c.ports, undefined, `${c.name} publishes no port`);
  }
});

Deno.test("kubernetes: liveness is /livez and readiness is /readyz on the gate", () => {
  assert.equal(gateContainer.livenessProbe.httpGet.path, "/livez");
  assert.equal(gateContainer.readinessProbe.httpGet.path, "/readyz");
  assert.equal(gateContainer.livenessProbe.httpGet.port, "http");
  assert.equal(gateContainer.readinessProbe.httpGet.port, "http");
});

Deno.test("kubernetes: a startup probe, if any, waits for readiness, not for the process", () => {
  // /livez answers as soon as the process listens: a startup probe on it waits for nothing.
  const startup = gateContainer.startupProbe;
  if (startup !== undefined) assert.equal(startup.httpGet.path, "/readyz");
});

/**
 * How long the exit may take after SHUTDOWN_TIMEOUT (the cut streams' grace and the closes after
 * the drain), as docs/contract.md §1 states it; a supervisor's stop timeout covers it too.
 */
const EXIT_AFTER_DRAIN_S = (() => {
  const m = /at most `SHUTDOWN_TIMEOUT` \+ ([\d.]+) s after the signal/.exec(
    read("docs/contract.md").replace(/\s+/g, " "),
  );
  assert.ok(m, "docs/contract.md §1 states how long the exit takes after the drain");
  return Number(m[1]);
})();

Deno.test("kubernetes: preStop sleeps (native action, no shell) and the grace period covers it and the drain", () => {
  for (const c of podSpec.containers) {
    const sleep = c.lifecycle?.preStop?.sleep?.seconds;
    assert.ok(typeof sleep === "number" && sleep >= 3, `${c.name} sleeps before SIGTERM`);
    assert.equal(c.lifecycle.preStop.exec, undefined, `${c.name}: the gate's image has no shell`);
  }
  const gateSleep = gateContainer.lifecycle.preStop.sleep.seconds;
  assert.ok(
    podSpec.terminationGracePeriodSeconds >
      gateSleep + seconds(gateEnv.SHUTDOWN_TIMEOUT ?? "30s") + EXIT_AFTER_DRAIN_S,
  );
});

/** sha256 of the ConfigMap's data as compact JSON with sorted keys (the manifest's comment). */
async function configChecksum(data: Record<string, string>): Promise<string> {
  const sorted = Object.fromEntries(Object.entries(data).sort(([a], [b]) => a < b ? -1 : 1));
  const bytes = new TextEncoder().encode(JSON.stringify(sorted));
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).toHex();
}

Deno.test("kubernetes: the pod template's config checksum matches the ConfigMap", async () => {
  const annotation = deployment.spec.template.metadata.annotations["checksum/config"];
  const want = await configChecksum(gateEnv);
  assert.equal(annotation, want, `set checksum/config to "${want}"`);
  assert.notEqual(
    await configChecksum({ ...gateEnv, LOG_LEVEL: "debug" }),
    want,
    "a changed value changes the checksum",
  );
});

/** Measured peak resident memory of the gate, MiB (docs/deploy.md#kubernetes). */
const MEASURED_PEAK_MIB = 231;

/** `128Mi`, `1Gi`, `300M` -> MiB. */
function mebibytes(quantity: string): number {
  const m = /^(\d+)(Mi|Gi|M|G)$/.exec(quantity);
  assert.ok(m, `memory quantity "${quantity}"`);
  const factor = { Mi: 1, Gi: 1024, M: 1e6 / 2 ** 20, G: 1e9 / 2 ** 20 }[m[2]]!;
  return Number(m[1]) * factor;
}

Deno.test("kubernetes: the gate's memory limit leaves room above its measured peak", () => {
  const limit = mebibytes(gateContainer.resources.limits.memory);
  assert.ok(limit >= MEASURED_PEAK_MIB * 1.25, `${limit} MiB vs peak ${MEASURED_PEAK_MIB} MiB`);
  assert.ok(read("deploy/kubernetes/mcp-gate.yaml").includes(`${MEASURED_PEAK_MIB} MiB`));
  assert.ok(read("docs/deploy.md").includes(`${MEASURED_PEAK_MIB} MiB`));
});

Deno.test("kubernetes: TRUSTED_PROXIES is a narrow placeholder, not the whole network", () => {
  const entries = gateEnv.TRUSTED_PROXIES.split(",").map((e: string) => e.trim());
  for (const e of entries) {
    const [addr, prefix] = e.split("/");
    const bits = prefix === undefined ? 32 : Number(prefix);
    assert.ok(/^\d+\.\d+\.\d+\.\d+$/.test(addr), e);
    assert.ok(bits >= 16, `"${e}" trusts ${2 ** (32 - bits)} addresses`);
  }
});

Deno.test("kubernetes: the metrics port is annotated for scraping and matches METRICS_ADDR", () => {
  const annotations = deployment.spec.template.metadata.annotations;
  assert.equal(annotations["prometheus.io/scrape"], "true");
  assert.equal(annotations["prometheus.io/path"], "/metrics");
  const metricsPort = portOf(gateEnv.METRICS_ADDR);
  assert.equal(annotations["prometheus.io/port"], String(metricsPort));
  assert.equal(
    gateContainer.ports.find((p: Obj) => p.name === "metrics").containerPort,
    metricsPort,
  );
});

Deno.test("kubernetes: every container has resource requests and a memory limit", () => {
  for (const c of podSpec.containers) {
    assert.ok(c.resources.requests.cpu, `${c.name} requests cpu`);
    assert.ok(c.resources.requests.memory, `${c.name} requests memory`);
    assert.ok(c.resources.limits.memory, `${c.name} limits memory`);
  }
});

Deno.test("kubernetes: every container has its own security context; the gate's is locked down", () => {
  assert.equal(podSpec.automountServiceAccountToken, false);
  // Pod-wide: only what suits any container (the MCP server may need another user or /tmp).
  assert.deepEqual(Object.keys(podSpec.securityContext), ["seccompProfile"]);
  for (const c of podSpec.containers) {
    assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
    assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"], c.name);
    assert.equal(c.securityContext.privileged ?? false, false, c.name);
    assert.equal(c.securityContext.seccompProfile.type, "RuntimeDefault", c.name);
  }
  const gate = gateContainer.securityContext;
  assert.equal(gate.runAsNonRoot, true);
  assert.equal(gate.runAsUser, IMAGE_USER.uid);
  assert.equal(gate.runAsGroup, IMAGE_USER.gid);
  assert.equal(gate.readOnlyRootFilesystem, true, "the gate writes nothing");
  assert.equal(gateContainer.volumeMounts, undefined, "the gate needs no writable path");
});

Deno.test("kubernetes: the MCP server gets a writable /tmp under its read-only root", () => {
  const server = podSpec.containers.find((c: Obj) => c.name !== "mcp-gate");
  const tmp = server.volumeMounts?.find((m: Obj) => m.mountPath === "/tmp");
  assert.ok(tmp, "/tmp is mounted");
  const volume = podSpec.volumes.find((v: Obj) => v.name === tmp.name);
  assert.ok(volume.emptyDir, "an emptyDir");
});

Deno.test("kubernetes: several replicas, a PodDisruptionBudget and a grace period above the drain", () => {
  assert.ok(deployment.spec.replicas >= 2, "the example runs several replicas");
  const pdb = k8s("PodDisruptionBudget");
  assert.deepEqual(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
  assert.ok(pdb.spec.minAvailable < deployment.spec.replicas);
  assert.ok(
    podSpec.terminationGracePeriodSeconds >
      seconds(gateEnv.SHUTDOWN_TIMEOUT ?? "30s") + EXIT_AFTER_DRAIN_S,
    "the kubelet waits longer than the gate drains",
  );
});

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions grouped by stage; line continuations joined, comments dropped. */
function parseDockerfile(text: string): Instruction[][] {
  const stages: Instruction[][] = [];
  const preamble: Instruction[] = [];
  const logical = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  for (const line of logical) {
    const [, op, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    const ins = { op: op.toUpperCase(), args: args.replace(/\s+/g, " ") };
    if (ins.op === "FROM") stages.push([ins]);
    else (stages.at(-1) ?? preamble).push(ins);
  }
  return [preamble, ...stages];
}

const [dockerPreamble, ...dockerStages] = parseDockerfile(read("Dockerfile"));
const runtimeStage = dockerStages.at(-1)!;
const buildStage = dockerStages[0];
const runtime = (op: string) => runtimeStage.filter((i) => i.op === op);

Deno.test("Dockerfile: two stages, Deno's official image builds, distroless cc runs", () => {
  assert.equal(dockerStages.length, 2);
  const arg = dockerPreamble.find((i) => i.op === "ARG" && i.args.startsWith("DENO_VERSION="));
  assert.equal(arg?.args, "DENO_VERSION=2.9.6");
  // The build runs on the builder's platform and cross-compiles for the image's.
  assert.equal(
    buildStage[0].args,
    "--platform=$BUILDPLATFORM denoland/deno:${DENO_VERSION} AS build",
  );
  assert.ok(buildStage.some((i) => i.op === "RUN" && i.args.includes("deno task compile")));
  // glibc is needed (deno compile output is dynamically linked): cc, never static.
  assert.equal(runtimeStage[0].args, IMAGE_RUNTIME_BASE);
});

Deno.test("Dockerfile: each image platform of the release maps to a deno compile target", () => {
  const run = buildStage.find((i) => i.op === "RUN" && i.args.includes("deno task compile"))!;
  assert.ok(buildStage.some((i) => i.op === "ARG" && i.args === "TARGETARCH"));
  const wf: Obj = parseYaml(read(".github/workflows/release.yml"));
  const targets: string[] = wf.jobs.build.strategy.matrix.target;
  const push = wf.jobs.image.steps.find((s: Obj) =>
    String(s.uses).startsWith("docker/build-push-action@")
  );
  for (const platform of String(push.with.platforms).split(",")) {
    const arch = platform.split("/")[1];
    const m = new RegExp(`${arch}\\) target="--target ([\\w-]+)"`).exec(run.args);
    assert.ok(m, `TARGETARCH ${arch} is handled`);
    assert.ok(targets.includes(m[1]), `${m[1]} is a release target`);
  }
});

Deno.test("Dockerfile: the runtime stage is what the minimal-rootfs test runs", () => {
  assert.deepEqual(runtime("COPY").map((i) => i.args), [
    `--from=build /src/dist/mcp-gate ${IMAGE_BINARY_PATH}`,
  ]);
  assert.deepEqual(runtime("USER").map((i) => i.args), [`${IMAGE_USER.uid}:${IMAGE_USER.gid}`]);
  assert.deepEqual(runtime("ENTRYPOINT").map((i) => JSON.parse(i.args)), [[IMAGE_BINARY_PATH]]);
  // Nothing else is added: no RUN (there is no shell), no ENV that would differ from the test.
  const ops = new Set(runtimeStage.map((i) => i.op));
  assert.deepEqual([...ops].sort(), [
    "COPY",
    "ENTRYPOINT",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "USER",
  ]);
});

Deno.test("Dockerfile: HEALTHCHECK runs the healthcheck subcommand in exec form", () => {
  const [hc] = runtime("HEALTHCHECK");
  const m = /^(.*)CMD (\[.*\])$/.exec(hc.args);
  assert.ok(m, hc.args);
  assert.deepEqual(JSON.parse(m[2]), [IMAGE_BINARY_PATH, "healthcheck"]);
  assert.match(m[1], /--timeout=\d+s/);
});

Deno.test("Dockerfile: EXPOSE names the default listener and metrics ports", () => {
  // docs/contract.md §1: LISTEN_ADDR 0.0.0.0:8080, METRICS_ADDR :9090.
  assert.deepEqual(runtime("EXPOSE").map((i) => i.args), ["8080 9090"]);
});

Deno.test(".dockerignore lets in exactly what the build stage copies, and no tests", () => {
  const rules = read(".dockerignore").split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  assert.equal(rules[0], "*", "deny by default");
  const copied = buildStage.filter((i) => i.op === "COPY").flatMap((i) =>
    i.args.split(" ").slice(0, -1)
  );
  const allowed = rules.filter((r) => r.startsWith("!")).map((r) => r.slice(1));
  assert.deepEqual([...allowed].sort(), [...copied].sort());
  assert.ok(rules.includes("src/**/*_test.ts"));
});

const hasMain = (() => {
  try {
    return Deno.statSync(`${repo}/main.ts`).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "Dockerfile: every local module of main.ts is inside the copied paths",
  ignore: !hasMain,
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "main.ts"],
      cwd: repo,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const graph = JSON.parse(new TextDecoder().decode(out.stdout));
    const local = graph.modules.map((m: Obj) => m.specifier as string)
      .filter((s: string) => s.startsWith("file://"))
      .map((s: string) => new URL(s).pathname.slice(repo.length + 1));
    assert.ok(local.includes("main.ts"));
    for (const path of local) {
      assert.ok(
        path === "main.ts" || path === "deno.json" || path.startsWith("src/"),
        `main.ts reaches "${path}", which the image build does not copy`,
      );
      assert.ok(!path.endsWith("_test.ts"), `main.ts must not import a test: "${path}"`);
    }
  },
});

Deno.test({
  name: "the npm packages main.ts reaches are the ones README and docs/deploy.md say ship",
  ignore: !hasMain,
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "main.ts"],
      cwd: repo,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const graph = JSON.parse(new TextDecoder().decode(out.stdout));
    const reached = new Set<string>(
      graph.modules.filter((m: Obj) => m.kind === "npm" && m.npmPackage)
        .map((m: Obj) => String(m.npmPackage).replace(/^(@?[^@]+)@.*$/, "$1")),
    );
    // README's Dependencies table: the rows whose "shipped" column says yes.
    const shipped = new Set(
      [...read("README.md").matchAll(/^\| `([^`]+)` +\| yes +\|/gm)].map((m) => m[1]),
    );
    assert.deepEqual([...shipped].sort(), [...reached].sort());
    const sentence = /The compile embeds only the npm packages `main.ts` reaches \(today ([^,;]+)/
      .exec(read("docs/deploy.md").replace(/\s+/g, " "));
    assert.ok(sentence, "docs/deploy.md names what the binary embeds");
    const named = [...sentence[1].matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    assert.deepEqual(named.sort(), [...reached].sort());
  },
});

// ---------------------------------------------------------------------------------------------
// systemd

/** `[Section]` -> key -> every value assigned (systemd allows repeats). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      sections.set(section[1], current = new Map());
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(current && eq > 0, `unit line "${line}"`);
    const key = line.slice(0, eq);
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1)]);
  }
  return sections;
}

const unitText = read("deploy/systemd/mcp-gate.service");
const service = parseUnit(unitText).get("Service")!;
const one = (key: string) => {
  const values = service.get(key);
  assert.ok(values, `[Service] sets ${key}`);
  return values.at(-1)!;
};

Deno.test("systemd: the unit hardens the service as the issue lists", async (t) => {
  const want: [string, string][] = [
    ["Type", "exec"],
    ["ExecStart", "/usr/local/bin/mcp-gate"],
    ["EnvironmentFile", "/etc/mcp-gate/mcp-gate.env"],
    ["DynamicUser", "yes"],
    ["NoNewPrivileges", "yes"],
    ["ProtectSystem", "strict"],
    ["ProtectHome", "yes"],
    ["PrivateTmp", "yes"],
    ["CapabilityBoundingSet", ""],
    ["AmbientCapabilities", ""],
    ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"],
    ["KillSignal", "SIGTERM"],
    ["Restart", "on-failure"],
    ["RestartPreventExitStatus", "2"],
    // V8's JIT needs writable-then-executable memory.
    ["MemoryDenyWriteExecute", "no"],
    ["SystemCallErrorNumber", "EPERM"],
  ];
  for (const [key, value] of want) {
    await t.step(`${key}=${value}`, () => assert.equal(one(key), value));
  }
  await t.step("SystemCallFilter starts from @system-service", () => {
    assert.equal(service.get("SystemCallFilter")?.[0], "@system-service");
  });
});

Deno.test("systemd: TimeoutStopSec exceeds the default SHUTDOWN_TIMEOUT drain and the exit after it", () => {
  assert.ok(seconds(one("TimeoutStopSec")) > 30 + EXIT_AFTER_DRAIN_S, one("TimeoutStopSec"));
});

Deno.test("systemd: the example environment file names only contract variables", () => {
  const keys = read("deploy/systemd/mcp-gate.env.example").split("\n")
    .map((l) => /^#?([A-Z_]+)=/.exec(l.trim())?.[1]).filter((k): k is string => k !== undefined);
  for (const k of keys) assert.ok(CONTRACT_VARIABLES.has(k), `${k} is a contract variable`);
  for (const v of REQUIRED_VARIABLES) assert.ok(keys.includes(v), `sets ${v}`);
});

const systemdAnalyze = (() => {
  try {
    return Deno.statSync("/usr/bin/systemd-analyze").isFile
      ? "/usr/bin/systemd-analyze"
      : undefined;
  } catch {
    return undefined;
  }
})();

/** The unit in a temp dir with ExecStart pointing at an executable that exists here. */
async function unitCopy(dir: string): Promise<string> {
  // verify checks that ExecStart is executable: use the built binary when there is one.
  const bin = Deno.env.get("MCP_GATE_BIN") ?? `${dir}/mcp-gate`;
  if (!Deno.env.get("MCP_GATE_BIN")) {
    await Deno.writeTextFile(bin, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  }
  const path = `${dir}/mcp-gate.service`;
  await Deno.writeTextFile(path, unitText.replace(/^ExecStart=.*$/m, `ExecStart=${bin}`));
  return path;
}

Deno.test({
  name: "systemd: systemd-analyze verify accepts the unit without a warning",
  ignore: systemdAnalyze === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const out = await new Deno.Command(systemdAnalyze!, {
        args: ["verify", await unitCopy(dir)],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(text, "", "no warning");
      assert.equal(out.code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "systemd: systemd-analyze verify flags a unit whose ExecStart is missing (the check bites)",
  ignore: systemdAnalyze === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const path = `${dir}/broken.service`;
      await Deno.writeTextFile(path, unitText.replace(/^ExecStart=.*$/m, `ExecStart=${dir}/none`));
      const out = await new Deno.Command(systemdAnalyze!, {
        args: ["verify", path],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.notEqual(out.code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "systemd: systemd-analyze security rates the unit's exposure 2.0 or lower",
  ignore: systemdAnalyze === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const out = await new Deno.Command(systemdAnalyze!, {
        args: ["security", "--offline=yes", "--no-pager", await unitCopy(dir)],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      if (/unrecognized option|--offline/.test(text) && !/exposure level/.test(text)) {
        console.warn("systemd-analyze security --offline is not supported here (systemd < 250)");
        return;
      }
      const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(text);
      assert.ok(m, text);
      assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// ---------------------------------------------------------------------------------------------
// docker-compose + Keycloak realm

const compose: Obj = parseYaml(read("deploy/compose/docker-compose.yml"));
const realm: Obj = JSON.parse(read("deploy/compose/realm-mcp.json"));
const composeGate: Obj = compose.services["mcp-gate"];

Deno.test("compose: Keycloak, an MCP server and the gate, sharing one network namespace", () => {
  assert.deepEqual(Object.keys(compose.services).sort(), ["keycloak", "mcp-gate", "mcp-server"]);
  assert.equal(composeGate.network_mode, "service:keycloak");
  assert.equal(compose.services["mcp-server"].network_mode, "service:keycloak");
  assert.equal(compose.services["mcp-server"].ports, undefined, "the MCP server is not published");
  assert.equal(composeGate.build.dockerfile, "Dockerfile");
  const published = compose.services.keycloak.ports.map((p: string) => Number(p.split(":")[1]));
  assert.ok(published.includes(portOf(composeGate.environment.LISTEN_ADDR)), "gate port published");
  assert.ok(isLoopbackUrl(composeGate.environment.UPSTREAM_URL));
  const mcpPort = compose.services["mcp-server"].environment.MCP_PORT;
  assert.equal(portOf(new URL(composeGate.environment.UPSTREAM_URL).host), Number(mcpPort));
  for (const v of Object.keys(composeGate.environment)) assert.ok(CONTRACT_VARIABLES.has(v), v);
});

Deno.test("compose: the gate's issuer is what Keycloak's fixed hostname and realm produce", () => {
  const kc = compose.services.keycloak.environment;
  assert.equal(
    composeGate.environment.AUTHORIZATION_SERVER,
    `${kc.KC_HOSTNAME}/realms/${realm.realm}`,
  );
  // Loopback, so the gate may fetch discovery and keys over http (docs/contract.md §1 JWKS_URI).
  assert.ok(isLoopbackUrl(composeGate.environment.AUTHORIZATION_SERVER));
});

Deno.test("compose: the realm's audience mapper puts the resource URL in aud", () => {
  const client = realm.clients.find((c: Obj) => c.clientId === "mcp-client");
  const mapper = client.protocolMappers.find((m: Obj) =>
    m.protocolMapper === "oidc-audience-mapper"
  );
  assert.equal(mapper.config["included.custom.audience"], composeGate.environment.RESOURCE_URI);
  assert.equal(mapper.config["access.token.claim"], "true");
});

Deno.test("compose: the realm client suits Claude and MCP Inspector (public, PKCE S256)", () => {
  const client = realm.clients.find((c: Obj) => c.clientId === "mcp-client");
  assert.equal(client.publicClient, true);
  assert.equal(client.standardFlowEnabled, true);
  assert.equal(client.attributes["pkce.code.challenge.method"], "S256");
  assert.ok(client.redirectUris.includes("https://claude.ai/api/mcp/auth_callback"));
  assert.ok(client.redirectUris.includes("http://localhost:6274/oauth/callback"));
});

Deno.test("compose: the realm declares no clientScopes, keeping Keycloak's built-in 'basic' (sub)", () => {
  // A realm import with a clientScopes array replaces every built-in scope, and since Keycloak
  // 25 the access token's `sub` comes from the built-in "basic" scope: tokens without `sub`
  // fail the gate (docs/contract.md §4).
  assert.equal(realm.clientScopes, undefined);
  assert.equal(realm.defaultDefaultClientScopes, undefined);
});

// ---------------------------------------------------------------------------------------------
// Release workflow

Deno.test("release workflow: four targets, the pinned Deno, compile.sh, SHA256SUMS", () => {
  const wf: Obj = parseYaml(read(".github/workflows/release.yml"));
  assert.deepEqual(wf.on.push.tags, ["v*"]);
  assert.deepEqual(wf.jobs.build.strategy.matrix.target, [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
  ]);
  const steps: Obj[] = wf.jobs.build.steps;
  const setup = steps.find((s) => String(s.uses ?? "").startsWith("denoland/setup-deno@"));
  assert.equal(setup?.with["deno-version"], "2.9.6");
  assert.ok(
    steps.some((s) =>
      /scripts\/compile\.sh --target "\$\{\{ matrix\.target \}\}"/.test(s.run ?? "")
    ),
  );
  const release: Obj[] = wf.jobs.release.steps;
  assert.ok(release.some((s) => /sha256sum mcp-gate-\* > SHA256SUMS/.test(s.run ?? "")));
  assert.ok(release.some((s) => /gh release upload .*SHA256SUMS/.test(s.run ?? "")));
  assert.equal(wf.permissions.contents, "read", "least privilege by default");
  assert.equal(wf.jobs.release.permissions.contents, "write");
});

Deno.test("release workflow: a multi-arch image with an SBOM and full provenance", () => {
  const wf: Obj = parseYaml(read(".github/workflows/release.yml"));
  const job: Obj = wf.jobs.image;
  assert.equal(job.permissions.packages, "write");
  const uses = (prefix: string) =>
    job.steps.find((s: Obj) => String(s.uses ?? "").startsWith(prefix));
  assert.ok(uses("docker/setup-buildx-action@"), "buildx");
  const push = uses("docker/build-push-action@");
  assert.deepEqual(String(push.with.platforms).split(",").sort(), ["linux/amd64", "linux/arm64"]);
  assert.equal(push.with.push, true);
  assert.equal(push.with.sbom, true);
  assert.equal(push.with.provenance, "mode=max");
  // The build context has no .git: the revision comes in as a build argument the Dockerfile takes.
  assert.match(push.with["build-args"], /^MCP_GATE_REVISION=\$\{\{ github\.sha \}\}$/m);
  assert.ok(buildStage.some((i) => i.op === "ARG" && i.args.startsWith("MCP_GATE_REVISION")));
});

Deno.test("CI workflow: .ci/run on every pull request and every push to main", () => {
  const wf: Obj = parseYaml(read(".github/workflows/ci.yml"));
  assert.ok("pull_request" in wf.on, "runs on pull_request");
  assert.deepEqual(wf.on.push.branches, ["main"]);
  assert.equal(wf.permissions.contents, "read");
  const steps: Obj[] = Object.values(wf.jobs as Obj).flatMap((j: Obj) => j.steps);
  assert.ok(steps.some((s) => String(s.run ?? "").trim() === "bash .ci/run"));
  const setup = steps.find((s) => String(s.uses ?? "").startsWith("denoland/setup-deno@"));
  if (setup) assert.equal(setup.with["deno-version"], "2.9.6", "the version .ci/run wants");
});

// ---------------------------------------------------------------------------------------------
// The example configurations are valid, and `mcp-gate check` has nothing to say about them

/** KEY=value lines of an EnvironmentFile, comments and blank lines skipped. */
function envFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  return env;
}

Deno.test("examples: every shipped configuration parses and draws no check warning", async (t) => {
  const examples: [string, Record<string, string>][] = [
    ["Kubernetes ConfigMap", gateEnv],
    ["systemd mcp-gate.env.example", envFile(read("deploy/systemd/mcp-gate.env.example"))],
    ["docker compose", composeGate.environment],
  ];
  for (const [name, env] of examples) {
    await t.step(name, () => {
      const config = parseConfig(env);
      assert.deepEqual(configWarnings(config).map((w) => w.id), []);
    });
  }
});
