/**
 * The forwarder: how an authenticated request becomes the upstream request (header rules) and how the response comes back.
 * This file is the folder's public face: code outside src/proxy/ imports only this file
 * (scripts/check_imports.ts).
 */
export * from "./forwarder.ts";
