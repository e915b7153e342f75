// Dry-run output against Istio's capture test: the 13 goldens in ../shared/istio-testdata/iptables
// (configurations from its cases.json) and the other cases of run_test.go with expectations
// written in expected-dry-runs.ts. Through the library (the test states IPv6 and nameservers,
// as Istio's test does) and, for the cases that are flags only, through `pilot-agent
// istio-iptables --dry-run` itself.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyPlan } from '../../src/iptables/apply.js';
import type { CaptureConfig } from '../../src/iptables/config.js';
import { planCapture } from '../../src/iptables/plan.js';
import { DryRunXtables } from '../../src/iptables/xtables.js';
import { agentBin } from '../support/processes.js';
import { istioTestdata } from '../support/paths.js';
import { EXPECTED_DRY_RUNS } from './expected-dry-runs.js';
import { CAPTURE_TEST_BASE, ISTIO_CAPTURE_CASES, captureCaseConfig, cliArgsFor } from './istio-capture-cases.js';
import { configureLogging } from '../../src/util/logger.js';

// the dry runs log what they would do; the assertions are on what they record
configureLogging({ write: () => undefined });

const GOLDEN_DIR = join(istioTestdata, 'iptables');

interface SharedCases {
  readonly base: Record<string, string>;
  readonly cases: readonly { name: string; config: Record<string, unknown> }[];
}

/** Istio's Config field names (ProxyUID, DNSServersV4, ...) as ours (proxyUID, dnsServersV4, ...). */
function ourField(istioName: string): string {
  return istioName.startsWith('DNS') ? `dns${istioName.slice(3)}` : istioName[0]!.toLowerCase() + istioName.slice(1);
}

function configOf(base: Record<string, string>, fields: Record<string, unknown>): CaptureConfig {
  const cfg: Record<string, unknown> = { ...CAPTURE_TEST_BASE };
  for (const [k, v] of Object.entries({ ...base, ...fields })) {
    if (!(ourField(k) in cfg)) throw new Error(`cases.json field ${k} has no counterpart in CaptureConfig`);
    cfg[ourField(k)] = v;
  }
  return cfg as unknown as CaptureConfig;
}

function dryRun(cfg: CaptureConfig): string[] {
  const xt = new DryRunXtables();
  applyPlan(cfg, planCapture(cfg), xt);
  return xt.recorded;
}

function goldenLines(name: string): string[] {
  return readFileSync(join(GOLDEN_DIR, `${name}.golden`), 'utf8').replace(/\n$/, '').split('\n');
}

const shared = JSON.parse(readFileSync(join(GOLDEN_DIR, 'cases.json'), 'utf8')) as SharedCases;

describe("Istio's goldens (../shared/istio-testdata/iptables)", () => {
  it('has the 13 cases', () => expect(shared.cases).toHaveLength(13));
  for (const c of shared.cases) {
    it(c.name, () => expect(dryRun(configOf(shared.base, c.config))).toEqual(goldenLines(c.name)));
  }
});

describe("run_test.go's other cases (expectations in expected-dry-runs.ts)", () => {
  const withoutGolden = ISTIO_CAPTURE_CASES.filter((c) => !shared.cases.some((s) => s.name === c.name));
  it('covers every case of run_test.go', () => {
    expect(withoutGolden.map((c) => c.name).sort()).toEqual(Object.keys(EXPECTED_DRY_RUNS).sort());
    expect(ISTIO_CAPTURE_CASES).toHaveLength(27);
  });
  for (const c of withoutGolden) {
    it(c.name, () => expect(dryRun(captureCaseConfig(c))).toEqual(EXPECTED_DRY_RUNS[c.name]));
  }
});

describe('pilot-agent istio-iptables --dry-run (this host has an IPv4 address)', () => {
  const flagOnly = ISTIO_CAPTURE_CASES.filter((c) => !c.config.enableIPv6 && !c.config.redirectDNS);
  for (const c of flagOnly) {
    it(c.name, () => {
      const { args, env } = cliArgsFor(c.config);
      const r = spawnSync(process.execPath, [agentBin, 'istio-iptables', '--dry-run', ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
      expect(r.status, r.stderr).toBe(0);
      const expected = EXPECTED_DRY_RUNS[c.name] ?? goldenLines(c.name);
      expect(r.stdout).toBe(expected.map((l) => `${l}\n`).join(''));
      // logs stay on stderr
      expect(r.stderr).toContain('running iptables in dry-run mode');
    });
  }
});
