// The last-known-good workload certificate: saved when issued (0600), restored when the CA is
// unreachable at start, never when it has expired, is for another identity, or does not parse.

import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../control-plane/index.js';
import { SecretManager } from '../../src/security/secret-manager.js';
import { WorkloadCertificateStore } from '../../src/security/last-known-good.js';
import { freePort } from '../support/processes.js';
import { managerOptions, podFiles, SPIFFE_ID, startCa, workDir, type Work } from './support.js';

let cp: ControlPlane;
let work: Work;
const managers: SecretManager[] = [];

beforeAll(async () => {
  cp = await startCa();
  work = workDir('pa-lkgcert-');
  podFiles(work, cp);
});
afterAll(async () => {
  await cp.close();
  work.cleanup();
});
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

const lkgDir = (): string => join(work.dir, 'var/lib/istio/data/workload');

async function issueAndSave(): Promise<string> {
  const m = new SecretManager(managerOptions(work, cp, { lastKnownGoodDir: lkgDir() }));
  managers.push(m);
  m.start();
  const item = await m.waitFor('default');
  const file = new WorkloadCertificateStore(lkgDir(), SPIFFE_ID).file;
  expect(statSync(file).mode & 0o777).toBe(0o600);
  return item.certificateChain!;
}

async function startWithCaDown(over: { spiffeId?: string; now?: () => number } = {}): Promise<SecretManager> {
  const dead = { address: `127.0.0.1:${await freePort()}` };
  const m = new SecretManager(managerOptions(work, dead, { lastKnownGoodDir: lkgDir(), ...(over.spiffeId ? { spiffeId: over.spiffeId } : {}) }), over.now ? { now: over.now } : {});
  managers.push(m);
  m.start();
  return m;
}

describe('last-known-good workload certificate', () => {
  it('is restored when the CA is down at start, and served as default and ROOTCA', async () => {
    const chain = await issueAndSave();
    const m = await startWithCaDown();
    const item = await m.waitFor('default');
    expect(item.certificateChain).toBe(chain);
    expect((await m.waitFor('ROOTCA')).rootCert).toContain('BEGIN CERTIFICATE');
  });

  it('is never served once expired, for another identity, or when the file is corrupt', async () => {
    await issueAndSave();
    const store = new WorkloadCertificateStore(lkgDir(), SPIFFE_ID);
    const inTwoDays = Date.now() + 2 * 24 * 3600_000;
    expect(store.load(inTwoDays)).toBeUndefined();
    expect(new WorkloadCertificateStore(lkgDir(), 'spiffe://cluster.local/ns/other/sa/x').load(Date.now())).toBeUndefined();
    const saved = readFileSync(store.file, 'utf8');
    writeFileSync(store.file, saved.slice(0, saved.length / 2)); // truncated
    expect(store.load(Date.now())).toBeUndefined();
    const parsed = JSON.parse(saved) as { spiffeId: string };
    writeFileSync(store.file, JSON.stringify({ ...parsed, spiffeId: 'spiffe://cluster.local/ns/other/sa/x' })); // tampered identity
    expect(store.load(Date.now())).toBeUndefined();
    // JSON that is not a saved certificate: reading its fields threw (an unhandled rejection ended the agent)
    for (const junk of ['null', '[]', '{"format":1}', JSON.stringify({ ...parsed, keyPem: 5 })]) {
      writeFileSync(store.file, junk);
      expect(store.load(Date.now()), junk).toBeUndefined();
    }
    // far larger than a certificate: refused before it is read
    writeFileSync(store.file, Buffer.alloc(2 * 1024 * 1024, 0x20));
    expect(store.load(Date.now())).toBeUndefined();
    writeFileSync(store.file, saved);
    expect(store.load(Date.now())).toBeDefined();
    // and through the manager: an expired one leaves default pending, as without a store
    const m = await startWithCaDown({ now: () => inTwoDays });
    await new Promise((r) => setTimeout(r, 1500));
    expect(m.lookup('default').status).toBe('pending');
  });
});
