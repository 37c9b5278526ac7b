/** INTROSPECTION_FORMAT (docs/contract.md §1, docs/identity-providers.md "Google"). */
import assert from "node:assert/strict";
import { ConfigError } from "../errors.ts";
import {
  type Env,
  GOOGLE_TOKENINFO_URL,
  introspectionEnabled,
  parseConfig,
  redactedConfig,
  startupWarnings,
} from "./mod.ts";

const BASE: Env = {
  UPSTREAM_URL: "http://127.0.0.1:9",
  RESOURCE_URI: "https://mcp.example.com/mcp",
  AUTHORIZATION_SERVER: "https://accounts.google.com",
  METRICS_ADDR: "",
};
const GOOGLE: Env = {
  ...BASE,
  INTROSPECTION_FORMAT: "google_tokeninfo",
  EXPECTED_AUDIENCE: "1234567890-abc.apps.googleusercontent.com",
  SCOPES_SUPPORTED: "openid email",
};

function problems(env: Env): string[] {
  try {
    parseConfig(env);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.problems.map((p) => p.message);
  }
  assert.fail("expected a ConfigError");
}

Deno.test("INTROSPECTION_FORMAT defaults to rfc7662, which stays off without a client id", () => {
  const config = parseConfig(BASE);
  assert.equal(config.introspectionFormat, "rfc7662");
  assert.equal(config.introspectionUrl, undefined);
  assert.equal(config.introspectAll, false);
  assert.equal(introspectionEnabled(config), false);
  assert.deepEqual(problems({ ...BASE, INTROSPECTION_FORMAT: "google" }), [
    'Invalid "INTROSPECTION_FORMAT": expected rfc7662 or google_tokeninfo, got "google"',
  ]);
});

Deno.test("google_tokeninfo: on without client credentials, Google's tokeninfo by default, every token introspected", () => {
  const config = parseConfig(GOOGLE);
  assert.equal(introspectionEnabled(config), true);
  assert.equal(config.introspectionUrl, GOOGLE_TOKENINFO_URL);
  assert.equal(config.introspectAll, true);
  assert.equal(redactedConfig(config).introspectionUrl, GOOGLE_TOKENINFO_URL);
  // The guide says `check` warns that the audience is not the resource, and nothing else here.
  assert.deepEqual(startupWarnings(config, GOOGLE).map((w) => w.id), [
    "audience_without_resource",
  ]);
  // An explicit endpoint (a test double, an egress proxy) is kept.
  const url = "https://egress.example.com/tokeninfo";
  assert.equal(parseConfig({ ...GOOGLE, INTROSPECTION_URL: url }).introspectionUrl, url);
  // ISSUER_AUDIENCES for Google's entry is an audience too.
  const { EXPECTED_AUDIENCE: _, ...noAudience } = GOOGLE;
  const own = parseConfig({
    ...noAudience,
    ISSUER_AUDIENCES: "https://accounts.google.com=1234567890-abc.apps.googleusercontent.com",
  });
  assert.equal(introspectionEnabled(own), true);
});

Deno.test("google_tokeninfo: client credentials, another auth method, the default audience and several issuers are refused", () => {
  const { EXPECTED_AUDIENCE: _, ...noAudience } = GOOGLE;
  assert.deepEqual(problems(noAudience), [
    'Missing "EXPECTED_AUDIENCE": required when "INTROSPECTION_FORMAT" is google_tokeninfo ' +
    "(the OAuth client ID, which Google puts in aud; RESOURCE_URI never is)",
  ]);
  const why = 'when \\"INTROSPECTION_FORMAT\\" is google_tokeninfo (tokeninfo takes no client ' +
    "authentication)";
  const messages = problems({
    ...GOOGLE,
    INTROSPECTION_CLIENT_ID: "gate",
    INTROSPECTION_CLIENT_SECRET: "s3cret",
    INTROSPECTION_AUTH_METHOD: "client_secret_post",
  });
  assert.deepEqual(
    messages,
    [
      `Invalid "INTROSPECTION_CLIENT_ID": expected it unset ${why}, got "gate"`,
      `Invalid "INTROSPECTION_CLIENT_SECRET": expected it unset ${why}, got "[redacted]"`,
      `Invalid "INTROSPECTION_AUTH_METHOD": expected it unset ${why}, got "client_secret_post"`,
    ].map((m) => m.replaceAll('\\"', '"')),
  );
  assert.ok(!messages.join("\n").includes("s3cret"));
  assert.deepEqual(
    problems({
      ...GOOGLE,
      AUTHORIZATION_SERVER: "https://accounts.google.com,https://kc.example.com/realms/mcp",
    }),
    [
      'Invalid "INTROSPECTION_FORMAT": expected rfc7662 when "AUTHORIZATION_SERVER" names ' +
      "several authorization servers (google_tokeninfo sends every token to Google), got " +
      '"google_tokeninfo"',
    ],
  );
});
