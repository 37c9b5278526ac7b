/**
 * INTROSPECTION_FORMAT=google_tokeninfo (docs/identity-providers.md "Google"): the introspector
 * against a fake endpoint on a real socket that answers as Google's tokeninfo does (string `exp`
 * and `email_verified`, no `active`, no `iss`; HTTP 400 `invalid_token` for a token it does not
 * know), checked by the same cache, caps and policy as RFC 7662.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { type Config, parseConfig } from "../config/mod.ts";
import { GateError } from "../errors.ts";
import { createLogger, createMemorySink } from "../ops/mod.ts";
import { createIntrospector, googleTokeninfoDialect } from "./introspect.ts";
import { TEST_ENV } from "../../tests/helpers/config.ts";

const CLIENT = "1234567890-abc.apps.googleusercontent.com";

/** What the fake tokeninfo saw of one call. */
interface Seen {
  method: string;
  url: string;
  authorization: string | null;
  contentType: string | null;
  body: string;
}

/** Google's tokeninfo answer for a good access token, `exp` and the rest as strings. */
function tokeninfo(nowS: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const body: Record<string, unknown> = {
    azp: CLIENT,
    aud: CLIENT,
    sub: "110169484474386276334",
    scope: "https://www.googleapis.com/auth/userinfo.email openid",
    exp: String(nowS + 3599),
    expires_in: "3599",
    email: "alice@example.com",
    email_verified: "true",
    access_type: "online",
    ...extra,
  };
  for (const [k, v] of Object.entries(body)) if (v === undefined) delete body[k];
  return body;
}

/** A fake tokeninfo: `answers` maps a token to its 200 body; others get Google's 400. */
function startTokeninfo(answer: (token: string | null) => Response | undefined) {
  const calls: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = await req.text();
    calls.push({
      method: req.method,
      url: req.url,
      authorization: req.headers.get("authorization"),
      contentType: req.headers.get("content-type"),
      body,
    });
    const token = new URLSearchParams(body).get("access_token");
    return answer(token) ??
      Response.json({ error: "invalid_token", error_description: "Invalid Value" }, {
        status: 400,
      });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/tokeninfo`,
    calls,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** The Config of the guide's Google block, pointed at `url`. */
function googleConfig(url: string, env: Record<string, string> = {}): Config {
  return parseConfig({
    ...TEST_ENV,
    AUTHORIZATION_SERVER: "https://accounts.google.com",
    INTROSPECTION_FORMAT: "google_tokeninfo",
    INTROSPECTION_URL: url,
    INTROSPECTION_TIMEOUT: "2s",
    EXPECTED_AUDIENCE: CLIENT,
    ...env,
  });
}

function introspectorFor(config: Config) {
  const sink = createMemorySink();
  const introspector = createIntrospector(config, {
    log: createLogger({ level: "debug", sink }),
    issuer: () => "https://accounts.google.com",
  });
  return { introspector, sink };
}

async function refusal(p: Promise<unknown>): Promise<GateError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof GateError, String(e));
    return e;
  }
  assert.fail("expected a refusal");
}

const token = () => `ya29.a0AfB_${crypto.randomUUID().replaceAll("-", "")}`;

Deno.test("google_tokeninfo: a good token passes; the token goes in a POST form field only, never a URL or a log line", async () => {
  const good = token();
  const nowS = Math.floor(Date.now() / 1000);
  await using endpoint = startTokeninfo((t) =>
    t === good ? Response.json(tokeninfo(nowS)) : undefined
  );
  const config = googleConfig(endpoint.url, {
    REQUIRED_CLAIMS: `azp=${CLIENT},email_verified=true,email=bob@example.com|alice@example.com`,
  });
  const { introspector, sink } = introspectorFor(config);
  await using _ = introspector;
  const result = await introspector.verify(good);
  assert.equal(result.sub, "110169484474386276334");
  // exp, a decimal string on the wire, is the number of seconds; the token lives until it.
  assert.equal(result.expMs, (nowS + 3599) * 1000);
  assert.equal(result.claims.exp, nowS + 3599);
  assert.equal(result.claims.email_verified, "true", "as Google sends it");
  assert.equal(result.claims.active, true);
  // Cached: the second use makes no call.
  await introspector.verify(good);
  assert.equal(endpoint.calls.length, 1);
  // A refused token too: neither its call nor the log holds it.
  const bad = token();
  assert.equal((await refusal(introspector.verify(bad))).reason, "inactive");
  assert.equal(endpoint.calls.length, 2);
  for (const [i, t] of [good, bad].entries()) {
    const seen = endpoint.calls[i];
    assert.equal(seen.method, "POST");
    assert.equal(seen.url, endpoint.url, "no query string");
    assert.ok(!seen.url.includes(t));
    assert.equal(seen.contentType, "application/x-www-form-urlencoded");
    assert.equal(seen.authorization, null, "tokeninfo takes no client authentication");
    assert.equal(seen.body, new URLSearchParams({ access_token: t }).toString());
  }
  for (const t of [good, bad]) assert.ok(!sink.text().includes(t), "a log line holds the token");
});

Deno.test("google_tokeninfo: each answer is judged by the rule the guide names", async (t) => {
  const nowS = Math.floor(Date.now() / 1000);
  const cases: [string, Record<string, unknown>, string][] = [
    ["exp not a decimal string", { exp: "soon" }, "malformed"],
    ["exp a number (Google writes a string)", { exp: nowS + 60 }, "malformed"],
    ["exp with an exponent", { exp: "1.7e9" }, "malformed"],
    ["exp in the past", { exp: String(nowS - 3600) }, "expired"],
    ["a token for another client id", { aud: "999-other.apps.googleusercontent.com" }, "audience"],
    ["no aud", { aud: undefined }, "audience"],
    ["no sub (no openid scope)", { sub: undefined }, "sub"],
    ["another authorized party than REQUIRED_CLAIMS names", { azp: "999-other" }, "claim"],
    ["email not verified", { email_verified: "false" }, "claim"],
    ["a user not on the email allow-list", { email: "mallory@example.com" }, "claim"],
    ["an email that only contains an allowed one", { email: "alice@example.com.evil" }, "claim"],
  ];
  for (const [name, extra, reason] of cases) {
    await t.step(name, async () => {
      const tok = token();
      await using endpoint = startTokeninfo((s) =>
        s === tok ? Response.json(tokeninfo(nowS, extra)) : undefined
      );
      const { introspector, sink } = introspectorFor(
        googleConfig(endpoint.url, {
          REQUIRED_CLAIMS: `azp=${CLIENT},email_verified=true,email=alice@example.com`,
        }),
      );
      await using _ = introspector;
      const err = await refusal(introspector.verify(tok));
      assert.equal(err.reason, reason, err.detail);
      assert.equal(err.code, reason === "claim" ? "insufficient_scope" : "invalid_token");
      // A refusal of one answer is not the endpoint failing.
      assert.equal(introspector.status().state, "ok");
      assert.ok(!sink.text().includes(tok));
    });
  }
});

Deno.test("google_tokeninfo: a 400 refuses that token only; a 500 is 503 for new tokens, cached answers keep passing", async () => {
  const good = token();
  const nowS = Math.floor(Date.now() / 1000);
  let down = false;
  await using endpoint = startTokeninfo((t) => {
    if (down) return new Response("backend error", { status: 500 });
    return t === good ? Response.json(tokeninfo(nowS)) : undefined;
  });
  const { introspector, sink } = introspectorFor(googleConfig(endpoint.url));
  await using _ = introspector;
  const bad = await refusal(introspector.verify(token()));
  assert.deepEqual([bad.code, bad.reason], ["invalid_token", "inactive"]);
  assert.notEqual(introspector.status().state, "failing");
  await introspector.verify(good);
  down = true;
  const fresh = token();
  const err = await refusal(introspector.verify(fresh));
  assert.deepEqual([err.code, err.reason], [
    "introspection_unavailable",
    "introspection_unavailable",
  ]);
  assert.equal(introspector.status().state, "failing");
  assert.equal((await introspector.verify(good)).sub, "110169484474386276334");
  for (const t of [good, fresh]) assert.ok(!sink.text().includes(t));
});

Deno.test("google_tokeninfo: exp becomes a number exactly when it is a decimal string; active is true; the rest is as sent", () => {
  const value = fc.oneof(
    fc.stringMatching(/^[0-9]{1,15}$/),
    fc.string(),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.constantFrom("true", "false", "True", " 1733400000", "1733400000 ", "0x10", "1e9", ""),
  );
  fc.assert(fc.property(value, value, (exp, verified) => {
    const out = googleTokeninfoDialect.normalise({ exp, email_verified: verified, sub: "a" }, "t");
    assert.equal(out.active, true);
    // Oracle: digits only, parsed digit by digit.
    const digits = typeof exp === "string" && exp.length > 0 && exp.length <= 15 &&
      [...exp].every((c) => c >= "0" && c <= "9");
    if (digits) {
      assert.equal(out.exp, [...exp].reduce((n, c) => n * 10 + (c.charCodeAt(0) - 48), 0));
    } else assert.ok(Number.isNaN(out.exp), `exp ${JSON.stringify(exp)} became ${out.exp}`);
    assert.equal(out.email_verified, verified);
    assert.equal(out.sub, "a");
  }));
  // Absent stays absent (the answer then lives for INTROSPECTION_CACHE_TTL, as in RFC 7662).
  assert.ok(!("exp" in googleTokeninfoDialect.normalise({ sub: "a" }, "t")));
});
