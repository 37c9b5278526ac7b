/**
 * The command line: `serve` (via server.ts), `check` and `healthcheck`; each command returns an exit code.
 * This file is the folder's public face: code outside src/cli/ imports only this file
 * (scripts/check_imports.ts).
 */
export * from "./check.ts";
export * from "./cli.ts";
export * from "./healthcheck.ts";
