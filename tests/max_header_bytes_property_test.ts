/**
 * MAX_HEADER_BYTES against the head a client really sent (docs/contract.md §1): generated heads
 * (field names, values with and without ", ", empty values, repeated lines) written by a raw-socket
 * client (helpers/raw_http.ts), padded to a chosen wire size. The oracle is the byte count of
 * what went out on the socket, never the gate's code:
 *
 * - a head over the limit on the wire gets 431, however Headers joins its repeated lines: the
 *   gate's measure is never below the wire size;
 * - a head under the limit by the documented over-estimate (name + 2 bytes per ", " inside a
 *   value, and per "; " inside a cookie) is not refused for its size.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { gateEnv, ready, RESOURCE } from "./helpers/rig.ts";
import { startGate } from "./helpers/gate.ts";
import { startTestIssuer } from "./helpers/issuer.ts";
import { startUpstream } from "./helpers/upstream.ts";
import { rawHead, rawRequest, type RawRequestInit } from "./helpers/raw_http.ts";

const LIMIT = 4096;

const tchar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&'*+.^`|~");
/** Names the gate reads nothing from before the size check; `x-g-` keeps them off `x-pad`. */
const name = fc.oneof(
  fc.string({ unit: tchar, minLength: 1, maxLength: 24 }).map((s) => `x-g-${s}`),
  fc.constantFrom("accept", "cookie", "accept-language", "cache-control"),
);
/**
 * Values as a client writes them: visible ASCII, inner spaces, none outside (the parser strips
 * optional whitespace around a value, which the gate cannot see: docs/contract.md §1); some empty.
 */
const value = fc.oneof(
  fc.string({ unit: fc.constantFrom(...'abz09,; =/:"()'), maxLength: 40 }).map((v) => v.trim()),
  fc.constant(""),
  // Lists as clients write them, empty elements included (RFC 9110 §5.6.1); the separator in a
  // value counts like a line boundary (the over-estimate below).
  fc.array(fc.constantFrom("a", "text/html", "", "q=0.5"), { maxLength: 4 }).map((l) =>
    l.join(", ").trim()
  ),
  fc.array(fc.constantFrom("a=1", "sid=x", ""), { maxLength: 4 }).map((l) => l.join("; ").trim()),
);
/** Field lines with repetition: some lines sent again, some names again with other values. */
const fieldLines = fc.array(fc.tuple(name, value), { minLength: 0, maxLength: 30 }).chain((ls) =>
  fc.array(fc.tuple(fc.nat(Math.max(0, ls.length - 1)), fc.option(value)), {
    maxLength: ls.length > 0 ? 30 : 0,
  }).map((again) => [...ls, ...again.map(([i, v]): [string, string] => [ls[i][0], v ?? ls[i][1]])])
);

/** The over-estimate the contract allows: name + 2 bytes per ", " ("; " in a cookie) sent. */
function allowance(lines: [string, string][]): number {
  return lines.reduce((n, [k, v]) => {
    const seps = v.split(", ").length - 1 + (k === "cookie" ? v.split("; ").length - 1 : 0);
    return n + seps * (k.length + 2);
  }, 0);
}

/** `init` with an `x-pad` line at the end making its head exactly `size` bytes, or undefined. */
function padTo(port: number, init: RawRequestInit, size: number): RawRequestInit | undefined {
  const base = rawHead(port, init).length;
  const padLine = "x-pad: \r\n".length;
  if (base + padLine > size) return undefined;
  const padded = {
    ...init,
    headers: [...init.headers!, ["x-pad", "p".repeat(size - base - padLine)]],
  };
  assert.equal(rawHead(port, padded as RawRequestInit).length, size);
  return padded as RawRequestInit;
}

Deno.test("MAX_HEADER_BYTES: a generated head over the limit on the wire gets 431; one under it by the documented margin does not", async () => {
  await using issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  await using upstream = await startUpstream();
  await using gate = await startGate(
    gateEnv(issuer, upstream, { MAX_HEADER_BYTES: String(LIMIT) }),
  );
  await ready(gate);
  let over = 0;
  let under = 0;
  await fc.assert(
    fc.asyncProperty(fieldLines, fc.nat(64), async (lines, extra) => {
      // No token: the size check comes first (docs/contract.md §3), then 401.
      const init: RawRequestInit = { method: "POST", path: "/mcp", headers: lines };
      const big = padTo(gate.port, init, LIMIT + 1 + extra);
      if (big !== undefined) {
        const res = await rawRequest(gate.port, big);
        assert.equal(res.status, 431, `a ${LIMIT + 1 + extra}-byte head: ${JSON.stringify(lines)}`);
        over++;
      }
      const small = padTo(gate.port, init, LIMIT - allowance(lines) - extra);
      if (small !== undefined) {
        const res = await rawRequest(gate.port, small);
        assert.notEqual(
          res.status,
          431,
          `a head ${allowance(lines) + extra} bytes under: ${JSON.stringify(lines)}`,
        );
        // 401 (no token), or 400 when Headers' join of the lines is no valid field value ("a, "
        // from "a" and an empty line): refused for another rule, never for its size.
        assert.ok(res.status === 401 || res.status === 400, String(res.status));
        under++;
      }
    }),
    { numRuns: 120 },
  );
  assert.ok(over > 60 && under > 60, `checked ${over} heads over, ${under} under the limit`);
  assert.equal(upstream.requests.length, 0);
});
