/**
 * Client address resolution: the peer address, believed `X-Forwarded-For` hops and
 * TRUSTED_PROXIES give the client IP for logs and rate limiting, and the chain to forward. Pure.
 */
import type { Cidr } from "../config/mod.ts";
import { cidrContains, type IpAddress, ipv4Mapped, parseIp } from "../net/mod.ts";

/** What {@linkcode resolveClientIp} found. */
export interface ResolvedClient {
  /** The client as far as trusted hops vouch for it; an IP in canonical text form. */
  clientIp: string;
  /** The `X-Forwarded-For` value to send upstream. */
  forwardedFor: string;
  /** Whether the peer is a trusted proxy (so its X-Forwarded-* claims may be believed). */
  trustedPeer: boolean;
}

/**
 * Resolves the client address.
 *
 * - Peer not in `trusted`: the client is the peer and any `X-Forwarded-For` it sent is ignored
 *   entirely (it could be forged); the upstream gets just the peer.
 * - Peer trusted: the chain is walked right to left, skipping trusted hops; the client is the
 *   first untrusted address, or the leftmost when every hop is trusted. An entry that is not an
 *   address (garbage, empty, a zone id) stops the walk and the hop to its right stays the client,
 *   so `clientIp` is always an address someone trusted vouched for. The upstream gets the chain
 *   as received (without surrounding whitespace) plus the peer.
 *
 * Entries may carry a port (`1.2.3.4:80`, `[2001:db8::1]:443`) or brackets. IPv4-mapped IPv6
 * addresses (`::ffff:1.2.3.4`, what a dual-stack listener reports) become dotted IPv4, and IPv6
 * is written in RFC 5952 form, so one client has one key in the rate limiter.
 */
export function resolveClientIp(
  peer: string,
  xForwardedFor: string | null,
  trusted: readonly Cidr[],
): ResolvedClient {
  const peerIp = parseIp(peer);
  if (peerIp === undefined) return { clientIp: peer, forwardedFor: peer, trustedPeer: false };
  const peerAddr = canonical(peerIp);
  const peerText = formatIp(peerAddr);
  const trustedPeer = isTrusted(peerAddr, trusted);
  if (!trustedPeer || xForwardedFor === null || xForwardedFor.trim() === "") {
    return { clientIp: peerText, forwardedFor: peerText, trustedPeer };
  }

  const hops = xForwardedFor.split(",");
  let client = peerText;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = parseHop(hops[i]);
    if (hop === undefined) break;
    client = formatIp(hop);
    if (!isTrusted(hop, trusted)) break;
  }
  // The chain as received, without the whitespace around it: Deno.serve trims HTTP/1.1 field
  // values but not HTTP/2 ones, and a field value cannot start or end with whitespace.
  return {
    clientIp: client,
    forwardedFor: `${xForwardedFor.trim()}, ${peerText}`,
    trustedPeer,
  };
}

/** Most peers remembered by {@linkcode createClientIpResolver}; the memo is emptied when full. */
const PEER_MEMO_SIZE = 1024;

/**
 * {@linkcode resolveClientIp} for a fixed `trusted` list, for the request path. With no trusted
 * proxies the answer depends on the peer alone, so it is remembered per peer text (bounded):
 * parsing and formatting the address once per client instead of once per request. The objects
 * returned are frozen and shared. With trusted proxies every call resolves afresh.
 */
export function createClientIpResolver(
  trusted: readonly Cidr[],
): (peer: string, xForwardedFor: string | null) => ResolvedClient {
  if (trusted.length > 0) return (peer, xff) => resolveClientIp(peer, xff, trusted);
  const memo = new Map<string, ResolvedClient>();
  return (peer) => {
    let r = memo.get(peer);
    if (r === undefined) {
      if (memo.size >= PEER_MEMO_SIZE) memo.clear();
      r = Object.freeze(resolveClientIp(peer, null, trusted));
      memo.set(peer, r);
    }
    return r;
  };
}

function isTrusted(ip: IpAddress, trusted: readonly Cidr[]): boolean {
  for (const cidr of trusted) if (cidrContains(cidr, ip)) return true;
  return false;
}

/** One X-Forwarded-For entry: an address, optionally bracketed (IPv6) and with a port. */
function parseHop(entry: string): IpAddress | undefined {
  let text = entry.trim();
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) return undefined;
    const rest = text.slice(close + 1);
    if (rest !== "" && !/^:\d{1,5}$/.test(rest)) return undefined;
    text = text.slice(1, close);
  } else {
    const port = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(text);
    if (port) text = port[1];
  }
  const ip = parseIp(text);
  return ip && canonical(ip);
}

/** An IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2) as the IPv4 address it carries. */
function canonical(ip: IpAddress): IpAddress {
  const v4 = ip.family === 6 ? ipv4Mapped(ip.bytes) : undefined;
  return v4 === undefined ? ip : { family: 4, bytes: v4.slice() };
}

/** Text form: dotted IPv4, or IPv6 per RFC 5952 §4 (lower case, longest zero run as `::`). */
export function formatIp(ip: IpAddress): string {
  const b = ip.bytes;
  if (ip.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  // RFC 5952 §4.2.2-3: shorten the longest run of two or more zero groups, the first on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}
