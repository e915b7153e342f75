// The DNS proxy's settings from the agent's frozen AgentConfig, so the agent wiring is one call.

import type { AgentConfig } from '../config/load.js';
import type { LocalDnsServerOptions } from './server.js';

/**
 * Istio's isDNSServerEnabled: DNS capture on a sidecar (ISTIO_META_DNS_CAPTURE), or the DNS
 * server asked for explicitly (ISTIO_META_ENABLE_DNS_SERVER, e.g. on gateways).
 */
export function dnsServerEnabled(config: AgentConfig): boolean {
  return (config.env.ISTIO_META_DNS_CAPTURE && config.proxyType === 'sidecar') || config.env.ISTIO_META_ENABLE_DNS_SERVER;
}

export function dnsServerOptionsFrom(config: AgentConfig, over: Partial<LocalDnsServerOptions> = {}): LocalDnsServerOptions {
  return {
    addr: config.env.DNS_PROXY_ADDR,
    proxyNamespace: config.node.podNamespace,
    proxyDomain: config.node.dnsDomain,
    forwardParallel: config.env.DNS_FORWARD_PARALLEL,
    upstreamTimeoutMs: config.env.DNS_FORWARD_TIMEOUT,
    ...over,
  };
}
