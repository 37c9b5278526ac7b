/**
 * The docker-compose trial's MCP server: the repository's sample server (demo/mcp_server.ts,
 * the MCP SDK behind Streamable HTTP) on 127.0.0.1:`MCP_PORT`, until SIGTERM or SIGINT.
 */
import { startMcpServer } from "../../demo/mcp_server.ts";

const port = Number(Deno.env.get("MCP_PORT") ?? "9401");
const server = startMcpServer({ port });
console.log(JSON.stringify({ msg: "mcp server listening", url: server.url }));

const stop = () => void server.close().then(() => Deno.exit(0));
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
