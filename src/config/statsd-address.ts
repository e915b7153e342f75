// ProxyConfig statsdUdpAddress resolved to an IP before the bootstrap is built, as Istio's
// ConstructProxyConfig does (network.ResolveAddr): Envoy's statsd sink takes an address, not a
// name, so a service name written as it is left the proxy without its statsd metrics or failed
// the bootstrap. The first IPv4 address wins, else the last other one; a name that does not
// resolve (within Istio's 15 s) is logged and the sink left out, as Istio does. The resolved value
// is what the effective configuration (and the node's PROXY_CONFIG) then carries.

import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { AgentConfig } from './load.js';
import { deepFreeze } from './proxy-config.js';
import { joinHostPort, splitHostPort } from '../util/ip.js';
import { deadline } from '../util/deadline.js';
import { logger } from '../util/logger.js';

const log = logger('default');

/** Istio's lookup timeout for the statsd address. */
const LOOKUP_TIMEOUT_MS = 15_000;

export type AddressLookup = (host: string) => Promise<readonly string[]>;

const systemLookup: AddressLookup = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** Istio's ResolveAddr: `host:port` -> `ip:port` (IPv6 in brackets). Throws when the name does not resolve. */
export async function resolveAddr(addr: string, lookupAddresses: AddressLookup = systemLookup): Promise<string> {
  const hp = splitHostPort(addr);
  if ('error' in hp) throw new Error(`address ${addr}: ${hp.error}`);
  const port = Number(hp.port);
  if (!/^\d+$/.test(hp.port) || port > 65535) return ''; // Go skips every address: an empty result
  let addresses: readonly string[];
  if (isIP(hp.host)) addresses = [hp.host];
  else {
    const bound = deadline(LOOKUP_TIMEOUT_MS);
    try {
      addresses = await Promise.race([
        lookupAddresses(hp.host),
        new Promise<never>((_, reject) => bound.signal.addEventListener('abort', () => reject(new Error(`lookup of ${hp.host} timed out after ${LOOKUP_TIMEOUT_MS} ms`)), { once: true })),
      ]);
    } catch (err) {
      throw new Error(`lookup failed for IP address: ${(err as Error).message}`, { cause: err });
    } finally {
      bound.clear();
    }
    if (addresses.length === 0) throw new Error(`lookup failed for IP address: no address for ${hp.host}`);
  }
  let resolved = '';
  for (const a of addresses) {
    const ip = a.toLowerCase().startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a; // IPv4-mapped, unwrapped
    resolved = joinHostPort(ip, port);
    if (isIP(ip) === 4) break;
  }
  return resolved;
}

/** The configuration with statsdUdpAddress resolved (or removed when it does not resolve). */
export async function withResolvedStatsd(config: AgentConfig, lookupAddresses?: AddressLookup): Promise<AgentConfig> {
  const addr = config.proxyConfig.statsdUdpAddress;
  if (typeof addr !== 'string' || addr === '') return config;
  let resolved: string;
  try {
    resolved = await resolveAddr(addr, lookupAddresses);
  } catch (err) {
    log.warn(`resolve StatsdUdpAddress failed: ${(err as Error).message}`);
    resolved = '';
  }
  if (resolved === addr) return config;
  const { statsdUdpAddress: _dropped, ...rest } = config.proxyConfig;
  return deepFreeze({ ...config, proxyConfig: resolved === '' ? rest : { ...rest, statsdUdpAddress: resolved } });
}
