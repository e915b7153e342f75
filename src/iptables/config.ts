// The traffic-capture configuration: Istio's tools/common/config.Config, field for field, so the
// rule plan reads like Istio's and a test can state a case the way Istio's capture test does.
// Values stay strings where Istio keeps strings (ports, uids, marks), because they are written
// into rules verbatim; `validateCaptureConfig` checks them first, naming the flag and the value.

import { formatPrefix, isLoopback, parsePrefix, type IpPrefix } from './addresses.js';

export type InterceptionMode = '' | 'REDIRECT' | 'TPROXY';

export interface CaptureConfig {
  readonly proxyPort: string;
  readonly inboundCapturePort: string;
  readonly inboundTunnelPort: string;
  readonly proxyUID: string;
  readonly proxyGID: string;
  readonly inboundInterceptionMode: string;
  readonly inboundTProxyMark: string;
  readonly inboundTProxyRouteTable: string;
  readonly inboundPortsInclude: string;
  readonly inboundPortsExclude: string;
  readonly ownerGroupsInclude: string;
  readonly ownerGroupsExclude: string;
  readonly outboundPortsInclude: string;
  readonly outboundPortsExclude: string;
  readonly outboundIPRangesInclude: string;
  readonly outboundIPRangesExclude: string;
  readonly rerouteVirtualInterfaces: string;
  readonly excludeInterfaces: string;
  readonly iptablesProbePort: number;
  readonly probeTimeoutMs: number;
  readonly dryRun: boolean;
  readonly skipRuleApply: boolean;
  readonly runValidation: boolean;
  readonly redirectDNS: boolean;
  readonly dropInvalid: boolean;
  readonly captureAllDNS: boolean;
  /** Not a flag: true when the pod's address is IPv6 (see localAddress). */
  readonly enableIPv6: boolean;
  /** Not flags: the resolv.conf nameservers, by family, in Go's text form. */
  readonly dnsServersV4: readonly string[];
  readonly dnsServersV6: readonly string[];
  readonly networkNamespace: string;
  readonly cniMode: boolean;
  readonly dualStack: boolean;
  /** Not a flag: the pod address chosen at start; decides the validation's address family. */
  readonly hostIP: string;
  readonly hostIPv4LoopbackCidr: string;
  readonly reconcile: boolean;
  readonly cleanupOnly: boolean;
  readonly forceApply: boolean;
  readonly nativeNftables: boolean;
  readonly forceIptablesBinary: string;
}

/** Istio's config.DefaultConfig() plus zero values, before flags, env and the pod's network are applied. */
export const DEFAULT_CAPTURE_CONFIG: CaptureConfig = Object.freeze({
  proxyPort: '15001',
  inboundCapturePort: '15006',
  inboundTunnelPort: '15008',
  proxyUID: '',
  proxyGID: '',
  inboundInterceptionMode: '',
  inboundTProxyMark: '1337',
  inboundTProxyRouteTable: '133',
  inboundPortsInclude: '',
  inboundPortsExclude: '',
  ownerGroupsInclude: '*',
  ownerGroupsExclude: '',
  outboundPortsInclude: '',
  outboundPortsExclude: '',
  outboundIPRangesInclude: '',
  outboundIPRangesExclude: '',
  rerouteVirtualInterfaces: '',
  excludeInterfaces: '',
  iptablesProbePort: 15002,
  probeTimeoutMs: 5000,
  dryRun: false,
  skipRuleApply: false,
  runValidation: false,
  redirectDNS: false,
  dropInvalid: false,
  captureAllDNS: false,
  enableIPv6: false,
  dnsServersV4: [],
  dnsServersV6: [],
  networkNamespace: '',
  cniMode: false,
  dualStack: false,
  hostIP: '',
  hostIPv4LoopbackCidr: '127.0.0.1/32',
  reconcile: false,
  cleanupOnly: false,
  forceApply: false,
  nativeNftables: false,
  forceIptablesBinary: '',
});

/**
 * Istio's config.Split: comma-separated, empty items dropped; items are trimmed here too. Istio's
 * injector accepts `includeInboundPorts: "80, 443"` (its validation trims) and passes it on as
 * it is; Istio's rules then carry " 443", which iptables-restore splits on whitespace anyway.
 */
export function splitList(s: string): string[] {
  return s
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

export interface NetworkRange {
  readonly isWildcard: boolean;
  /** In Go's netip.Prefix text form. */
  readonly cidrs: readonly string[];
  readonly hasLoopbackIP: boolean;
}

export interface SplitRanges {
  readonly v4: NetworkRange;
  readonly v6: NetworkRange;
}

/** Istio's SeparateV4V6: "*" is a wildcard for both families; otherwise CIDRs split by family. */
export function separateV4V6(list: string): SplitRanges | { readonly invalid: string; readonly reason: string } {
  if (list === '*') return { v4: { isWildcard: true, cidrs: [], hasLoopbackIP: false }, v6: { isWildcard: true, cidrs: [], hasLoopbackIP: false } };
  const byFamily: Record<4 | 6, IpPrefix[]> = { 4: [], 6: [] };
  for (const item of splitList(list)) {
    const prefix = parsePrefix(item);
    if (typeof prefix === 'string') return { invalid: item, reason: prefix };
    // an IPv4-mapped IPv6 prefix stays IPv6, as netip's Is4() says
    byFamily[prefix.address.family].push(prefix);
  }
  const range = (ps: IpPrefix[]): NetworkRange => ({ isWildcard: false, cidrs: ps.map(formatPrefix), hasLoopbackIP: ps.some((p) => isLoopback(p.address)) });
  return { v4: range(byFamily[4]), v6: range(byFamily[6]) };
}

/** Istio's InterceptFilter: all groups except `values`, or only `values`. */
export interface OwnerGroupFilter {
  readonly values: readonly string[];
  readonly except: boolean;
}

export function ownerGroupFilter(include: string, exclude: string): OwnerGroupFilter {
  if (include === '*') return { values: splitList(exclude), except: true };
  return { values: splitList(include), except: false };
}
