/**
 * Managed request field names: the lists and the spelling rule the forwarder and the
 * configuration share. This file is the folder's public face (scripts/check_imports.ts).
 */
export * from "./managed.ts";
