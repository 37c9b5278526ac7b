/**
 * Operations: the JSON log, Prometheus metrics and tracing.
 * This file is the folder's public face: code outside src/ops/ imports only this file
 * (scripts/check_imports.ts).
 */
export * from "./log.ts";
export * from "./metrics.ts";
export * from "./process.ts";
export * from "./tracing.ts";
