/**
 * The identity-provider matrix (docs/identity-providers.md): for Keycloak, Auth0, Okta, Entra ID
 * (v2 and v1 tokens), Authentik and Google, tokens shaped exactly as each provider issues them
 * (issuer form and trailing slash, `aud` shape, scope and role claims, header `typ`, `azp`/`cid`,
 * `ver`, `tid`), served by a real local issuer with the provider's path shape (and, for Google's
 * opaque tokens, a local endpoint answering as Google's tokeninfo does), checked by a gate
 * running the configuration the guide recommends for that provider (read from the guide's
 * `<!-- matrix: NAME -->` blocks). The right token passes; each usual mistake in the guide's
 * table fails with the log reason the table names; the guide's claim-shape table is checked
 * against the tokens minted here, so the guide and this matrix cannot drift apart.
 */
import assert from "node:assert/strict";
import { claimAt } from "../src/auth/mod.ts";
import { claimRef } from "../src/config/mod.ts";
import {
  b64url,
  generateTestKey,
  hmacJws,
  signJws,
  startTestIssuer,
  type TestIssuer,
  type TestKey,
} from "./helpers/issuer.ts";
import { startUpstream } from "./helpers/upstream.ts";
import { drain, startGate, type TestGate } from "./helpers/gate.ts";
import { ready, RESOURCE } from "./helpers/rig.ts";

const GUIDE = await Deno.readTextFile(new URL("../docs/identity-providers.md", import.meta.url));

const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";
const API_APP_ID = "6e74172b-be56-4843-9ff4-e66a39bb12e3";
const CLIENT_APP_ID = "1950a258-227b-4e31-a9cf-717495945fc2";
const AK_CLIENT_ID = "Hq3sV1pD0k2mcp";
const GOOGLE_CLIENT_ID = "1234567890-abc.apps.googleusercontent.com";
/** Values for the guide's `<...>` placeholders in its configuration blocks. */
const PLACEHOLDERS: Readonly<Record<string, string>> = {
  "<tenant-id>": TENANT,
  "<api application id>": API_APP_ID,
  "<client id>": AK_CLIENT_ID,
  "<google client id>": GOOGLE_CLIENT_ID,
};

/** A token as a provider would issue it: header and claims, before signing. */
interface Shape {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
}

/** What a provider's tokens are minted from. */
interface Ctx {
  /** The local issuer, with the provider's path shape. */
  as: TestIssuer;
  iss: string;
  key: TestKey;
  nowS: number;
  /** The local tokeninfo: `issue` mints an opaque token it will answer `body` for. */
  tokeninfo: Tokeninfo;
}

interface Mistake {
  reason: string;
  token(c: Ctx): Promise<string>;
  /** Changes to the guide's configuration that make this mistake (undefined removes one). */
  env?: Record<string, string | undefined>;
}

interface Provider {
  /** As in the guide's tables and `<!-- matrix: NAME -->` markers. */
  name: string;
  /** The JWT access token that must pass. */
  good?(c: Ctx): Shape;
  /** Or, for an opaque token (Google), its endpoint's answer: the token must pass with it. */
  goodOpaque?(c: Ctx): Record<string, unknown>;
  mistakes: Record<string, Mistake>;
}

/**
 * Google's tokeninfo as it answers (docs/identity-providers.md "Google"): a POST form with
 * `access_token`; 200 JSON for a token it issued, else 400 `invalid_token` "Invalid Value".
 * Records every URL asked and every token sent, to show neither a URL nor a log holds a token.
 */
interface Tokeninfo extends AsyncDisposable {
  readonly url: string;
  readonly urls: string[];
  readonly tokens: string[];
  issue(body: Record<string, unknown>): string;
}

function startTokeninfo(): Tokeninfo {
  const answers = new Map<string, Record<string, unknown>>();
  const urls: string[] = [];
  const tokens: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    urls.push(req.url);
    const token = req.method === "POST"
      ? new URLSearchParams(await req.text()).get("access_token")
      : null;
    const body = token === null ? undefined : answers.get(token);
    if (body) return Response.json(body);
    return Response.json({ error: "invalid_token", error_description: "Invalid Value" }, {
      status: 400,
    });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/tokeninfo`,
    urls,
    tokens,
    issue(body) {
      const token = googleAccessToken();
      answers.set(token, body);
      tokens.push(token);
      return token;
    },
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

const sign = (c: Ctx, s: Shape, key: TestKey = c.key) =>
  signJws({ header: { kid: key.kid, ...s.header }, payload: s.payload, key });

/** `shape` with claims changed; an `undefined` value removes the claim. */
function edit(shape: Shape, claims: Record<string, unknown>, header = {}): Shape {
  const payload = { ...shape.payload, ...claims };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return { header: { ...shape.header, ...header }, payload };
}

const times = (c: Ctx) => ({ iat: c.nowS, exp: c.nowS + 300 });

function keycloak(c: Ctx): Shape {
  return {
    header: { alg: "RS256", typ: "JWT" },
    payload: {
      ...times(c),
      auth_time: c.nowS,
      jti: crypto.randomUUID(),
      iss: c.iss,
      aud: [RESOURCE, "account"],
      sub: "f1b2c3d4-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
      typ: "Bearer",
      azp: "claude-client",
      sid: crypto.randomUUID(),
      acr: "1",
      realm_access: { roles: ["default-roles-mcp", "offline_access", "mcp-user"] },
      resource_access: { account: { roles: ["manage-account", "view-profile"] } },
      scope: "openid mcp:tools profile email",
      email_verified: true,
      preferred_username: "alice",
    },
  };
}

function auth0(c: Ctx): Shape {
  return {
    header: { alg: "RS256", typ: "at+jwt" },
    payload: {
      iss: c.iss,
      sub: "auth0|65f0c0ffee",
      aud: [RESOURCE, `${c.iss}userinfo`],
      ...times(c),
      // RBAC: the API permission is in `permissions`, read through SCOPE_CLAIMS.
      scope: "openid profile email",
      permissions: ["mcp:tools"],
      jti: crypto.randomUUID(),
      client_id: "Zx9auth0client",
      azp: "Zx9auth0client",
    },
  };
}

function okta(c: Ctx): Shape {
  return {
    header: { alg: "RS256" },
    payload: {
      ver: 1,
      jti: "AT.nV1Pr6KDt0cF_okta",
      iss: c.iss,
      aud: RESOURCE,
      ...times(c),
      cid: "0oa1clientid",
      uid: "00u1userid",
      scp: ["openid", "mcp:tools"],
      auth_time: c.nowS,
      sub: "alice@example.com",
      groups: ["Everyone", "mcp-users"],
    },
  };
}

function entraV2(c: Ctx): Shape {
  return {
    header: { typ: "JWT", alg: "RS256", x5t: c.key.kid },
    payload: {
      aud: API_APP_ID,
      iss: c.iss,
      ...times(c),
      nbf: c.nowS,
      aio: "AWQAm/8",
      azp: CLIENT_APP_ID,
      azpacr: "1",
      name: "Alice",
      oid: "00000000-0000-0000-66f3-3332eca7ea81",
      preferred_username: "alice@contoso.com",
      rh: "0.AR8A",
      roles: ["MCP.User"],
      scp: "mcp.tools",
      sub: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
      tid: TENANT,
      uti: "fqiBqXLPj0eQa82S-IYFAA",
      ver: "2.0",
    },
  };
}

function entraV1(c: Ctx): Shape {
  return {
    header: { typ: "JWT", alg: "RS256", x5t: c.key.kid },
    payload: {
      aud: `api://${API_APP_ID}`,
      iss: c.iss,
      ...times(c),
      nbf: c.nowS,
      acr: "1",
      aio: "ASQA2/8",
      amr: ["pwd"],
      appid: CLIENT_APP_ID,
      appidacr: "1",
      name: "Alice",
      oid: "00000000-0000-0000-66f3-3332eca7ea81",
      roles: ["MCP.User"],
      scp: "mcp.tools",
      sub: "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
      tid: TENANT,
      unique_name: "alice@contoso.com",
      upn: "alice@contoso.com",
      uti: "fqiBqXLPj0eQa82S-IYFAA",
      ver: "1.0",
    },
  };
}

function authentik(c: Ctx): Shape {
  return {
    header: { alg: "RS256", typ: "JWT" },
    payload: {
      iss: c.iss,
      sub: "7b4e2a0c9d1f3e5a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a",
      aud: AK_CLIENT_ID,
      ...times(c),
      auth_time: c.nowS,
      acr: "goauthentik.io/providers/oauth2/default",
      azp: AK_CLIENT_ID,
      uid: "Zg9dP2kq",
      scope: "openid profile email",
      email: "alice@example.com",
      groups: ["authentik Admins", "mcp"],
    },
  };
}

/** A Google-style ID token: a JWT for the OAuth client, which is also the access token's `aud`. */
function googleIdToken(c: Ctx): Shape {
  const client = GOOGLE_CLIENT_ID;
  return {
    header: { alg: "RS256", typ: "JWT" },
    payload: {
      iss: c.iss,
      azp: client,
      aud: client,
      sub: "110169484474386276334",
      email: "alice@example.com",
      email_verified: true,
      at_hash: "HK6E_P6Dh8Y93mRNtsDB1Q",
      ...times(c),
    },
  };
}

/** An opaque token in Auth0's shape when no audience was asked for: a compact JWE (5 parts). */
function auth0Opaque(iss: string): string {
  const rand = (n: number) => b64url(crypto.getRandomValues(new Uint8Array(n)));
  const header = b64url(JSON.stringify({ alg: "dir", enc: "A256GCM", iss }));
  return `${header}..${rand(12)}.${rand(96)}.${rand(16)}`;
}

const googleAccessToken = () => `ya29.a0AfB_${b64url(crypto.getRandomValues(new Uint8Array(96)))}`;

/** tokeninfo's answer for a Google access token: times and `email_verified` as strings. */
function googleTokeninfo(c: Ctx, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    azp: GOOGLE_CLIENT_ID,
    aud: GOOGLE_CLIENT_ID,
    sub: "110169484474386276334",
    scope: "https://www.googleapis.com/auth/userinfo.email openid",
    exp: String(c.nowS + 3599),
    expires_in: "3599",
    email: "alice@example.com",
    email_verified: "true",
    access_type: "online",
    ...extra,
  };
}

const PROVIDERS: readonly Provider[] = [
  {
    name: "Keycloak",
    good: keycloak,
    mistakes: {
      "no audience mapper: `aud` is `account`": {
        reason: "audience",
        token: (c) => sign(c, edit(keycloak(c), { aud: "account" })),
      },
      "the ID token sent instead of the access token": {
        reason: "audience",
        token: (c) =>
          sign(
            c,
            edit(keycloak(c), {
              typ: "ID",
              aud: "claude-client",
              nonce: "n-0S6_WzA2Mj",
              at_hash: "77QmUPtjPfzWtF2AnpK9RQ",
              scope: undefined,
            }),
          ),
      },
      "realm imported without the `basic` client scope: no `sub`": {
        reason: "sub",
        token: (c) => sign(c, edit(keycloak(c), { sub: undefined })),
      },
      "the user lacks the realm role `REQUIRED_CLAIMS` asks for": {
        reason: "claim",
        token: (c) =>
          sign(c, edit(keycloak(c), { realm_access: { roles: ["default-roles-mcp"] } })),
      },
    },
  },
  {
    name: "Auth0",
    good: auth0,
    mistakes: {
      "no audience requested: Auth0 issues an opaque (encrypted) token": {
        reason: "malformed",
        token: (c) => Promise.resolve(auth0Opaque(c.iss)),
      },
      "the ID token sent instead of the access token": {
        reason: "audience",
        token: (c) =>
          sign(
            c,
            edit(auth0(c), {
              aud: "Zx9auth0client",
              nonce: "n-0S6",
              name: "Alice",
              scope: undefined,
              permissions: undefined,
            }, { typ: "JWT" }),
          ),
      },
      "the API signs with HS256": {
        reason: "alg",
        token: (c) =>
          hmacJws({
            header: { alg: "HS256", typ: "JWT" },
            payload: auth0(c).payload,
            secret: new TextEncoder().encode("the API signing secret"),
          }),
      },
    },
  },
  {
    name: "Okta",
    good: okta,
    mistakes: {
      "a token of the org authorization server instead of a custom one": {
        reason: "unknown_kid",
        // The org server has its own keys and names the bare org URL as issuer and audience.
        token: async (c) =>
          sign(
            c,
            edit(okta(c), { iss: c.as.origin, aud: c.as.origin }),
            await generateTestKey("RS256"),
          ),
      },
      "the custom authorization server's audience left at `api://default`": {
        reason: "audience",
        token: (c) => sign(c, edit(okta(c), { aud: "api://default" })),
      },
      "the ID token sent instead of the access token": {
        reason: "audience",
        token: (c) =>
          sign(
            c,
            edit(okta(c), {
              aud: "0oa1clientid",
              amr: ["pwd"],
              idp: "00o1idp",
              nonce: "n-0S6",
              scp: undefined,
              cid: undefined,
            }),
          ),
      },
    },
  },
  {
    name: "Entra ID v2",
    good: entraV2,
    mistakes: {
      "a v1 token: the API's `requestedAccessTokenVersion` is not 2": {
        reason: "issuer",
        // Same tenant, same signing keys: only the issuer form tells them apart.
        token: (c) =>
          sign(
            c,
            edit(entraV2(c), {
              iss: `https://sts.windows.net/${TENANT}/`,
              aud: `api://${API_APP_ID}`,
              ver: "1.0",
              appid: CLIENT_APP_ID,
              azp: undefined,
            }),
          ),
      },
      "a token of another tenant (same signing keys)": {
        reason: "issuer",
        token: (c) =>
          sign(
            c,
            edit(entraV2(c), { iss: c.iss.replace(TENANT, OTHER_TENANT), tid: OTHER_TENANT }),
          ),
      },
      "the ID token sent instead of the access token": {
        reason: "audience",
        token: (c) =>
          sign(
            c,
            edit(entraV2(c), {
              aud: CLIENT_APP_ID,
              nonce: "n-0S6",
              scp: undefined,
              roles: undefined,
              azp: undefined,
            }),
          ),
      },
      "a token for another API of the tenant": {
        reason: "audience",
        token: (c) =>
          sign(
            c,
            edit(entraV2(c), { aud: "00000003-0000-0000-c000-000000000000", scp: "User.Read" }),
          ),
      },
    },
  },
  {
    name: "Entra ID v1",
    good: entraV1,
    mistakes: {
      "a v2 token where v1 is configured": {
        reason: "issuer",
        token: (c) =>
          sign(
            c,
            edit(entraV1(c), {
              iss: `https://login.microsoftonline.com/${TENANT}/v2.0`,
              aud: API_APP_ID,
              ver: "2.0",
            }),
          ),
      },
    },
  },
  {
    name: "Authentik",
    good: authentik,
    mistakes: {
      "no signing key selected: HS256 with the client secret": {
        reason: "alg",
        token: (c) =>
          hmacJws({
            header: { alg: "HS256", typ: "JWT" },
            payload: authentik(c).payload,
            secret: new TextEncoder().encode("the client secret"),
          }),
      },
    },
  },
  {
    name: "Google",
    goodOpaque: googleTokeninfo,
    mistakes: {
      "`INTROSPECTION_FORMAT` left unset: the opaque token is not a JWT": {
        reason: "malformed",
        env: { INTROSPECTION_FORMAT: undefined, INTROSPECTION_URL: undefined },
        token: (c) => Promise.resolve(c.tokeninfo.issue(googleTokeninfo(c))),
      },
      // Signed by the issuer's own key with the client ID as `aud`: the key-set path would
      // accept it; every token goes to tokeninfo, which does not know it as an access token.
      "the ID token sent instead of the access token": {
        reason: "inactive",
        token: (c) => sign(c, googleIdToken(c)),
      },
      "an access token Google issued to another OAuth client": {
        reason: "audience",
        token: (c) =>
          Promise.resolve(
            c.tokeninfo.issue(
              googleTokeninfo(c, {
                aud: "987654321-xyz.apps.googleusercontent.com",
                azp: "987654321-xyz.apps.googleusercontent.com",
              }),
            ),
          ),
      },
      "an expired or revoked access token": {
        reason: "inactive",
        // Google forgets it: tokeninfo answers 400 for it, as for any token it does not know.
        token: () => Promise.resolve(googleAccessToken()),
      },
      "a user not on the `REQUIRED_CLAIMS` email allow-list": {
        reason: "claim",
        token: (c) =>
          Promise.resolve(c.tokeninfo.issue(googleTokeninfo(c, { email: "mallory@example.com" }))),
      },
    },
  },
];

// --- reading the guide -----------------------------------------------------------------------

/** The body rows of the Markdown table after `<!-- matrix: NAME -->`, cells trimmed. */
function guideTable(name: string): string[][] {
  const start = GUIDE.indexOf(`<!-- matrix: ${name} -->`);
  assert.ok(start >= 0, `docs/identity-providers.md has no "matrix: ${name}" marker`);
  const lines = GUIDE.slice(start).split("\n").slice(1).map((l) => l.trim());
  const first = lines.findIndex((l) => l.startsWith("|"));
  const rows: string[][] = [];
  for (const line of lines.slice(first)) {
    if (!line.startsWith("|")) break;
    rows.push(
      line.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim().replaceAll("\\|", "|")),
    );
  }
  return rows.slice(2); // header and separator
}

/** The `KEY=VALUE` lines of the sh block after `<!-- matrix: NAME -->`, placeholders filled. */
function guideEnv(name: string): Record<string, string> {
  const start = GUIDE.indexOf(`<!-- matrix: ${name} -->`);
  assert.ok(start >= 0, `docs/identity-providers.md has no "matrix: ${name}" marker`);
  const block = /```sh\n([\s\S]*?)```/.exec(GUIDE.slice(start));
  assert.ok(block, `no sh block after "matrix: ${name}"`);
  const env: Record<string, string> = {};
  for (const raw of block[1].split("\n")) {
    const line = raw.replace(/\s+#.*$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    let value = line.slice(eq + 1);
    for (const [ph, v] of Object.entries(PLACEHOLDERS)) value = value.replaceAll(ph, v);
    assert.ok(!/<[^>]+>/.test(value), `unfilled placeholder in ${line}`);
    env[line.slice(0, eq)] = value;
  }
  return env;
}

/** A claim-shape `iss` cell as a regular expression: `<...>` is one path segment or label. */
function issuerPattern(cell: string): RegExp {
  const text = /^`([^`]+)`$/.exec(cell)?.[1];
  assert.ok(text, `iss cell ${cell} is not one code span`);
  const parts = text.split(/<[^>]+>/).map((p) => p.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"));
  return new RegExp(`^${parts.join("[^/]+")}$`);
}

/** `` `name` (kind) `` pairs of a scopes or roles cell; "none" is no pair. */
function claimKinds(cell: string): [string, "string" | "array"][] {
  if (cell === "none") return [];
  const pairs = [...cell.matchAll(/`([^`]+)` \((string|array)\)/g)].map((m) =>
    [m[1], m[2]] as [string, "string" | "array"]
  );
  assert.ok(pairs.length > 0, `cell ${cell} names no claim`);
  return pairs;
}

const SHAPES = new Map(guideTable("claim shapes").map((r) => [r[0], r]));
const MISTAKES = guideTable("mistakes");

Deno.test("docs/identity-providers.md and the matrix name the same providers and mistakes", () => {
  const names = PROVIDERS.map((p) => p.name);
  assert.deepEqual([...SHAPES.keys()], names);
  for (const name of names) guideEnv(name);
  const inGuide = MISTAKES.map(([provider, mistake, reason]) =>
    `${provider} | ${mistake} | ${reason}`
  );
  const inTests = PROVIDERS.flatMap((p) =>
    Object.entries(p.mistakes).map(([m, { reason }]) => `${p.name} | ${m} | \`${reason}\``)
  );
  assert.deepEqual(inGuide, inTests);
});

// --- the matrix ------------------------------------------------------------------------------

async function call(gate: TestGate, token: string): Promise<number> {
  const res = await fetch(`${gate.origin}/mcp`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  });
  await drain(res);
  return res.status;
}

/**
 * Checks the guide's claim-shape row against the token minted for the provider: a JWT's claims,
 * or an opaque token's endpoint answer (and that the token is not JWS-shaped).
 */
function checkShapeRow(p: Provider, good: Shape | undefined, c: Ctx, docIssuer: string): void {
  const [, issCell, audCell, scopesCell, rolesCell, typCell] = SHAPES.get(p.name)!;
  assert.match(docIssuer, issuerPattern(issCell), `${p.name}: the guide's issuer vs its table`);
  const claims = good?.payload ?? p.goodOpaque!(c);
  const aud = claims.aud;
  const kind = Array.isArray(aud) ? "array" : "string";
  assert.match(audCell, good ? new RegExp(`^${kind}:`) : new RegExp(`^opaque; \\S+ is a ${kind}:`));
  if (!good) {
    assert.notEqual(googleAccessToken().split(".").length, 3, `${p.name}: the token is opaque`);
  }
  for (const [name, kind] of [...claimKinds(scopesCell), ...claimKinds(rolesCell)]) {
    const v = claimAt(claims, claimRef(name));
    assert.ok(kind === "array" ? Array.isArray(v) : typeof v === "string", `${p.name}: ${name}`);
  }
  const typ = good?.header.typ;
  assert.equal(typCell, typ === undefined ? "none" : `\`${typ}\``, `${p.name}: header typ`);
}

/** The guide's configuration with `changes` (undefined removes a variable). */
function withChanges(
  env: Record<string, string>,
  changes: Record<string, string | undefined>,
): Record<string, string> {
  const out = { ...env };
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

Deno.test("each provider's access token passes the gate the guide configures; each usual mistake fails with the reason the guide names", async (t) => {
  await using upstream = await startUpstream();
  for (const p of PROVIDERS) {
    await t.step(p.name, async () => {
      const docEnv = guideEnv(p.name);
      const docIssuer = docEnv.AUTHORIZATION_SERVER;
      // The local issuer has the provider's path shape, trailing slash included.
      const path = docIssuer.slice(new URL(docIssuer).origin.length);
      await using as = await startTestIssuer({ path });
      assert.equal(as.issuer, as.origin + path);
      await using tokeninfo = startTokeninfo();
      // Local stand-ins for the provider's URLs; everything else as the guide writes it.
      const env = {
        ...docEnv,
        AUTHORIZATION_SERVER: as.issuer,
        UPSTREAM_URL: upstream.url,
        ...(docEnv.INTROSPECTION_FORMAT === "google_tokeninfo" &&
          { INTROSPECTION_URL: tokeninfo.url }),
      };
      const gates = new Map<string, TestGate>();
      const gateFor = async (changes: Record<string, string | undefined> = {}) => {
        const key = JSON.stringify(Object.entries(changes)); // keeps the removals (undefined)
        let gate = gates.get(key);
        if (!gate) {
          gate = await startGate(withChanges(env, changes));
          gates.set(key, gate);
          await ready(gate);
        }
        return gate;
      };
      const calls = new Map<TestGate, number>();
      const outcome = async (gate: TestGate, token: string) => {
        const status = await call(gate, token);
        const n = (calls.get(gate) ?? 0) + 1;
        calls.set(gate, n);
        return { status, reason: (await gate.requestLogs(n))[n - 1].reason };
      };
      try {
        const c: Ctx = {
          as,
          iss: as.issuer,
          key: as.current,
          nowS: Math.floor(Date.now() / 1000),
          tokeninfo,
        };
        const good = p.good?.(c);
        checkShapeRow(p, good, c, docIssuer);
        const gate = await gateFor();
        const token = good ? await sign(c, good) : tokeninfo.issue(p.goodOpaque!(c));
        const passed = await outcome(gate, token);
        assert.equal(passed.status, 200, `${p.name}: the access token (${passed.reason})`);
        for (const [mistake, { reason, token, env: changes }] of Object.entries(p.mistakes)) {
          assert.deepEqual(
            await outcome(await gateFor(changes), await token(c)),
            { status: reason === "claim" ? 403 : 401, reason },
            `${p.name}: ${mistake}`,
          );
        }
        // The opaque tokens never reach a URL (the form body only) or a log line.
        for (const sent of tokeninfo.tokens) {
          assert.ok(!tokeninfo.urls.some((u) => u.includes(sent)), `${p.name}: a URL has a token`);
          for (const g of gates.values()) {
            assert.ok(!g.logText().includes(sent), `${p.name}: a log line has a token`);
          }
        }
      } finally {
        for (const g of gates.values()) await g[Symbol.asyncDispose]();
      }
    });
  }
});
