// Where Wasm fetches may connect. Module URLs come from the mesh config (WasmPlugin) and registry
// responses (redirects, bearer-token realms), so they are untrusted: a fetch must never reach the
// node's link-local addresses (cloud instance metadata at 169.254.169.254 and friends), the known
// metadata addresses outside that range, or any CIDR in BLOCKED_CIDRS_IN_WASM_FETCH.
//
// The check runs on the address actually dialed, after DNS resolution (a guarded `lookup` for host
// names, a direct check for IP literals, and the connected socket's remote address as a last line),
// so neither a redirect nor a host name that resolves to a blocked address gets through. Private
// and loopback ranges stay allowed, as in Istio: in-cluster registries live there.

import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from 'node:dns';
import { BlockList, type Socket } from 'node:net';
import { rootCertificates } from 'node:tls';
import { buildConnector } from 'undici';
import type { TlsRestrictions } from '../security/compliance-policy.js';
import { ipFamily } from '../util/ip.js';

export const BLOCKED_ADDRESS_CODE = 'ERR_WASM_BLOCKED_ADDRESS';

export class BlockedAddressError extends Error {
  readonly code = BLOCKED_ADDRESS_CODE;
}

/** A node `lookup`-compatible resolver (the type net.connect accepts). */
export type LookupFunction = (
  hostname: string,
  options: LookupOneOptions | LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

/** Removes IPv6 brackets and zone, and turns IPv4-mapped IPv6 into plain IPv4. */
export function normalizeIp(address: string): string {
  let a = address.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) return mapped[1]!;
  const mappedHex = /^(?:0{0,4}:){0,4}:?(?:0{0,4}:)?ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(a);
  if (mappedHex) {
    const hi = parseInt(mappedHex[1]!, 16);
    const lo = parseInt(mappedHex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return a;
}

function addCidr(list: BlockList, cidr: string): boolean {
  const slash = cidr.indexOf('/');
  if (slash < 0) return false;
  const addr = normalizeIp(cidr.slice(0, slash));
  const prefix = Number(cidr.slice(slash + 1));
  const family = ipFamily(addr);
  if (!family || !/^\d+$/.test(cidr.slice(slash + 1)) || prefix > (family === 4 ? 32 : 128)) return false;
  list.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
  return true;
}

/** Which resolved addresses a Wasm fetch may dial. */
export class AddressPolicy {
  private readonly linkLocal = new BlockList();
  private readonly metadata = new BlockList();
  private readonly configured = new BlockList();
  /** The BLOCKED_CIDRS_IN_WASM_FETCH entries that parsed. */
  readonly blockedCidrs: readonly string[];

  constructor(blockedCidrs: readonly string[] = [], warn: (msg: string) => void = () => undefined) {
    addCidr(this.linkLocal, '169.254.0.0/16'); // link-local unicast (AWS/GCP/Azure metadata live here)
    addCidr(this.linkLocal, '224.0.0.0/24'); // link-local multicast
    addCidr(this.linkLocal, 'fe80::/10');
    addCidr(this.linkLocal, 'ff02::/16');
    addCidr(this.metadata, '100.100.100.200/32'); // Alibaba Cloud metadata service
    addCidr(this.metadata, 'fd00:ec2::/32'); // AWS IMDS over IPv6
    const ok: string[] = [];
    for (const raw of blockedCidrs) {
      const cidr = raw.trim();
      if (!cidr) continue;
      if (addCidr(this.configured, cidr)) ok.push(cidr);
      else warn(`Failed to parse CIDR range "${cidr}" in BLOCKED_CIDRS_IN_WASM_FETCH; ignoring it`);
    }
    this.blockedCidrs = ok;
  }

  /** Why `address` must not be dialed, or undefined when it may be. */
  check(address: string): string | undefined {
    const ip = normalizeIp(address);
    const family = ipFamily(ip);
    if (!family) return `unable to parse IP from resolved address ${address}`;
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (this.linkLocal.check(ip, type)) return `connection blocked: resolved IP ${ip} is link-local`;
    if (this.metadata.check(ip, type)) return `connection blocked: resolved IP ${ip} is a known cloud metadata address`;
    if (this.configured.check(ip, type)) return `connection blocked: resolved IP ${ip} is in a blocked CIDR range (BLOCKED_CIDRS_IN_WASM_FETCH)`;
    return undefined;
  }
}

/** Wraps a resolver so that blocked addresses are never returned; fails when none is left. */
export function guardedLookup(policy: AddressPolicy, base: LookupFunction = dnsLookup as unknown as LookupFunction): LookupFunction {
  return (hostname, options, callback) => {
    base(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '');
      const all = addresses as LookupAddress[];
      const allowed = all.filter((a) => policy.check(a.address) === undefined);
      if (allowed.length === 0) {
        const reason = all.length ? policy.check(all[0]!.address)! : `no address for ${hostname}`;
        return callback(new BlockedAddressError(reason) as NodeJS.ErrnoException, '');
      }
      if ((options as LookupAllOptions).all) callback(null, allowed);
      else callback(null, allowed[0]!.address, allowed[0]!.family);
    });
  };
}

export interface ConnectorOptions {
  readonly policy: AddressPolicy;
  readonly lookup?: LookupFunction;
  /** Skip certificate verification (WASM_INSECURE_REGISTRIES). */
  readonly insecure: boolean;
  /** Trust these roots in addition to the system ones (tests). */
  readonly extraCaCerts?: readonly (string | Buffer)[];
  readonly connectTimeoutMs?: number;
  /** Versions, ciphers and curves allowed (COMPLIANCE_POLICY). */
  readonly restrictions?: TlsRestrictions;
}

/** An undici connector that refuses blocked addresses before any byte is sent. */
export function guardedConnector(opts: ConnectorOptions): buildConnector.connector {
  const tlsOpts: Record<string, unknown> = { rejectUnauthorized: !opts.insecure, ...opts.restrictions };
  if (opts.extraCaCerts?.length) {
    // `ca` replaces the default trust store: keep the system roots alongside the extra ones
    tlsOpts.ca = [...rootCertificates, ...opts.extraCaCerts];
  }
  const base = buildConnector({
    ...tlsOpts,
    lookup: guardedLookup(opts.policy, opts.lookup),
    timeout: opts.connectTimeoutMs ?? 30_000,
  } as buildConnector.BuildOptions);
  return (options, callback) => {
    const host = normalizeIp(options.hostname);
    if (ipFamily(host)) {
      const reason = opts.policy.check(host);
      if (reason) return callback(new BlockedAddressError(reason), null);
    }
    base(options, (err, socket) => {
      if (err || !socket) return callback(err ?? new Error('connect failed'), null);
      const remote = (socket as Socket).remoteAddress;
      const reason = remote ? opts.policy.check(remote) : undefined;
      if (reason) {
        socket.destroy();
        return callback(new BlockedAddressError(reason), null);
      }
      callback(null, socket);
    });
  };
}

/** True when the error (or one of its causes) is a refused dial to a blocked address. */
export function isBlockedAddressError(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.code === BLOCKED_ADDRESS_CODE) return true;
  }
  return false;
}

const PRIVATE_V4: readonly [string, number][] = [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['127.0.0.0', 8], ['169.254.0.0', 16]];
const PRIVATE_V6: readonly [string, number][] = [['fc00::', 7], ['::1', 128], ['fe80::', 10]];
const realmBlocked = new BlockList();
for (const [a, p] of PRIVATE_V4) realmBlocked.addSubnet(a, p, 'ipv4');
for (const [a, p] of PRIVATE_V6) realmBlocked.addSubnet(a, p, 'ipv6');

/**
 * Checks the realm of a registry's `WWW-Authenticate: Bearer` challenge before the agent sends
 * credentials to it: http(s) only, a host, and not localhost, the GCE metadata name, or a private,
 * loopback or link-local IP literal (Istio's rules; a host name is checked again at dial time, as
 * every Wasm fetch is, by the same guarded client). Beyond Istio: a realm of an https registry
 * must be https too (the pull secret's password would otherwise cross the network in clear
 * text), and names are compared as DNS sees them, so `localhost.`, `LOCALHOST` or
 * `metadata.google.internal.` (fully qualified, the same host) are not a way around the rules.
 */
export function validateRealm(realm: string, registryScheme?: 'http' | 'https'): string | undefined {
  let u: URL;
  try {
    u = new URL(realm);
  } catch {
    return 'invalid realm URL';
  }
  const scheme = u.protocol.replace(/:$/, '');
  if (scheme !== 'http' && scheme !== 'https') return `realm scheme "${scheme}" not allowed`;
  if (registryScheme === 'https' && scheme !== 'https') return `realm must be https for an https registry (got ${scheme})`;
  // the URL parser lower-cases names and turns `10.0.0.1.` into 10.0.0.1; trailing dots of names stay
  const host = normalizeIp(u.hostname).replace(/\.+$/, '');
  if (!host) return 'realm missing host';
  // `metadata` is how GCE's own resolver (search domain google.internal) names it too
  if (host === 'metadata.google.internal' || host === 'metadata') return 'realm targets cloud metadata service';
  // *.localhost resolves to loopback (RFC 6761; glibc with systemd-resolved, and others)
  if (host === 'localhost' || host.endsWith('.localhost')) return 'realm targets localhost';
  const family = ipFamily(host);
  if (family && realmBlocked.check(host, family === 4 ? 'ipv4' : 'ipv6')) return 'realm targets private/loopback/link-local IP';
  return undefined;
}
