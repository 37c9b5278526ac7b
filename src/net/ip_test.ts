import assert from "node:assert/strict";
import fc from "fast-check";
import { cidrContains, isLoopbackHost, parseCidr, parseIp } from "./ip.ts";

Deno.test("parseIp() reads IPv4 and IPv6 literals into bytes", async (t) => {
  const z = (n: number) => new Array(n).fill(0);
  const cases: [string, 4 | 6, number[]][] = [
    ["0.0.0.0", 4, [0, 0, 0, 0]],
    ["10.1.2.3", 4, [10, 1, 2, 3]],
    ["255.255.255.255", 4, [255, 255, 255, 255]],
    ["::", 6, z(16)],
    ["::1", 6, [...z(15), 1]],
    ["1::", 6, [0, 1, ...z(14)]],
    ["fd00::1:2", 6, [0xfd, 0, ...z(10), 0, 1, 0, 2]],
    ["2001:DB8:0:0:0:0:0:1", 6, [0x20, 0x01, 0x0d, 0xb8, ...z(11), 1]],
    ["1:2:3:4:5:6:7:8", 6, [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]],
    ["::ffff:10.0.0.1", 6, [...z(10), 0xff, 0xff, 10, 0, 0, 1]],
    ["::10.0.0.1", 6, [...z(12), 10, 0, 0, 1]],
    ["1:2:3:4:5:6:10.0.0.1", 6, [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 10, 0, 0, 1]],
  ];
  for (const [text, family, bytes] of cases) {
    await t.step(text, () => {
      const ip = parseIp(text);
      assert.equal(ip?.family, family);
      assert.deepEqual([...ip!.bytes], bytes);
    });
  }
});

Deno.test("parseIp() refuses anything that is not exactly one address", async (t) => {
  for (
    const text of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.0.0.1",
      "01.2.3.4",
      "1.2.3.-4",
      " 1.2.3.4",
      "1.2.3.4:80",
      "[::1]",
      "::1%eth0",
      ":::",
      "1:::2",
      "1::2::3",
      ":1",
      "1:",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4::5:6:7:8",
      "12345::",
      "g::",
      "::1.2.3",
      "1:2:3:4:5:6:7:1.2.3.4",
      "localhost",
    ]
  ) {
    await t.step(JSON.stringify(text), () => assert.equal(parseIp(text), undefined));
  }
});

Deno.test("parseCidr() masks host bits and defaults to a single address", () => {
  const block = parseCidr("10.1.2.3/12");
  assert.deepEqual({ ...block, bytes: [...block!.bytes] }, {
    family: 4,
    bytes: [10, 0, 0, 0],
    prefix: 12,
    text: "10.1.2.3/12",
  });
  assert.equal(parseCidr("10.1.2.3")?.prefix, 32);
  assert.equal(parseCidr("fd00::1")?.prefix, 128);
  assert.equal(parseCidr("0.0.0.0/0")?.prefix, 0);
  for (const bad of ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/08", "x/8", "10.0.0.0/8/8"]) {
    assert.equal(parseCidr(bad), undefined, bad);
  }
});

Deno.test("cidrContains() matches addresses inside the block only", async (t) => {
  const cases: [string, string, boolean][] = [
    ["10.0.0.0/8", "10.255.1.2", true],
    ["10.0.0.0/8", "11.0.0.1", false],
    ["192.168.1.0/25", "192.168.1.127", true],
    ["192.168.1.0/25", "192.168.1.128", false],
    ["192.168.1.1", "192.168.1.1", true],
    ["192.168.1.1", "192.168.1.2", false],
    ["fd00::/8", "fd12::1", true],
    ["fd00::/8", "fe80::1", false],
    ["2001:db8::/33", "2001:db8:7fff::1", true],
    ["2001:db8::/33", "2001:db8:8000::1", false],
    ["10.0.0.0/8", "::ffff:10.1.2.3", true],
    ["10.0.0.0/8", "::ffff:11.1.2.3", false],
    ["10.0.0.0/8", "::10.1.2.3", false],
    ["::/96", "10.1.2.3", false],
    ["0.0.0.0/0", "1.2.3.4", true],
  ];
  for (const [cidr, ip, inside] of cases) {
    await t.step(`${ip} in ${cidr}: ${inside}`, () => {
      assert.equal(cidrContains(parseCidr(cidr)!, parseIp(ip)!), inside);
    });
  }
});

Deno.test("cidrContains() agrees with a bit-by-bit comparison for random IPv4 blocks", () => {
  const octets = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255));
  fc.assert(
    fc.property(octets, octets, fc.integer({ min: 0, max: 32 }), (net, ip, prefix) => {
      const toInt = (o: number[]) => ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
      const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
      const expected = ((toInt(net) & mask) >>> 0) === ((toInt(ip) & mask) >>> 0);
      const block = parseCidr(`${net.join(".")}/${prefix}`)!;
      assert.equal(cidrContains(block, parseIp(ip.join("."))!), expected);
    }),
  );
});

Deno.test("isLoopbackHost() accepts localhost, 127.0.0.0/8 and ::1, as URL hostnames or bare", async (t) => {
  const cases: [string, boolean][] = [
    ["localhost", true],
    ["LOCALHOST", true],
    ["127.0.0.1", true],
    ["127.8.9.10", true],
    ["127.255.255.255", true],
    ["::1", true],
    ["[::1]", true],
    ["[0:0:0:0:0:0:0:1]", true],
    // RFC 6761 §6.3 names: getaddrinfo may send them to DNS, which may answer anything.
    ["app.localhost", false],
    ["a.b.localhost", false],
    ["localhost.", false],
    ["localhost.example.com", false],
    ["127.0.0.1.evil.example", false],
    ["128.0.0.1", false],
    ["126.255.255.255", false],
    ["10.0.0.1", false],
    ["0.0.0.0", false],
    ["::", false],
    ["[::2]", false],
    ["::ffff:127.0.0.1", false],
    ["[::ffff:7f00:1]", false],
    ["127.000.0.1", false],
    ["[127.0.0.1]", false],
    ["", false],
  ];
  for (const [host, want] of cases) {
    await t.step(
      `${JSON.stringify(host)} -> ${want}`,
      () => assert.equal(isLoopbackHost(host), want),
    );
  }
});

Deno.test("isLoopbackHost() agrees with the URL parser's view of http://HOST/ for loopback spellings", async (t) => {
  // What a JWKS_URI or metadata URL hands over: URL.hostname after WHATWG normalisation.
  const cases: [string, boolean][] = [
    ["http://LocalHost:9000/", true],
    ["http://127.1/", true], // WHATWG expands it to 127.0.0.1
    ["http://0x7f000001/", true],
    ["http://[::1]:80/", true],
    ["http://app.localhost/", false],
    ["http://[::ffff:127.0.0.1]/", false],
  ];
  for (const [url, want] of cases) {
    await t.step(url, () => assert.equal(isLoopbackHost(new URL(url).hostname), want));
  }
});
