import assert from "node:assert/strict";
import fc from "fast-check";
import type { Cidr } from "../config/mod.ts";
import { createClientIpResolver, formatIp, resolveClientIp } from "./client_ip.ts";
import { cidrContains, parseCidr, parseIp } from "../net/mod.ts";

function cidrs(...texts: string[]): Cidr[] {
  return texts.map((t) => {
    const c = parseCidr(t);
    assert.ok(c, `test CIDR ${t}`);
    return c;
  });
}

const TRUSTED = cidrs("10.0.0.0/8", "fd00::/8", "192.168.1.1");

Deno.test("resolveClientIp() ignores X-Forwarded-For from an untrusted peer", async (t) => {
  const cases: [string, string, string | null, readonly Cidr[], string][] = [
    ["no trusted proxies", "203.0.113.7", "198.51.100.1", [], "203.0.113.7"],
    ["peer outside every range", "203.0.113.7", "198.51.100.1", TRUSTED, "203.0.113.7"],
    [
      "spoofed chain of trusted-looking hops",
      "203.0.113.7",
      "10.0.0.1, 10.0.0.2",
      TRUSTED,
      "203.0.113.7",
    ],
    ["no header", "203.0.113.7", null, TRUSTED, "203.0.113.7"],
    ["IPv6 peer", "2001:db8::1", "198.51.100.1", TRUSTED, "2001:db8::1"],
    ["IPv4-mapped peer", "::ffff:203.0.113.7", "198.51.100.1", TRUSTED, "203.0.113.7"],
    ["not an address", "unknown", "198.51.100.1", TRUSTED, "unknown"],
  ];
  for (const [name, peer, xff, trusted, want] of cases) {
    await t.step(name, () => {
      assert.deepEqual(resolveClientIp(peer, xff, trusted), {
        clientIp: want,
        forwardedFor: want,
        trustedPeer: false,
      });
    });
  }
});

Deno.test("resolveClientIp() walks X-Forwarded-For from a trusted peer right to left", async (t) => {
  const cases: [string, string, string | null, string, string][] = [
    // [name, peer, X-Forwarded-For, clientIp, forwardedFor]
    ["one proxy", "10.0.0.5", "198.51.100.1", "198.51.100.1", "198.51.100.1, 10.0.0.5"],
    [
      "client-forged entries left of the real client are ignored",
      "10.0.0.5",
      "1.1.1.1, 198.51.100.1",
      "198.51.100.1",
      "1.1.1.1, 198.51.100.1, 10.0.0.5",
    ],
    [
      "trusted hops are skipped",
      "10.0.0.5",
      "198.51.100.1, 192.168.1.1, 10.9.9.9",
      "198.51.100.1",
      "198.51.100.1, 192.168.1.1, 10.9.9.9, 10.0.0.5",
    ],
    [
      "every hop trusted: the leftmost",
      "10.0.0.5",
      "10.1.1.1, 10.2.2.2",
      "10.1.1.1",
      "10.1.1.1, 10.2.2.2, 10.0.0.5",
    ],
    ["no header: the peer", "10.0.0.5", null, "10.0.0.5", "10.0.0.5"],
    ["empty header: the peer", "10.0.0.5", "  ", "10.0.0.5", "10.0.0.5"],
    ["IPv6 proxy and client", "fd00::5", "2001:db8::7", "2001:db8::7", "2001:db8::7, fd00::5"],
    [
      "IPv4-mapped trusted peer",
      "::ffff:10.0.0.5",
      "198.51.100.1",
      "198.51.100.1",
      "198.51.100.1, 10.0.0.5",
    ],
    [
      "IPv4-mapped entry",
      "10.0.0.5",
      "::ffff:198.51.100.1",
      "198.51.100.1",
      "::ffff:198.51.100.1, 10.0.0.5",
    ],
    [
      "IPv4 entry with a port",
      "10.0.0.5",
      "198.51.100.1:5555",
      "198.51.100.1",
      "198.51.100.1:5555, 10.0.0.5",
    ],
    [
      "bracketed IPv6 entry with a port",
      "10.0.0.5",
      "[2001:DB8::7]:443",
      "2001:db8::7",
      "[2001:DB8::7]:443, 10.0.0.5",
    ],
    ["bracketed IPv6 entry", "10.0.0.5", "[2001:db8::7]", "2001:db8::7", "[2001:db8::7], 10.0.0.5"],
    [
      "no spaces after commas",
      "10.0.0.5",
      "1.1.1.1,198.51.100.1",
      "198.51.100.1",
      "1.1.1.1,198.51.100.1, 10.0.0.5",
    ],
  ];
  for (const [name, peer, xff, clientIp, forwardedFor] of cases) {
    await t.step(name, () => {
      assert.deepEqual(resolveClientIp(peer, xff, TRUSTED), {
        clientIp,
        forwardedFor,
        trustedPeer: true,
      });
    });
  }
});

Deno.test("resolveClientIp() stops at a malformed entry and keeps the hop right of it", async (t) => {
  const cases: [string, string, string][] = [
    ["garbage right of a trusted hop", "198.51.100.1, garbage, 10.1.1.1", "10.1.1.1"],
    ["garbage as the only entry", "garbage", "10.0.0.5"],
    ["empty entry", "198.51.100.1, , 10.1.1.1", "10.1.1.1"],
    ["trailing comma", "198.51.100.1,", "10.0.0.5"],
    ["zone id", "fe80::1%eth0", "10.0.0.5"],
    ["hostname", "client.example.com", "10.0.0.5"],
    ["octal-looking IPv4", "010.0.0.1", "10.0.0.5"],
    ["unclosed bracket", "[2001:db8::1", "10.0.0.5"],
    ["bad port", "198.51.100.1:http", "10.0.0.5"],
    ["IPv6 with a bare port", "2001:db8::1:443:1:1:1:1", "10.0.0.5"],
  ];
  for (const [name, xff, clientIp] of cases) {
    await t.step(name, () => {
      assert.deepEqual(resolveClientIp("10.0.0.5", xff, TRUSTED), {
        clientIp,
        forwardedFor: `${xff}, 10.0.0.5`,
        trustedPeer: true,
      });
    });
  }
});

Deno.test("resolveClientIp() never returns an X-Forwarded-For value for an untrusted peer", () => {
  const ipv4 = fc.tuple(
    fc.integer({ min: 0, max: 255 }),
    fc.integer({ min: 0, max: 255 }),
    fc.integer({ min: 0, max: 255 }),
    fc.integer({ min: 0, max: 255 }),
  ).map((o) => o.join("."));
  const peer = fc.oneof(ipv4, fc.ipV6(), fc.string());
  const xff = fc.oneof(
    fc.constant(null),
    fc.string(),
    fc.array(fc.oneof(ipv4, fc.ipV6(), fc.string()), { maxLength: 5 }).map((a) => a.join(", ")),
  );
  fc.assert(
    fc.property(peer, xff, (peer, xff) => {
      const ip = parseIp(peer);
      if (ip !== undefined && TRUSTED.some((c) => cidrContains(c, ip))) {
        return; // trusted peer: not this property
      }
      const got = resolveClientIp(peer, xff, TRUSTED);
      const expected = ip === undefined ? peer : resolveClientIp(peer, null, []).clientIp;
      assert.deepEqual(got, { clientIp: expected, forwardedFor: expected, trustedPeer: false });
    }),
    { numRuns: 2000 },
  );
});

Deno.test("resolveClientIp() returns the peer or an address from the chain, always an IP", () => {
  const addr = fc.oneof(
    fc.constantFrom("10.1.2.3", "10.0.0.9", "fd00::1", "192.168.1.1"),
    fc.constantFrom("198.51.100.1", "2001:db8::1", "203.0.113.9"),
  );
  const entry = fc.oneof(addr, addr, fc.string({ maxLength: 8 }));
  fc.assert(
    fc.property(
      fc.constantFrom("10.0.0.5", "fd00::5", "192.168.1.1"),
      fc.array(entry, { minLength: 1, maxLength: 6 }),
      (peer, entries) => {
        const xff = entries.join(", ");
        const { clientIp, forwardedFor } = resolveClientIp(peer, xff, TRUSTED);
        assert.ok(parseIp(clientIp), clientIp);
        assert.ok(clientIp === peer || entries.some((e) => e.trim() === clientIp), clientIp);
        assert.equal(forwardedFor, xff.trim() === "" ? peer : `${xff.trim()}, ${peer}`);
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("createClientIpResolver() answers as resolveClientIp() does, with or without trusted proxies", async (t) => {
  const peers = ["203.0.113.7", "::ffff:203.0.113.7", "2001:DB8:0:0::1", "10.0.0.5", "unknown", ""];
  const chains = [null, "198.51.100.1", "1.1.1.1, 198.51.100.1, 10.9.9.9", "garbage"];
  for (const trusted of [[], TRUSTED]) {
    await t.step(trusted.length ? "trusted proxies" : "no trusted proxies", () => {
      const resolve = createClientIpResolver(trusted);
      // Twice over, so remembered answers are compared too.
      for (let round = 0; round < 2; round++) {
        for (const peer of peers) {
          for (const xff of chains) {
            assert.deepEqual(resolve(peer, xff), resolveClientIp(peer, xff, trusted));
          }
        }
      }
    });
  }
});

Deno.test("createClientIpResolver() without trusted proxies ignores X-Forwarded-For even when remembered", () => {
  const resolve = createClientIpResolver([]);
  assert.equal(resolve("203.0.113.7", null).clientIp, "203.0.113.7");
  assert.deepEqual(resolve("203.0.113.7", "198.51.100.1"), {
    clientIp: "203.0.113.7",
    forwardedFor: "203.0.113.7",
    trustedPeer: false,
  });
});

Deno.test("createClientIpResolver() stays bounded and correct past its memo size", () => {
  const resolve = createClientIpResolver([]);
  for (let i = 0; i < 3000; i++) {
    const peer = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    assert.equal(resolve(peer, null).clientIp, peer);
  }
  assert.equal(resolve("::ffff:10.0.0.1", null).clientIp, "10.0.0.1");
});

Deno.test("formatIp() writes IPv6 in RFC 5952 form", async (t) => {
  const cases: [string, string][] = [
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["1:0:0:0:0:0:0:0", "1::"],
    ["2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["10.0.0.1", "10.0.0.1"],
  ];
  for (const [input, want] of cases) {
    await t.step(input, () => assert.equal(formatIp(parseIp(input)!), want));
  }
});
