// Proxies for Wasm module and registry fetches, chosen as Go's http.ProxyFromEnvironment chooses them
// (golang.org/x/net/http/httpproxy, what Istio's fetchers get from http.DefaultTransport):
//   - https URLs use HTTPS_PROXY (https_proxy), http URLs HTTP_PROXY (http_proxy); nothing else;
//   - `localhost` and loopback IPs are never proxied;
//   - NO_PROXY (no_proxy): comma-separated; `*` alone turns the proxy off; an IP or CIDR matches the
//     target's IP literal; `name` matches the name and its subdomains, `.name` and `*.name` only the
//     subdomains; any entry may carry `:port` (then only that port matches).
// undici's EnvHttpProxyAgent reads the same variables with other rules (no CIDRs, no loopback
// exception, `.name` also matching the apex, lower case first), so the choice is made here and
// undici's ProxyAgent does the transport: CONNECT tunnels for https targets, absolute-form requests
// for http ones, as Go's Transport.
//
// The dial guard still applies: the connection to the proxy goes through the guarded connector (as
// Istio's DialContext dials the proxy), and the target is checked before the proxy is asked for it
// (proxiedTargetGuard): an IP literal directly, a name by resolving it here; a name the agent
// cannot resolve is left to the proxy, since behind a proxy external names often resolve only there.

import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList } from 'node:net';
import { domainToASCII } from 'node:url';
import type { Dispatcher } from 'undici';
import { ipFamily } from '../util/ip.js';
import { BlockedAddressError, normalizeIp, type AddressPolicy, type LookupFunction } from './net-guard.js';

export interface ProxySettings {
  /** HTTP_PROXY (else http_proxy): a URL, '' for none. */
  readonly httpProxy: string;
  /** HTTPS_PROXY (else https_proxy). */
  readonly httpsProxy: string;
  /** NO_PROXY (else no_proxy). */
  readonly noProxy: string;
}

const DEFAULT_PORTS: Readonly<Record<string, string>> = { 'http:': '80', 'https:': '443' };

interface DomainRule {
  /** Always starting with '.'. */
  readonly suffix: string;
  /** The entry had no leading dot: the name itself matches too. */
  readonly apex: boolean;
  readonly port: string;
}

/** Go's host:port split of a NO_PROXY entry (`[v6]:port`, `v4:port`, `name:port`), or undefined. */
function splitHostPort(entry: string): { host: string; port: string } | undefined {
  const m = /^\[([^\]]*)\]:(\d*)$/.exec(entry) ?? /^([^:[\]]*):(\d*)$/.exec(entry);
  return m ? { host: m[1]!, port: m[2]! } : undefined;
}

export class ProxyRules {
  private readonly all: boolean;
  private readonly cidrs = new BlockList();
  private readonly ips: { ip: string; port: string }[] = [];
  private readonly domains: DomainRule[] = [];

  constructor(readonly settings: ProxySettings) {
    let all = false;
    for (const raw of settings.noProxy.split(',')) {
      const entry = raw.trim().toLowerCase();
      if (!entry) continue;
      if (entry === '*') {
        all = true;
        break;
      }
      const slash = entry.indexOf('/');
      if (slash > 0) {
        const ip = normalizeIp(entry.slice(0, slash));
        const family = ipFamily(ip);
        const prefix = entry.slice(slash + 1);
        if (family && /^\d+$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128)) {
          this.cidrs.addSubnet(ip, Number(prefix), family === 4 ? 'ipv4' : 'ipv6');
          continue;
        }
      }
      const split = splitHostPort(entry);
      let host = split ? split.host : entry;
      const port = split ? split.port : '';
      if (ipFamily(normalizeIp(host))) {
        this.ips.push({ ip: normalizeIp(host), port });
        continue;
      }
      if (!host) continue; // no host part: malformed, ignored as Go does
      if (host.startsWith('*.')) host = host.slice(1);
      const apex = !host.startsWith('.');
      const suffix = domainToASCII(apex ? `.${host}` : host) || (apex ? `.${host}` : host);
      this.domains.push({ suffix, apex, port });
    }
    this.all = all;
  }

  /** Whether any proxy is configured. */
  get enabled(): boolean {
    return this.settings.httpProxy !== '' || this.settings.httpsProxy !== '';
  }

  /** The proxy URL for a request to `url`, or undefined to go direct. */
  proxyFor(url: URL): string | undefined {
    const proxy = url.protocol === 'https:' ? this.settings.httpsProxy : url.protocol === 'http:' ? this.settings.httpProxy : '';
    if (!proxy || !this.useProxy(url)) return undefined;
    return proxy;
  }

  private useProxy(url: URL): boolean {
    const host = normalizeIp(url.hostname).toLowerCase();
    const port = url.port || DEFAULT_PORTS[url.protocol] || '';
    if (host === 'localhost') return false;
    const family = ipFamily(host);
    if (family && isLoopback(host, family)) return false;
    if (this.all) return false;
    if (family) {
      if (this.cidrs.check(host, family === 4 ? 'ipv4' : 'ipv6')) return false;
      if (this.ips.some((m) => m.ip === host && (m.port === '' || m.port === port))) return false;
      return true; // domain rules never match an IP
    }
    for (const d of this.domains) {
      if ((host.endsWith(d.suffix) || (d.apex && host === d.suffix.slice(1))) && (d.port === '' || d.port === port)) return false;
    }
    return true;
  }
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

function isLoopback(ip: string, family: 4 | 6): boolean {
  return LOOPBACK.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

function lookupAll(lookup: LookupFunction, host: string): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) => {
    lookup(host, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses as LookupAddress[])));
  });
}

/** Why a target reached through the proxy must not be, or undefined when it may be. */
export async function checkProxiedTarget(policy: AddressPolicy, host: string, lookup: LookupFunction = dnsLookup as unknown as LookupFunction): Promise<string | undefined> {
  const ip = normalizeIp(host);
  if (ipFamily(ip)) return policy.check(ip);
  let addresses: LookupAddress[];
  try {
    addresses = await lookupAll(lookup, ip);
  } catch {
    return undefined; // only the proxy can resolve it: left to the proxy
  }
  for (const a of addresses) {
    const reason = policy.check(a.address);
    if (reason) return `${reason} (${host}, to be reached through the proxy)`;
  }
  return undefined;
}

/**
 * An undici interceptor that sends each request (each redirect hop included) to the proxy
 * `rules` name for it, through `viaProxy(proxyUrl)`, after checking the target; other requests go
 * on to the guarded direct dispatcher. Compose it under the redirect interceptor.
 */
export function proxiedTargetGuard(rules: ProxyRules, viaProxy: (proxyUrl: string) => Dispatcher, policy: AddressPolicy, lookup?: LookupFunction): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    const origin = opts.origin instanceof URL ? opts.origin : new URL(String(opts.origin));
    const proxy = rules.proxyFor(origin);
    if (!proxy) return dispatch(opts, handler);
    void checkProxiedTarget(policy, origin.hostname, lookup).then(
      (reason) => {
        if (reason) handler.onResponseError?.(null as never, new BlockedAddressError(reason));
        else viaProxy(proxy).dispatch(opts, handler);
      },
      (err: unknown) => handler.onResponseError?.(null as never, err as Error),
    );
    return true;
  };
}
