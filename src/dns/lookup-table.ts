// The lookup table built from a NameTable, following Istio's LocalDNSServer (pkg/dns/client):
// - a non-Kubernetes host answers under its own name (plus a trailing dot);
// - a Kubernetes host `name.ns.svc.cluster.local` also answers as `name.ns.`, `name.ns.svc.` and,
//   in the proxy's own namespace, `name.` — only when it lives in the proxy's DNS domain;
// - every such name with the first resolv.conf search domain appended is a CNAME to it, so a
//   client walking its search list (ndots:5) gets an answer on the first query;
// - `*.example.com` matches any name below it, most specific wildcard first, answered under the
//   question's name;
// - a known name without records of the asked type is NOERROR with no answers.
// Records are encoded once per table (owner names are filled in per reply, see wire.ts).

import type { NameInfo, NameTable } from './name-table.js';
import { QTYPE, recordTail } from './wire.js';
import { ipFamily } from '../util/ip.js';

/** TTL of every answer: low, so clients pick up new addresses quickly (Istio's default). */
export const TTL_SECONDS = 30;

const KUBERNETES = 'Kubernetes';

export interface LookupResult {
  /** Record tail of a CNAME owned by the question. */
  readonly cname?: Buffer;
  /** Record tails of the A/AAAA records (owner: the question, or the CNAME target). */
  readonly addresses: readonly Buffer[];
}

interface AddressSet {
  readonly ips: readonly string[];
  readonly tails: readonly Buffer[];
}

/** Splits addresses into IPv4 and IPv6, dropping what does not parse (Istio's ParseIPsSplitToV4V6). */
export function splitIps(ips: readonly string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const raw of ips) {
    const ip = raw.replace(/%.*$/, ''); // a zone does not go into an AAAA record
    const family = ipFamily(ip);
    if (family === 4) v4.push(ip);
    else if (family === 6) v6.push(ip);
  }
  return { v4, v6 };
}

export interface ProxyScope {
  /** The proxy's namespace: short names (`name.`) exist only for services in it. */
  readonly namespace: string;
  /** The proxy's DNS domain without its namespace, e.g. `svc.cluster.local`. */
  readonly domain: string;
  readonly domainParts: readonly string[];
}

/** Istio's NewLocalDNSServer: the DNS domain may start with the namespace; keep the rest. */
export function proxyScope(namespace: string, dnsDomain: string): ProxyScope {
  let parts = dnsDomain.split('.');
  if (parts[0] === namespace) parts = parts.slice(1);
  return { namespace, domain: parts.join('.'), domainParts: parts };
}

/** Istio's generateAltHosts: every name a Kubernetes host answers to (FQDNs with the dot). */
export function kubernetesAltHosts(hostname: string, info: NameInfo, scope: ProxyScope): Set<string> {
  const out = new Set<string>();
  if (hostname.endsWith('.')) return out;
  out.add(`${hostname}.`);
  // another domain (cluster): name.namespace could clash across clusters, so no short forms
  if (scope.domain === '' || !hostname.endsWith(scope.domain)) return out;
  out.add(`${info.shortname}.${info.namespace}.`);
  if (scope.namespace === info.namespace) out.add(`${info.shortname}.`);
  out.add(`${info.shortname}.${info.namespace}.${scope.domainParts[0]}.`);
  for (const alt of info.altHosts) out.add(`${alt}.`);
  return out;
}

/**
 * Istio's BuildAlternateHosts: calls `apply` with each usable host's names and addresses; hosts
 * without a parseable address are skipped.
 */
export function forEachHost(table: NameTable, scope: ProxyScope, apply: (names: Set<string>, v4: string[], v6: string[]) => void): void {
  for (const [hostname, info] of table) {
    const names = info.registry === KUBERNETES ? kubernetesAltHosts(hostname, info, scope) : new Set([hostname.endsWith('.') ? hostname : `${hostname}.`]);
    const { v4, v6 } = splitIps(info.ips);
    if (v4.length === 0 && v6.length === 0) continue;
    apply(names, v4, v6);
  }
}

/** Splits a name into labels (miekg's SplitDomainName): "a.b." -> ["a", "b"], "." -> []. */
function labels(fqdn: string): string[] {
  const trimmed = fqdn.endsWith('.') ? fqdn.slice(0, -1) : fqdn;
  return trimmed === '' ? [] : trimmed.split('.');
}

// Memory: a mesh's table can hold hundreds of thousands of hosts, each known by ~6 names here
// (its forms and their search-domain expansions). The names the table knows are the keys of the
// three maps (no separate set of them), and a CNAME's record is encoded when it is answered, not
// held per name: 200k hosts took 391 MiB of heap and 45 MiB of Buffers before.
export class LookupTable {
  /** Names with IPv4 / IPv6 addresses; with `cname`, every name the table knows. */
  private readonly name4 = new Map<string, AddressSet>();
  private readonly name6 = new Map<string, AddressSet>();
  /** expanded name -> the canonical name it is a CNAME to */
  private readonly cname = new Map<string, string>();
  private size_ = 0;

  constructor(table: NameTable, scope: ProxyScope, searchDomains: readonly string[]) {
    const records = new Map<string, Buffer>();
    const tail = (type: 'A' | 'AAAA', ip: string): Buffer => {
      const key = `${type} ${ip}`;
      let b = records.get(key);
      if (!b) {
        b = recordTail({ type, ttl: TTL_SECONDS, data: ip });
        records.set(key, b);
      }
      return b;
    };
    const search = searchDomains[0];
    forEachHost(table, scope, (names, v4, v6) => {
      const a = v4.length ? { ips: v4, tails: v4.map((ip) => tail('A', ip)) } : undefined;
      const aaaa = v6.length ? { ips: v6, tails: v6.map((ip) => tail('AAAA', ip)) } : undefined;
      for (const name of names) {
        const h = name.toLowerCase();
        if (!this.knows(h)) this.size_++;
        if (a) this.name4.set(h, a);
        if (aaaa) this.name6.set(h, aaaa);
        if (search !== undefined && !h.endsWith(`${search}.`)) {
          // only the first search domain: resolvers try them in order
          let expanded = (h + search).toLowerCase();
          if (!search.endsWith('.')) expanded += '.';
          // host "productpage" + "ns1.svc.cluster.local" may already be one of the host's names
          if (!names.has(expanded)) {
            if (!this.knows(expanded)) this.size_++;
            this.cname.set(expanded, h);
          }
        }
      }
    });
  }

  /** Names the table answers (search-domain expansions included). */
  get size(): number {
    return this.size_;
  }

  private knows(name: string): boolean {
    return this.name4.has(name) || this.name6.has(name) || this.cname.has(name);
  }

  /**
   * Istio's lookupHost. `undefined` means "not ours": forward upstream. A result with no
   * addresses is a known name without records of that type (NOERROR, empty). Only A and AAAA are
   * answered; other types of known names are forwarded too.
   */
  lookup(qtype: number, fqdn: string): LookupResult | undefined {
    let hostname = fqdn;
    let found = this.knows(hostname);
    if (!found) {
      // "svc.ns.example.com." -> "*.ns.example.com.", "*.example.com.", ...
      const parts = labels(hostname);
      for (let i = 0; i < parts.length; i++) {
        const candidate = `*.${parts.slice(i + 1).join('.')}.`;
        if (this.knows(candidate)) {
          found = true;
          hostname = candidate;
          break;
        }
      }
    }
    if (!found) return undefined;
    const cn = this.cname.get(hostname);
    if (cn !== undefined) hostname = cn;
    let set: AddressSet | undefined;
    if (qtype === QTYPE.A) set = this.name4.get(hostname);
    else if (qtype === QTYPE.AAAA) set = this.name6.get(hostname);
    else return undefined;
    // Owners: with a CNAME the addresses belong to its target (for a wildcard: the wildcard name
    // itself, as Istio chains it); without one they are answered under the question's name.
    if (!set || set.tails.length === 0) return { addresses: [] };
    return cn !== undefined ? { cname: recordTail({ type: 'CNAME', ttl: TTL_SECONDS, data: cn }), addresses: set.tails } : { addresses: set.tails };
  }
}
