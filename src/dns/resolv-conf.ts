// resolv.conf, read as miekg/dns' ClientConfigFromFile does (which Istio uses): `nameserver`
// lines in order, `search` (or `domain`, the last one winning), comments with `#` or `;`.
// Nameservers carry no port: upstreams are <address>:53.

import { readFileSync } from 'node:fs';
import { ipFamily, joinHostPort } from '../util/ip.js';

export interface ResolvConf {
  readonly nameservers: readonly string[];
  readonly search: readonly string[];
}

export function parseResolvConf(text: string): ResolvConf {
  const nameservers: string[] = [];
  let search: string[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#') || t.startsWith(';')) continue;
    const f = t.split(/\s+/);
    switch (f[0]) {
      case 'nameserver':
        if (f.length > 1) nameservers.push(f[1]!);
        break;
      case 'domain':
        search = f.length > 1 ? [f[1]!] : [];
        break;
      case 'search':
        search = f.slice(1);
        break;
      default:
        break;
    }
  }
  return { nameservers, search };
}

export function readResolvConf(path: string): ResolvConf {
  return parseResolvConf(readFileSync(path, 'utf8'));
}

export interface Upstream {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** "10.0.0.10", "10.0.0.10:5353", "[fd00::a]:53", "fd00::a" -> an upstream; undefined if not an IP. */
export function parseUpstream(spec: string, defaultPort = 53): Upstream | undefined {
  let host = spec.trim();
  let port = defaultPort;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else if (ipFamily(host.replace(/%.*$/, '')) === 0) {
    const m = /^([^:]+):(\d+)$/.exec(host);
    if (!m) return undefined;
    host = m[1]!;
    port = Number(m[2]);
  }
  const family = ipFamily(host.replace(/%.*$/, ''));
  if (family === 0 || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host, port, family: family as 4 | 6 };
}

export function formatUpstream(u: Upstream): string {
  return joinHostPort(u.host, u.port);
}
