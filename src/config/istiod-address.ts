// Istio's rules about the control plane's address that both of its clients (the xDS proxy's
// upstream and the CA client) follow.

import { splitHostPort } from '../util/ip.js';

/** Istio's pilot SAN rule: the host of the discovery address, with localhost meaning istiod. */
export function discoveryServerName(discoveryAddress: string, istiodSan: string): string {
  if (istiodSan) return istiodSan;
  const hp = splitHostPort(discoveryAddress);
  const host = 'error' in hp ? discoveryAddress : hp.host;
  return host.includes('localhost') ? 'istiod.istio-system.svc' : host;
}
