// Flags and env of istio-iptables: Istio's names, shorthands, defaults and precedence, and an
// error naming the flag (or env var) and the value for each bad input, all reported together.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { captureConfigFrom } from '../../src/iptables/flags.js';
import { agentBin } from '../support/processes.js';

const problems = (cli: Record<string, string | boolean>, env: Record<string, string> = {}): string => {
  try {
    captureConfigFrom(cli, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a configuration error');
};

describe('captureConfigFrom', () => {
  it("has Istio's defaults", () => {
    const cfg = captureConfigFrom({}, {});
    expect(cfg).toMatchObject({
      proxyPort: '15001', inboundCapturePort: '15006', inboundTunnelPort: '15008', proxyUID: '', proxyGID: '', inboundInterceptionMode: '',
      inboundTProxyMark: '1337', inboundTProxyRouteTable: '133', iptablesProbePort: 15002, probeTimeoutMs: 5000, ownerGroupsInclude: '*',
      ownerGroupsExclude: '', hostIPv4LoopbackCidr: '127.0.0.1/32', dryRun: false, redirectDNS: false,
    });
  });

  it('takes env fallbacks, the command line winning, the additional env names overriding the flag-named ones', () => {
    const env = {
      INBOUND_CAPTURE_PORT: '16006', ISTIO_INBOUND_PORTS: '*', REDIRECT_DNS: 'false', ISTIO_META_DNS_CAPTURE: 'true', INVALID_DROP: '1',
      ISTIO_DUAL_STACK: 'true', PROBE_TIMEOUT: '1500ms', ISTIO_OUTBOUND_OWNER_GROUPS: 'java', ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '127.0.0.1/8',
      ENVOY_PORT: '9999', // envoy-port has no env fallback in Istio
    };
    const cfg = captureConfigFrom({ 'inbound-capture-port': '17006' }, env);
    expect(cfg).toMatchObject({
      inboundCapturePort: '17006', inboundPortsInclude: '*', redirectDNS: true, dropInvalid: true, dualStack: true, probeTimeoutMs: 1500,
      ownerGroupsInclude: 'java', hostIPv4LoopbackCidr: '127.0.0.1/8', proxyPort: '15001',
    });
  });

  it('reads Go booleans: bare flag, =false, 1/0', () => {
    expect(captureConfigFrom({ 'dry-run': true, reconcile: 'false', 'cleanup-only': '1' }, {})).toMatchObject({ dryRun: true, reconcile: false, cleanupOnly: true });
  });

  it('names the flag and the value of each bad input, all at once', () => {
    const msg = problems({
      'envoy-port': 'abc', 'istio-inbound-interception-mode': 'tproxy', 'istio-service-cidr': '10.0.0.0/8,foo', 'istio-local-exclude-ports': '15090,x',
      'proxy-uid': '1337 1', 'probe-timeout': '5', 'dry-run': 'yes', 'istio-exclude-interfaces': 'a-very-long-interface-name',
    });
    expect(msg).toContain('flag -p/--envoy-port: expected a port number (0-65535) (value: "abc")');
    expect(msg).toContain('flag -m/--istio-inbound-interception-mode: expected "REDIRECT" or "TPROXY" (value: "tproxy")');
    expect(msg).toContain('flag -i/--istio-service-cidr: "foo" is not a CIDR: no \'/\' (value: "10.0.0.0/8,foo")');
    expect(msg).toContain('flag -d/--istio-local-exclude-ports: expected comma-separated ports; not ports: x');
    expect(msg).toContain('flag -u/--proxy-uid');
    expect(msg).toContain('flag --probe-timeout: expected a duration');
    expect(msg).toContain('flag -n/--dry-run: expected a boolean (true/false/1/0) (value: "yes")');
    expect(msg).toContain('flag -c/--istio-exclude-interfaces');
    expect(msg).toMatch(/8 problems/);
  });

  it('names the env var when the bad value came from the environment', () => {
    expect(problems({}, { PROBE_TIMEOUT: 'soon' })).toContain('env PROBE_TIMEOUT (sets --probe-timeout): expected a duration');
    expect(problems({}, { IPTABLES_PROBE_PORT: '70000' })).toContain('env IPTABLES_PROBE_PORT (sets --iptables-probe-port): expected a port number');
  });

  it("keeps Istio's own checks and messages", () => {
    expect(problems({ 'istio-service-exclude-cidr': '*' })).toContain('flag -x/--istio-service-exclude-cidr: invalid value for OUTBOUND_IP_RANGES_EXCLUDE');
    expect(problems({ 'force-iptables-binary': 'nftables' })).toContain('invalid FORCE_IPTABLES_BINARY value "nftables"');
    expect(problems({}, { ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '10.0.0.1/32' })).toContain('expected valid IPv4 loopback address in CIDR 10.0.0.1/32');
    expect(problems({}, { ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '127.0.0.1/7' })).toContain('to have mask in range [8, 32]; found 7');
    expect(problems({}, { ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR: '127.0.0.1' })).toContain('failed to parse CIDR 127.0.0.1');
    const many = Array.from({ length: 65 }, (_, i) => String(i + 1000)).join(',');
    expect(problems({}, { ISTIO_OUTBOUND_OWNER_GROUPS: many })).toContain('cannot exceed 64, got 65');
  });

  it('accepts what the injector and iptables accept', () => {
    const cfg = captureConfigFrom({
      'istio-service-cidr': '*', 'istio-service-exclude-cidr': '', 'istio-inbound-ports': '*', 'istio-local-exclude-ports': '15090,15021,15020,',
      'istio-local-outbound-ports-exclude': '8000:8080', 'proxy-gid': 'istio-proxy', 'kube-virt-interfaces': 'eth+',
    }, { ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE: '888,ftp' });
    expect(cfg.outboundIPRangesInclude).toBe('*');
  });

  it('takes an empty env value for a boolean, port or duration as unset, as Istio (which fails to parse it) does', () => {
    const cfg = captureConfigFrom({}, { ISTIO_META_DNS_CAPTURE: '', ISTIO_DUAL_STACK: '', IPTABLES_PROBE_PORT: '', PROBE_TIMEOUT: '', ISTIO_LOCAL_EXCLUDE_PORTS: '' });
    expect(cfg).toMatchObject({ redirectDNS: false, dualStack: false, iptablesProbePort: 15002, probeTimeoutMs: 5000, inboundPortsExclude: '' });
    expect(problems({}, { ISTIO_META_DNS_CAPTURE: 'yes' })).toContain('env ISTIO_META_DNS_CAPTURE');
  });

  it('refuses --native-nftables rather than silently programming iptables', () => {
    expect(problems({ 'native-nftables': true })).toContain('native nftables is not supported');
  });
});

describe('pilot-agent istio-iptables with bad input', () => {
  it('exits 1 before touching anything, naming the flag and the value', () => {
    const r = spawnSync(process.execPath, [agentBin, 'istio-iptables', '-p', '15001', '-z', 'http', '-m', 'REDIRECT'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('flag -z/--inbound-capture-port: expected a port number (0-65535) (value: "http")');
  });

  it('takes port lists written with spaces, as the injector passes annotations on ("80, 443"), to the same rules', () => {
    const dryRun = (ports: string): ReturnType<typeof spawnSync> =>
      spawnSync(process.execPath, [agentBin, 'istio-iptables', '-n', '-u', '1337', '-b', ports, '-d', '15090, 15021', '-q', ' 8443 ,9443', '-o', '25 ,26'], { encoding: 'utf8' });
    const spaced = dryRun('80, 443');
    expect(spaced.status, String(spaced.stderr)).toBe(0);
    expect(spaced.stdout).toContain('--dport 443 ');
    expect(spaced.stdout).toBe(dryRun('80,443').stdout);
  });

  it('warns about an unknown flag and still runs', () => {
    const r = spawnSync(process.execPath, [agentBin, 'istio-iptables', '-n', '-u', '1337', '--some-future-flag=1'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('ignoring unknown flags: --some-future-flag');
    expect(r.stdout.split('\n')[0]).toBe('iptables-save');
  });
});
