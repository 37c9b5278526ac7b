import assert from "node:assert/strict";
import fc from "fast-check";
import { createMetadata, metadataPaths, resourceMetadataUrl, WELL_KNOWN_PATH } from "./metadata.ts";
import { testConfig } from "../../tests/helpers/config.ts";

const BASE = "https://mcp.example.com";
/** An issuer with a path, so that "verbatim" is visible. */
const AS = "https://auth.example.com/tenant1";

Deno.test("resourceMetadataUrl() inserts the well-known path between host and path (RFC 9728 §3.1)", async (t) => {
  const cases: [string, string][] = [
    ["https://mcp.example.com/mcp", `${BASE}/.well-known/oauth-protected-resource/mcp`],
    ["https://mcp.example.com", `${BASE}/.well-known/oauth-protected-resource`],
    ["https://mcp.example.com/", `${BASE}/.well-known/oauth-protected-resource`],
    ["https://mcp.example.com/mcp/", `${BASE}/.well-known/oauth-protected-resource/mcp/`],
    ["https://mcp.example.com/a/b", `${BASE}/.well-known/oauth-protected-resource/a/b`],
    [
      "https://mcp.example.com/mcp?tenant=a",
      `${BASE}/.well-known/oauth-protected-resource/mcp?tenant=a`,
    ],
    ["https://mcp.example.com/?x=1", `${BASE}/.well-known/oauth-protected-resource?x=1`],
    [
      "https://mcp.example.com:8443/mcp",
      "https://mcp.example.com:8443/.well-known/oauth-protected-resource/mcp",
    ],
    ["http://127.0.0.1:8080/mcp", "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"],
    ["https://[::1]:8443/mcp", "https://[::1]:8443/.well-known/oauth-protected-resource/mcp"],
  ];
  for (const [resource, want] of cases) {
    await t.step(resource, () => assert.equal(resourceMetadataUrl(resource), want));
  }
});

Deno.test("metadataPaths() lists the root form and, for a path, both slash forms", async (t) => {
  const cases: [string, string[]][] = [
    ["", [WELL_KNOWN_PATH]],
    ["/mcp", [WELL_KNOWN_PATH, `${WELL_KNOWN_PATH}/mcp`, `${WELL_KNOWN_PATH}/mcp/`]],
    ["/a/b", [WELL_KNOWN_PATH, `${WELL_KNOWN_PATH}/a/b`, `${WELL_KNOWN_PATH}/a/b/`]],
  ];
  for (const [path, want] of cases) {
    await t.step(JSON.stringify(path), () => assert.deepEqual(metadataPaths(path), want));
  }
});

Deno.test("createMetadata() publishes the configured values verbatim, every issuer in order", async () => {
  const endpoint = createMetadata(testConfig({
    resourceUri: "https://MCP.example.com/mcp",
    authorizationServers: [AS, "https://login.example.com/t/v2.0"],
    scopesSupported: ["mcp:read", "mcp:write"],
    resourceName: "Example MCP",
    resourceDocumentation: "https://docs.example.com/mcp",
  }));
  assert.equal(
    await endpoint.respond(new Request(`${BASE}${WELL_KNOWN_PATH}/mcp`)).text(),
    JSON.stringify({
      resource: "https://MCP.example.com/mcp",
      authorization_servers: [AS, "https://login.example.com/t/v2.0"],
      bearer_methods_supported: ["header"],
      scopes_supported: ["mcp:read", "mcp:write"],
      resource_name: "Example MCP",
      resource_documentation: "https://docs.example.com/mcp",
    }),
  );
  assert.equal(endpoint.url, "https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
});

Deno.test("createMetadata() omits empty and unset members (RFC 9728 §3.2)", async () => {
  const endpoint = createMetadata(testConfig({ authorizationServers: [AS] }));
  const json = await endpoint.respond(new Request(`${BASE}${WELL_KNOWN_PATH}/mcp`)).text();
  assert.deepEqual(JSON.parse(json), {
    resource: "https://mcp.example.com/mcp",
    authorization_servers: [AS],
    bearer_methods_supported: ["header"],
  });
  assert.ok(!json.includes("[]"));
});

Deno.test("createMetadata() serves the document at every allowed path", async (t) => {
  const endpoint = createMetadata(testConfig());
  for (const path of ["", "/mcp", "/mcp/"].map((p) => WELL_KNOWN_PATH + p)) {
    await t.step(path, async () => {
      assert.equal(endpoint.matches(path), true);
      const res = endpoint.respond(new Request(`${BASE}${path}?ignored=1`));
      assert.equal(res.status, 200);
      assert.equal(await res.text(), JSON.stringify(endpoint.document));
    });
  }
});

Deno.test("createMetadata() matches no other path", async (t) => {
  const endpoint = createMetadata(testConfig());
  const cases = [
    "/",
    "/mcp",
    "/.well-known",
    "/.well-known/",
    `${WELL_KNOWN_PATH}/`,
    `${WELL_KNOWN_PATH}//mcp`,
    `${WELL_KNOWN_PATH}/mcp//`,
    `${WELL_KNOWN_PATH}/mcpx`,
    `${WELL_KNOWN_PATH}/mcp/x`,
    `${WELL_KNOWN_PATH}/MCP`,
    "/.well-known/OAUTH-PROTECTED-RESOURCE",
    `${WELL_KNOWN_PATH}x`,
    `${WELL_KNOWN_PATH}/%6dcp`,
    `${WELL_KNOWN_PATH}/%2e%2e/mcp`,
    `${WELL_KNOWN_PATH}/../mcp`,
    `${WELL_KNOWN_PATH}?x`,
    `/prefix${WELL_KNOWN_PATH}`,
    "/.well-known/oauth-authorization-server",
  ];
  for (const path of cases) {
    await t.step(path, () => assert.equal(endpoint.matches(path), false));
  }
});

Deno.test("createMetadata() serves only the root path for a resource without a path", () => {
  const endpoint = createMetadata(testConfig({
    resourceUri: "https://mcp.example.com",
    resourcePath: "",
  }));
  assert.equal(endpoint.matches(WELL_KNOWN_PATH), true);
  assert.equal(endpoint.matches(`${WELL_KNOWN_PATH}/`), false);
  assert.equal(endpoint.url, `${BASE}${WELL_KNOWN_PATH}`);
});

Deno.test("createMetadata() matches only the exact allowed paths for arbitrary strings", () => {
  const endpoint = createMetadata(testConfig());
  const allowed = new Set(["", "/mcp", "/mcp/"].map((p) => WELL_KNOWN_PATH + p));
  const candidate = fc.oneof(
    fc.string(),
    fc.string().map((s) => WELL_KNOWN_PATH + s),
    fc.string().map((s) => `${WELL_KNOWN_PATH}/mcp${s}`),
    fc.constantFrom(...allowed).map((p) => p.toUpperCase()),
    fc.constantFrom(...allowed),
  );
  fc.assert(
    fc.property(candidate, (path) => {
      assert.equal(endpoint.matches(path), allowed.has(path));
    }),
    { numRuns: 2000 },
  );
});

Deno.test("createMetadata() answers GET with public JSON headers", async () => {
  const res = createMetadata(testConfig()).respond(new Request(`${BASE}${WELL_KNOWN_PATH}/mcp`));
  const body = await res.text();
  assert.equal(res.status, 200);
  assert.deepEqual(Object.fromEntries(res.headers), {
    "access-control-allow-origin": "*",
    "cache-control": "public, max-age=300",
    "content-length": String(new TextEncoder().encode(body).byteLength),
    "content-type": "application/json",
    "x-content-type-options": "nosniff",
  });
});

Deno.test("createMetadata() answers HEAD with GET's headers and no body", async () => {
  const endpoint = createMetadata(testConfig({ scopesSupported: ["mcp"] }));
  const get = endpoint.respond(new Request(`${BASE}${WELL_KNOWN_PATH}`));
  const head = endpoint.respond(new Request(`${BASE}${WELL_KNOWN_PATH}`, { method: "HEAD" }));
  const body = await get.text();
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  assert.deepEqual(Object.fromEntries(head.headers), Object.fromEntries(get.headers));
  assert.equal(head.headers.get("content-length"), String(body.length));
});

Deno.test("createMetadata() answers OPTIONS with a CORS preflight", () => {
  const res = createMetadata(testConfig()).respond(
    new Request(`${BASE}${WELL_KNOWN_PATH}`, {
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "GET" },
    }),
  );
  assert.equal(res.status, 204);
  assert.equal(res.body, null);
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.equal(res.headers.get("access-control-allow-methods"), "GET, HEAD, OPTIONS");
  assert.match(res.headers.get("access-control-allow-headers")!, /\bMCP-Protocol-Version\b/);
  assert.equal(res.headers.get("access-control-max-age"), "600");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
});

Deno.test("createMetadata() answers other methods with 405 and Allow", async (t) => {
  const endpoint = createMetadata(testConfig());
  for (const method of ["POST", "PUT", "DELETE", "PATCH", "PROPFIND"]) {
    await t.step(method, async () => {
      const res = endpoint.respond(new Request(`${BASE}${WELL_KNOWN_PATH}`, { method }));
      assert.equal(res.status, 405);
      assert.equal(res.headers.get("allow"), "GET, HEAD, OPTIONS");
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.equal((await res.json()).error, "method_not_allowed");
    });
  }
});

Deno.test("createMetadata() gives every response its own mutable headers", async () => {
  const endpoint = createMetadata(testConfig());
  const first = endpoint.respond(new Request(`${BASE}${WELL_KNOWN_PATH}`));
  first.headers.set("x-request-id", "abc");
  await first.body?.cancel();
  const second = endpoint.respond(new Request(`${BASE}${WELL_KNOWN_PATH}`));
  assert.equal(second.headers.get("x-request-id"), null);
  assert.equal(await second.text(), JSON.stringify(endpoint.document));
});

Deno.test("createMetadata() never derives resource from the request's Host", async () => {
  const endpoint = createMetadata(testConfig());
  const res = endpoint.respond(
    new Request(`https://evil.example${WELL_KNOWN_PATH}/mcp`, {
      headers: { "x-forwarded-host": "evil.example" },
    }),
  );
  const body = await res.json();
  assert.equal(body.resource, "https://mcp.example.com/mcp");
});
