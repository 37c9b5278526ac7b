/**
 * A URL whose password holds a raw '@' is refused, and the problem quoting it through
 * redactSecrets() shows none of the password: WHATWG URL splits the user info at the last '@'.
 * (Found by review; failed before the fix.)
 */
import assert from "node:assert/strict";
import { parseConfig } from "./mod.ts";

const BASE = {
  UPSTREAM_URL: "http://127.0.0.1:9",
  RESOURCE_URI: "https://mcp.example.com/mcp",
  AUTHORIZATION_SERVER: "https://issuer.example.com",
};

Deno.test("a refused URL's password with '@' never appears in the config problem", async (t) => {
  const cases: [string, string][] = [
    ["UPSTREAM_URL", "http://u:p@ss-secret-7f3a@127.0.0.1:9"],
    ["AUTHORIZATION_SERVER", "https://u:p@ss-secret-7f3a@issuer.example.com"],
    ["JWKS_URI", "https://u:p@ss-secret-7f3a@issuer.example.com/jwks"],
    ["INTROSPECTION_URL", "https://u:p@ss-secret-7f3a@issuer.example.com/i"],
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "https://u:p@ss-secret-7f3a@otel.example.com"],
  ];
  for (const [name, value] of cases) {
    await t.step(name, () => {
      let message = "";
      try {
        parseConfig({ ...BASE, [name]: value });
      } catch (e) {
        message = String(e);
      }
      assert.match(message, new RegExp(`"${name}"`));
      assert.ok(!message.includes("secret-7f3a"), message);
    });
  }
});
