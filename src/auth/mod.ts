/**
 * Token verification: the key store (discovery, refresh), key import, jose verification, claim policy, the verified-token cache and introspection of opaque tokens (RFC 7662).
 * This file is the folder's public face: code outside src/auth/ imports only this file
 * (scripts/check_imports.ts).
 */
export * from "./as_metadata.ts";
export * from "./claims.ts";
export * from "./introspect.ts";
export * from "./jwk_import.ts";
export * from "./jwks.ts";
export * from "./policy.ts";
export * from "./token_cache.ts";
export * from "./verify.ts";
