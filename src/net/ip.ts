/**
 * IP addresses, CIDR blocks and the loopback rule: parsed once (TRUSTED_PROXIES at start-up, a
 * peer address per request) and compared bit by bit. Pure, no DNS, no zone ids. The bottom of the
 * import graph: it imports nothing of the gate.
 */

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address. */
export interface IpAddress {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
}

/** A parsed CIDR block, e.g. 10.0.0.0/8 or fd00::/8. */
export interface Cidr {
  /** 4 or 6. */
  readonly family: 4 | 6;
  /** Network address as bytes (4 or 16), already masked. */
  readonly bytes: Uint8Array;
  readonly prefix: number;
  /** As written, for logs. */
  readonly text: string;
}

/**
 * Whether a URL host names this machine, so plain http to it crosses no network: `localhost`,
 * an address in 127.0.0.0/8 (RFC 1122 §3.2.1.3) or `::1` (RFC 4291 §2.5.3). Takes a WHATWG
 * `URL.hostname` (lower-cased, IPv6 in brackets) or a bare address.
 *
 * Not `*.localhost`: RFC 6761 §6.3 only asks resolvers to answer those with loopback (SHOULD),
 * and the runtime's resolver (getaddrinfo, typically `hosts: files dns`) sends them to DNS, which
 * may answer with any address. Not an IPv4-mapped `::ffff:127.x.y.z` either: no client needs it.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === "localhost") return true;
  const bracketed = host.startsWith("[") && host.endsWith("]");
  const ip = parseIp(bracketed ? host.slice(1, -1) : host);
  if (ip === undefined || (bracketed && ip.family !== 6)) return false;
  return ip.family === 4 ? ip.bytes[0] === 127 : ip.bytes.every((b, i) => b === (i === 15 ? 1 : 0));
}

/**
 * Parses a literal IPv4 (`10.0.0.1`) or IPv6 (`fd00::1`, `::ffff:10.0.0.1`) address.
 * No brackets, ports or zone ids; IPv4 octets with leading zeros are refused because some parsers
 * read them as octal.
 * @returns the address, or undefined when `text` is not exactly one address.
 */
export function parseIp(text: string): IpAddress | undefined {
  if (text.includes(":")) {
    const bytes = parseIpv6(text);
    return bytes && { family: 6, bytes };
  }
  const bytes = parseIpv4(text);
  return bytes && { family: 4, bytes };
}

/**
 * Parses `addr/prefix`, or a bare address meaning /32 or /128. Host bits are masked off, so
 * `10.1.2.3/8` is the block `10.0.0.0/8`. A /0 prefix parses; the caller decides whether to allow it.
 * @returns the block, or undefined when `text` is not one.
 */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return undefined;
  const max = ip.bytes.length * 8;
  let prefix = max;
  if (slash >= 0) {
    const digits = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(digits)) return undefined;
    prefix = Number(digits);
    if (prefix > max) return undefined;
  }
  const bytes = ip.bytes.slice();
  for (let bit = prefix; bit < max; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7));
  return { family: ip.family, bytes, prefix, text };
}

/**
 * Whether `ip` lies in `cidr`. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
 * listener reports for an IPv4 peer) is matched as the IPv4 address it carries.
 */
export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  const bytes = cidr.family === 4 && ip.family === 6 ? ipv4Mapped(ip.bytes) : ip.bytes;
  if (!bytes || bytes.length !== cidr.bytes.length) return false;
  const whole = cidr.prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== cidr.bytes[i]) return false;
  const rest = cidr.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole] & mask) === cidr.bytes[whole];
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2), else undefined. */
export function ipv4Mapped(bytes: Uint8Array): Uint8Array | undefined {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return undefined;
  return bytes[10] === 0xff && bytes[11] === 0xff ? bytes.subarray(12) : undefined;
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^(0|[1-9]\d{0,2})$/.test(parts[i])) return undefined;
    const n = Number(parts[i]);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

/** RFC 4291 §2.2 text forms: eight groups, one `::`, optionally a dotted IPv4 tail. */
function parseIpv6(text: string): Uint8Array | undefined {
  let head = text;
  let tail: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".", lastColon)) {
    tail = parseIpv4(text.slice(lastColon + 1));
    if (!tail) return undefined;
    // Keep a "::" that ends right before the IPv4 part; drop a single separating ":".
    head = text.endsWith("::", lastColon + 1)
      ? text.slice(0, lastColon + 1)
      : text.slice(0, lastColon);
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  if (!left || !right) return undefined;
  const tailGroups = tail ? 2 : 0;
  const count = left.length + right.length + tailGroups;
  if (halves.length === 2 ? count > 7 : count !== 8) return undefined;
  const out = new Uint8Array(16);
  left.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  const rightStart = 8 - tailGroups - right.length;
  right.forEach((g, i) => {
    out[2 * (rightStart + i)] = g >> 8;
    out[2 * (rightStart + i) + 1] = g & 0xff;
  });
  if (tail) out.set(tail, 12);
  return out;
}

function groups(text: string): number[] | undefined {
  if (text === "") return [];
  const out: number[] = [];
  for (const part of text.split(":")) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return undefined;
    out.push(parseInt(part, 16));
  }
  return out;
}
