// IP addresses and CIDR prefixes with Go's net/netip semantics, because Istio writes them into
// rules with netip's String(): a prefix keeps the address as written ("10.0.0.1/8" stays so),
// IPv6 is printed in RFC 5952 form, and an IPv4-mapped address stays IPv6 ("::ffff:1.2.3.4").
// Validation is node:net's (strict dotted decimal, no leading zeros); only the IPv6 text form
// is computed here. ipaddr.js was evaluated and rejected: it reads "::127.0.0.53" as the mapped
// address ::ffff:127.0.0.53, which would put a different address in a DNS rule.

import { isIPv4, isIPv6 } from 'node:net';

export interface IpAddress {
  readonly family: 4 | 6;
  /** 4 bytes or 16 bytes. */
  readonly bytes: readonly number[];
}

export interface IpPrefix {
  readonly address: IpAddress;
  readonly bits: number;
}

export function parseAddress(text: string): IpAddress | undefined {
  if (isIPv4(text)) return { family: 4, bytes: text.split('.').map(Number) };
  if (text.includes('%') || !isIPv6(text)) return undefined;
  return { family: 6, bytes: ipv6Bytes(text) };
}

function ipv6Bytes(text: string): number[] {
  let tail: number[] = [];
  let body = text;
  const lastColon = body.lastIndexOf(':');
  if (body.slice(lastColon + 1).includes('.')) {
    tail = body.slice(lastColon + 1).split('.').map(Number);
    body = body.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = body.includes('::') ? body.split('::') as [string, string] : [body, undefined];
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const front = groups(head);
  const back = rest === undefined ? [] : groups(rest);
  const all = rest === undefined ? front : [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  const bytes = all.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

function isMappedV4(a: IpAddress): boolean {
  return a.family === 6 && a.bytes.slice(0, 10).every((b) => b === 0) && a.bytes[10] === 0xff && a.bytes[11] === 0xff;
}

/** Go's Addr.Unmap: an IPv4-mapped IPv6 address becomes the IPv4 address. */
export function unmap(a: IpAddress): IpAddress {
  return isMappedV4(a) ? { family: 4, bytes: a.bytes.slice(12) } : a;
}

/** Go's netip.Addr.String(). */
export function formatAddress(a: IpAddress): string {
  if (a.family === 4) return a.bytes.join('.');
  if (isMappedV4(a)) return `::ffff:${a.bytes.slice(12).join('.')}`;
  const groups = Array.from({ length: 8 }, (_, i) => (a.bytes[2 * i]! << 8) | a.bytes[2 * i + 1]!);
  // the first longest run of at least two zero groups becomes "::"
  let runStart = -1;
  let runLength = 0;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i >= 2 && j - i > runLength) [runStart, runLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (runStart < 0) return hex(groups);
  return `${hex(groups.slice(0, runStart))}::${hex(groups.slice(runStart + runLength))}`;
}

export function isLoopback(a: IpAddress): boolean {
  if (isMappedV4(a)) return a.bytes[12] === 127;
  if (a.family === 4) return a.bytes[0] === 127;
  return a.bytes.slice(0, 15).every((b) => b === 0) && a.bytes[15] === 1;
}

/** Link-local unicast or multicast (169.254/16, 224.0.0/24, fe80::/10, ff02::/16), which Istio skips when choosing the pod address. */
export function isLinkLocal(a: IpAddress): boolean {
  const b = unmap(a).bytes;
  if (b.length === 4) return (b[0] === 169 && b[1] === 254) || (b[0] === 224 && b[1] === 0 && b[2] === 0);
  return (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) || (b[0] === 0xff && (b[1]! & 0x0f) === 0x02);
}

/** Go's netip.ParsePrefix: the reason it fails, or the prefix. */
export function parsePrefix(text: string): IpPrefix | string {
  const slash = text.lastIndexOf('/');
  if (slash < 0) return "no '/'";
  const addrText = text.slice(0, slash);
  const bitsText = text.slice(slash + 1);
  if (addrText.includes('%')) return 'IPv6 zones cannot be present in a prefix';
  const address = parseAddress(addrText);
  if (!address) return `ParseAddr(${JSON.stringify(addrText)}): not an IP address`;
  if (!/^(0|[1-9]\d*)$/.test(bitsText)) return `bad bits after slash: ${JSON.stringify(bitsText)}`;
  const bits = Number(bitsText);
  if (bits > (address.family === 4 ? 32 : 128)) return 'prefix length out of range';
  return { address, bits };
}

export function formatPrefix(p: IpPrefix): string {
  return `${formatAddress(p.address)}/${p.bits}`;
}
