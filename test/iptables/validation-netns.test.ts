// --run-validation as the istio-validation container runs it (uid 1337, --skip-rule-apply): it
// passes when the capture rules are in place and fails with Istio's exit code 126 when not, for
// an IPv4 and an IPv6 pod.

import { afterAll, describe, expect, it } from 'vitest';
import { canUseNetns, injectedInitArgs, istioIptables, NETNS_TEST_TIMEOUT, pilotAgent, removeCreatedNamespaces, standaloneNamespace } from './netns.js';

// a pass ends at the first redirected probe; a failure waits for the whole timeout, so keep that one short
const validate = (timeout: string): string[] => ['--run-validation', '--skip-rule-apply', `--probe-timeout=${timeout}`, '-p', '15001', '-z', '15006'];
const PROXY_UID = 1337;

// namespaces a timed-out test could not delete itself
afterAll(removeCreatedNamespaces);

describe.skipIf(!canUseNetns)('istio-iptables --run-validation', { timeout: NETNS_TEST_TIMEOUT }, () => {
  for (const [family, address] of [['IPv4', '10.215.0.2/24'], ['IPv6', 'fd00:215::2/64']] as const) {
    it(`${family} pod: fails (126) without the rules, passes with them`, async () => {
      const ns = standaloneNamespace(address);
      try {
        const without = await istioIptables(ns, validate('2s'), { user: PROXY_UID });
        expect(without.code, without.stderr).toBe(126);
        expect(without.stderr).toContain('validation timeout');
        expect(without.stderr).toContain('iptables validation failed; workload is not ready for Istio.');

        const init = await pilotAgent(ns, injectedInitArgs('hello.yaml.injected')!);
        expect(init.code, init.stderr).toBe(0);

        const withRules = await istioIptables(ns, validate('30s'), { user: PROXY_UID });
        expect(withRules.code, withRules.stderr).toBe(0);
        expect(withRules.stderr).toContain('Validation passed, iptables rules established');
        expect(withRules.stderr).toContain(family === 'IPv6' ? 'Listening on [::1]:15001' : 'Listening on 127.0.0.1:15001');
      } finally {
        ns.remove();
      }
    });
  }

  it('fails when it cannot listen on either port', async () => {
    const ns = standaloneNamespace('10.215.1.2/24');
    try {
      // uid 1337 may not bind ports below 1024
      const r = await istioIptables(ns, ['--run-validation', '--skip-rule-apply', '--probe-timeout=2s', '-p', '80', '-z', '81'], { user: PROXY_UID });
      expect(r.code).toBe(126);
      expect(r.stderr).toContain('no listener available');
    } finally {
      ns.remove();
    }
  });
});
