// Unit tests of the pieces Istio's capture test does not reach: Go's address text forms, how the
// pod's address and nameservers are read, the state comparison, cleanup commands, and the
// --cleanup-only / --reconcile sequences of a dry run.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatAddress, formatPrefix, parseAddress, parsePrefix } from './addresses.js';
import { applyPlan } from './apply.js';
import { DEFAULT_CAPTURE_CONFIG, separateV4V6, type CaptureConfig } from './config.js';
import { planCapture } from './plan.js';
import { localAddress, nameserversByFamily, proxyUidOf, withPodNetwork } from './pod-network.js';
import { checkCommands, cleanupCommands, leftoverCleanupCommands, parseState, restoreInput, RulePlan } from './rules.js';
import { DryRunXtables } from './xtables.js';
import { configureLogging } from '../util/logger.js';

// the dry runs log what they would do; the assertions are on what they record
configureLogging({ write: () => undefined });

const base: CaptureConfig = { ...DEFAULT_CAPTURE_CONFIG, proxyUID: '1337', proxyGID: '1337' };

describe('addresses (Go netip text forms)', () => {
  it.each([
    ['::127.0.0.53', '::7f00:35'],
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['2001:DB8:0:0:1:0:0:0', '2001:db8:0:0:1::'],
    ['fd00:0:0:1:0:0:0:1', 'fd00:0:0:1::1'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['1:0:2:0:3:0:4:0', '1:0:2:0:3:0:4:0'],
  ])('%s prints as %s', (input, text) => expect(formatAddress(parseAddress(input)!)).toBe(text));

  it('keeps a prefix as written and rejects what netip.ParsePrefix rejects', () => {
    expect(formatPrefix(parsePrefix('10.0.0.1/8') as never)).toBe('10.0.0.1/8');
    expect(parsePrefix('10.0.0.0')).toBe("no '/'");
    expect(parsePrefix('1.1.1.1/33')).toBe('prefix length out of range');
    expect(parsePrefix('010.0.0.0/8')).toMatch(/not an IP address/);
    expect(parsePrefix('fe80::1%eth0/64')).toMatch(/zones/);
    expect(parsePrefix('10.0.0.0/08')).toMatch(/bad bits/);
  });

  it('splits ranges by family; a mapped address stays IPv6; loopback is noticed', () => {
    const r = separateV4V6('1.1.0.0/16,2001:db8::/32,::ffff:1.2.3.4/128,127.1.2.3/32');
    expect(r).toEqual({
      v4: { isWildcard: false, cidrs: ['1.1.0.0/16', '127.1.2.3/32'], hasLoopbackIP: true },
      v6: { isWildcard: false, cidrs: ['2001:db8::/32', '::ffff:1.2.3.4/128'], hasLoopbackIP: false },
    });
  });
});

describe('pod network', () => {
  it('the first usable address decides IPv6; dual stack looks for any IPv6', () => {
    expect(localAddress(['127.0.0.1', '::1', 'fe80::1', '169.254.1.1', '10.1.1.1', 'fd00::1'], false)).toEqual({ hostIP: '10.1.1.1', isIPv6: false });
    expect(localAddress(['fd00::1', '10.1.1.1'], false)).toEqual({ hostIP: 'fd00::1', isIPv6: true });
    expect(localAddress(['10.1.1.1', 'fd00::1'], true)).toEqual({ hostIP: '10.1.1.1', isIPv6: true });
    expect(() => localAddress(['127.0.0.1', 'fe80::1'], false)).toThrow('no valid local IP address found');
  });

  it('nameservers by family in Go form; what is not an address is skipped', () => {
    expect(nameserversByFamily('nameserver 10.96.0.10\nnameserver fd00::A\nnameserver dns.local\n# nameserver 1.1.1.1\n')).toEqual({ v4: ['10.96.0.10'], v6: ['fd00::a'] });
  });

  it('the proxy uid comes from /etc/passwd, else 1337; the gid follows the uid', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pa-ipt-passwd-'));
    try {
      writeFileSync(join(dir, 'passwd'), 'root:x:0:0::/root:/bin/sh\nistio-proxy:x:1234:1234::/home:/bin/sh\n');
      expect(proxyUidOf('istio-proxy', join(dir, 'passwd'))).toBe('1234');
      expect(proxyUidOf('nobody-here', join(dir, 'passwd'))).toBe('1337');
      const cfg = withPodNetwork({ ...DEFAULT_CAPTURE_CONFIG, redirectDNS: true }, {
        envoyUser: 'istio-proxy', passwdFile: join(dir, 'passwd'), addresses: () => ['10.0.0.5'], resolvConf: () => 'nameserver 10.96.0.10\n',
      });
      expect(cfg).toMatchObject({ proxyUID: '1234', proxyGID: '1234', hostIP: '10.0.0.5', enableIPv6: false, dnsServersV4: ['10.96.0.10'] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('rules', () => {
  const plan = new RulePlan(false)
    .insert('PREROUTING', 'nat', 1, '-i', 'eth1', '-j', 'RETURN')
    .append('ISTIO_OUTPUT', 'nat', '-d', '10.0.0.0/8', '-j', 'ISTIO_REDIRECT')
    .append('OUTPUT', 'nat', '-j', 'ISTIO_OUTPUT');

  it('restore input declares chains with rules and jump targets', () => {
    expect(restoreInput(plan.of(4))).toBe([
      '* nat', '-N ISTIO_OUTPUT', '-N ISTIO_REDIRECT', '-I PREROUTING 1 -i eth1 -j RETURN', '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT',
      '-A OUTPUT -j ISTIO_OUTPUT', 'COMMIT', '',
    ].join('\n'));
  });

  it('checks and cleanup commands drop the insert position', () => {
    expect(checkCommands(plan.of(4))[0]).toEqual(['-t', 'nat', '-C', 'PREROUTING', '-i', 'eth1', '-j', 'RETURN']);
    expect(cleanupCommands(plan.of(4))).toEqual([
      ['-t', 'nat', '-D', 'OUTPUT', '-j', 'ISTIO_OUTPUT'],
      ['-t', 'nat', '-D', 'ISTIO_OUTPUT', '-d', '10.0.0.0/8', '-j', 'ISTIO_REDIRECT'],
      ['-t', 'nat', '-D', 'PREROUTING', '-i', 'eth1', '-j', 'RETURN'],
      ['-t', 'nat', '-F', 'ISTIO_OUTPUT'],
      ['-t', 'nat', '-X', 'ISTIO_OUTPUT'],
    ]);
  });

  it('reads iptables-save output and removes whatever ISTIO chains and jumps it shows', () => {
    const state = parseState([
      '# Generated by iptables-save', '*nat', ':PREROUTING ACCEPT [0:0]', ':ISTIO_DROP - [0:0]', ':ISTIO_OLD - [0:0]',
      '-A PREROUTING -p tcp -j ISTIO_OLD', '-A PREROUTING -p udp -j ACCEPT', '-A ISTIO_OLD -j RETURN', 'COMMIT',
    ].join('\n'));
    expect(state.get('nat')).toEqual(new Map([
      ['ISTIO_DROP', []], ['ISTIO_OLD', ['-A ISTIO_OLD -j RETURN']], ['PREROUTING', ['-A PREROUTING -p tcp -j ISTIO_OLD', '-A PREROUTING -p udp -j ACCEPT']],
    ]));
    expect(leftoverCleanupCommands(state)).toEqual([
      ['-t', 'nat', '-D', 'PREROUTING', '-p', 'tcp', '-j', 'ISTIO_OLD'],
      ['-t', 'nat', '-F', 'ISTIO_DROP'], ['-t', 'nat', '-F', 'ISTIO_OLD'],
      ['-t', 'nat', '-X', 'ISTIO_DROP'], ['-t', 'nat', '-X', 'ISTIO_OLD'],
    ]);
  });
});

describe('dry-run sequences', () => {
  const dry = (cfg: CaptureConfig): string[] => {
    const xt = new DryRunXtables();
    applyPlan(cfg, planCapture(cfg), xt);
    return xt.recorded;
  };

  it('--cleanup-only records the undo commands and no restore', () => {
    const lines = dry({ ...base, cleanupOnly: true, outboundIPRangesInclude: '*' });
    expect(lines[0]).toBe('iptables-save');
    expect(lines[1]).toBe('ip6tables-save');
    expect(lines).toContain('iptables -t nat -D OUTPUT -j ISTIO_OUTPUT');
    expect(lines).toContain('iptables -t nat -X ISTIO_REDIRECT');
    expect(lines).not.toContain('* nat');
    expect(lines.at(-1)).toBe('iptables-save');
  });

  it('a clean state is not reconciled: --reconcile changes nothing in a dry run', () => {
    expect(dry({ ...base, reconcile: true })).toEqual(dry(base));
  });

  it('DNS capture of all port-53 traffic (--capture-all-dns) needs no nameservers', () => {
    const lines = dry({ ...base, redirectDNS: true, captureAllDNS: true });
    expect(lines).toContain('-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-port 15053');
    expect(lines).toContain('-A ISTIO_INBOUND -p udp --sport 53 -j CT --zone 1');
  });

  it('--redirect-dns without nameservers (or capture-all) captures no DNS, as Istio', () => {
    expect(dry({ ...base, redirectDNS: true }).join('\n')).not.toContain('DNS');
  });
});
