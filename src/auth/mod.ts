/**
 * Token verification: the key store (discovery, refresh), key import, jose verification, claim policy and the verified-token cache.
 * This file is the folder's public face: code outside src/auth/ imports only this file
 * (scripts/check_imports.ts).
 */
export * from "./claims.ts";
export * from "./jwk_import.ts";
export * from "./jwks.ts";
export * from "./policy.ts";
export * from "./token_cache.ts";
export * from "./verify.ts";
