/**
 * The configuration: one typed row per variable, parsed once into a frozen Config.
 * This file is the folder's public face: code outside src/config/ imports only this file
 * (scripts/check_imports.ts).
 */
export * from "./config.ts";
export * from "./config_parsers.ts";
export * from "./warnings.ts";
export * from "./env_file.ts";
