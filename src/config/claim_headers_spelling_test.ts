/**
 * CLAIM_HEADERS names that reach a CGI-style upstream as one variable.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../errors.ts";
import { TEST_ENV } from "../../tests/helpers/config.ts";
import { parseConfig } from "./mod.ts";

Deno.test("CLAIM_HEADERS refuses two headers that differ only by - and _ (one CGI variable)", () => {
  // managed.ts: CGI, WSGI, Rack and PHP map "-" and "_" both to "_", so X-User and X_User reach
  // them as the same HTTP_X_USER. With `sub=X-User,name=X_User` the upstream gets the verified
  // subject and a user-editable display name under one variable, and which one it reads depends
  // on the server: the name can stand in for the identity. Named twice in another spelling is
  // still named twice ("No spelling of a managed header survives", docs/security.md).
  assert.throws(
    () => parseConfig({ ...TEST_ENV, CLAIM_HEADERS: "sub=X-User,name=X_User" }),
    ConfigError,
  );
});
