// What Envoy validates peers with, beyond the CA's root (issue #15 item 7), through the real agent
// and the Envoy stand-in's SDS client:
//   - PROXY_CONFIG_XDS_AGENT: istiod pushes a ProxyConfig (istio.mesh.v1alpha1.ProxyConfig) over
//     ADS; its caCertificatesPem are merged into ROOTCA and the workload certificate is renewed, as
//     Istio's agent does; an entry that is not a certificate is NACKed and changes nothing;
//   - PILOT_ENABLE_CA_CRL: the CA's revocation list mounted from istiod's istio-ca-crl ConfigMap
//     (./var/run/secrets/istio/crl/ca-crl.pem, published with Kubernetes' ..data swap) goes into
//     ROOTCA's validation context, follows changes and removal, and a file that does not parse
//     never replaces the list in force.

import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs/minimal.js';
import { describe, expect, it, vi } from 'vitest';
import { CertificateAuthority } from '../control-plane/index.js';
import { readRecord } from '../envoy-stand-in/recorder.js';
import type { RunningProcess } from '../support/processes.js';
import { useSdsPods } from '../support/sds-pod.js';

const TOKEN = 'trust-token';
const PROXY_CONFIG = 'type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig';
const CRL_DIR = 'var/run/secrets/istio/crl';

interface SdsEvent {
  name: string;
  version: string;
  certChainPem?: string;
  trustedCaPem?: string;
  crlPem?: string;
}

const pods = useSdsPods(TOKEN);
let agent: RunningProcess | undefined;

const events = (name: string): SdsEvent[] => readRecord(join(pods.dir(), 'record.jsonl')).filter((e) => e.event === 'sds' && e.name === name) as unknown as SdsEvent[];
const nacks = () => readRecord(join(pods.dir(), 'record.jsonl')).filter((e) => e.event === 'sds_nack');
const certsOf = (pem: string | undefined) => (pem ?? '').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((c) => c.replace(/\s/g, '')).sort() ?? [];

/** Waits for a ROOTCA event after the `after`-th one that satisfies `check`; returns it. */
async function nextRoot(after: number, check: (e: SdsEvent) => void): Promise<SdsEvent> {
  let found: SdsEvent | undefined;
  await vi.waitFor(
    () => {
      if (agent!.child.exitCode !== null) throw new Error(`agent exited:\n${agent!.output()}`);
      const later = events('ROOTCA').slice(after);
      expect(later.length).toBeGreaterThan(0);
      found = later[later.length - 1]!;
      check(found);
    },
    { timeout: 30_000, interval: 100 },
  );
  return found!;
}

/** A ProxyConfig as istiod encodes it: discovery_address (6) and ca_certificates_pem (34). */
function proxyConfig(caCertificatesPem: readonly string[]): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32((6 << 3) | 2).string(pods.cp().address);
  for (const pem of caCertificatesPem) w.uint32((34 << 3) | 2).string(pem);
  return w.finish();
}

describe('PROXY_CONFIG_XDS_AGENT', () => {
  it('merges the caCertificatesPem istiod pushes into ROOTCA, renews the certificate, NACKs a non-certificate', { timeout: 120_000 }, async () => {
    const cp = pods.cp();
    ({ agent } = await pods.start('pa-trust-bundle-', { PROXY_CONFIG_XDS_AGENT: 'true', ENVOY_STANDIN_ADS: '1' }));
    const first = await nextRoot(0, (e) => expect(certsOf(e.trustedCaPem)).toEqual(certsOf(cp.rootCertPem)));
    // the agent subscribed the ProxyConfig type with Envoy's first LDS request
    await vi.waitFor(() => expect(cp.lastStream()?.subscriptions[PROXY_CONFIG]).toBeDefined(), { timeout: 30_000, interval: 100 });
    const leavesBefore = events('default').length;
    const roots = events('ROOTCA').length;

    // a second CA during a migration: its root joins ROOTCA
    const migration = await CertificateAuthority.create({ trustDomain: 'migration.example' });
    const v1 = cp.setResources(PROXY_CONFIG, [{ name: 'proxy', binary: proxyConfig([migration.rootCertPem]) }]);
    await cp.waitForAck(PROXY_CONFIG, v1);
    const merged = await nextRoot(roots, (e) => expect(certsOf(e.trustedCaPem)).toEqual(certsOf(cp.rootCertPem + migration.rootCertPem)));
    expect(merged.version).not.toBe(first.version);
    // Istio's UpdateConfigTrustBundle also renews the workload certificate
    await vi.waitFor(() => expect(events('default').length).toBeGreaterThan(leavesBefore), { timeout: 30_000, interval: 100 });

    // not a certificate: NACKed with the entry named, ROOTCA as it was
    const rootsBeforeBad = events('ROOTCA').length;
    cp.setResources(PROXY_CONFIG, [{ name: 'proxy', binary: proxyConfig([migration.rootCertPem, 'not a certificate']) }]);
    const nack = await cp.waitForNack(PROXY_CONFIG);
    expect(nack.errorDetail.message).toContain('ProxyConfig caCertificatesPem[1]: no PEM certificate found');
    expect(events('ROOTCA').length).toBe(rootsBeforeBad);

    // the trust anchors go away again: ROOTCA is the CA's root alone
    const v3 = cp.setResources(PROXY_CONFIG, [{ name: 'proxy', binary: proxyConfig([]) }]);
    await cp.waitForAck(PROXY_CONFIG, v3);
    await nextRoot(rootsBeforeBad, (e) => expect(certsOf(e.trustedCaPem)).toEqual(certsOf(cp.rootCertPem)));
    expect(nacks()).toEqual([]);
  });
});

describe('PILOT_ENABLE_CA_CRL', () => {
  /** Publishes ca-crl.pem the way the kubelet updates a ConfigMap volume (..data symlink swap). */
  let published = 0;
  const publish = (root: string, content: string): void => {
    const dir = join(root, CRL_DIR);
    const version = `..2026_${++published}`;
    mkdirSync(join(dir, version), { recursive: true });
    writeFileSync(join(dir, version, 'ca-crl.pem'), content);
    symlinkSync(version, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    if (published === 1) symlinkSync('..data/ca-crl.pem', join(dir, 'ca-crl.pem'));
  };

  it('puts the CA CRL in ROOTCA from the first push, follows changes and removal, keeps a good list over a bad file', { timeout: 120_000 }, async () => {
    const cp = pods.cp();
    published = 0;
    const crlV1 = await cp.ca.crlPem(['0badc0de']);
    const pod = await pods.start('pa-ca-crl-', {}, (dir) => publish(dir, crlV1));
    agent = pod.agent;
    const root = pods.dir();
    const crlPath = join(root, CRL_DIR, 'ca-crl.pem');

    // present at start: the very first ROOTCA carries it
    await nextRoot(0, () => undefined);
    expect(events('ROOTCA')[0]!.crlPem).toBe(crlV1);

    // a new list (one more certificate revoked) is pushed at once
    const crlV2 = await cp.ca.crlPem(['0badc0de', '0ddba11']);
    let seen = events('ROOTCA').length;
    publish(root, crlV2);
    await nextRoot(seen, (e) => expect(e.crlPem).toBe(crlV2));

    // a file that does not parse: logged with its path, never sent
    seen = events('ROOTCA').length;
    publish(root, '-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n');
    await vi.waitFor(() => expect(agent!.output()).toContain(`invalid CA CRL file ${crlPath}: CRL 0 does not parse`), { timeout: 30_000, interval: 100 });
    expect(agent.output()).toContain('keeping the previous revocation list');
    expect(events('ROOTCA').length).toBe(seen);
    const held = (await (await fetch(`http://127.0.0.1:${pod.adminPort}/standin/secrets`)).json()) as { secrets: SdsEvent[] };
    expect(held.secrets.find((s) => s.name === 'ROOTCA')?.crlPem).toBe(crlV2);

    // removed (the ConfigMap is optional): ROOTCA without a list
    rmSync(join(root, CRL_DIR), { recursive: true });
    await nextRoot(seen, (e) => expect(e.crlPem).toBeUndefined());
    expect(certsOf(events('ROOTCA').at(-1)!.trustedCaPem)).toEqual(certsOf(cp.rootCertPem));
    expect(nacks()).toEqual([]);
  });

  it('is not sent with PILOT_ENABLE_CA_CRL=false', { timeout: 60_000 }, async () => {
    published = 0;
    const crl = await pods.cp().ca.crlPem(['0badc0de']);
    ({ agent } = await pods.start('pa-ca-crl-off-', { PILOT_ENABLE_CA_CRL: 'false' }, (dir) => publish(dir, crl)));
    const first = await nextRoot(0, () => undefined);
    expect(first.crlPem).toBeUndefined();
    expect(agent.output()).not.toContain('CA CRL');
  });
});
