# syntax=docker/dockerfile:1
#
# mcp-gate container image: the single executable on a distroless base.
#
#   docker build -t mcp-gate .
#   docker run --rm -p 8080:8080 -p 9090:9090 --env-file mcp-gate.env mcp-gate
#
# Build stage: the official Deno image, pinned to the version the project is tested with.
# `deno compile` output is dynamically linked against glibc (2.27+) and nothing else, so the
# runtime stage needs a base with glibc and libgcc_s: distroless "cc", not "static".
# For reproducible builds, pin both images by digest as well (`image:tag@sha256:...`).

ARG DENO_VERSION=2.9.6
# true: bake in Deno's OpenTelemetry export (traces of every request, see docs/deploy.md).
ARG MCP_GATE_OTEL=false

# The build runs on the builder's own platform and cross-compiles (`deno compile --target`) for
# the image's: a multi-platform build (`docker buildx build --platform linux/amd64,linux/arm64`,
# as the release workflow does) needs no emulation. The binary's smoke test runs when it can.
FROM --platform=$BUILDPLATFORM denoland/deno:${DENO_VERSION} AS build
ARG MCP_GATE_OTEL
ARG TARGETARCH
ARG BUILDARCH
# The git revision for `--version` and mcpgate_build_info: the build context has no .git
# (.dockerignore), so the release workflow passes it (`--build-arg MCP_GATE_REVISION=<sha>`).
ARG MCP_GATE_REVISION
WORKDIR /src
COPY deno.json deno.lock ./
COPY scripts/ scripts/
COPY main.ts ./
COPY src/ src/
RUN set -eu; \
  case "${TARGETARCH:-}" in \
    "") target="" ;; \
    amd64) target="--target x86_64-unknown-linux-gnu" ;; \
    arm64) target="--target aarch64-unknown-linux-gnu" ;; \
    *) echo "unsupported TARGETARCH \"$TARGETARCH\"" >&2; exit 1 ;; \
  esac; \
  otel=""; if [ "$MCP_GATE_OTEL" = "true" ]; then otel="--otel"; fi; \
  deno task compile $target $otel; \
  if [ "${TARGETARCH:-}" = "${BUILDARCH:-}" ]; then ./dist/mcp-gate --version; fi

# Runtime stage: glibc + libgcc_s, CA certificates, /etc/passwd with "nonroot" (65532), no shell.
# The binary needs /proc mounted (it reads /proc/self/exe), which every container runtime does.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dist/mcp-gate /mcp-gate
USER 65532:65532
# LISTEN_ADDR and METRICS_ADDR defaults.
EXPOSE 8080 9090
# Distroless has no curl: the binary checks itself (GET /readyz on LISTEN_ADDR, exit 0/1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/mcp-gate", "healthcheck"]
ENTRYPOINT ["/mcp-gate"]
