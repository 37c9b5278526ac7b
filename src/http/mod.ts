/**
 * Request rules, pure and per request: bearer extraction, CORS, metadata, health, challenges, client IP, request id, rate limits, in-flight caps and the request target.
 * This file is the folder's public face: code outside src/http/ imports only this file
 * (scripts/check_imports.ts).
 */
export * from "./bearer.ts";
export * from "./challenge.ts";
export * from "./client_ip.ts";
export * from "./cors.ts";
export * from "./health.ts";
export * from "./inflight.ts";
export * from "./metadata.ts";
export * from "./rate_limit.ts";
export * from "./request_id.ts";
export * from "./target.ts";
