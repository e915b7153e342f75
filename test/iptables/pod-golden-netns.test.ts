// The shared goldens through the command line, with what Istio reads from the pod made real: a
// namespace whose only address is IPv6 (or IPv4) and whose /etc/resolv.conf lists the case's
// nameservers (`ip netns exec` mounts /etc/netns/<name>/resolv.conf). So IPv6 and the DNS rules
// are decided as Istio decides them, not stated by the test.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { istioTestdata } from '../support/paths.js';
import { ISTIO_CAPTURE_CASES, cliArgsFor } from './istio-capture-cases.js';
import { canUseNetns, istioIptables, NETNS_TEST_TIMEOUT, removeCreatedNamespaces, standaloneNamespace } from './netns.js';

const sharedNames = (JSON.parse(readFileSync(join(istioTestdata, 'iptables', 'cases.json'), 'utf8')) as { cases: { name: string }[] }).cases.map((c) => c.name);

// namespaces a timed-out test could not delete itself
afterAll(removeCreatedNamespaces);

describe.skipIf(!canUseNetns)('shared goldens from pilot-agent istio-iptables --dry-run in a pod namespace', { timeout: NETNS_TEST_TIMEOUT }, () => {
  for (const c of ISTIO_CAPTURE_CASES.filter((x) => sharedNames.includes(x.name))) {
    // Istio's test puts "::127.0.0.53" in the config as is; read from resolv.conf, Go (and we) print it ::7f00:35
    const unreachable = c.config.dnsServersV6?.some((s) => s.includes('.'));
    it.skipIf(unreachable)(c.name, async () => {
      const ns = standaloneNamespace(c.config.enableIPv6 ? 'fd00:216::2/64' : '10.216.0.2/24');
      try {
        const servers = [...(c.config.dnsServersV4 ?? []), ...(c.config.dnsServersV6 ?? [])];
        ns.setResolvConf(`# written by the test\n${servers.map((s) => `nameserver ${s}\n`).join('')}`);
        const { args, env } = cliArgsFor(c.config);
        const r = await istioIptables(ns, ['--dry-run', ...args], { env });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toBe(readFileSync(join(istioTestdata, 'iptables', `${c.name}.golden`), 'utf8').replace(/\n?$/, '\n'));
      } finally {
        ns.remove();
      }
    });
  }
});
