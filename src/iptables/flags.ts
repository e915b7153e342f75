// The values of `pilot-agent istio-iptables`' flags (flag-table.ts) as Istio resolves them: an
// env var named after the flag (foo-bar -> FOO_BAR) sets it, a few older names too (ISTIO_META_DNS_CAPTURE, INVALID_DROP, ...), and the
// command line wins over both. Unlike Istio, which drops an unparsable env value silently, every
// bad value is an error that names the flag (or env var) and the value, all reported together.

import { isIPv4 } from 'node:net';
import { IssueList } from '../config/errors.js';
import { parseGoDuration } from '../config/duration.js';
import { isLoopback, parsePrefix } from './addresses.js';
import { DEFAULT_CAPTURE_CONFIG, ownerGroupFilter, separateV4V6, splitList, type CaptureConfig } from './config.js';
import { CAPTURE_FLAGS, flagLabel, type FlagKind } from './flag-table.js';

/** Settings that Istio takes from env vars only. */
export const CAPTURE_ENV = {
  ownerGroupsInclude: 'ISTIO_OUTBOUND_OWNER_GROUPS',
  ownerGroupsExclude: 'ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE',
  hostIPv4LoopbackCidr: 'ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR',
  envoyUser: 'ENVOY_USER',
  dryRunFile: 'DRY_RUN_FILE_PATH',
} as const;

/** Istio caps included owner groups: they become one rule of N matches, and iptables limits matches per rule. */
const MAX_OWNER_GROUPS_INCLUDE = 64;


/** Go's strconv.ParseBool. */
function parseGoBool(raw: string): boolean | undefined {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(raw)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(raw)) return false;
  return undefined;
}

const PORT = /^\d{1,5}$/;
const isPort = (s: string): boolean => PORT.test(s) && Number(s) <= 65535;
/** what iptables takes after --dport: a port or a range lo:hi */
const isPortOrRange = (s: string): boolean => s.split(':').length <= 2 && s.split(':').every(isPort);
/** what iptables takes after --uid-owner/--gid-owner: a name, an id or a range of ids */
const isOwner = (s: string): boolean => /^\d+(-\d+)?$/.test(s) || /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(s);
/** a Linux interface name; `+` at the end is iptables' wildcard */
const isInterface = (s: string): boolean => s.length <= 15 && /^[^\s/:,'"]+$/.test(s);
const isUint32 = (s: string): boolean => /^\d{1,10}$/.test(s) && Number(s) <= 0xffffffff;

/** Raw values as commander gives them: a string, `true` for a bare boolean flag, or absent. */
export type RawFlagValues = Readonly<Record<string, string | boolean | undefined>>;
export type Env = Readonly<Record<string, string | undefined>>;

/**
 * The capture configuration from the command line and the environment (Istio's precedence:
 * default < env < additional env < command line), validated. The pod's own network (IPv6,
 * nameservers, the proxy uid default) is added later by withPodNetwork.
 */
export function captureConfigFrom(cli: RawFlagValues, env: Env): CaptureConfig {
  const issues = new IssueList();
  const cfg: Record<string, unknown> = { ...DEFAULT_CAPTURE_CONFIG };
  const sourceOf = new Map<keyof CaptureConfig, string>();
  for (const f of CAPTURE_FLAGS) {
    let raw: string | boolean | undefined;
    let source = `flag ${flagLabel(f)}`;
    for (const name of f.env) {
      const v = env[name];
      // an empty value for a boolean, port or duration is no value (Istio fails to parse it and
      // keeps the default): proxyMetadata entries reach istio-init's environment as they are
      if (v === undefined || (v === '' && f.kind !== 'string')) continue;
      [raw, source] = [v, `env ${name} (sets ${flagLabel(f)})`];
    }
    const fromCli = cli[f.long];
    if (fromCli !== undefined) [raw, source] = [fromCli, `flag ${flagLabel(f)}`];
    sourceOf.set(f.field, source);
    if (raw === undefined) continue;
    const value = parseFlagValue(f.kind, raw);
    if (typeof value === 'object') issues.add(source, '', raw, value.error);
    else cfg[f.field] = value;
  }
  cfg.ownerGroupsInclude = env[CAPTURE_ENV.ownerGroupsInclude] ?? DEFAULT_CAPTURE_CONFIG.ownerGroupsInclude;
  cfg.ownerGroupsExclude = env[CAPTURE_ENV.ownerGroupsExclude] ?? DEFAULT_CAPTURE_CONFIG.ownerGroupsExclude;
  cfg.hostIPv4LoopbackCidr = env[CAPTURE_ENV.hostIPv4LoopbackCidr] ?? DEFAULT_CAPTURE_CONFIG.hostIPv4LoopbackCidr;
  sourceOf.set('ownerGroupsInclude', `env ${CAPTURE_ENV.ownerGroupsInclude}`);
  sourceOf.set('ownerGroupsExclude', `env ${CAPTURE_ENV.ownerGroupsExclude}`);
  sourceOf.set('hostIPv4LoopbackCidr', `env ${CAPTURE_ENV.hostIPv4LoopbackCidr}`);
  const result = cfg as unknown as CaptureConfig;
  validateCaptureConfig(result, (field, message) => issues.add(sourceOf.get(field) ?? field, '', result[field], message));
  issues.throwIfAny();
  return Object.freeze(result);
}

function parseFlagValue(kind: FlagKind, raw: string | boolean): string | boolean | number | { error: string } {
  if (kind === 'bool') {
    const b = raw === true ? true : parseGoBool(String(raw));
    return b ?? { error: 'expected a boolean (true/false/1/0)' };
  }
  if (typeof raw !== 'string') return { error: 'a value is required' };
  if (kind === 'port') return isPort(raw) ? Number(raw) : { error: 'expected a port number (0-65535)' };
  if (kind === 'duration') {
    const ms = parseGoDuration(raw);
    return ms === undefined || ms < 0 ? { error: 'expected a duration such as "5s" or "500ms"' } : ms;
  }
  return raw;
}

/**
 * Checks every value before any rule is built, so nothing is half applied because of a typo.
 * Istio checks owner groups, the loopback CIDR, the forced binary and the CIDR lists; the
 * checks of ports, ids, interfaces, marks and the mode are ours (Istio would hand the bad
 * value to iptables-restore, which fails with a less helpful message).
 */
export function validateCaptureConfig(cfg: CaptureConfig, report: (field: keyof CaptureConfig, message: string) => void): void {
  for (const field of ['proxyPort', 'inboundCapturePort', 'inboundTunnelPort'] as const) {
    if (!isPort(cfg[field])) report(field, 'expected a port number (0-65535)');
  }
  for (const field of ['inboundPortsExclude', 'outboundPortsInclude', 'outboundPortsExclude'] as const) {
    const bad = splitList(cfg[field]).filter((p) => !isPortOrRange(p));
    if (bad.length > 0) report(field, `expected comma-separated ports; not ports: ${bad.join(', ')}`);
  }
  if (cfg.inboundPortsInclude !== '*') {
    const bad = splitList(cfg.inboundPortsInclude).filter((p) => !isPortOrRange(p));
    if (bad.length > 0) report('inboundPortsInclude', `expected "*" or comma-separated ports; not ports: ${bad.join(', ')}`);
  }
  for (const field of ['proxyUID', 'proxyGID', 'ownerGroupsExclude'] as const) {
    const bad = splitList(cfg[field]).filter((id) => !isOwner(id));
    if (bad.length > 0) report(field, `expected comma-separated names or numeric ids; invalid: ${bad.join(', ')}`);
  }
  const groups = ownerGroupFilter(cfg.ownerGroupsInclude, cfg.ownerGroupsExclude);
  if (!groups.except) {
    const bad = groups.values.filter((g) => !isOwner(g));
    if (bad.length > 0) report('ownerGroupsInclude', `expected "*" or comma-separated group names or ids; invalid: ${bad.join(', ')}`);
    if (groups.values.length > MAX_OWNER_GROUPS_INCLUDE) {
      report('ownerGroupsInclude', `number of owner groups whose outgoing traffic should be redirected to Envoy cannot exceed ${MAX_OWNER_GROUPS_INCLUDE}, got ${groups.values.length}`);
    }
  }
  if (!['', 'REDIRECT', 'TPROXY'].includes(cfg.inboundInterceptionMode)) report('inboundInterceptionMode', 'expected "REDIRECT" or "TPROXY"');
  for (const field of ['inboundTProxyMark', 'inboundTProxyRouteTable'] as const) {
    if (!isUint32(cfg[field])) report(field, 'expected an unsigned 32-bit integer');
  }
  for (const field of ['excludeInterfaces', 'rerouteVirtualInterfaces'] as const) {
    const bad = splitList(cfg[field]).filter((nic) => !isInterface(nic));
    if (bad.length > 0) report(field, `expected comma-separated interface names; invalid: ${bad.join(', ')}`);
  }
  for (const field of ['outboundIPRangesInclude', 'outboundIPRangesExclude'] as const) {
    const ranges = separateV4V6(cfg[field]);
    if ('invalid' in ranges) report(field, `${JSON.stringify(ranges.invalid)} is not a CIDR: ${ranges.reason}`);
    else if (field === 'outboundIPRangesExclude' && ranges.v4.isWildcard) report(field, 'invalid value for OUTBOUND_IP_RANGES_EXCLUDE: "*" cannot be excluded');
  }
  const loopback = parsePrefix(cfg.hostIPv4LoopbackCidr);
  if (typeof loopback === 'string') report('hostIPv4LoopbackCidr', `failed to parse CIDR ${cfg.hostIPv4LoopbackCidr}: ${loopback}`);
  else if (!isIPv4(cfg.hostIPv4LoopbackCidr.split('/')[0]!) || !isLoopback(loopback.address)) {
    report('hostIPv4LoopbackCidr', `expected valid IPv4 loopback address in CIDR ${cfg.hostIPv4LoopbackCidr}`);
  } else if (loopback.bits < 8) report('hostIPv4LoopbackCidr', `expected CIDR ${cfg.hostIPv4LoopbackCidr} to have mask in range [8, 32]; found ${loopback.bits}`);
  if (!['', 'legacy', 'nft'].includes(cfg.forceIptablesBinary)) report('forceIptablesBinary', `invalid FORCE_IPTABLES_BINARY value ${JSON.stringify(cfg.forceIptablesBinary)} (expected "legacy" or "nft")`);
  if (cfg.nativeNftables) report('nativeNftables', 'native nftables is not supported by this implementation; use iptables (the default)');
}
