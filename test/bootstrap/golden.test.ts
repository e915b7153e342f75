// Istio parity: every case of Istio's bootstrap golden test, rendered with this project's default
// template and data model, must equal Istio's golden file as an envoy.config.bootstrap.v3.Bootstrap
// message (both parsed strictly: unknown fields and unresolvable @types fail). The same again with
// Istio's own template (test/fixtures/istio), which checks the Go text/template engine and the data
// model against what Istio renders, independently of the project's template.
// The cases come from ../shared/istio-testdata/bootstrap (or $BOOTSTRAP_GOLDEN_DIR).

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BOOTSTRAP_TYPE, messagesEqual, parseBootstrap, toCanonicalJson } from '../support/envoy-protos.js';
import { repoRoot } from '../support/paths.js';
import { generateCase, goldenDir, normalizeGenerated, prepareCase, readGoldenCases, type GoldenCase } from './golden-harness.js';

const { common, cases } = readGoldenCases();
const tempDirs: string[] = [];
afterAll(() => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** The stats matcher patterns of one kind, in order. */
function patterns(bootstrap: unknown, kind: 'prefix' | 'suffix' | 'regex'): string[] {
  const canonical = toCanonicalJson(BOOTSTRAP_TYPE, bootstrap) as {
    stats_config?: { stats_matcher?: { inclusion_list?: { patterns?: { prefix?: string; suffix?: string; safe_regex?: { regex?: string } }[] } } };
  };
  const list = canonical.stats_config?.stats_matcher?.inclusion_list?.patterns ?? [];
  return list.map((p) => (kind === 'regex' ? p.safe_regex?.regex : p[kind])).filter((x): x is string => x !== undefined && x !== '');
}

describe('Envoy bootstrap matches Istio golden files', () => {
  it('has cases to check', () => {
    expect(cases.length).toBeGreaterThan(0);
  });

  for (const c of cases) {
    it(`${c.name}: equals ${c.golden}`, () => checkCase(c, cases));
  }

  it('a case with proxyCfgBase takes that ProxyConfig and configPath leaf (Istio: secure_metrics uses default)', () => {
    const base = cases.find((c) => c.name === 'default');
    expect(base).toBeDefined();
    // the golden's node metadata carries configPath ".../bootstrap/default": it matches only when
    // the leaf is the base's name, not the case's
    const derived: GoldenCase = { name: 'default_by_base', golden: base!.golden, proxyCfgBase: 'default' };
    checkCase(derived, [...cases, derived]);
    expect(() => prepareCase(common, { name: 'no_config', golden: base!.golden }, cases)).toThrow(/no ProxyConfig/);
  });
});

describe("Istio's own envoy_bootstrap.json template renders each golden case as Istio does", () => {
  const istioTemplate = path.join(repoRoot, 'test/fixtures/istio/envoy_bootstrap.json');
  for (const c of cases) {
    it(`${c.name}: equals ${c.golden}`, () => checkCase(c, cases, istioTemplate));
  }
});

function checkCase(c: GoldenCase, all: readonly GoldenCase[], templatePath?: string): void {
  const prepared = templatePath ? prepareCase(common, c, all, templatePath) : prepareCase(common, c, all);
  tempDirs.push(prepared.out);
  const rendered = generateCase(prepared);
  const written = fs.readFileSync(rendered.outputPath, 'utf8');
  expect(written).toBe(rendered.text);
  parseBootstrap(written); // what Envoy reads parses strictly as it is, before any normalisation

  const generatedText = normalizeGenerated(written, prepared.out, c.checkLocality === true);
  const generated = parseBootstrap(generatedText); // strict: throws naming the offending field
  const golden = parseBootstrap(fs.readFileSync(path.join(goldenDir, c.golden), 'utf8'));

  if (!messagesEqual(BOOTSTRAP_TYPE, generated, golden)) {
    // a readable diff of the canonical JSON (proto field names, defaults dropped, keys sorted)
    expect(toCanonicalJson(BOOTSTRAP_TYPE, generated)).toEqual(toCanonicalJson(BOOTSTRAP_TYPE, golden));
    expect.fail(`${c.name}: messages differ although their canonical JSON is equal`);
  }

  if (c.stats) {
    const expectList = (given: string | undefined, before: string[], after: string[]): string[] => [...before, ...(given ? given.split(',') : []), ...after];
    expect(patterns(generated, 'prefix')).toEqual(expectList(c.stats.prefixes, ['reporter='], ['cluster_manager', 'listener_manager', 'server', 'cluster.xds-grpc', 'wasm', 'component', 'istio']));
    expect(patterns(generated, 'suffix')).toEqual(expectList(c.stats.suffixes, [], ['rbac.allowed', 'rbac.denied', 'shadow_allowed', 'shadow_denied']));
    expect(patterns(generated, 'regex')).toEqual(expectList(c.stats.regexps, [], ['vhost\\..*\\.route\\..*']));
  }

  const tokenFile = path.join(path.dirname(rendered.outputPath), 'lightstep_access_token.txt');
  expect(fs.existsSync(tokenFile)).toBe(c.expectLightstepAccessToken === true);
}
