// The cases of Istio's capture test (tools/istio-iptables/pkg/capture/run_test.go), as
// configurations over the test's base: the same names and the same fields, so a case here and
// its golden there are the same run. Not every case has a golden in ../shared/istio-testdata.

import { DEFAULT_CAPTURE_CONFIG, type CaptureConfig } from '../../src/iptables/config.js';
import { CAPTURE_FLAGS } from '../../src/iptables/flag-table.js';

/** Istio's constructTestConfig(). */
export const CAPTURE_TEST_BASE: CaptureConfig = {
  ...DEFAULT_CAPTURE_CONFIG,
  proxyPort: '15001',
  inboundCapturePort: '15006',
  inboundTunnelPort: '15008',
  proxyUID: '1337',
  proxyGID: '1337',
  inboundTProxyMark: '1337',
  inboundTProxyRouteTable: '133',
  ownerGroupsInclude: '*',
  hostIPv4LoopbackCidr: '127.0.0.1/32',
};

export interface CaptureCase {
  readonly name: string;
  readonly config: Partial<CaptureConfig>;
}

export const ISTIO_CAPTURE_CASES: readonly CaptureCase[] = [
  { name: 'ipv6-empty-inbound-ports', config: { inboundPortsInclude: '', enableIPv6: true } },
  { name: 'ip-range', config: { outboundIPRangesExclude: '1.1.0.0/16', outboundIPRangesInclude: '9.9.0.0/16', dryRun: true, redirectDNS: true, enableIPv6: false, proxyGID: '1,2', proxyUID: '3,4', dnsServersV4: ['127.0.0.53'] } },
  {
    name: 'tproxy',
    config: {
      inboundInterceptionMode: 'TPROXY', inboundPortsInclude: '*', outboundIPRangesExclude: '1.1.0.0/16', outboundIPRangesInclude: '9.9.0.0/16', dryRun: true, redirectDNS: true,
      dnsServersV4: ['127.0.0.53'], proxyGID: '1337', proxyUID: '1337', excludeInterfaces: 'not-istio-nic', enableIPv6: true,
    },
  },
  { name: 'ipv6-inbound-ports', config: { inboundPortsInclude: '4000,5000', enableIPv6: true } },
  { name: 'ipv6-virt-interfaces', config: { inboundPortsInclude: '4000,5000', rerouteVirtualInterfaces: 'eth0,eth1', enableIPv6: true } },
  { name: 'ipv6-ipnets', config: { inboundPortsInclude: '4000,5000', inboundPortsExclude: '6000,7000,', rerouteVirtualInterfaces: 'eth0,eth1', outboundIPRangesExclude: '2001:db8::/32', outboundIPRangesInclude: '2001:db8::/32', enableIPv6: true } },
  { name: 'ipv6-uid-gid', config: { inboundPortsInclude: '4000,5000', inboundPortsExclude: '6000,7000', rerouteVirtualInterfaces: 'eth0,eth1', proxyGID: '1,2', proxyUID: '3,4', enableIPv6: true, outboundIPRangesExclude: '2001:db8::/32', outboundIPRangesInclude: '2001:db8::/32' } },
  { name: 'ipv6-outbound-ports', config: { inboundPortsInclude: '', outboundPortsInclude: '32000,31000', enableIPv6: true } },
  { name: 'empty', config: {} },
  { name: 'kube-virt-interfaces', config: { rerouteVirtualInterfaces: 'eth1,eth2', outboundIPRangesInclude: '*' } },
  { name: 'ipnets', config: { outboundIPRangesInclude: '10.0.0.0/8' } },
  { name: 'ipnets-with-kube-virt-interfaces', config: { rerouteVirtualInterfaces: 'eth1,eth2', outboundIPRangesInclude: '10.0.0.0/8' } },
  { name: 'inbound-ports-include', config: { inboundPortsInclude: '32000,31000' } },
  { name: 'inbound-ports-wildcard', config: { inboundPortsInclude: '*' } },
  { name: 'inbound-ports-tproxy', config: { inboundPortsInclude: '32000,31000', inboundInterceptionMode: 'TPROXY' } },
  { name: 'inbound-ports-wildcard-tproxy', config: { inboundPortsInclude: '*', inboundInterceptionMode: 'TPROXY' } },
  { name: 'dns-uid-gid', config: { redirectDNS: true, dnsServersV4: ['127.0.0.53'], dnsServersV6: ['::127.0.0.53'], proxyGID: '1,2', proxyUID: '3,4', enableIPv6: true } },
  { name: 'ipv6-dns-uid-gid', config: { enableIPv6: true, redirectDNS: true, proxyGID: '1,2', proxyUID: '3,4' } },
  { name: 'outbound-owner-groups', config: { ownerGroupsInclude: 'java,202' } },
  { name: 'outbound-owner-groups-exclude', config: { ownerGroupsExclude: '888,ftp' } },
  { name: 'ipv6-dns-outbound-owner-groups', config: { enableIPv6: true, redirectDNS: true, ownerGroupsInclude: 'java,202' } },
  { name: 'ipv6-dns-outbound-owner-groups-exclude', config: { enableIPv6: true, redirectDNS: true, ownerGroupsExclude: '888,ftp' } },
  { name: 'outbound-ports-include', config: { outboundPortsInclude: '32000,31000' } },
  { name: 'loopback-outbound-iprange', config: { outboundIPRangesInclude: '127.1.2.3/32', dryRun: true, redirectDNS: true, dnsServersV4: ['127.0.0.53'], enableIPv6: false, proxyGID: '1,2', proxyUID: '3,4' } },
  { name: 'basic-exclude-nic', config: { excludeInterfaces: 'not-istio-nic' } },
  { name: 'drop-invalid', config: { dropInvalid: true } },
  { name: 'host-ipv4-loopback-cidr', config: { hostIPv4LoopbackCidr: '127.0.0.1/8' } },
];

export function captureCaseConfig(c: CaptureCase): CaptureConfig {
  return { ...CAPTURE_TEST_BASE, ...c.config };
}

const ENV_ONLY: Partial<Record<keyof CaptureConfig, string>> = {
  ownerGroupsInclude: 'ISTIO_OUTBOUND_OWNER_GROUPS',
  ownerGroupsExclude: 'ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE',
  hostIPv4LoopbackCidr: 'ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR',
};

/**
 * The command line (and env-only settings) that gives a case's configuration: the base is what
 * the CLI's defaults give when the proxy user resolves to 1337, plus -u 1337 to make that sure.
 * Fields that are not flags (enableIPv6, nameservers) come from the pod and are not mapped.
 */
export function cliArgsFor(config: Partial<CaptureConfig>): { args: string[]; env: Record<string, string> } {
  const args = ['-u', config.proxyUID ?? '1337'];
  const env: Record<string, string> = {};
  for (const [field, value] of Object.entries(config) as [keyof CaptureConfig, unknown][]) {
    if (field === 'proxyUID' || field === 'enableIPv6' || field === 'dnsServersV4' || field === 'dnsServersV6') continue;
    const envName = ENV_ONLY[field];
    if (envName) {
      env[envName] = String(value);
      continue;
    }
    const f = CAPTURE_FLAGS.find((x) => x.field === field);
    if (!f) throw new Error(`no flag sets ${field}`);
    args.push(typeof value === 'boolean' ? `--${f.long}=${value}` : `--${f.long}=${String(value)}`);
  }
  return { args, env };
}
