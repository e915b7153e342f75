// Address-family checks for the start-up path and per-record loops. Node's net.isIP/isIPv6 run a
// very large regular expression whose first use costs 25-40 ms and every later IPv6 check ~2 ms
// until V8 tiers it up (measured here, Node 20): paid several times before Envoy is spawned, and
// per address in the DNS name table. IPv4 is a small pattern; IPv6 goes through the WHATWG URL
// host parser (native code), which accepts exactly the textual IPv6 forms (RFC 4291 section 2.2,
// embedded IPv4 included); a zone suffix (%eth0) is accepted as net.isIPv6 does.

const V4_OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]\\d|\\d)';
const V4 = new RegExp(`^${V4_OCTET}\\.${V4_OCTET}\\.${V4_OCTET}\\.${V4_OCTET}$`);
const ZONE = /%[0-9a-zA-Z\-.:]+$/;

export function isIPv4Address(s: string): boolean {
  return s.length <= 15 && V4.test(s);
}

export function isIPv6Address(s: string): boolean {
  if (!s.includes(':') || s.length > 100) return false;
  const bare = s.replace(ZONE, '');
  if (!/^[0-9a-fA-F:.]+$/.test(bare)) return false;
  try {
    new URL(`http://[${bare}]/`);
    return true;
  } catch {
    return false;
  }
}

/** 4, 6 or 0, as net.isIP answers. */
export function ipFamily(s: string): 0 | 4 | 6 {
  if (isIPv4Address(s)) return 4;
  return isIPv6Address(s) ? 6 : 0;
}

/** `host:port` with IPv6 literals (anything with a colon) bracketed, as Go's net.JoinHostPort. */
export function joinHostPort(host: string, port: number | string): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Go's net.SplitHostPort: host and port, or Go's reason the address is not host:port. */
export function splitHostPort(addr: string): { host: string; port: string } | { error: string } {
  if (addr.startsWith('[')) {
    const end = addr.indexOf(']');
    if (end < 0) return { error: 'missing \']\' in address' };
    const rest = addr.slice(end + 1);
    if (rest === '') return { error: 'missing port in address' };
    if (rest[0] !== ':') return { error: 'missing port in address' };
    const port = rest.slice(1);
    if (port.includes(':')) return { error: 'too many colons in address' };
    return { host: addr.slice(1, end), port };
  }
  const i = addr.lastIndexOf(':');
  if (i < 0) return { error: 'missing port in address' };
  const host = addr.slice(0, i);
  if (host.includes(':')) return { error: 'too many colons in address' };
  if (host.includes('[') || host.includes(']')) return { error: 'unexpected bracket in address' };
  return { host, port: addr.slice(i + 1) };
}
