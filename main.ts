/** Entry point: the only place that reads Deno.args and Deno.env and exits the process. */
import { runCli } from "./src/cli/mod.ts";

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args, Deno.env.toObject()));
}
