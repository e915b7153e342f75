// What Istio reads from the pod rather than from flags (config.FillConfigFromEnvironment): the
// proxy's uid when -u is not given, whether the pod is IPv6 (the family of its first address),
// and the nameservers DNS capture is limited to.

import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { formatAddress, isLinkLocal, isLoopback, parseAddress, unmap, type IpAddress } from './addresses.js';
import type { CaptureConfig } from './config.js';
import { parseResolvConf } from '../dns/resolv-conf.js';

export const DEFAULT_PROXY_UID = '1337';

export class PodNetworkError extends Error {
  readonly code = 'IPTABLES_POD_NETWORK';
}

/** The uid of `user` in /etc/passwd (Go's os/user lookup without cgo), else Istio's 1337. */
export function proxyUidOf(user: string, passwd = '/etc/passwd'): string {
  let text: string;
  try {
    text = readFileSync(passwd, 'utf8');
  } catch {
    return DEFAULT_PROXY_UID;
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === user && fields.length >= 3 && /^\d+$/.test(fields[2]!)) return fields[2]!;
  }
  return DEFAULT_PROXY_UID;
}

export interface InterfaceAddress {
  readonly interfaceName: string;
  readonly address: string;
}

/**
 * The pod's addresses in the order Go's net.InterfaceAddrs lists them: interfaces by index,
 * then each one's addresses (node:os groups by name, in first-seen order, which can differ).
 */
export function interfaceAddresses(): InterfaceAddress[] {
  const indexOf = (name: string): number => {
    try {
      return Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
    } catch {
      return Number.MAX_SAFE_INTEGER;
    }
  };
  return Object.entries(networkInterfaces())
    .map(([name, addrs]) => ({ name, index: indexOf(name), addrs: addrs ?? [] }))
    .sort((a, b) => a.index - b.index)
    .flatMap(({ name, addrs }) => addrs.map((a) => ({ interfaceName: name, address: a.address.replace(/%.*$/, '') })));
}

/**
 * Istio's getLocalIP: the first address that is neither loopback nor link-local decides the
 * family; with dual stack, any IPv6 address makes the pod IPv6-enabled (the first address is
 * still the host IP).
 */
export function localAddress(addresses: readonly string[], dualStack: boolean): { hostIP: string; isIPv6: boolean } {
  const usable: IpAddress[] = [];
  let isIPv6 = false;
  for (const text of addresses) {
    const parsed = parseAddress(text);
    if (!parsed) continue;
    const a = unmap(parsed);
    if (isLoopback(a) || isLinkLocal(a)) continue;
    isIPv6 = a.family === 6;
    usable.push(a);
    if (!dualStack || isIPv6) break;
  }
  if (usable.length === 0) throw new PodNetworkError('no valid local IP address found');
  return { hostIP: formatAddress(usable[0]!), isIPv6 };
}

/** resolv.conf nameservers by family, as Go's netip prints them; what is not an address is skipped. */
export function nameserversByFamily(resolvConf: string): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const server of parseResolvConf(resolvConf).nameservers) {
    const a = parseAddress(server);
    if (a) (a.family === 4 ? v4 : v6).push(formatAddress(a));
  }
  return { v4, v6 };
}

export interface PodNetworkSources {
  readonly envoyUser: string;
  readonly addresses: () => readonly string[];
  readonly resolvConf: () => string;
  readonly passwdFile?: string;
}

/** Completes a flag/env configuration with what the pod itself tells. */
export function withPodNetwork(cfg: CaptureConfig, sources: PodNetworkSources): CaptureConfig {
  const proxyUID = cfg.proxyUID !== '' ? cfg.proxyUID : proxyUidOf(sources.envoyUser, sources.passwdFile);
  const proxyGID = cfg.proxyGID !== '' ? cfg.proxyGID : proxyUID;
  const { hostIP, isIPv6 } = localAddress(sources.addresses(), cfg.dualStack);
  let dnsServersV4 = cfg.dnsServersV4;
  let dnsServersV6 = cfg.dnsServersV6;
  if (cfg.redirectDNS && !cfg.captureAllDNS) {
    let text: string;
    try {
      text = sources.resolvConf();
    } catch (err) {
      throw new PodNetworkError(`failed to load /etc/resolv.conf: ${(err as Error).message}`);
    }
    ({ v4: dnsServersV4, v6: dnsServersV6 } = nameserversByFamily(text));
  }
  return { ...cfg, proxyUID, proxyGID, hostIP, enableIPv6: isIPv6, dnsServersV4, dnsServersV6 };
}
