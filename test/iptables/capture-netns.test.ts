// istio-iptables for real, in network namespaces this test creates: the istio-init argv of the
// injected fixtures applied unchanged, traffic actually captured (outbound to 15001, inbound from
// the veth peer to 15006), the proxy's uid 1337 not captured, a second run changing nothing,
// --reconcile repairing drift, --cleanup-only leaving nothing, TPROXY routing set and removed, a
// restore failing part-way rolled back so that the retry starts clean.

import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  canUseNetns, connectFrom, injectedInitArgs, istioIptables, pilotAgent, podWithPeer, rulesOf, standaloneNamespace, startServers, tableOf, type PodNetwork,
  NETNS_TEST_TIMEOUT, removeCreatedNamespaces,
} from './netns.js';
import { agentBin } from '../support/processes.js';
import { stubCommands } from '../support/stub-commands.js';

const FIXTURES = ['hello.yaml.injected', 'hello-probes.yaml.injected', 'tcp-probes.yaml.injected', 'hello-multiport-metrics.yaml.injected'];
const ISTIO_INIT = injectedInitArgs('hello.yaml.injected')!;

// namespaces a timed-out test could not delete itself
afterAll(removeCreatedNamespaces);

describe.skipIf(!canUseNetns)('istio-init rules in a pod network namespace', { timeout: NETNS_TEST_TIMEOUT }, () => {
  let net: PodNetwork;
  let podServers: { stop: () => Promise<void> };
  let peerServer: { stop: () => Promise<void> };

  beforeAll(async () => {
    net = podWithPeer();
    // the sidecar's listeners, an app port, and a port istio-init leaves alone (-d 15020)
    podServers = await startServers(net.pod, { 15001: 'outbound-15001', 15006: 'inbound-15006', 9080: 'app-9080', 15020: 'status-15020' });
    peerServer = await startServers(net.peer, { 8080: 'peer-8080' });
  });

  afterAll(async () => {
    await podServers?.stop();
    await peerServer?.stop();
    net?.remove();
  });

  it('before istio-init nothing is captured', async () => {
    expect(await connectFrom(net.pod, net.peerIP, 8080)).toBe('peer-8080');
    expect(await connectFrom(net.peer, net.podIP, 9080)).toBe('app-9080');
  });

  it("applies the injected istio-init argv unchanged and captures the pod's traffic", async () => {
    const r = await pilotAgent(net.pod, ISTIO_INIT);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('Clean-state detected');
    const rules = rulesOf(net.pod);
    expect(rules).toContain('-A PREROUTING -p tcp -j ISTIO_INBOUND');
    expect(rules).toContain('-A OUTPUT -j ISTIO_OUTPUT');
    // an app process (root here) connecting out lands on Envoy's outbound port
    expect(await connectFrom(net.pod, net.peerIP, 8080)).toBe('outbound-15001');
    // a connection from the peer lands on the inbound capture port, except excluded ports
    expect(await connectFrom(net.peer, net.podIP, 9080)).toBe('inbound-15006');
    expect(await connectFrom(net.peer, net.podIP, 15020)).toBe('status-15020');
    // the proxy's own traffic (uid 1337) goes where it was sent
    expect(await connectFrom(net.pod, net.peerIP, 8080, { user: 1337 })).toBe('peer-8080');
  });

  it('a second run finds the rules in place and changes nothing', async () => {
    const before = { v4: rulesOf(net.pod, 4), v6: rulesOf(net.pod, 6) };
    const r = await pilotAgent(net.pod, ISTIO_INIT);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('Found compatible residues of old iptables rules/chains, reconciliation not needed');
    expect(r.stderr).not.toContain('Applying iptables chains and rules');
    expect({ v4: rulesOf(net.pod, 4), v6: rulesOf(net.pod, 6) }).toEqual(before);
  });

  it('drift in an ISTIO chain: without --reconcile the restore fails and nothing changes; with it the rules are replaced', async () => {
    const good = tableOf(net.pod, 'nat');
    net.pod.exec('iptables', '-t', 'nat', '-A', 'ISTIO_OUTPUT', '-p', 'tcp', '--dport', '123', '-j', 'ACCEPT');
    const drifted = tableOf(net.pod, 'nat');
    expect(drifted).not.toBe(good);

    const plain = await pilotAgent(net.pod, ISTIO_INIT);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain('reconciliation is recommended');
    expect(tableOf(net.pod, 'nat')).toBe(drifted);

    const reconciled = await pilotAgent(net.pod, [...ISTIO_INIT, '--reconcile']);
    expect(reconciled.code, reconciled.stderr).toBe(0);
    expect(reconciled.stderr).toContain('Setting up guardrails');
    expect(tableOf(net.pod, 'nat')).toBe(good);
    expect(tableOf(net.pod, 'filter')).not.toContain('-A '); // guardrails removed
    expect(await connectFrom(net.pod, net.peerIP, 8080)).toBe('outbound-15001');
  });

  it('--cleanup-only removes every ISTIO chain and jump', async () => {
    const r = await pilotAgent(net.pod, [...ISTIO_INIT, '--cleanup-only']);
    expect(r.code, r.stderr).toBe(0);
    expect(rulesOf(net.pod, 4)).not.toContain('ISTIO');
    expect(rulesOf(net.pod, 6)).not.toContain('ISTIO');
    expect(await connectFrom(net.pod, net.peerIP, 8080)).toBe('peer-8080');
    expect(await connectFrom(net.peer, net.podIP, 9080)).toBe('app-9080');
  });

  it('--cleanup-only also removes ISTIO chains another configuration left', async () => {
    expect((await istioIptables(net.pod, ['-p', '15001', '-z', '15006', '-u', '1337', '-m', 'REDIRECT', '-i', '*', '-b', '*', '--drop-invalid', '-c', 'eth9'])).code).toBe(0);
    expect(rulesOf(net.pod)).toContain('ISTIO_DROP');
    const r = await pilotAgent(net.pod, [...ISTIO_INIT, '--cleanup-only']);
    expect(r.code, r.stderr).toBe(0);
    expect(rulesOf(net.pod)).not.toContain('ISTIO');
  });
});

describe.skipIf(!canUseNetns)('every injected fixture', { timeout: NETNS_TEST_TIMEOUT }, () => {
  for (const fixture of FIXTURES) {
    it(`${fixture}: istio-init's argv applies, is idempotent and cleans up`, async () => {
      const args = injectedInitArgs(fixture);
      expect(args?.[0]).toBe('istio-iptables');
      const ns = standaloneNamespace('10.214.0.2/24');
      try {
        const dry = await pilotAgent(ns, [...args!, '--dry-run']);
        expect(dry.code, dry.stderr).toBe(0);
        expect(rulesOf(ns)).not.toContain('ISTIO'); // a dry run touches nothing
        const first = await pilotAgent(ns, args!);
        expect(first.code, first.stderr).toBe(0);
        const applied = rulesOf(ns);
        // what was applied is what the dry run printed (iptables-save words rules its own way: compare the counts per chain)
        const perChain = (lines: string[]): Record<string, number> => {
          const counts: Record<string, number> = {};
          for (const l of lines) if (l.startsWith('-A ')) counts[l.split(' ')[1]!] = (counts[l.split(' ')[1]!] ?? 0) + 1;
          return counts;
        };
        expect(perChain(applied.split('\n'))).toEqual(perChain(dry.stdout.split('\n')));
        const second = await pilotAgent(ns, args!);
        expect(second.code, second.stderr).toBe(0);
        expect(rulesOf(ns)).toBe(applied);
        expect((await pilotAgent(ns, [...args!, '--cleanup-only'])).code).toBe(0);
        expect(rulesOf(ns)).not.toContain('ISTIO');
      } finally {
        ns.remove();
      }
    });
  }
  it('the proxyless fixture has no istio-init', () => expect(injectedInitArgs('grpc-agent.yaml.injected')).toBeUndefined());
});

describe.skipIf(!canUseNetns)('TPROXY', { timeout: NETNS_TEST_TIMEOUT }, () => {
  it('sets the policy rule and local route (IPv4 and IPv6), again without error, and cleanup removes them', async () => {
    const ns = standaloneNamespace('fd00:214::2/64');
    try {
      const args = ['-p', '15001', '-z', '15006', '-u', '1337', '-m', 'TPROXY', '-i', '*', '-b', '*', '-d', '15090,15021,15020'];
      const first = await istioIptables(ns, args);
      expect(first.code, first.stderr).toBe(0);
      for (const family of ['-4', '-6']) {
        expect(ns.exec('ip', family, 'rule', 'show')).toMatch(/fwmark 0x539 lookup 133/);
        expect(ns.exec('ip', family, 'route', 'show', 'table', '133')).toMatch(/^local default dev lo/m);
      }
      expect(ns.exec('ip', '-6', 'addr', 'show', 'dev', 'lo')).toContain('::6/128');
      expect(rulesOf(ns, 6)).toContain('-j TPROXY --on-port 15006');
      const second = await istioIptables(ns, args);
      expect(second.code, second.stderr).toBe(0);
      expect(ns.exec('ip', '-4', 'rule', 'show').match(/fwmark 0x539/g)).toHaveLength(1);

      expect((await istioIptables(ns, [...args, '--cleanup-only'])).code).toBe(0);
      for (const family of ['-4', '-6']) {
        expect(ns.exec('ip', family, 'rule', 'show')).not.toContain('fwmark');
        expect(ns.exec('ip', family, 'route', 'show', 'table', '133')).toBe('');
      }
      expect(rulesOf(ns, 4) + rulesOf(ns, 6)).not.toContain('ISTIO');
      // a second cleanup finds nothing to remove and succeeds (the kernel answers ESRCH for a route
      // gone from a table that existed)
      const again = await istioIptables(ns, [...args, '--cleanup-only']);
      expect(again.code, again.stderr).toBe(0);
    } finally {
      ns.remove();
    }
  });
});

describe.skipIf(!canUseNetns)('a restore failing part-way', { timeout: NETNS_TEST_TIMEOUT }, () => {
  it('removes what the run had applied (IPv4 of a dual-stack pod whose IPv6 restore failed), so that the retry succeeds', async () => {
    const ns = standaloneNamespace('fd00:215::2/64');
    // ip6tables-restore fails once, as a missing kernel module or a transient error would make it
    const failing = 'cat >/dev/null\necho "ip6tables-restore: line 2 failed: simulated failure" >&2\nexit 1';
    const broken = stubCommands(Object.fromEntries(['ip6tables-restore', 'ip6tables-nft-restore', 'ip6tables-legacy-restore'].map((n) => [n, failing])));
    try {
      const failed = await istioIptables(ns, ISTIO_INIT, { env: { PATH: broken.pathAhead() } });
      expect(failed.code, failed.stderr + failed.stdout).toBe(1);
      expect(failed.stdout + failed.stderr).toContain('simulated failure');
      expect(failed.stdout + failed.stderr).toContain('the rules this run had applied were removed, so that the next run starts clean');
      expect(rulesOf(ns, 4)).not.toContain('ISTIO');
      // the cause gone, kubelet's retry of istio-init applies the capture (Istio's would fail on "Chain already exists" for good)
      const retry = await istioIptables(ns, ISTIO_INIT);
      expect(retry.code, retry.stderr + retry.stdout).toBe(0);
      expect(rulesOf(ns, 4)).toContain('-A ISTIO_OUTPUT');
      expect(rulesOf(ns, 6)).toContain('-A ISTIO_OUTPUT');
    } finally {
      ns.remove();
      broken.remove();
    }
  });
});

describe.skipIf(!canUseNetns)('a SIGTERM while the rules are programmed', { timeout: NETNS_TEST_TIMEOUT }, () => {
  it('is taken once they are done: a reconcile does not leave its guardrails (all traffic dropped) behind', async () => {
    const ns = standaloneNamespace('10.77.0.2/24');
    // a slow restore, so that the SIGTERM lands while the guardrails are up
    const slow = stubCommands(Object.fromEntries(['iptables-nft-restore', 'iptables-legacy-restore', 'iptables-restore'].map((n) => [n, `sleep 2\nexec /usr/sbin/${n} "$@"`])));
    try {
      expect((await istioIptables(ns, ISTIO_INIT)).code).toBe(0);
      const applied = tableOf(ns, 'nat');
      // drift, so that --reconcile sets guardrails, cleans and restores
      ns.exec('iptables', '-t', 'nat', '-A', 'ISTIO_OUTPUT', '-p', 'tcp', '--dport', '123', '-j', 'ACCEPT');
      const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, agentBin, 'istio-iptables', ...ISTIO_INIT, '--reconcile'], {
        env: { ...process.env, PATH: slow.pathAhead() },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      await vi.waitFor(() => expect(ns.exec('iptables', '-S', 'OUTPUT')).toContain('-j DROP'), { timeout: 20_000, interval: 20 });
      child.kill('SIGTERM');
      const code = await exited;
      expect(ns.exec('iptables', '-S', 'OUTPUT'), out).not.toContain('-j DROP');
      expect(ns.exec('iptables', '-S', 'INPUT')).not.toContain('-j DROP');
      // the reconcile completed: Istio's rules, without the drift
      expect(tableOf(ns, 'nat')).toBe(applied);
      // and then the signal ended the command, as it would have (128 + 15)
      expect(code, out).toBe(143);
    } finally {
      ns.remove();
      slow.remove();
    }
  });
});
