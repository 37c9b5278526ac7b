import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Config,
  CONFIG_ROWS,
  DERIVED_FIELDS,
  displayKey,
  displayValue,
  type Env,
  issuersOf,
  parseConfig,
  POST_CHECKS,
  redactedConfig,
  VARIABLES,
} from "./config.ts";
import { claimRef } from "./config_parsers.ts";
import { helpText } from "../cli/mod.ts";
import { ConfigError, type ConfigProblem } from "../errors.ts";
import { configTable } from "../../scripts/readme.ts";
import { TEST_ENV, testConfig } from "../../tests/helpers/config.ts";

const BASE = {
  UPSTREAM_URL: "http://127.0.0.1:3000",
  RESOURCE_URI: "https://mcp.example.com/mcp",
  AUTHORIZATION_SERVER: "https://auth.example.com",
} as const;

function parse(extra: Env = {}): Config {
  return parseConfig({ ...BASE, ...extra });
}

/** The problems parseConfig reports for BASE plus `extra`; fails the test when it accepts. */
function problems(extra: Env, base: Env = BASE): ConfigProblem[] {
  try {
    parseConfig({ ...base, ...extra });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    return [...err.problems];
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(extra)}`);
}

/** The one message reported for a single bad variable. */
function messageFor(variable: string, value: string): string {
  const found = problems({ [variable]: value });
  assert.deepEqual(found.map((p) => p.variable), [variable]);
  return found[0].message;
}

/**
 * One step per `[value, detail, shown?]`: `variable` set to `prefix + value` is refused with the
 * one message `Invalid "<variable>": <detail>, got "<shown>"` (shown: the value, unless given).
 */
async function refusesEach(
  t: Deno.TestContext,
  variable: string,
  cases: readonly ([string, string] | [string, string, string])[],
  prefix = "",
): Promise<void> {
  for (const [value, detail, shown = value] of cases) {
    await t.step(value, () => {
      assert.equal(
        messageFor(variable, prefix + value),
        `Invalid "${variable}": ${detail}, got ${JSON.stringify(shown)}`,
      );
    });
  }
}

Deno.test("parseConfig() fills every default from the three required variables", () => {
  // The test config is docs/contract.md §1's defaults but for what makes it safe to start.
  assert.deepEqual(
    parse(),
    testConfig({
      upstream: {
        url: "http://127.0.0.1:3000",
        protocol: "http:",
        hostname: "127.0.0.1",
        port: 3000,
        host: "127.0.0.1:3000",
        basePath: "",
      },
      listen: { hostname: "0.0.0.0", port: 8080 },
      metricsListen: { hostname: "0.0.0.0", port: 9090 },
      jwksUri: undefined,
      expectedIssuer: undefined,
      resourceName: undefined,
      resourceDocumentation: undefined,
      tlsCertFile: undefined,
      tlsKeyFile: undefined,
    }),
  );
});

Deno.test("parseConfig() treats blank optional variables as unset", () => {
  const blank = Object.fromEntries(
    VARIABLES.map((v) => v.name)
      .filter((n) => !(n in BASE) && n !== "METRICS_ADDR")
      .map((n) => [n, " "]),
  );
  assert.deepEqual(parse(blank), parse());
});

Deno.test("parseConfig() reports each missing required variable", async (t) => {
  for (const value of [undefined, "", "  "]) {
    await t.step(`value ${JSON.stringify(value)}`, () => {
      const env = { UPSTREAM_URL: value, RESOURCE_URI: value, AUTHORIZATION_SERVER: value };
      assert.deepEqual(problems(env, {}), [
        { variable: "UPSTREAM_URL", message: 'Missing "UPSTREAM_URL": required' },
        { variable: "RESOURCE_URI", message: 'Missing "RESOURCE_URI": required' },
        { variable: "AUTHORIZATION_SERVER", message: 'Missing "AUTHORIZATION_SERVER": required' },
      ]);
    });
  }
});

Deno.test("parseConfig() reports every problem at once in one ConfigError", () => {
  const env = {
    UPSTREAM_URL: "ftp://x",
    LOG_LEVEL: "loud",
    CLOCK_SKEW: "soon",
    ALLOWED_ALGS: "HS256",
    TRUSTED_PROXIES: "0.0.0.0/0",
  };
  let error: unknown;
  try {
    parseConfig(env);
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(error.problems.map((p) => p.variable), [
    "UPSTREAM_URL",
    "RESOURCE_URI",
    "AUTHORIZATION_SERVER",
    "ALLOWED_ALGS",
    "CLOCK_SKEW",
    "TRUSTED_PROXIES",
    "LOG_LEVEL",
  ]);
  assert.equal(
    error.message,
    [
      'Invalid "UPSTREAM_URL": expected an http or https URL, got "ftp://x"',
      'Missing "RESOURCE_URI": required',
      'Missing "AUTHORIZATION_SERVER": required',
      'Invalid "ALLOWED_ALGS": symmetric and "none" algorithms are never allowed, got "HS256"',
      'Invalid "CLOCK_SKEW": expected a duration like "30s", "1m30s", "500ms" or plain seconds ' +
      'like "30", got "soon"',
      'Invalid "TRUSTED_PROXIES": expected a block smaller than /0, which trusts every client, ' +
      'got "0.0.0.0/0"',
      'Invalid "LOG_LEVEL": expected debug, info, warn or error, got "loud"',
    ].join("; "),
  );
});

Deno.test("parseConfig() splits UPSTREAM_URL once", async (t) => {
  const cases: [string, Config["upstream"]][] = [
    ["http://up:3000", {
      url: "http://up:3000",
      protocol: "http:",
      hostname: "up",
      port: 3000,
      host: "up:3000",
      basePath: "",
    }],
    ["https://Up.Example.com/", {
      url: "https://Up.Example.com/",
      protocol: "https:",
      hostname: "up.example.com",
      port: 443,
      host: "up.example.com",
      basePath: "",
    }],
    ["http://up/base/", {
      url: "http://up/base/",
      protocol: "http:",
      hostname: "up",
      port: 80,
      host: "up",
      basePath: "/base",
    }],
    ["https://up:443/a/b", {
      url: "https://up:443/a/b",
      protocol: "https:",
      hostname: "up",
      port: 443,
      host: "up",
      basePath: "/a/b",
    }],
    ["http://[::1]:8000/mcp", {
      url: "http://[::1]:8000/mcp",
      protocol: "http:",
      hostname: "::1",
      port: 8000,
      host: "[::1]:8000",
      basePath: "/mcp",
    }],
  ];
  for (const [value, upstream] of cases) {
    await t.step(value, () => assert.deepEqual(parse({ UPSTREAM_URL: value }).upstream, upstream));
  }
});

Deno.test("parseConfig() refuses an UPSTREAM_URL that is not a plain http(s) base URL", async (t) => {
  const cases: [string, string][] = [
    ["ftp://x", "expected an http or https URL"],
    ["up:3000", "expected an http or https URL"],
    ["/relative", "expected an http or https URL"],
    ["http:up", "expected an http or https URL"],
    ["https:///up", "expected an http or https URL"],
    ["http://", "expected an http or https URL"],
    ["http://up:99999", "expected an http or https URL"],
    ["http://up/?a=1", "expected a URL without a query"],
    ["http://up/?", "expected a URL without a query"],
    ["http://up/#top", "expected a URL without a fragment"],
    ["http://@up/", "expected a URL without user info"],
    [" http://up", "expected a URL without whitespace, control characters or backslashes"],
    ["http://up/a b", "expected a URL without whitespace, control characters or backslashes"],
    ["http://up\\path", "expected a URL without whitespace, control characters or backslashes"],
  ];
  await refusesEach(t, "UPSTREAM_URL", cases);
  await t.step("http://user:pw@up/: the message does not repeat the credential", () => {
    assert.equal(
      messageFor("UPSTREAM_URL", "http://user:pw@up/"),
      'Invalid "UPSTREAM_URL": expected a URL without user info, got "http://[redacted]@up/"',
    );
  });
});

Deno.test("parseConfig() keeps RESOURCE_URI verbatim and derives its path", async (t) => {
  const cases: [string, string][] = [
    ["https://mcp.example.com", ""],
    ["https://mcp.example.com/", ""],
    ["https://mcp.example.com/mcp", "/mcp"],
    ["https://mcp.example.com/mcp/", "/mcp"],
    ["https://MCP.example.com:8443/a/b/", "/a/b"],
    ["http://localhost:8080/mcp", "/mcp"],
    ["https://mcp.example.com/mcp?tenant=1", "/mcp"],
  ];
  for (const [value, path] of cases) {
    await t.step(value, () => {
      const config = parse({ RESOURCE_URI: value });
      assert.equal(config.resourceUri, value);
      assert.equal(config.resourcePath, path);
    });
  }
});

Deno.test("parseConfig() refuses a RESOURCE_URI with a fragment, user info or another scheme", async (t) => {
  const cases: ([string, string] | [string, string, string])[] = [
    ["https://mcp.example.com/mcp#x", "expected a URL without a fragment"],
    [
      "https://u@mcp.example.com/mcp",
      "expected a URL without user info",
      "https://[redacted]@mcp.example.com/mcp",
    ],
    ["wss://mcp.example.com/mcp", "expected an http or https URL"],
    ["mcp.example.com/mcp", "expected an http or https URL"],
  ];
  await refusesEach(t, "RESOURCE_URI", cases);
});

Deno.test("parseConfig() reads several issuers, each with its own audiences", async (t) => {
  const A = "https://a.example.com/realms/x";
  const B = "https://login.example.com/tid/v2.0";
  await t.step("a comma-separated list, each entry verbatim, in order", () => {
    const config = parse({ AUTHORIZATION_SERVER: `${A}, ${B}/,${A}` });
    assert.deepEqual(config.authorizationServers, [A, `${B}/`]);
    assert.equal(redactedConfig(config).authorizationServer, `${A},${B}/`);
  });
  await t.step("ISSUER_AUDIENCES: the issuer ends at the first '=', audiences split at '|'", () => {
    const config = parse({
      AUTHORIZATION_SERVER: `${A},${B}`,
      EXPECTED_AUDIENCE: "https://mcp.example.com/mcp",
      ISSUER_AUDIENCES: `${B}=api://mcp | 6c1f-guid|cid==`,
    });
    assert.deepEqual(config.issuerAudiences, [
      { issuer: B, audiences: ["api://mcp", "6c1f-guid", "cid=="] },
    ]);
    assert.deepEqual(issuersOf(config), [
      { authorizationServer: A, issuer: A, audiences: ["https://mcp.example.com/mcp"] },
      { authorizationServer: B, issuer: B, audiences: ["api://mcp", "6c1f-guid", "cid=="] },
    ]);
    assert.deepEqual(redactedConfig(config).issuerAudiences, [`${B}=api://mcp|6c1f-guid|cid==`]);
  });
  await t.step("one issuer: EXPECTED_ISSUER and JWKS_URI apply to it", () => {
    const config = parse({
      AUTHORIZATION_SERVER: A,
      EXPECTED_ISSUER: "https://sts.example.com/t/",
      JWKS_URI: "https://a.example.com/keys",
    });
    assert.deepEqual(issuersOf(config), [{
      authorizationServer: A,
      issuer: "https://sts.example.com/t/",
      jwksUri: "https://a.example.com/keys",
      audiences: ["https://mcp.example.com/mcp", "https://mcp.example.com/mcp/"],
    }]);
  });
  await t.step("several issuers refuse JWKS_URI and EXPECTED_ISSUER", () => {
    const found = problems({
      AUTHORIZATION_SERVER: `${A},${B}`,
      JWKS_URI: "https://a.example.com/keys",
      EXPECTED_ISSUER: A,
    });
    const detail = "expected it unset when AUTHORIZATION_SERVER names several issuers (each " +
      "one's key set and issuer are discovered)";
    assert.deepEqual(found.map((p) => p.message), [
      `Invalid "JWKS_URI": ${detail}, got "https://a.example.com/keys"`,
      `Invalid "EXPECTED_ISSUER": ${detail}, got "${A}"`,
    ]);
  });
  await t.step("ISSUER_AUDIENCES names configured issuers, each once", () => {
    const found = problems({
      AUTHORIZATION_SERVER: A,
      ISSUER_AUDIENCES: `${A}/=x,${A}=y,${A}=z`,
    });
    assert.deepEqual(found.map((p) => p.message), [
      `Invalid "ISSUER_AUDIENCES": expected issuers listed in AUTHORIZATION_SERVER, exactly as ` +
      `spelled there, got "${A}/"`,
      `Invalid "ISSUER_AUDIENCES": expected each issuer at most once, got "${A}"`,
    ]);
  });
  const pairs = "expected issuer=audience|audience pairs like https://auth.example.com/=api://mcp";
  await refusesEach(t, "ISSUER_AUDIENCES", [
    [`${A}`, pairs],
    [`${A}=`, pairs],
    [`${A}=a||b`, pairs],
    [`=a`, pairs],
  ]);
  await refusesEach(t, "AUTHORIZATION_SERVER", [
    ["https://a.example.com/x?q=1", "expected a URL without a query"],
    ["ftp://a.example.com", "expected an http or https URL"],
  ], `${A},`);
});

Deno.test("parseConfig() keeps AUTHORIZATION_SERVER exactly as given", async (t) => {
  for (
    const value of [
      "https://auth.example.com",
      "https://auth.example.com/",
      "https://auth.example.com/realms/Main",
      "https://auth.example.com/tenant/v2.0/",
    ]
  ) {
    await t.step(value, () => {
      assert.deepEqual(parse({ AUTHORIZATION_SERVER: value }).authorizationServers, [value]);
    });
  }
});

Deno.test("parseConfig() refuses an AUTHORIZATION_SERVER that is not an RFC 8414 issuer", async (t) => {
  const cases: [string, string][] = [
    ["https://auth.example.com/?x=1", "expected a URL without a query"],
    ["https://auth.example.com/#x", "expected a URL without a fragment"],
    ["auth.example.com", "expected an http or https URL"],
  ];
  await refusesEach(t, "AUTHORIZATION_SERVER", cases);
});

Deno.test("parseConfig() accepts JWKS_URI over https, or http to a loopback host", async (t) => {
  for (
    const value of [
      "https://auth.example.com/jwks",
      "https://auth.example.com/keys?p=b2c_1_signin",
      "http://127.0.0.1:9000/jwks",
      "http://127.8.9.10/jwks",
      "http://[::1]:9000/jwks",
      "http://localhost:9000/jwks",
      "http://LOCALHOST/jwks",
    ]
  ) {
    await t.step(value, () => assert.equal(parse({ JWKS_URI: value }).jwksUri, value));
  }
});

Deno.test("parseConfig() refuses a JWKS_URI over http to a host that is not loopback", async (t) => {
  for (
    const value of [
      "http://auth.example.com/jwks",
      "http://10.0.0.1/jwks",
      "http://localhost.example.com/jwks",
      "http://app.localhost/jwks",
      "http://[::2]/jwks",
      "http://128.0.0.1/jwks",
    ]
  ) {
    await t.step(value, () => {
      assert.equal(
        messageFor("JWKS_URI", value),
        `Invalid "JWKS_URI": expected an https URL (http only for a loopback host), got ${
          JSON.stringify(value)
        }`,
      );
    });
  }
});

Deno.test("parseConfig() refuses discovery over http from an AUTHORIZATION_SERVER that is not loopback", async (t) => {
  // The loopback rule is JWKS_URI's (isLoopbackHost), and so is the message's shape.
  for (const value of ["http://auth.example.com/realms/mcp", "http://10.0.0.1", "http://[::2]"]) {
    await t.step(value, () => {
      assert.equal(
        messageFor("AUTHORIZATION_SERVER", value),
        `Invalid "AUTHORIZATION_SERVER": expected an https URL for discovery (http only for a ` +
          `loopback host, or set JWKS_URI), got ${JSON.stringify(value)}`,
      );
    });
  }
  await t.step("loopback hosts may use http", () => {
    for (const value of ["http://127.0.0.1:8080", "http://localhost/realms/x", "http://[::1]"]) {
      assert.deepEqual(parse({ AUTHORIZATION_SERVER: value }).authorizationServers, [value]);
    }
  });
  await t.step("each plain-http entry of several issuers is named", () => {
    const found = problems({
      AUTHORIZATION_SERVER: "https://a.example.com,http://b.example.com,http://127.0.0.1:1",
    });
    assert.deepEqual(found.map((p) => p.message), [
      'Invalid "AUTHORIZATION_SERVER": expected an https URL for discovery (http only for a ' +
      'loopback host, or set JWKS_URI), got "http://b.example.com"',
    ]);
  });
  await t.step("with JWKS_URI set nothing is discovered, so http is accepted", () => {
    const c = parse({
      AUTHORIZATION_SERVER: "http://auth.example.com",
      JWKS_URI: "https://auth.example.com/jwks",
    });
    assert.deepEqual(c.authorizationServers, ["http://auth.example.com"]);
  });
  await t.step("a bad JWKS_URI is reported alone", () => {
    const found = problems({
      AUTHORIZATION_SERVER: "http://auth.example.com",
      JWKS_URI: "http://auth.example.com/jwks",
    });
    assert.deepEqual(found.map((p) => p.variable), ["JWKS_URI"]);
  });
});

Deno.test("parseConfig() keeps EXPECTED_ISSUER verbatim and refuses surrounding spaces", () => {
  assert.equal(parse({ EXPECTED_ISSUER: "https://a/x/" }).expectedIssuer, "https://a/x/");
  assert.equal(parse({ EXPECTED_ISSUER: "acme" }).expectedIssuer, "acme");
  assert.equal(
    messageFor("EXPECTED_ISSUER", "https://a "),
    'Invalid "EXPECTED_ISSUER": expected no leading or trailing whitespace, got "https://a "',
  );
});

Deno.test("parseConfig() defaults EXPECTED_AUDIENCE to RESOURCE_URI with and without one slash", async (t) => {
  const cases: [string, string[]][] = [
    ["https://h/mcp", ["https://h/mcp", "https://h/mcp/"]],
    ["https://h/mcp/", ["https://h/mcp/", "https://h/mcp"]],
    ["https://h", ["https://h", "https://h/"]],
    ["https://h/", ["https://h/", "https://h"]],
    ["https://h/mcp?t=1", ["https://h/mcp?t=1"]],
  ];
  for (const [resource, audience] of cases) {
    await t.step(resource, () => {
      assert.deepEqual(parse({ RESOURCE_URI: resource }).expectedAudience, audience);
    });
  }
});

Deno.test("parseConfig() reads EXPECTED_AUDIENCE as a comma-separated list", () => {
  assert.deepEqual(parse({ EXPECTED_AUDIENCE: "client-1" }).expectedAudience, ["client-1"]);
  assert.deepEqual(
    parse({ EXPECTED_AUDIENCE: " api://x , client-1,api://x," }).expectedAudience,
    ["api://x", "client-1"],
  );
  assert.equal(
    messageFor("EXPECTED_AUDIENCE", " , "),
    'Invalid "EXPECTED_AUDIENCE": expected at least one entry, got " , "',
  );
});

Deno.test("parseConfig() reads scopes separated by commas or spaces", async (t) => {
  await t.step("REQUIRED_SCOPES, deduplicated in order", () => {
    const config = parse({ REQUIRED_SCOPES: "mcp:read, mcp:write  files:read,mcp:read" });
    assert.deepEqual(config.requiredScopes, ["mcp:read", "mcp:write", "files:read"]);
  });
  await t.step("SCOPES_SUPPORTED defaults to REQUIRED_SCOPES", () => {
    assert.deepEqual(parse({ REQUIRED_SCOPES: "a b" }).scopesSupported, ["a", "b"]);
  });
  await t.step("SCOPES_SUPPORTED set on its own", () => {
    const config = parse({ REQUIRED_SCOPES: "a", SCOPES_SUPPORTED: "a,b,offline_access" });
    assert.deepEqual(config.requiredScopes, ["a"]);
    assert.deepEqual(config.scopesSupported, ["a", "b", "offline_access"]);
  });
  await t.step("SCOPES_SUPPORTED of separators only publishes none", () => {
    const config = parse({ REQUIRED_SCOPES: "a", SCOPES_SUPPORTED: "," });
    assert.deepEqual(config.requiredScopes, ["a"]);
    assert.deepEqual(config.scopesSupported, []);
  });
  await t.step("the full RFC 6749 scope-token alphabet", () => {
    const token = "!#$%&'()*+-./0-9:;<=>?@A-Z[]^_`a-z{|}~";
    assert.deepEqual(parse({ REQUIRED_SCOPES: token }).requiredScopes, [token]);
  });
});

Deno.test("parseConfig() refuses scopes that are not RFC 6749 scope tokens", async (t) => {
  for (const variable of ["REQUIRED_SCOPES", "SCOPES_SUPPORTED"]) {
    for (const bad of ['a"b', "a\\b", "café", "a\u0000b"]) {
      await t.step(`${variable} ${JSON.stringify(bad)}`, () => {
        assert.equal(
          messageFor(variable, `ok ${bad}`),
          `Invalid "${variable}": expected scope tokens of printable ASCII without '"' or '\\', got ${
            JSON.stringify(bad)
          }`,
        );
      });
    }
  }
});

Deno.test("parseConfig() reads SCOPE_CLAIMS as a list of claim names and JSON Pointers", () => {
  assert.deepEqual(
    parse({ SCOPE_CLAIMS: "roles, scope, /realm_access/roles, https://x/y" }).scopeClaims,
    [
      { text: "roles", path: ["roles"] },
      { text: "scope", path: ["scope"] },
      { text: "/realm_access/roles", path: ["realm_access", "roles"] },
      { text: "https://x/y", path: ["https://x/y"] },
    ],
  );
  assert.equal(
    messageFor("SCOPE_CLAIMS", ","),
    'Invalid "SCOPE_CLAIMS": expected at least one entry, got ","',
  );
  assert.equal(
    messageFor("SCOPE_CLAIMS", "scope,/a~2"),
    'Invalid "SCOPE_CLAIMS": expected a JSON Pointer (RFC 6901) where "~" is followed by 0 or 1, ' +
      'got "/a~2"',
  );
});

Deno.test("parseConfig() reads REQUIRED_CLAIMS as a JSON object or claim=value|value pairs", async (t) => {
  await t.step("an object with nested values and a pointer key", () => {
    const config = parse({
      REQUIRED_CLAIMS: '{"tenant":"acme","roles":["a"],"n":{"x":1},"/a~1b/c":true}',
    });
    assert.deepEqual(config.requiredClaims, [
      { claim: claimRef("tenant"), kind: "equals", value: "acme" },
      { claim: claimRef("roles"), kind: "equals", value: ["a"] },
      { claim: claimRef("n"), kind: "equals", value: { x: 1 } },
      { claim: { text: "/a~1b/c", path: ["a/b", "c"] }, kind: "equals", value: true },
    ]);
  });
  await t.step("pairs, with alternatives, pointers and URL-named claims", () => {
    const config = parse({
      REQUIRED_CLAIMS: "groups=admin|ops, /realm_access/roles=mcp,https://e.com/roles = r1 | r2",
    });
    assert.deepEqual(config.requiredClaims, [
      { claim: claimRef("groups"), kind: "anyOf", values: ["admin", "ops"] },
      { claim: claimRef("/realm_access/roles"), kind: "anyOf", values: ["mcp"] },
      { claim: claimRef("https://e.com/roles"), kind: "anyOf", values: ["r1", "r2"] },
    ]);
    assert.deepEqual(redactedConfig(config).requiredClaims, [
      "groups=admin|ops",
      "/realm_access/roles=mcp",
      "https://e.com/roles=r1|r2",
    ]);
  });
  const forms = 'expected a JSON object like {"tenant":"acme"} or claim=value|value pairs like ' +
    "groups=admin|ops";
  for (const bad of ["[]", "null", "1", '"acme"', "{tenant: acme}", "{", "{}x", "groups"]) {
    await t.step(`refuses ${bad}`, () => {
      assert.equal(
        messageFor("REQUIRED_CLAIMS", bad),
        `Invalid "REQUIRED_CLAIMS": ${forms}, got ${JSON.stringify(bad)}`,
      );
    });
  }
  await refusesEach(t, "REQUIRED_CLAIMS", [
    ["groups=", forms],
    ["=admin", forms],
    ["groups=admin||ops", forms],
    [
      "groups=a b",
      "expected values without spaces (the JSON form takes a value that holds one)",
    ],
  ]);
  await t.step("refuses a malformed pointer in either form", () => {
    for (const bad of ['{"/a~":1}', "/a~x=1"]) {
      assert.match(messageFor("REQUIRED_CLAIMS", bad), /expected a JSON Pointer \(RFC 6901\)/);
    }
  });
});

Deno.test("parseConfig() reads the optional metadata fields", () => {
  const config = parse({
    RESOURCE_NAME: " Files MCP ",
    RESOURCE_DOCUMENTATION: "https://docs.example.com/mcp?lang=en",
  });
  assert.equal(config.resourceName, "Files MCP");
  assert.equal(config.resourceDocumentation, "https://docs.example.com/mcp?lang=en");
  assert.equal(
    messageFor("RESOURCE_DOCUMENTATION", "docs"),
    'Invalid "RESOURCE_DOCUMENTATION": expected an http or https URL, got "docs"',
  );
});

Deno.test("parseConfig() accepts a subset of the asymmetric ALLOWED_ALGS", () => {
  assert.deepEqual(parse({ ALLOWED_ALGS: "ES256, EdDSA,ES256" }).allowedAlgs, ["ES256", "EdDSA"]);
  assert.deepEqual(parse({ ALLOWED_ALGS: "PS512" }).allowedAlgs, ["PS512"]);
});

Deno.test("parseConfig() never allows none or an HMAC algorithm", async (t) => {
  for (const alg of ["none", "NONE", "HS256", "HS384", "HS512", "hs256"]) {
    await t.step(alg, () => {
      assert.equal(
        messageFor("ALLOWED_ALGS", `RS256,${alg}`),
        `Invalid "ALLOWED_ALGS": symmetric and "none" algorithms are never allowed, got "${alg}"`,
      );
    });
  }
});

Deno.test("parseConfig() refuses unknown algorithms and an empty ALLOWED_ALGS", async (t) => {
  for (const alg of ["rs256", "RS1", "ES256K", "RSA-OAEP"]) {
    await t.step(alg, () => {
      assert.equal(
        messageFor("ALLOWED_ALGS", alg),
        'Invalid "ALLOWED_ALGS": expected algorithms from ' +
          `RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA, got "${alg}"`,
      );
    });
  }
  await t.step("only commas", () => {
    assert.equal(
      messageFor("ALLOWED_ALGS", ", ,"),
      'Invalid "ALLOWED_ALGS": expected at least one entry, got ", ,"',
    );
  });
});

const DURATIONS = {
  CLOCK_SKEW: "clockSkewMs",
  JWKS_REFRESH_INTERVAL: "jwksRefreshIntervalMs",
  JWKS_MIN_REFRESH_INTERVAL: "jwksMinRefreshIntervalMs",
  UPSTREAM_TIMEOUT: "upstreamTimeoutMs",
  SHUTDOWN_TIMEOUT: "shutdownTimeoutMs",
} as const;

Deno.test("parseConfig() reads durations in Go syntax or plain seconds, in ms", async (t) => {
  const cases: [string, number][] = [
    ["500ms", 500],
    ["30s", 30_000],
    ["10m", 600_000],
    ["1h", 3_600_000],
    ["1h30m", 5_400_000],
    ["1m30.5s", 90_500],
    ["1.5s", 1500],
    ["1.1s", 1100],
    [".5s", 500],
    ["30", 30_000],
    ["0.5", 500],
    ["1500us", 1.5],
    ["1500µs", 1.5],
    ["1500μs", 1.5],
    ["2000000ns", 2],
    [" 45s ", 45_000],
    ["596h", 596 * 3_600_000],
  ];
  for (const [variable, field] of Object.entries(DURATIONS)) {
    for (const [value, ms] of cases) {
      await t.step(`${variable}=${value}`, () => {
        assert.equal(parse({ [variable]: value })[field], ms);
      });
    }
  }
});

Deno.test("parseConfig() refuses malformed, negative and too long durations", async (t) => {
  const like = 'expected a duration like "30s", "1m30s", "500ms" or plain seconds like "30"';
  const cases: [string, string][] = [
    ["-1s", "expected a duration that is not negative"],
    ["-5", "expected a duration that is not negative"],
    ["1d", like],
    ["s", like],
    ["1h 30m", like],
    ["1e3", like],
    ["+30s", like],
    ["30 s", like],
    ["thirty", like],
    ["597h", "expected a duration of at most 596h"],
  ];
  for (const variable of Object.keys(DURATIONS)) {
    await t.step(variable, (t) => refusesEach(t, variable, cases));
  }
});

Deno.test("parseConfig() allows a zero duration only where zero means something", async (t) => {
  await t.step("CLOCK_SKEW and SHUTDOWN_TIMEOUT accept 0", () => {
    const config = parse({ CLOCK_SKEW: "0", SHUTDOWN_TIMEOUT: "0s" });
    assert.equal(config.clockSkewMs, 0);
    assert.equal(config.shutdownTimeoutMs, 0);
  });
  for (
    const variable of ["JWKS_REFRESH_INTERVAL", "JWKS_MIN_REFRESH_INTERVAL", "UPSTREAM_TIMEOUT"]
  ) {
    await t.step(`${variable} refuses 0`, () => {
      assert.equal(
        messageFor(variable, "0ms"),
        `Invalid "${variable}": expected a duration greater than zero, got "0ms"`,
      );
    });
  }
});

Deno.test("parseConfig() reads MAX_REQUEST_BODY in bytes or binary units", async (t) => {
  const cases: [string, number][] = [
    ["1", 1],
    ["1048576", 1_048_576],
    ["512B", 512],
    ["1KiB", 1024],
    ["1.5KiB", 1536],
    ["10MiB", 10_485_760],
    ["2 mib", 2_097_152],
    ["1GiB", 1_073_741_824],
  ];
  for (const [value, bytes] of cases) {
    await t.step(value, () => {
      assert.equal(parse({ MAX_REQUEST_BODY: value }).maxRequestBodyBytes, bytes);
    });
  }
});

Deno.test("parseConfig() refuses sizes that are not a positive whole number of bytes", async (t) => {
  const unit = 'expected a size in bytes or with a KiB, MiB or GiB suffix, like "10MiB"';
  const cases: [string, string][] = [
    ["10MB", unit],
    ["10M", unit],
    ["10K", unit],
    ["1TiB", unit],
    ["-1", unit],
    ["ten", unit],
    ["0", "expected a positive whole number of bytes"],
    ["0KiB", "expected a positive whole number of bytes"],
    ["1.5", "expected a positive whole number of bytes"],
    ["0.1KiB", "expected a positive whole number of bytes"],
  ];
  await refusesEach(t, "MAX_REQUEST_BODY", cases);
});

Deno.test("parseConfig() reads LISTEN_ADDR forms", async (t) => {
  const cases: [string, { hostname: string; port: number }][] = [
    ["127.0.0.1:8080", { hostname: "127.0.0.1", port: 8080 }],
    [":9000", { hostname: "0.0.0.0", port: 9000 }],
    ["[::]:8080", { hostname: "::", port: 8080 }],
    ["[::1]:0", { hostname: "::1", port: 0 }],
    ["localhost:65535", { hostname: "localhost", port: 65535 }],
    ["gate.internal:80", { hostname: "gate.internal", port: 80 }],
  ];
  for (const [value, listen] of cases) {
    await t.step(value, () => {
      assert.deepEqual(parse({ LISTEN_ADDR: value, METRICS_ADDR: "" }).listen, listen);
    });
  }
});

Deno.test("parseConfig() refuses malformed LISTEN_ADDR values", async (t) => {
  const form = "expected host:port, :port or [IPv6]:port with a port from 0 to 65535";
  const cases: [string, string][] = [
    ["8080", form],
    ["host:65536", form],
    ["host:", form],
    ["host:-1", form],
    ["[::1]", form],
    ["::1:80", form],
    ["[1.2.3.4]:80", "expected an IPv6 address inside the brackets"],
    ["999.1.1.1:80", "expected a host name or IP address before the port"],
    ["a b:80", "expected a host name or IP address before the port"],
    ["-host:80", "expected a host name or IP address before the port"],
  ];
  await refusesEach(t, "LISTEN_ADDR", cases);
});

Deno.test("parseConfig() reads METRICS_ADDR, and an empty value disables it", async (t) => {
  await t.step("unset: :9090", () => {
    assert.deepEqual(parse().metricsListen, { hostname: "0.0.0.0", port: 9090 });
  });
  await t.step(
    "empty: disabled",
    () => assert.equal(parse({ METRICS_ADDR: "" }).metricsListen, undefined),
  );
  await t.step("set", () => {
    assert.deepEqual(parse({ METRICS_ADDR: "[::1]:9100" }).metricsListen, {
      hostname: "::1",
      port: 9100,
    });
  });
  await t.step("same port on another address", () => {
    const config = parse({ LISTEN_ADDR: "127.0.0.1:8080", METRICS_ADDR: "127.0.0.2:8080" });
    assert.equal(config.metricsListen?.port, 8080);
  });
  await t.step("both on port 0", () => {
    assert.equal(parse({ LISTEN_ADDR: ":0", METRICS_ADDR: ":0" }).metricsListen?.port, 0);
  });
  for (const [listen, metrics] of [[":8080", ":8080"], ["127.0.0.1:9090", ":9090"]]) {
    await t.step(`refuses ${metrics} next to LISTEN_ADDR ${listen}`, () => {
      assert.deepEqual(problems({ LISTEN_ADDR: listen, METRICS_ADDR: metrics }), [{
        variable: "METRICS_ADDR",
        message:
          `Invalid "METRICS_ADDR": expected a port other than the one of LISTEN_ADDR, got "${metrics}"`,
      }]);
    });
  }
  await t.step("refuses a malformed value", () => {
    assert.match(messageFor("METRICS_ADDR", "9090"), /^Invalid "METRICS_ADDR": expected host:port/);
  });
});

Deno.test("parseConfig() parses TRUSTED_PROXIES into masked CIDR blocks", () => {
  const config = parse({ TRUSTED_PROXIES: "10.1.2.3/8, 192.168.1.1 ,fd00::/8,::1" });
  assert.deepEqual(
    config.trustedProxies.map((c) => ({ ...c, bytes: [...c.bytes] })),
    [
      { family: 4, bytes: [10, 0, 0, 0], prefix: 8, text: "10.1.2.3/8" },
      { family: 4, bytes: [192, 168, 1, 1], prefix: 32, text: "192.168.1.1" },
      { family: 6, bytes: [0xfd, ...new Array(15).fill(0)], prefix: 8, text: "fd00::/8" },
      { family: 6, bytes: [...new Array(15).fill(0), 1], prefix: 128, text: "::1" },
    ],
  );
});

Deno.test("parseConfig() refuses TRUSTED_PROXIES that trust everyone or do not parse", async (t) => {
  const zero = "expected a block smaller than /0, which trusts every client";
  const bad = "expected an IP address or CIDR block like 10.0.0.0/8";
  const cases: [string, string][] = [
    ["0.0.0.0/0", zero],
    ["::/0", zero],
    ["10.0.0.0/0", zero],
    ["10.0.0.0/33", bad],
    ["::/129", bad],
    ["10.0.0.0/8/1", bad],
    ["10.0.0.0/", bad],
    ["proxy.internal", bad],
    ["010.0.0.1", bad],
  ];
  await refusesEach(t, "TRUSTED_PROXIES", cases, "10.0.0.1,");
});

Deno.test("parseConfig() normalises ALLOWED_ORIGINS to serialised origins", async (t) => {
  const cases: [string, string[]][] = [
    ["*", ["*"]],
    ["https://App.Example.com", ["https://app.example.com"]],
    ["HTTPS://a.example.com:443, http://a.example.com:80", [
      "https://a.example.com",
      "http://a.example.com",
    ]],
    ["http://localhost:6274,http://127.0.0.1:6274", [
      "http://localhost:6274",
      "http://127.0.0.1:6274",
    ]],
    ["http://[::1]:6274", ["http://[::1]:6274"]],
    ["chrome-extension://ABCdef", ["chrome-extension://abcdef"]],
    ["https://a.com,https://A.com", ["https://a.com"]],
  ];
  for (const [value, origins] of cases) {
    await t.step(
      value,
      () => assert.deepEqual(parse({ ALLOWED_ORIGINS: value }).allowedOrigins, origins),
    );
  }
});

Deno.test("parseConfig() refuses null, patterns and non-origins in ALLOWED_ORIGINS", async (t) => {
  const origin = 'expected "*" or an origin like "https://app.example.com" (no path)';
  const cases: ([string, string] | [string, string, string])[] = [
    ["null", 'expected a real origin, never "null"'],
    ["Null", 'expected a real origin, never "null"'],
    ["https://*.example.com", 'expected "*" alone or an exact origin, not a pattern'],
    ["https://a.example.com/", origin],
    ["https://a.example.com/mcp", origin],
    ["https://a.example.com?x", origin],
    ["a.example.com", origin],
    ["https://user@a.example.com", origin, "https://[redacted]@a.example.com"],
    ["https://a.example.com:99999", origin],
  ];
  await refusesEach(t, "ALLOWED_ORIGINS", cases);
});

Deno.test("parseConfig() reads booleans", async (t) => {
  const cases: [string, boolean][] = [
    ["true", true],
    ["TRUE", true],
    ["1", true],
    ["yes", true],
    ["Yes", true],
    ["false", false],
    ["False", false],
    ["0", false],
    ["no", false],
    ["NO", false],
  ];
  for (const [value, expected] of cases) {
    await t.step(value, () => {
      const config = parse({ FORWARD_AUTHORIZATION: value, PRESERVE_HOST: value });
      assert.equal(config.forwardAuthorization, expected);
      assert.equal(config.preserveHost, expected);
    });
  }
  for (const variable of ["FORWARD_AUTHORIZATION", "PRESERVE_HOST"]) {
    for (const value of ["on", "maybe", "2"]) {
      await t.step(`${variable} refuses ${value}`, () => {
        assert.equal(
          messageFor(variable, value),
          `Invalid "${variable}": expected true, false, 1, 0, yes or no, got "${value}"`,
        );
      });
    }
  }
});

Deno.test("parseConfig() reads CLAIM_HEADERS as claim=Header pairs with lower-case names", () => {
  const config = parse({ CLAIM_HEADERS: "sub=X-Auth-Subject, email = X-Auth-Email,sub=X-User" });
  assert.deepEqual(config.claimHeaders, [
    { claim: claimRef("sub"), header: "x-auth-subject" },
    { claim: claimRef("email"), header: "x-auth-email" },
    { claim: claimRef("sub"), header: "x-user" },
  ]);
  // The claim ends at the last "=" (a header name has none): pointers and URL names work.
  assert.deepEqual(
    parse({ CLAIM_HEADERS: "/resource_access/mcp/roles=X-Roles,https://e.com/t=X-T" }).claimHeaders,
    [
      {
        claim: { text: "/resource_access/mcp/roles", path: ["resource_access", "mcp", "roles"] },
        header: "x-roles",
      },
      { claim: claimRef("https://e.com/t"), header: "x-t" },
    ],
  );
});

Deno.test("parseConfig() refuses CLAIM_HEADERS the gate manages or cannot send", async (t) => {
  const reserved = "expected a header the gate does not manage (not hop-by-hop, Host, " +
    "Authorization, Cookie, Content-*, Forwarded, X-Forwarded-*, X-Real-IP, X-Request-Id, " +
    "Mcp-*, Expect or a client-address header, in any spelling)";
  const headers = [
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Proxy-Authorization",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    "Host",
    "Authorization",
    "Cookie",
    "Content-Length",
    "Content-Type",
    "Content-Encoding",
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "x-forwarded-proto",
    "X-Real-IP",
    "X-Request-Id",
    "Mcp-Session-Id",
    "Expect",
    "True-Client-IP",
    "X-Original-URL",
    "X_Forwarded_For",
    "x_real_ip",
    "Transfer_Encoding",
  ];
  for (const header of headers) {
    await t.step(header, () => {
      assert.equal(
        messageFor("CLAIM_HEADERS", `sub=${header}`),
        `Invalid "CLAIM_HEADERS": ${reserved}, got "sub=${header}"`,
      );
    });
  }
  const cases: [string, string][] = [
    ["sub", "expected claim=Header-Name pairs like sub=X-Auth-Subject"],
    ["sub=", "expected claim=Header-Name pairs like sub=X-Auth-Subject"],
    ["=X-Sub", "expected claim=Header-Name pairs like sub=X-Auth-Subject"],
    ["sub=X Sub", "expected an HTTP header name"],
    ["sub=X-Sub:", "expected an HTTP header name"],
    ["sub=X-Süb", "expected an HTTP header name"],
  ];
  await refusesEach(t, "CLAIM_HEADERS", cases);
  await t.step("the same header twice", () => {
    assert.equal(
      messageFor("CLAIM_HEADERS", "sub=X-Id,oid=x-id"),
      'Invalid "CLAIM_HEADERS": expected each header at most once, in any spelling (- and _ are one name), got "oid=x-id"',
    );
  });
});

Deno.test("parseConfig() reads the rate limit and derives the default burst", async (t) => {
  const cases: [Env, number, number][] = [
    [{}, 0, 0],
    [{ RATE_LIMIT_RPS: "10" }, 10, 10],
    [{ RATE_LIMIT_RPS: "0.5" }, 0.5, 1],
    [{ RATE_LIMIT_RPS: "2.5" }, 2.5, 3],
    [{ RATE_LIMIT_RPS: "5", RATE_LIMIT_BURST: "20" }, 5, 20],
    [{ RATE_LIMIT_RPS: "5", RATE_LIMIT_BURST: "0" }, 5, 5],
    [{ RATE_LIMIT_RPS: "0", RATE_LIMIT_BURST: "7" }, 0, 7],
  ];
  for (const [env, rps, burst] of cases) {
    await t.step(JSON.stringify(env), () => {
      const config = parse(env);
      assert.equal(config.rateLimitRps, rps);
      assert.equal(config.rateLimitBurst, burst);
    });
  }
  for (const value of ["-1", "ten", "1e3", "Infinity"]) {
    await t.step(`RATE_LIMIT_RPS refuses ${value}`, () => {
      assert.equal(
        messageFor("RATE_LIMIT_RPS", value),
        `Invalid "RATE_LIMIT_RPS": expected a number of requests per second, 0 or more, got "${value}"`,
      );
    });
  }
  for (const value of ["-1", "1.5", "many", "99999999999999999999"]) {
    await t.step(`RATE_LIMIT_BURST refuses ${value}`, () => {
      assert.equal(
        messageFor("RATE_LIMIT_BURST", value),
        `Invalid "RATE_LIMIT_BURST": expected a whole number, 0 or more, got "${value}"`,
      );
    });
  }
});

const PERCENT_ENCODED = 'expected the user info percent-encoded ("%40" for "@", "%2F" for "/")';

Deno.test("parseConfig() reads RATE_LIMIT_REDIS_URL and never repeats its password", async (t) => {
  assert.equal(parse().rateLimitRedisUrl, undefined, "unset: buckets in memory");
  assert.equal(parse().rateLimitRedisTimeoutMs, 50);
  for (
    const url of [
      "redis://127.0.0.1:6379",
      "rediss://cache.internal",
      "redis://:pw@[::1]:6380/2",
      "redis://gate:pw@valkey:6379/0",
    ]
  ) {
    await t.step(
      `accepts ${url}`,
      () => assert.equal(parse({ RATE_LIMIT_REDIS_URL: url }).rateLimitRedisUrl, url),
    );
  }
  const refused: [string, string, string][] = [
    [
      "http://127.0.0.1:6379",
      "expected a redis:// or rediss:// URL with a host",
      "http://127.0.0.1:6379",
    ],
    ["redis://", "expected a redis:// or rediss:// URL with a host", "redis://"],
    ["redis://h/db", 'expected no path but a database number like "/0"', "redis://h/db"],
    [
      "redis://u:s3cret@h?x=1",
      "expected a URL without a query or fragment",
      "redis://[redacted]@h?x=1",
    ],
    ["redis://u:s3/cret@h", PERCENT_ENCODED, "redis://[redacted]@h"],
    ["redis://u:s3@cret@h", PERCENT_ENCODED, "redis://[redacted]@h"],
    [
      "redis://s3cret@h:x",
      "expected a redis:// or rediss:// URL with a host",
      "redis://[redacted]@h:x",
    ],
  ];
  for (const [value, detail, shown] of refused) {
    await t.step(`refuses ${shown}`, () => {
      assert.equal(
        messageFor("RATE_LIMIT_REDIS_URL", value),
        `Invalid "RATE_LIMIT_REDIS_URL": ${detail}, got "${shown}"`,
      );
    });
  }
  await t.step("the redacted view hides the password", () => {
    const config = parse({ RATE_LIMIT_REDIS_URL: "rediss://gate:s3cret@cache:6380/1" });
    const shown = JSON.stringify(redactedConfig(config));
    assert.ok(!shown.includes("s3cret"));
    assert.equal(redactedConfig(config).rateLimitRedisUrl, "rediss://[redacted]@cache:6380/1");
  });
  await t.step("RATE_LIMIT_REDIS_TIMEOUT is a duration above zero", () => {
    assert.equal(parse({ RATE_LIMIT_REDIS_TIMEOUT: "250ms" }).rateLimitRedisTimeoutMs, 250);
    assert.equal(
      messageFor("RATE_LIMIT_REDIS_TIMEOUT", "0"),
      'Invalid "RATE_LIMIT_REDIS_TIMEOUT": expected a duration greater than zero, got "0"',
    );
  });
});

Deno.test("parseConfig() reads the in-flight caps, 0 meaning unlimited", async (t) => {
  const cases: [Env, number, number][] = [
    [{}, 100, 1000],
    [{ MAX_CONCURRENT_REQUESTS: "8" }, 8, 1000],
    [{ MAX_TOTAL_CONNECTIONS: " 20000 " }, 100, 20000],
    [{ MAX_CONCURRENT_REQUESTS: "0", MAX_TOTAL_CONNECTIONS: "0" }, 0, 0],
    [{ MAX_CONCURRENT_REQUESTS: "", MAX_TOTAL_CONNECTIONS: " " }, 100, 1000],
  ];
  for (const [env, perIp, total] of cases) {
    await t.step(JSON.stringify(env), () => {
      const config = parse(env);
      assert.equal(config.maxConcurrentRequests, perIp);
      assert.equal(config.maxTotalConnections, total);
    });
  }
  for (const variable of ["MAX_CONCURRENT_REQUESTS", "MAX_TOTAL_CONNECTIONS"]) {
    for (const value of ["-1", "1.5", "1e3", "ten", "99999999999999999999"]) {
      await t.step(`${variable} refuses ${value}`, () => {
        assert.equal(
          messageFor(variable, value),
          `Invalid "${variable}": expected a whole number, 0 or more, got "${value}"`,
        );
      });
    }
  }
  await t.step("both bad values are reported together", () => {
    assert.deepEqual(
      problems({ MAX_CONCURRENT_REQUESTS: "x", MAX_TOTAL_CONNECTIONS: "y" }).map((p) => p.variable),
      ["MAX_CONCURRENT_REQUESTS", "MAX_TOTAL_CONNECTIONS"],
    );
  });
});

Deno.test("parseConfig() wants both TLS files or neither", async (t) => {
  await t.step("both", () => {
    const config = parse({ TLS_CERT_FILE: "/tls/cert.pem", TLS_KEY_FILE: "/tls/key.pem" });
    assert.equal(config.tlsCertFile, "/tls/cert.pem");
    assert.equal(config.tlsKeyFile, "/tls/key.pem");
  });
  await t.step("only the certificate", () => {
    assert.deepEqual(problems({ TLS_CERT_FILE: "/tls/cert.pem" }), [{
      variable: "TLS_KEY_FILE",
      message: 'Missing "TLS_KEY_FILE": required when "TLS_CERT_FILE" is set',
    }]);
  });
  await t.step("only the key", () => {
    assert.deepEqual(problems({ TLS_KEY_FILE: "/tls/key.pem" }), [{
      variable: "TLS_CERT_FILE",
      message: 'Missing "TLS_CERT_FILE": required when "TLS_KEY_FILE" is set',
    }]);
  });
});

Deno.test("parseConfig() reads LOG_LEVEL case-insensitively", async (t) => {
  for (
    const [value, level] of [["debug", "debug"], ["INFO", "info"], ["Warn", "warn"], [
      "error",
      "error",
    ]]
  ) {
    await t.step(value, () => assert.equal(parse({ LOG_LEVEL: value }).logLevel, level));
  }
  await t.step("refuses trace", () => {
    assert.equal(
      messageFor("LOG_LEVEL", "trace"),
      'Invalid "LOG_LEVEL": expected debug, info, warn or error, got "trace"',
    );
  });
});

Deno.test("parseConfig() quotes long and odd values safely in messages", () => {
  const message = messageFor("LOG_LEVEL", "x".repeat(300) + "\n");
  assert.equal(
    message,
    `Invalid "LOG_LEVEL": expected debug, info, warn or error, got "${"x".repeat(200)}…"`,
  );
  assert.equal(
    messageFor("LOG_LEVEL", 'a"\nb'),
    'Invalid "LOG_LEVEL": expected debug, info, warn or error, got "a\\"\\nb"',
  );
});

/** Every object and array reachable from `value` is frozen (typed arrays cannot be). */
function assertDeepFrozen(value: unknown, path = "config"): void {
  if (typeof value !== "object" || value === null || ArrayBuffer.isView(value)) return;
  assert.ok(Object.isFrozen(value), `${path} is not frozen`);
  for (const [k, v] of Object.entries(value)) assertDeepFrozen(v, `${path}.${k}`);
}

Deno.test("parseConfig() returns a deeply frozen Config", () => {
  const config = parse({
    REQUIRED_CLAIMS: '{"org":{"ids":["a"]}}',
    TRUSTED_PROXIES: "10.0.0.0/8",
    CLAIM_HEADERS: "sub=X-Sub",
    ALLOWED_ORIGINS: "https://a.example.com",
    REQUIRED_SCOPES: "a",
  });
  assertDeepFrozen(config);
  assert.throws(() => {
    (config.upstream as { port: number }).port = 1;
  }, TypeError);
  assert.throws(() => (config.expectedAudience as string[]).push("x"), TypeError);
  assert.throws(() => {
    const org = config.requiredClaims[0] as { value: { org: { ids: string[] } } };
    org.value.org.ids[0] = "b";
  }, TypeError);
});

Deno.test("VARIABLES lists exactly the variables parseConfig() reads, each once", () => {
  const read = new Set<string>();
  const env = new Proxy({ ...BASE }, {
    get(target, key) {
      if (typeof key === "string") read.add(key);
      return Reflect.get(target, key);
    },
  });
  parseConfig(env);
  const names = VARIABLES.map((v) => v.name);
  assert.equal(new Set(names).size, names.length);
  assert.deepEqual([...read].sort(), [...names].sort());
  for (const v of VARIABLES) {
    assert.ok(
      v.default !== "" && v.description !== "",
      `${v.name} needs a default and a description`,
    );
  }
});

Deno.test("VARIABLES shows the defaults parseConfig() applies", () => {
  const shown = Object.fromEntries(VARIABLES.map((v) => [v.name, v.default]));
  // Parsing each shown value explicitly gives the same config as leaving it unset.
  const explicit = Object.fromEntries(
    Object.entries(shown).filter(([, d]) =>
      !/^(required|none|discovered|REQUIRED_SCOPES)$|\s/.test(d)
    ),
  );
  assert.deepEqual(Object.keys(explicit).sort(), [
    "ALLOWED_ALGS",
    "AS_METADATA_MIRROR",
    "CLOCK_SKEW",
    "FORWARD_AUTHORIZATION",
    "INTROSPECTION_AUTH_METHOD",
    "INTROSPECTION_CACHE_TTL",
    "INTROSPECTION_FORMAT",
    "INTROSPECTION_TIMEOUT",
    "INTROSPECT_ALL",
    "JWKS_MIN_REFRESH_INTERVAL",
    "JWKS_REFRESH_INTERVAL",
    "LISTEN_ADDR",
    "LOG_LEVEL",
    "MAX_CONCURRENT_REQUESTS",
    "MAX_HEADER_BYTES",
    "MAX_REQUEST_BODY",
    "MAX_TOTAL_CONNECTIONS",
    "METRICS_ADDR",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACE_SAMPLE_RATE",
    "PRESERVE_HOST",
    "RATE_LIMIT_BURST",
    "RATE_LIMIT_REDIS_TIMEOUT",
    "RATE_LIMIT_RPS",
    "READ_TIMEOUT",
    "SCOPE_CLAIMS",
    "SHUTDOWN_TIMEOUT",
    "SSE_IDLE_TIMEOUT",
    "UPSTREAM_TIMEOUT",
  ]);
  assert.deepEqual(parse(explicit), parse());
});

Deno.test("redactedConfig() gives the effective config as plain JSON", () => {
  const config = parse({
    TRUSTED_PROXIES: "10.0.0.0/8",
    CLAIM_HEADERS: "sub=X-Sub",
    METRICS_ADDR: "",
    LISTEN_ADDR: "[::]:8443",
    REQUIRED_CLAIMS: '{"tenant":"acme"}',
  });
  const redacted = redactedConfig(config);
  assert.deepEqual(JSON.parse(JSON.stringify(redacted)), redacted);
  assert.equal(redacted.upstreamUrl, "http://127.0.0.1:3000");
  assert.equal(redacted.listen, "[::]:8443");
  assert.equal(redacted.metricsListen, null);
  assert.equal(redacted.jwksUri, null);
  assert.deepEqual(redacted.trustedProxies, ["10.0.0.0/8"]);
  assert.deepEqual(redacted.claimHeaders, ["sub=x-sub"]);
  assert.deepEqual(redacted.requiredClaims, { tenant: "acme" });
  assert.equal(redacted.clockSkewMs, 30_000);
  assert.equal(redacted.maxConcurrentRequests, 100);
  assert.equal(redacted.maxTotalConnections, 1000);
});

Deno.test("CONFIG_ROWS fills every Config field from exactly one row, or a named derived field", () => {
  const fields = [...CONFIG_ROWS.map((r) => r.field), ...Object.keys(DERIVED_FIELDS)];
  assert.equal(new Set(fields).size, fields.length, `a field twice in ${fields}`);
  // Which fields exist is proven at compile time (UnfilledConfigFields); here, that each is set.
  assert.deepEqual(Object.keys(parse()).sort(), [...fields].sort());
  const names = CONFIG_ROWS.map((r) => r.name);
  assert.equal(new Set(names).size, names.length);
  assert.deepEqual(Object.keys(DERIVED_FIELDS), ["resourcePath"]);
});

Deno.test("CONFIG_ROWS: every text default parses cleanly and means the same as unset", async (t) => {
  for (const row of CONFIG_ROWS) {
    if (row.default.kind !== "text") continue;
    const { name, default: { text } } = row;
    await t.step(`${name}=${text}`, () => assert.deepEqual(parse({ [name]: text }), parse()));
  }
});

Deno.test("CONFIG_ROWS: only the three required rows are required; derived defaults are named", () => {
  const kinds = (kind: string) =>
    CONFIG_ROWS.filter((r) => r.default.kind === kind).map((r) => r.name);
  assert.deepEqual(kinds("required"), ["UPSTREAM_URL", "RESOURCE_URI", "AUTHORIZATION_SERVER"]);
  assert.deepEqual(kinds("derived"), [
    "EXPECTED_AUDIENCE",
    "SCOPES_SUPPORTED",
    "INTROSPECTION_URL",
  ]);
  assert.deepEqual(POST_CHECKS.map((c) => c.name), [
    "jwks-uri-and-expected-issuer-with-one-issuer",
    "issuer-audiences-name-issuers",
    "tls-files-in-pairs",
    "introspection-needs-credentials",
    "google-tokeninfo-settings",
    "mirror-needs-one-authorization-server",
    "subject-header-names-its-issuer",
    "introspect-all-needs-one-authorization-server",
    "discovery-over-https",
    "metrics-port-apart-from-listener",
  ]);
});

Deno.test("--help, the README table and the redacted view are all read off CONFIG_ROWS", async (t) => {
  const shown = (row: (typeof CONFIG_ROWS)[number]) =>
    row.default.kind === "required"
      ? "required"
      : row.default.kind === "text"
      ? row.default.text
      : row.default.shown;
  await t.step(
    "VARIABLES: one entry per row, same order, name, shown default and description",
    () => {
      assert.deepEqual(
        VARIABLES,
        CONFIG_ROWS.map((r) => ({ name: r.name, default: shown(r), description: r.description })),
      );
    },
  );
  await t.step("--help lists every row in table order with its default", () => {
    const help = helpText();
    let from = 0;
    for (const row of CONFIG_ROWS) {
      const def = row.default.kind === "required" ? "(required)" : `(default: ${shown(row)})`;
      const at = help.indexOf(`\n  ${row.name} ${def}\n`, from);
      assert.ok(at >= from, `${row.name} ${def} missing or out of order`);
      const words = help.slice(at).split("\n").slice(2).filter((_, i, lines) =>
        lines.slice(0, i + 1).every((l) => l.startsWith("      "))
      ).map((l) => l.trim()).join(" ");
      assert.equal(words, row.description, row.name);
      from = at + 1;
    }
  });
  await t.step("the README table has one line per row, same order, default and description", () => {
    const lines = configTable().split("\n").slice(2);
    assert.equal(lines.length, CONFIG_ROWS.length);
    CONFIG_ROWS.forEach((row, i) => {
      const def = row.default.kind === "required" ? "**required**" : `\`${shown(row)}\``;
      const cells = [`\`${row.name}\``, def, row.description].map((c) => c.replaceAll("|", "\\|"));
      assert.equal(lines[i], `| ${cells.join(" | ")} |`);
    });
  });
  await t.step("the redacted view: one key per row, in table order", () => {
    assert.deepEqual(Object.keys(redactedConfig(parse())), CONFIG_ROWS.map(displayKey));
  });
});

Deno.test("displayValue() shows unset as null, copies as-is values, hides redacted ones, formats the rest", () => {
  assert.equal(displayValue("as-is", undefined), null);
  assert.equal(displayValue("redacted", undefined), null);
  assert.equal(displayValue({ format: (n: number) => n * 2 }, undefined), null);
  const list = Object.freeze(["a", "b"]);
  const copy = displayValue("as-is", list);
  assert.deepEqual(copy, ["a", "b"]);
  assert.notEqual(copy, list);
  assert.equal(displayValue("as-is", 0), 0);
  assert.equal(displayValue("redacted", "s3cret"), "[redacted]");
  assert.equal(displayValue({ format: (n: number) => n * 2 }, 21), 42);
});

Deno.test("testConfig() is the table's defaults for TEST_ENV, with whole fields overridden", () => {
  assert.deepEqual(testConfig(), parseConfig(TEST_ENV));
  assert.equal(testConfig({ clockSkewMs: 5 }).clockSkewMs, 5);
  assert.deepEqual(testConfig().listen, { hostname: "127.0.0.1", port: 0 });
  assert.equal(testConfig().metricsListen, undefined);
});

const NAMES = VARIABLES.map((v) => v.name);
/** Strings built from fragments that reach deep branches of the parsers, plus raw noise. */
const valueArb = fc.oneof(
  fc.string(),
  fc.string({ unit: "binary" }),
  fc.array(
    fc.constantFrom(
      "http://",
      "https://",
      "localhost",
      "127.0.0.1",
      "::",
      "[",
      "]",
      ":",
      "/",
      "?",
      "#",
      "@",
      ",",
      "=",
      " ",
      "0",
      "1",
      "9",
      ".",
      "-",
      "s",
      "ms",
      "µs",
      "h",
      "KiB",
      "*",
      "null",
      "{",
      "}",
      '"',
      "\\",
      "RS256",
      "HS256",
      "X-Auth",
      "true",
    ),
    { maxLength: 12 },
  ).map((parts) => parts.join("")),
);

function onlyConfigErrors(env: Env): void {
  let config: Config;
  try {
    config = parseConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      assert.ok(err.problems.length > 0);
      for (const p of err.problems) {
        assert.ok(NAMES.includes(p.variable), `unknown variable ${p.variable}`);
        assert.ok(!/[\r\n]/.test(p.message), "a message spans lines");
      }
      return;
    }
    throw err;
  }
  assertDeepFrozen(config);
}

Deno.test("parseConfig() throws nothing but ConfigError for arbitrary values", async (t) => {
  await t.step("any subset of variables set to anything", () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom(...NAMES), valueArb),
        (env) => onlyConfigErrors(env),
      ),
      { numRuns: 300 },
    );
  });
  await t.step("a valid base with one variable set to anything", () => {
    fc.assert(
      fc.property(fc.constantFrom(...NAMES), valueArb, (name, value) => {
        onlyConfigErrors({ ...BASE, [name]: value });
      }),
      { numRuns: 2000 },
    );
  });
});

Deno.test("introspection is on only with a client id, which needs its secret; the secret is redacted", async (t) => {
  const problems = (env: Record<string, string>) => {
    try {
      parse(env);
      return [];
    } catch (e) {
      return (e as ConfigError).problems.map((p) => p.message);
    }
  };
  await t.step("off by default", () => {
    const c = parse();
    assert.equal(c.introspectionClientId, undefined);
    assert.equal(c.introspectionAuthMethod, "client_secret_basic");
    assert.equal(c.introspectAll, false);
    assert.equal(c.introspectionCacheTtlMs, 60_000);
    assert.equal(c.introspectionTimeoutMs, 5_000);
    assert.equal(c.asMetadataMirror, false);
  });
  await t.step("every variable that needs the client id names it", () => {
    assert.deepEqual(
      problems({
        INTROSPECTION_CLIENT_SECRET: "s",
        INTROSPECTION_URL: "https://as.example/introspect",
        INTROSPECT_ALL: "true",
      }),
      [
        'Missing "INTROSPECTION_CLIENT_ID": required when "INTROSPECTION_CLIENT_SECRET" is set',
        'Missing "INTROSPECTION_CLIENT_ID": required when "INTROSPECTION_URL" is set',
        'Missing "INTROSPECTION_CLIENT_ID": required when "INTROSPECT_ALL" is set',
      ],
    );
  });
  await t.step("a client id without a secret", () => {
    assert.deepEqual(problems({ INTROSPECTION_CLIENT_ID: "gate" }), [
      'Missing "INTROSPECTION_CLIENT_SECRET": required when "INTROSPECTION_CLIENT_ID" is set',
    ]);
  });
  await t.step("bad values", () => {
    assert.deepEqual(
      problems({
        INTROSPECTION_CLIENT_ID: "gate",
        INTROSPECTION_CLIENT_SECRET: "s",
        INTROSPECTION_URL: "http://as.example/introspect",
        INTROSPECTION_AUTH_METHOD: "private_key_jwt",
      }),
      [
        'Invalid "INTROSPECTION_URL": expected an https URL (http only for a loopback host), got "http://as.example/introspect"',
        'Invalid "INTROSPECTION_AUTH_METHOD": expected client_secret_basic or client_secret_post, got "private_key_jwt"',
      ],
    );
  });
  await t.step("configured, with the secret redacted in the start-up view", () => {
    const c = parse({
      INTROSPECTION_CLIENT_ID: "gate",
      INTROSPECTION_CLIENT_SECRET: "very-secret",
      INTROSPECTION_AUTH_METHOD: "client_secret_post",
      INTROSPECT_ALL: "yes",
      INTROSPECTION_CACHE_TTL: "0",
    });
    assert.equal(c.introspectionClientSecret, "very-secret");
    assert.equal(c.introspectAll, true);
    assert.equal(c.introspectionCacheTtlMs, 0);
    const shown = redactedConfig(c);
    assert.equal(shown.introspectionClientSecret, "[redacted]");
    assert.ok(!JSON.stringify(shown).includes("very-secret"));
  });
  await t.step("the AS metadata mirror refuses several authorization servers", () => {
    assert.equal(parse({ AS_METADATA_MIRROR: "true" }).asMetadataMirror, true);
    const found = problems({
      AS_METADATA_MIRROR: "true",
      AUTHORIZATION_SERVER: "https://a.example,https://b.example",
    });
    assert.ok(
      found.includes(
        'Invalid "AS_METADATA_MIRROR": expected false when "AUTHORIZATION_SERVER" names several authorization servers, got "true"',
      ),
      found.join("\n"),
    );
  });
});

Deno.test("the Go gate's timeout and header variables parse with its units", async (t) => {
  await t.step("defaults", () => {
    const c = parse();
    assert.equal(c.readTimeoutMs, 30_000);
    assert.equal(c.idleTimeoutMs, undefined);
    assert.equal(c.streamIdleTimeoutMs, 0);
    assert.equal(c.maxHeaderBytes, 65_536);
  });
  await t.step("set values", () => {
    const c = parse({
      READ_TIMEOUT: "1m30s",
      IDLE_TIMEOUT: "120s",
      SSE_IDLE_TIMEOUT: "5m",
      MAX_HEADER_BYTES: "8KiB",
    });
    assert.equal(c.readTimeoutMs, 90_000);
    assert.equal(c.idleTimeoutMs, 120_000);
    assert.equal(c.streamIdleTimeoutMs, 300_000);
    assert.equal(c.maxHeaderBytes, 8192);
    assert.equal(parse({ READ_TIMEOUT: "0" }).readTimeoutMs, 0);
  });
  await t.step("bad values are reported together, each named", () => {
    const found = problems({
      READ_TIMEOUT: "-1s",
      SSE_IDLE_TIMEOUT: "soon",
      MAX_HEADER_BYTES: "64KB",
    });
    assert.deepEqual(found.map((p) => p.variable), [
      "READ_TIMEOUT",
      "SSE_IDLE_TIMEOUT",
      "MAX_HEADER_BYTES",
    ]);
    assert.equal(
      found.at(-1)!.message,
      'Invalid "MAX_HEADER_BYTES": expected a size in bytes or with a KiB, MiB or GiB suffix, like "10MiB", got "64KB"',
    );
  });
});

Deno.test("the Go gate's tracing variables: endpoint, service name and sample rate", async (t) => {
  await t.step("defaults: no endpoint, so no traces", () => {
    const c = parse();
    assert.equal(c.otelEndpoint, undefined);
    assert.equal(c.otelServiceName, "mcp-gate");
    assert.equal(c.otelSampleRate, 1);
  });
  await t.step("set values", () => {
    const c = parse({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel-collector:4318/",
      OTEL_SERVICE_NAME: "gate-a",
      OTEL_TRACE_SAMPLE_RATE: "0.25",
    });
    assert.equal(c.otelEndpoint, "http://otel-collector:4318");
    assert.equal(c.otelServiceName, "gate-a");
    assert.equal(c.otelSampleRate, 0.25);
  });
  await t.step("bad values", () => {
    const found = problems({
      OTEL_EXPORTER_OTLP_ENDPOINT: "grpc://collector:4317",
      OTEL_TRACE_SAMPLE_RATE: "1.5",
    });
    assert.deepEqual(found.map((p) => p.variable), [
      "OTEL_EXPORTER_OTLP_ENDPOINT",
      "OTEL_TRACE_SAMPLE_RATE",
    ]);
    assert.equal(
      found[1].message,
      'Invalid "OTEL_TRACE_SAMPLE_RATE": expected a number from 0 to 1, got "1.5"',
    );
  });
});
