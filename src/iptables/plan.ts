// Which rules capture a pod's traffic for a configuration: Istio's IptablesConfigurator.Run
// (tools/istio-iptables/pkg/capture/run.go), rule for rule and in the same order, since the
// order is what --dry-run prints and what iptables evaluates. The chains:
//   nat  ISTIO_INBOUND      inbound TCP -> ISTIO_IN_REDIRECT (REDIRECT mode), tunnel port excepted
//        ISTIO_IN_REDIRECT  REDIRECT to the inbound capture port (15006)
//        ISTIO_OUTPUT       outbound: proxy uid/gid, loopback and excluded ranges return, the
//                           rest -> ISTIO_REDIRECT
//        ISTIO_REDIRECT     REDIRECT to the proxy port (15001)
//        ISTIO_OUTPUT_DNS   DNS to the resolv.conf nameservers -> the agent's DNS port (15053)
//   raw  ISTIO_OUTPUT_DNS / ISTIO_INBOUND  conntrack zones that keep the two DNS legs apart
//   mangle (TPROXY)  ISTIO_INBOUND -> ISTIO_TPROXY / ISTIO_DIVERT, marks for policy routing
//   mangle ISTIO_DROP       (--drop-invalid) drops conntrack-INVALID packets instead of a reset

import { ownerGroupFilter, separateV4V6, splitList, type CaptureConfig, type NetworkRange, type OwnerGroupFilter } from './config.js';
import { PER_FAMILY_ADDRESS as ADDR, RulePlan } from './rules.js';

const INBOUND = 'ISTIO_INBOUND';
const REDIRECT = 'ISTIO_REDIRECT';
const IN_REDIRECT = 'ISTIO_IN_REDIRECT';
const OUTPUT = 'ISTIO_OUTPUT';
const OUTPUT_DNS = 'ISTIO_OUTPUT_DNS';
const DIVERT = 'ISTIO_DIVERT';
const TPROXY = 'ISTIO_TPROXY';
const DROP = 'ISTIO_DROP';

/** Marks Envoy's outbound connections to the pod's own address in TPROXY mode, so inbound capture skips them. */
export const OUTBOUND_MARK = '1338';
export const AGENT_DNS_PORT = '15053';
const V6_LOOPBACK = '::1/128';
/** The inbound passthrough cluster binds these, so its connections to the app are never captured. */
const PASSTHROUGH_SOURCE = { v4: '127.0.0.6/32', v6: '::6/128' };

export class CapturePlanError extends Error {
  readonly code = 'IPTABLES_PLAN';
}

/** REDIRECT_DNS only takes effect with nameservers to capture, or with CAPTURE_ALL_DNS. */
export function effectiveRedirectDNS(cfg: CaptureConfig): boolean {
  return cfg.redirectDNS && (cfg.captureAllDNS || cfg.dnsServersV4.length > 0 || cfg.dnsServersV6.length > 0);
}

export function planCapture(cfg: CaptureConfig): RulePlan {
  const exclude = separateV4V6(cfg.outboundIPRangesExclude);
  if ('invalid' in exclude) throw new CapturePlanError(`invalid CIDR ${JSON.stringify(exclude.invalid)} in OUTBOUND_IP_RANGES_EXCLUDE: ${exclude.reason}`);
  if (exclude.v4.isWildcard) throw new CapturePlanError('invalid value for OUTBOUND_IP_RANGES_EXCLUDE');
  const include = separateV4V6(cfg.outboundIPRangesInclude);
  if ('invalid' in include) throw new CapturePlanError(`invalid CIDR ${JSON.stringify(include.invalid)} in OUTBOUND_IP_RANGES_INCLUDE: ${include.reason}`);

  const plan = new RulePlan(cfg.enableIPv6);
  const tproxy = cfg.inboundInterceptionMode === 'TPROXY';
  const redirectDNS = effectiveRedirectDNS(cfg);
  const loopback = cfg.hostIPv4LoopbackCidr;

  for (const nic of splitList(cfg.excludeInterfaces)) {
    plan.append('PREROUTING', 'nat', '-i', nic, '-j', 'RETURN');
    plan.append('OUTPUT', 'nat', '-o', nic, '-j', 'RETURN');
  }
  if (tproxy) {
    for (const nic of splitList(cfg.excludeInterfaces)) {
      plan.append('PREROUTING', 'mangle', '-i', nic, '-j', 'RETURN');
      plan.append('OUTPUT', 'mangle', '-o', nic, '-j', 'RETURN');
    }
  }
  // traffic arriving on a virtual interface (from a VM) is never treated as inbound
  for (const nic of splitList(cfg.rerouteVirtualInterfaces)) plan.insert('PREROUTING', 'nat', 1, '-i', nic, '-j', 'RETURN');

  if (cfg.dropInvalid) {
    // out-of-window packets are dropped rather than answered with a reset that kills the connection
    plan.append('PREROUTING', 'mangle', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', DROP);
    plan.append(DROP, 'mangle', '-j', 'DROP');
  }

  plan.append(INBOUND, 'nat', '-p', 'tcp', '--dport', cfg.inboundTunnelPort, '-j', 'RETURN');
  plan.append(REDIRECT, 'nat', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', cfg.proxyPort);
  plan.append(IN_REDIRECT, 'nat', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', cfg.inboundCapturePort);

  planInbound(plan, cfg, tproxy);

  plan.append('OUTPUT', 'nat', '-j', OUTPUT);
  // port exclusions come before anything that sends traffic back to the proxy
  for (const port of splitList(cfg.outboundPortsExclude)) {
    plan.append(OUTPUT, 'nat', '-p', 'tcp', '--dport', port, '-j', 'RETURN');
    plan.append(OUTPUT, 'nat', '-p', 'udp', '--dport', port, '-j', 'RETURN');
  }
  plan.appendPerFamily(PASSTHROUGH_SOURCE.v4, PASSTHROUGH_SOURCE.v6, OUTPUT, 'nat', '-o', 'lo', '-s', ADDR, '-j', 'RETURN');

  const loopbackIncluded = include.v4.hasLoopbackIP || include.v6.hasLoopbackIP;
  for (const [owner, ids] of [['--uid-owner', cfg.proxyUID], ['--gid-owner', cfg.proxyGID]] as const) {
    for (const id of splitList(ids)) {
      // the app calling itself through a service VIP goes app -> Envoy outbound -> Envoy inbound -> app;
      // with DNS capture, port 53 is kept out so the agent's DNS answers are not sent to Envoy
      const tunnelExcept = redirectDNS && owner === '--uid-owner'
        ? ['-m', 'multiport', '!', '--dports', `53,${cfg.inboundTunnelPort}`]
        : ['!', '--dport', cfg.inboundTunnelPort];
      plan.appendPerFamily(loopback, V6_LOOPBACK, OUTPUT, 'nat', '-o', 'lo', '!', '-d', ADDR, '-p', 'tcp', ...tunnelExcept, '-m', 'owner', owner, id, '-j', IN_REDIRECT);
      // the app calling itself by its own address stays on loopback, unless loopback was asked for
      if (!loopbackIncluded) {
        const dnsExcept = redirectDNS ? ['-p', 'tcp', '!', '--dport', '53'] : [];
        plan.append(OUTPUT, 'nat', '-o', 'lo', ...dnsExcept, '-m', 'owner', '!', owner, id, '-j', 'RETURN');
      }
      // the proxy's own traffic is never sent back to it
      plan.append(OUTPUT, 'nat', '-m', 'owner', owner, id, '-j', 'RETURN');
    }
  }

  const groups = ownerGroupFilter(cfg.ownerGroupsInclude, cfg.ownerGroupsExclude);
  planOwnerGroups(plan, groups);
  if (redirectDNS) planDnsCapture(plan, cfg);

  // container-to-container traffic on localhost is not captured
  plan.appendPerFamily(loopback, V6_LOOPBACK, OUTPUT, 'nat', '-d', ADDR, '-j', 'RETURN');
  for (const cidr of exclude.v4.cidrs) plan.appendV4(OUTPUT, 'nat', '-d', cidr, '-j', 'RETURN');
  for (const cidr of exclude.v6.cidrs) plan.appendV6(OUTPUT, 'nat', '-d', cidr, '-j', 'RETURN');
  for (const port of splitList(cfg.outboundPortsInclude)) plan.append(OUTPUT, 'nat', '-p', 'tcp', '--dport', port, '-j', REDIRECT);
  planOutboundInclude(plan, cfg, include.v4, 4);
  planOutboundInclude(plan, cfg, include.v6, 6);

  if (tproxy) planTproxyMarks(plan, cfg, loopback);
  return plan;
}

function planInbound(plan: RulePlan, cfg: CaptureConfig, tproxy: boolean): void {
  if (cfg.inboundPortsInclude === '') return;
  const table = tproxy ? 'mangle' : 'nat';
  if (tproxy) {
    // marked packets are routed to loopback (policy routing), where TPROXY hands them to Envoy
    plan.append(DIVERT, 'mangle', '-j', 'MARK', '--set-mark', cfg.inboundTProxyMark);
    plan.append(DIVERT, 'mangle', '-j', 'ACCEPT');
    plan.appendPerFamily(cfg.hostIPv4LoopbackCidr, V6_LOOPBACK, TPROXY, 'mangle', '!', '-d', ADDR, '-p', 'tcp', '-j', 'TPROXY',
      '--tproxy-mark', `${cfg.inboundTProxyMark}/0xffffffff`, '--on-port', cfg.inboundCapturePort);
  }
  plan.append('PREROUTING', table, '-p', 'tcp', '-j', INBOUND);
  if (cfg.inboundPortsInclude === '*') {
    for (const port of splitList(cfg.inboundPortsExclude)) plan.append(INBOUND, table, '-p', 'tcp', '--dport', port, '-j', 'RETURN');
    if (tproxy) {
      // packets of established connections go straight to their socket; new ones to TPROXY
      plan.append(INBOUND, 'mangle', '-p', 'tcp', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', DIVERT);
      plan.append(INBOUND, 'mangle', '-p', 'tcp', '-j', TPROXY);
    } else {
      plan.append(INBOUND, 'nat', '-p', 'tcp', '-j', IN_REDIRECT);
    }
    return;
  }
  for (const port of splitList(cfg.inboundPortsInclude)) {
    if (tproxy) {
      plan.append(INBOUND, 'mangle', '-p', 'tcp', '--dport', port, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', DIVERT);
      plan.append(INBOUND, 'mangle', '-p', 'tcp', '--dport', port, '-j', TPROXY);
    } else {
      plan.append(INBOUND, 'nat', '-p', 'tcp', '--dport', port, '-j', IN_REDIRECT);
    }
  }
}

function planOwnerGroups(plan: RulePlan, groups: OwnerGroupFilter): void {
  if (groups.except) {
    for (const group of groups.values) plan.append(OUTPUT, 'nat', '-m', 'owner', '--gid-owner', group, '-j', 'RETURN');
    return;
  }
  // one rule: traffic of a process in none of the groups is not captured
  plan.append(OUTPUT, 'nat', ...groups.values.flatMap((g) => ['-m', 'owner', '!', '--gid-owner', g]), '-j', 'RETURN');
}

function planOutboundInclude(plan: RulePlan, cfg: CaptureConfig, range: NetworkRange, family: 4 | 6): void {
  const append = (chain: string, table: string, ...params: string[]): void => void (family === 4 ? plan.appendV4(chain, table, ...params) : plan.appendV6(chain, table, ...params));
  const insert = (chain: string, table: string, position: number, ...params: string[]): void =>
    void (family === 4 ? plan.insertV4(chain, table, position, ...params) : plan.insertV6(chain, table, position, ...params));
  const virtualInterfaces = splitList(cfg.rerouteVirtualInterfaces);
  if (range.isWildcard) {
    append(OUTPUT, 'nat', '-j', REDIRECT);
    for (const nic of virtualInterfaces) insert('PREROUTING', 'nat', 1, '-i', nic, '-j', REDIRECT);
    return;
  }
  for (const cidr of range.cidrs) {
    for (const nic of virtualInterfaces) insert('PREROUTING', 'nat', 1, '-i', nic, '-d', cidr, '-j', REDIRECT);
    append(OUTPUT, 'nat', '-d', cidr, '-j', REDIRECT);
  }
}

/** DNS to the resolv.conf nameservers (or all port-53 traffic) goes to the agent's DNS proxy. */
function planDnsCapture(plan: RulePlan, cfg: CaptureConfig): void {
  const all = cfg.captureAllDNS;
  plan.append('OUTPUT', 'raw', '-j', OUTPUT_DNS);
  // jump per family only where that family has something to capture
  if (all || cfg.dnsServersV4.length > 0) plan.appendV4(OUTPUT, 'nat', '-j', OUTPUT_DNS);
  if (all || cfg.dnsServersV6.length > 0) plan.appendV6(OUTPUT, 'nat', '-j', OUTPUT_DNS);
  for (const proto of ['tcp', 'udp'] as const) {
    // Istio spells the REDIRECT option differently for the two protocols; both mean the same
    const toPorts = proto === 'tcp' ? '--to-ports' : '--to-port';
    if (all) {
      plan.append(OUTPUT_DNS, 'nat', '-p', proto, '--dport', '53', '-j', 'REDIRECT', toPorts, AGENT_DNS_PORT);
      continue;
    }
    // only the listed servers: a local resolver (dnsmasq) forwarding upstream must not loop back to the agent
    for (const s of cfg.dnsServersV4) plan.appendV4(OUTPUT_DNS, 'nat', '-p', proto, '--dport', '53', '-d', `${s}/32`, '-j', 'REDIRECT', toPorts, AGENT_DNS_PORT);
    for (const s of cfg.dnsServersV6) plan.appendV6(OUTPUT_DNS, 'nat', '-p', proto, '--dport', '53', '-d', `${s}/128`, '-j', 'REDIRECT', toPorts, AGENT_DNS_PORT);
  }
  planDnsConntrackZones(plan, cfg);
}

/**
 * UDP DNS in two conntrack zones: agent <-> upstream resolvers in zone 1, app <-> agent in zone 2,
 * so the two legs of one lookup (same ports, same server address) never share a conntrack entry.
 */
function planDnsConntrackZones(plan: RulePlan, cfg: CaptureConfig): void {
  for (const [owner, ids] of [['--uid-owner', cfg.proxyUID], ['--gid-owner', cfg.proxyGID]] as const) {
    for (const id of splitList(ids)) {
      plan.append(OUTPUT_DNS, 'raw', '-p', 'udp', '--dport', '53', '-m', 'owner', owner, id, '-j', 'CT', '--zone', '1');
      plan.append(OUTPUT_DNS, 'raw', '-p', 'udp', '--sport', AGENT_DNS_PORT, '-m', 'owner', owner, id, '-j', 'CT', '--zone', '2');
    }
  }
  if (cfg.captureAllDNS) {
    plan.append('PREROUTING', 'raw', '-j', INBOUND);
    plan.append(OUTPUT_DNS, 'raw', '-p', 'udp', '--dport', '53', '-j', 'CT', '--zone', '2');
    plan.append(INBOUND, 'raw', '-p', 'udp', '--sport', '53', '-j', 'CT', '--zone', '1');
    return;
  }
  // the PREROUTING jump only where the family has servers, so no jump leads to an empty chain
  if (cfg.dnsServersV4.length > 0) plan.appendV4('PREROUTING', 'raw', '-j', INBOUND);
  for (const s of cfg.dnsServersV4) {
    plan.appendV4(OUTPUT_DNS, 'raw', '-p', 'udp', '--dport', '53', '-d', `${s}/32`, '-j', 'CT', '--zone', '2');
    plan.appendV4(INBOUND, 'raw', '-p', 'udp', '--sport', '53', '-s', `${s}/32`, '-j', 'CT', '--zone', '1');
  }
  if (cfg.dnsServersV6.length > 0) plan.appendV6('PREROUTING', 'raw', '-j', INBOUND);
  for (const s of cfg.dnsServersV6) {
    plan.appendV6(OUTPUT_DNS, 'raw', '-p', 'udp', '--dport', '53', '-d', `${s}/128`, '-j', 'CT', '--zone', '2');
    plan.appendV6(INBOUND, 'raw', '-p', 'udp', '--sport', '53', '-s', `${s}/128`, '-j', 'CT', '--zone', '1');
  }
}

/** TPROXY: connection marks that route replies back through the proxy and keep Envoy's own traffic out. */
function planTproxyMarks(plan: RulePlan, cfg: CaptureConfig, loopback: string): void {
  const mark = cfg.inboundTProxyMark;
  // the mark set by Envoy's original_src listener filter is saved on the connection
  plan.append('PREROUTING', 'mangle', '-p', 'tcp', '-m', 'mark', '--mark', mark, '-j', 'CONNMARK', '--save-mark');
  // already marked Envoy -> app traffic is left alone
  plan.append('OUTPUT', 'mangle', '-p', 'tcp', '-o', 'lo', '-m', 'mark', '--mark', mark, '-j', 'RETURN');
  for (const [owner, ids] of [['--uid-owner', cfg.proxyUID], ['--gid-owner', cfg.proxyGID]] as const) {
    for (const id of splitList(ids)) {
      // app -> VIP -> Envoy outbound -> (mark 1338) -> Envoy inbound -> app
      plan.appendPerFamily(loopback, V6_LOOPBACK, 'OUTPUT', 'mangle', '!', '-d', ADDR, '-p', 'tcp', '-o', 'lo', '-m', 'owner', owner, id, '-j', 'MARK', '--set-mark', OUTBOUND_MARK);
    }
  }
  // replies of the workload carry the mark, matching the policy route set up for TPROXY
  plan.append('OUTPUT', 'mangle', '-p', 'tcp', '-m', 'connmark', '--mark', mark, '-j', 'CONNMARK', '--restore-mark');
  // no infinite redirect; no capture of Envoy -> app by 127.0.0.6 nor of app -> app by pod IP
  plan.insert(INBOUND, 'mangle', 1, '-p', 'tcp', '-m', 'mark', '--mark', mark, '-j', 'RETURN');
  plan.insertV4(INBOUND, 'mangle', 2, '-p', 'tcp', '-s', PASSTHROUGH_SOURCE.v4, '-i', 'lo', '-j', 'RETURN');
  plan.insertV6(INBOUND, 'mangle', 2, '-p', 'tcp', '-s', PASSTHROUGH_SOURCE.v6, '-i', 'lo', '-j', 'RETURN');
  plan.insert(INBOUND, 'mangle', 3, '-p', 'tcp', '-i', 'lo', '-m', 'mark', '!', '--mark', OUTBOUND_MARK, '-j', 'RETURN');
}
