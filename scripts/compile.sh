#!/usr/bin/env bash
# Builds the single mcp-gate executable with `deno compile`.
#
# Usage: scripts/compile.sh [--target <triple>] [--output <path>] [--otel]
#   --target   a `deno compile --target` triple (default: this machine)
#   --output   default dist/mcp-gate
#   --otel     build with Deno's OpenTelemetry export switched on. A compiled program takes
#              OTEL_DENO from the environment of `deno compile`, not from its own (denoland/deno
#              issue 28839; checked with 2.7.11): such a binary always exports, to
#              OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318), and one built without
#              it never does. Release binaries and the image are built without it.
#
# Permissions baked into the binary, and why no narrower:
#   --allow-net   listen, proxy to UPSTREAM_URL, fetch the key set; hosts come from the environment
#   --allow-env   the whole configuration is environment variables (read with Deno.env.toObject)
#   --allow-read  TLS_CERT_FILE / TLS_KEY_FILE; their paths come from the environment, so no list
# Not granted: run, write, ffi, sys; remote imports denied (--deny-import). --no-prompt makes a
# missing permission an error, never an interactive prompt.
# The binary runs like `deno task start`: the V8 flags of deno.json's start task and deno.json's
# "unstable" features are read from deno.json (by scripts/compile_config.ts), never repeated here.
# Today: --v8-flags=--max-semi-space-size=16 caps V8's young generation (two 16 MiB semi-spaces,
# where V8 otherwise grows them further under load). Measured with deno task bench's harness:
# resident memory under 32-connection keep-alive load 142 -> 115 MiB, at 1024 connections
# 248 -> 231 MiB, no measurable change in CPU per request or GC pause time (docs/performance.md).
# And no-legacy-abort: Deno.serve's request.signal fires only when the client goes away. The
# binary's metadata carries it with either toolchain, but the offline toolchain's runtime (denort
# 2.7.11) still aborts request.signal after a successful response (measured), as without it.
#
# The git revision (`git rev-parse`, "-dirty" with uncommitted changes; MCP_GATE_REVISION
# overrides it where there is no .git, as in a Docker build context) goes into the binary for
# `--version` and mcpgate_build_info: written to dist/build_info.json, embedded with --include,
# and removed again, so it exists only inside the binary (src/version.ts).
# --no-code-cache: otherwise the binary writes a V8 code cache to
# $TMPDIR/deno-compile-mcp-gate.cache at run time, a predictable shared path that another local
# user could pre-create, and a write that fails on a read-only root file system anyway. Measured
# start-up gain for the gate: none worth that (see docs/deploy.md).
#
# Offline machines: when the plain compile fails because Deno's runtime base (denort) cannot be
# downloaded, the offline toolchain from ../shared/tools/offline-compile-env.sh (deno 2.7.11 with
# a locally rebuilt denort) is used instead, for the host target only. Override its location with
# OFFLINE_COMPILE_ENV=/path/to/offline-compile-env.sh.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

target=""
output="dist/mcp-gate"
otel=false
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs a value}; shift 2 ;;
    --output | -o) output=${2:?--output needs a value}; shift 2 ;;
    --otel) otel=true; shift ;;
    *) echo "compile.sh: unknown argument \"$1\"" >&2; exit 2 ;;
  esac
done

mkdir -p dist "$(dirname -- "$output")"

# Embed only the npm packages main.ts reaches, with deno.json's unstable features (see
# scripts/compile_config.ts); it prints the start task's --v8-flags argument.
deno info --json main.ts > dist/graph.json
v8_flags=$(deno run --allow-read=. --allow-write=dist scripts/compile_config.ts dist/graph.json)

revision=${MCP_GATE_REVISION:-}
revision=${revision:0:12}
if [ -z "$revision" ] && revision=$(git rev-parse --short=12 HEAD 2> /dev/null); then
  [ -n "$(git status --porcelain --untracked-files=no 2> /dev/null)" ] && revision="$revision-dirty"
fi
printf '{"revision":"%s"}\n' "${revision:-unknown}" > dist/build_info.json

flags=(
  --config dist/compile.json --allow-net --allow-env --allow-read --deny-import --no-prompt
  --no-code-cache --include dist/build_info.json
  --output "$output"
)
[ -n "$v8_flags" ] && flags+=("$v8_flags")
[ -n "$target" ] && flags+=(--target "$target")

# Never inherit OTEL_DENO from the developer's shell: only --otel bakes telemetry in.
unset OTEL_DENO
if [ "$otel" = true ]; then
  export OTEL_DENO=true
fi

log=$(mktemp)
trap 'rm -f "$log" dist/build_info.json' EXIT

if deno compile "${flags[@]}" main.ts 2> "$log"; then
  cat "$log" >&2
elif grep -q "Setting up base binary" "$log" && [ -z "$target" ]; then
  cat "$log" >&2
  echo "compile.sh: Deno's runtime base could not be downloaded; using the offline toolchain" >&2
  offline=${OFFLINE_COMPILE_ENV:-"$repo/../shared/tools/offline-compile-env.sh"}
  if [ ! -f "$offline" ]; then
    echo "compile.sh: offline toolchain script not found at \"$offline\"" >&2
    exit 1
  fi
  # Run through bash: CI's copy of shared/ may come without execute bits. The assignment makes a
  # failure of the script stop this one (set -e), which eval "$(...)" would not.
  env_lines=$(bash "$offline")
  eval "$env_lines"
  deno compile "${flags[@]}" main.ts
else
  cat "$log" >&2
  exit 1
fi

echo "compile.sh: built $output (revision ${revision:-unknown}; $(deno --version | head -n 1))" >&2
