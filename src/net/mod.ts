/**
 * Network addresses: IP parsing and formatting, CIDR matching, loopback.
 * This file is the folder's public face: code outside src/net/ imports only this file
 * (scripts/check_imports.ts).
 */
export * from "./ip.ts";
