/** The release version: the one place in code (deno.json's `version` carries the same). */
export const VERSION = "0.1.0";
