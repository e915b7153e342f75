// The secret manager with the dev control plane's CA: warm-up, validation, rotation, outages,
// OUTPUT_CERTS, mounted files (including Kubernetes' ..data swaps) and the file-* resources.

import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics/registry.js';
import { freePort } from '../support/processes.js';
import { SecretManager, rotationDelay, type SecretItem } from '../../src/security/secret-manager.js';
import { generateCsr, type ControlPlane } from '../control-plane/index.js';
import { captureLogs, leafOf, managerOptions, openssl, opensslStatus, podFiles, SPIFFE_ID, startCa, until, workDir, type Work } from './support.js';

let cp: ControlPlane;
let work: Work;
let logs: ReturnType<typeof captureLogs>;
const managers: SecretManager[] = [];

beforeAll(async () => {
  cp = await startCa();
});
afterAll(async () => {
  await cp.close();
});
beforeEach(() => {
  work = workDir();
  podFiles(work, cp);
  cp.ca.setFailure('none');
  logs = captureLogs();
});
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
  logs.restore();
  work.cleanup();
});

function manager(...args: Parameters<typeof managerOptions> extends [unknown, unknown, ...infer R] ? R : never): SecretManager {
  const m = new SecretManager(managerOptions(work, cp, ...args));
  managers.push(m);
  return m;
}

function keyMatches(item: SecretItem): boolean {
  const leaf = new X509Certificate(leafOf(item.certificateChain!));
  return leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(createPublicKey(createPrivateKey(item.privateKey!)).export({ type: 'spki', format: 'der' }));
}

/** A key/certificate pair signed by the dev CA (PKCS#8 key). */
async function issued(ttlSeconds = 3600, spiffeId = SPIFFE_ID): Promise<{ chain: string; key: string }> {
  const { csrPem, keyPem } = await generateCsr({ spiffeId, keyAlgorithm: 'ecdsa' });
  const signed = await cp.ca.sign(csrPem, ttlSeconds);
  return { chain: signed.certChain.join(''), key: keyPem };
}

describe('workload certificate from the CA', () => {
  it('start({ warmUp: false }) leaves the CA alone until warmUp() or a request; warmUp() once issued asks nothing', async () => {
    const keySpec = { type: 'ecdsa', curve: 'P256', pkcs8: false } as const;
    const before = cp.ca.requests().length;
    const m = manager({ keySpec });
    m.start({ warmUp: false });
    // an ECDSA key and a loopback CA take a few ms: a warm-up would have reached the CA by now
    await new Promise((r) => setTimeout(r, 300));
    expect(cp.ca.requests().length).toBe(before);
    m.warmUp();
    await m.waitFor('default');
    expect(cp.ca.requests().length).toBe(before + 1);
    m.warmUp(); // already issued: no second request
    await new Promise((r) => setTimeout(r, 300));
    expect(cp.ca.requests().length).toBe(before + 1);

    // without warmUp(), Envoy's first request starts the fetch
    const n = manager({ keySpec });
    n.start({ warmUp: false });
    expect(n.lookup('default').status).toBe('pending');
    await n.waitFor('default');
    expect(cp.ca.requests().length).toBe(before + 2);
  });

  for (const keySpec of [{ type: 'rsa', bits: 2048, pkcs8: false }, { type: 'ecdsa', curve: 'P256', pkcs8: false }] as const) {
    it(`${keySpec.type.toUpperCase()}: default and ROOTCA at start; openssl verifies the chain; critical SPIFFE SAN; requested lifetime; OUTPUT_CERTS 0600`, async () => {
      const out = join(work.dir, 'out');
      const m = manager({ keySpec, secretTtlMs: 5400_000, outputDir: out });
      const updates: string[] = [];
      m.onUpdate((n) => updates.push(n));
      m.start();
      expect(m.lookup('default').status).toBe('pending');
      const item = await m.waitFor('default');
      const root = await m.waitFor('ROOTCA');
      expect(updates).toEqual(['default', 'ROOTCA']);
      expect(root.rootCert!.trim()).toBe(cp.rootCertPem.trim());
      expect(keyMatches(item)).toBe(true);
      expect(item.privateKey).toMatch(keySpec.type === 'rsa' ? /BEGIN RSA PRIVATE KEY/ : /BEGIN EC PRIVATE KEY/);
      const rootFile = work.write('check/root.pem', root.rootCert!);
      const chainFile = work.write('check/chain.pem', item.certificateChain!);
      const v = opensslStatus(['verify', '-CAfile', rootFile, chainFile]);
      expect(v.output).toMatch(/OK/);
      expect(v.status).toBe(0);
      const text = openssl(['x509', '-noout', '-text', '-in', chainFile]);
      expect(text).toMatch(/X509v3 Subject Alternative Name: critical\s*\n\s*URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/hello\s*\n/);
      const leaf = new X509Certificate(leafOf(item.certificateChain!));
      // the dev CA back-dates notBefore by 2 minutes, as istiod does
      expect(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)).toBeGreaterThanOrEqual((5400 + 120 - 5) * 1000);
      expect(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)).toBeLessThanOrEqual((5400 + 120 + 5) * 1000);
      expect(cp.ca.requests().at(-1)!.validityDuration).toBe(5400);
      for (const f of ['key.pem', 'cert-chain.pem', 'root-cert.pem']) expect(statSync(join(out, f)).mode & 0o777).toBe(0o600);
      expect(readFileSync(join(out, 'key.pem'), 'utf8')).toBe(item.privateKey);
      expect(readFileSync(join(out, 'cert-chain.pem'), 'utf8')).toBe(item.certificateChain);
      expect(readFileSync(join(out, 'root-cert.pem'), 'utf8')).toBe(root.rootCert);
      // the upstream xDS client certificate, and the debug summaries (no keys)
      expect(m.clientCertificate()?.certChain.toString()).toBe(item.certificateChain);
      const summaries = JSON.stringify(m.summaries());
      expect(summaries).not.toMatch(/PRIVATE KEY/);
      expect(m.summaries().find((s) => s.resourceName === 'default')).toMatchObject({ source: 'ca', state: 'ready', certificates: [{ subjectAltNames: `URI:${SPIFFE_ID}` }, {}] });
      const metrics = await registry.metrics();
      expect(metrics).toMatch(/istio_agent_cert_expiry_seconds\{resource_name="default"\} 53\d\d/);
      expect(metrics).toMatch(/istio_agent_num_outgoing_requests\{request_type="csr"\} \d+/);
      expect(metrics).toMatch(/istio_agent_outgoing_latency\{request_type="csr"\} \d/);
    });
  }

  it('one CA request at a time, however many callers', async () => {
    const m = manager();
    const calls = cp.ca.calls;
    m.start();
    const all = await Promise.all([m.waitFor('default'), m.waitFor('default'), m.waitFor('ROOTCA'), m.waitFor('default')]);
    expect(new Set(all.slice(0, 2).map((i) => i.generation)).size).toBe(1);
    expect(cp.ca.calls).toBe(calls + 1);
  });

  it('rotates at expiry - ratio x lifetime, keeps serving the old certificate until the new one arrives', async () => {
    const m = manager({ secretTtlMs: 3000, graceRatio: 0.5 });
    const seen: SecretItem[] = [];
    m.onUpdate((n) => {
      if (n === 'default') {
        const r = m.lookup('default');
        if (r.status === 'ready') seen.push(r.item);
      }
    });
    m.start();
    const first = await m.waitFor('default');
    await until('a rotation', () => (seen.length >= 2 ? true : undefined), 10_000);
    const second = seen[1]!;
    expect(second.generation).toBeGreaterThan(first.generation);
    expect(second.certificateChain).not.toBe(first.certificateChain);
    expect(second.createdTime).toBeLessThan(first.expireTime!); // pushed before the old one expired
    expect(second.createdTime - first.createdTime).toBeGreaterThan(1000);
    expect(keyMatches(second)).toBe(true);
    expect(m.summaries()[0]!.rotationTime).toBeDefined();
  });

  it('rotation delay: Istio formula with jitter, clamped', () => {
    expect(rotationDelay(0, 1000, 0.5, 0, 0)).toBe(500);
    expect(rotationDelay(0, 1000, 0.5, 0.1, 0, () => 0.99)).toBeCloseTo(401, 0); // +jitter -> earlier
    expect(rotationDelay(0, 1000, 0.5, 0.1, 0, () => 0.0)).toBe(500);
    expect(rotationDelay(0, 1000, 2, 0, 0)).toBe(0);
    expect(rotationDelay(0, 1000, 0.5, 0, 900)).toBe(0);
  });

  it('CA down at start: pending, retried with backoff, served when the CA comes up', async () => {
    const port = await freePort();
    const m2 = new SecretManager(managerOptions(work, { address: `127.0.0.1:${port}` }));
    managers.push(m2);
    m2.start();
    const wait = m2.waitFor('default');
    await until('two failed attempts', () => ((logs.text().match(/failed to get a workload certificate from the CA/g)?.length ?? 0) >= 2 ? true : undefined));
    expect(m2.lookup('default')).toMatchObject({ status: 'pending', reason: expect.stringMatching(/waiting for the CA \(last error: .*UNAVAILABLE/) });
    const late = await startCa({ listen: `127.0.0.1:${port}` });
    try {
      work.write('var/run/secrets/istio/root-cert.pem', late.rootCertPem);
      const item = await wait;
      expect(keyMatches(item)).toBe(true);
      expect((await m2.waitFor('ROOTCA')).rootCert!.trim()).toBe(late.rootCertPem.trim());
    } finally {
      await m2.close();
      await late.close();
    }
  });

  it('garbage, a chain for another key and a short chain are rejected, logged and retried', async () => {
    for (const mode of ['garbage', 'wrong-key', 'short-chain'] as const) {
      cp.ca.setFailure(mode, { times: 2 });
      const calls = cp.ca.calls;
      const m = manager();
      m.start();
      const item = await m.waitFor('default');
      expect(keyMatches(item)).toBe(true);
      expect(cp.ca.calls - calls).toBe(3);
      // the retries resend one CSR: no new key per attempt
      expect(new Set(cp.ca.requests().slice(-3).map((r) => r.csr)).size).toBe(1);
      await m.close();
    }
    expect(logs.text()).toMatch(/rejected the CA response: CA response entry 0: no PEM certificate found/);
    expect(logs.text()).toMatch(/rejected the CA response: the leaf certificate returned by the CA does not certify our private key/);
    expect(logs.text()).toMatch(/invalid empty CertChain/);
  });

  it("takes the identity the CA signs, as Istio (istiod signs the caller's authenticated identity: after a trust domain change, the new one), with a warning", async () => {
    cp.ca.issuedIdentity = 'spiffe://new.td/ns/default/sa/hello';
    try {
      const m = manager();
      m.start();
      const item = await m.waitFor('default');
      expect(keyMatches(item)).toBe(true);
      const leaf = new X509Certificate(item.certificateChain!.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/)![0]);
      expect(leaf.subjectAltName).toBe('URI:spiffe://new.td/ns/default/sa/hello');
      expect(logs.text()).toMatch(/the CA issued a certificate for spiffe:\/\/new.td\/ns\/default\/sa\/hello, not spiffe:\/\/.*: using it, as Istio does/);
      await m.close();
    } finally {
      cp.ca.issuedIdentity = undefined;
    }
  });

  it('token missing, then mounted: refused until the token appears', async () => {
    rmSync(work.tokenPath);
    const m = manager();
    m.start();
    await until('a refused call', () => (/UNAUTHENTICATED/.test(logs.text()) ? true : undefined));
    expect(m.lookup('default').status).toBe('pending');
    work.write('var/run/secrets/tokens/istio-token', 'test-token-1');
    await m.waitFor('default');
    expect(cp.ca.requests().at(-1)!.metadata.authorization).toEqual(['Bearer test-token-1']);
  });

  it('a CA outage at rotation time keeps the current certificate until it expires, then recovers', async () => {
    const m = manager({ secretTtlMs: 4000, graceRatio: 0.75 });
    m.start();
    const first = await m.waitFor('default');
    cp.ca.setFailure('unavailable');
    await until('a failed renewal', () => (/still serving the current certificate/.test(logs.text()) ? true : undefined), 10_000);
    const during = m.lookup('default');
    expect(during.status === 'ready' && during.item.generation).toBe(first.generation);
    await until('expiry', () => (m.lookup('default').status === 'pending' ? true : undefined), 10_000);
    expect(m.clientCertificate()).toBeUndefined();
    cp.ca.setFailure('none');
    const next = await m.waitFor('default');
    expect(next.generation).toBeGreaterThan(first.generation);
  });

  it('a renewal signed by a new root pushes ROOTCA as well as default', async () => {
    const port = await freePort();
    const first = await startCa({ listen: `127.0.0.1:${port}` });
    work.write('var/run/secrets/istio/root-cert.pem', first.rootCertPem);
    const m = new SecretManager(managerOptions(work, first, { secretTtlMs: 3000 }));
    managers.push(m);
    const updates: string[] = [];
    m.onUpdate((n) => updates.push(n));
    m.start();
    await m.waitFor('ROOTCA');
    expect(updates).toEqual(['default', 'ROOTCA']);
    await first.close();
    const second = await startCa({ listen: `127.0.0.1:${port}` });
    try {
      work.write('var/run/secrets/istio/root-cert.pem', second.rootCertPem); // the CA's root rotated too
      await until('the new root', () => (updates.filter((u) => u === 'ROOTCA').length >= 2 ? true : undefined), 15_000);
      const root = m.lookup('ROOTCA');
      expect(root.status === 'ready' && root.item.rootCert!.trim()).toBe(second.rootCertPem.trim());
      const def = m.lookup('default');
      expect(def.status).toBe('ready');
      const chain = work.write('check/chain.pem', def.status === 'ready' ? def.item.certificateChain! : '');
      expect(opensslStatus(['verify', '-CAfile', work.write('check/root.pem', second.rootCertPem), chain]).status).toBe(0);
      expect(logs.text()).toMatch(/Root cert has changed/);
    } finally {
      await m.close();
      await second.close();
    }
  });

  it('proxy config trust anchors are merged into ROOTCA (pushed) and the workload certificate is renewed', async () => {
    const out = join(work.dir, 'out');
    const m = manager({ outputDir: out });
    const updates: string[] = [];
    m.onUpdate((n) => updates.push(n));
    m.start();
    const first = await m.waitFor('default');
    const root0 = await m.waitFor('ROOTCA');
    const { CertificateAuthority } = await import('../control-plane/index.js');
    const extra = (await CertificateAuthority.create({ keyAlgorithm: 'ecdsa' })).rootCertPem;
    m.updateConfigTrustBundle([extra, extra]);
    const root1 = m.lookup('ROOTCA');
    expect(root1.status === 'ready' && root1.item.generation).toBeGreaterThan(root0.generation);
    const pems = root1.status === 'ready' ? root1.item.rootCert!.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g)! : [];
    expect(pems).toEqual([extra, cp.rootCertPem].sort());
    // OUTPUT_CERTS' root-cert.pem holds the same bundle, as Istio writes it (proxyless apps verify with it)
    expect(readFileSync(join(out, 'root-cert.pem'), 'utf8')).toBe(pems.join(''));
    await until('the renewal', () => (updates.filter((u) => u === 'default').length >= 2 ? true : undefined));
    expect((await m.waitFor('default')).generation).toBeGreaterThan(first.generation);
    expect(readFileSync(join(out, 'root-cert.pem'), 'utf8')).toBe(pems.join(''));
    m.updateConfigTrustBundle([extra]); // unchanged: nothing happens
    expect(updates.filter((u) => u === 'ROOTCA')).toHaveLength(2);
  });

  it('close() stops renewals and rejects waiters', async () => {
    cp.ca.setFailure('unavailable');
    const m = manager();
    m.start();
    const outcome = m.waitFor('default').catch((e: unknown) => e);
    await m.close();
    expect(await outcome).toMatchObject({ message: expect.stringMatching(/closed/) });
  });
});

describe('mounted certificates', () => {
  function mountedOptions(dir: string, over = {}) {
    return managerOptions(work, cp, {
      fileMountedCerts: true,
      ca: undefined,
      mounted: { certChain: join(dir, 'cert-chain.pem'), key: join(dir, 'key.pem'), root: join(dir, 'root-cert.pem') },
      ...over,
    });
  }

  /** A manager on ./etc/certs holding `pair` and istiod's root, started, with its pushes recorded. */
  function startMounted(pair: { chain: string; key: string }): { m: SecretManager; out: string; updates: string[] } {
    work.write('etc/certs/cert-chain.pem', pair.chain);
    work.write('etc/certs/key.pem', pair.key);
    work.write('etc/certs/root-cert.pem', cp.rootCertPem);
    const out = join(work.dir, 'out');
    const m = new SecretManager(mountedOptions(join(work.dir, 'etc/certs'), { outputDir: out }));
    managers.push(m);
    const updates: string[] = [];
    m.onUpdate((n) => updates.push(n));
    m.start();
    return { m, out, updates };
  }

  it("an expired mounted certificate is still served, as Istio does (withheld, Envoy's listeners would never warm), and logged once", async () => {
    const old = await issued(1);
    await new Promise((r) => setTimeout(r, 1500));
    const { m } = startMounted(old);
    const served = m.lookup('default');
    expect(served.status === 'ready' && served.item.certificateChain).toBe(old.chain);
    m.lookup('default');
    expect(logs.text().match(/expired at .*: serving it until it is replaced/g)).toHaveLength(1);
  });

  it('served from ./etc/certs; an invalid replacement never replaces the valid secret; a valid one is pushed', async () => {
    const a = await issued();
    const { m, out, updates } = startMounted(a);
    expect(m.sources).toEqual({ default: 'file', root: 'file' });
    const first = m.lookup('default');
    expect(first.status === 'ready' && first.item.certificateChain).toBe(a.chain);
    expect(readFileSync(join(out, 'cert-chain.pem'), 'utf8')).toBe(a.chain);
    work.write('etc/certs/cert-chain.pem', 'not a certificate\n');
    await until('the failure to be logged', () => (/keeping the previous valid secret/.test(logs.text()) ? true : undefined));
    const still = m.lookup('default');
    expect(still.status === 'ready' && still.item.certificateChain).toBe(a.chain);
    const b = await issued();
    work.write('etc/certs/cert-chain.pem', b.chain); // key not updated yet: mismatch, rejected
    await until('the mismatch to be logged', () => (/does not match the leaf certificate/.test(logs.text()) ? true : undefined));
    expect(updates).toEqual([]);
    work.write('etc/certs/key.pem', b.key);
    await until('the push', () => (updates.includes('default') ? true : undefined));
    const now = m.lookup('default');
    expect(now.status === 'ready' && now.item.certificateChain).toBe(b.chain);
    expect(readFileSync(join(out, 'key.pem'), 'utf8')).toBe(b.key);
    expect(m.clientCertificate()?.privateKey.toString()).toBe(b.key);
  });

  it('a file caught mid-write (a PEM block cut short) never replaces the secret or the output files', async () => {
    const a = await issued();
    const { m, out, updates } = startMounted(a);
    const cut = (pem: string): string => `${pem}-----BEGIN CERTIFICATE-----\nMIIDHzCCAgegAwIBAgIRAJ`;
    work.write('etc/certs/cert-chain.pem', cut(a.chain));
    await until('the chain to be refused', () => (/certificate chain: a PEM certificate block is cut short/.test(logs.text()) ? true : undefined));
    work.write('etc/certs/root-cert.pem', cut(cp.rootCertPem));
    await until('the roots to be refused', () => (/root.*a PEM certificate block is cut short/.test(logs.text()) ? true : undefined));
    expect(updates).toEqual([]);
    const still = m.lookup('default');
    expect(still.status === 'ready' && still.item.certificateChain).toBe(a.chain);
    const root = m.lookup('ROOTCA');
    expect(root.status === 'ready' && root.item.rootCert).toBe(cp.rootCertPem);
    expect(readFileSync(join(out, 'cert-chain.pem'), 'utf8')).toBe(a.chain);
    expect(readFileSync(join(out, 'root-cert.pem'), 'utf8')).toBe(cp.rootCertPem);
  });

  it("follows Kubernetes' ..data symlink swap (and ignores unrelated files)", async () => {
    const dir = join(work.dir, 'var/run/secrets/workload-spiffe-credentials');
    const publish = (version: string, pair: { chain: string; key: string }): void => {
      const ts = join(dir, `..${version}`);
      mkdirSync(ts, { recursive: true });
      writeFileSync(join(ts, 'cert-chain.pem'), pair.chain);
      writeFileSync(join(ts, 'key.pem'), pair.key);
      writeFileSync(join(ts, 'root-cert.pem'), cp.rootCertPem);
      symlinkSync(`..${version}`, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    };
    const a = await issued();
    publish('2024_01', a);
    for (const f of ['cert-chain.pem', 'key.pem', 'root-cert.pem']) symlinkSync(`..data/${f}`, join(dir, f));
    const m = new SecretManager(mountedOptions(dir, { filePollMs: 0 }));
    managers.push(m);
    const updates: string[] = [];
    m.onUpdate((n) => updates.push(n));
    m.start();
    const first = m.lookup('default');
    expect(first.status === 'ready' && first.item.certificateChain).toBe(a.chain);
    writeFileSync(join(dir, 'unrelated.txt'), 'x');
    await new Promise((r) => setTimeout(r, 200));
    expect(updates).toEqual([]);
    const b = await issued();
    publish('2024_02', b);
    rmSync(join(dir, '..2024_01'), { recursive: true });
    await until('the push after the swap', () => (updates.includes('default') ? true : undefined));
    const now = m.lookup('default');
    expect(now.status === 'ready' && now.item.certificateChain).toBe(b.chain);
    expect(updates.filter((u) => u === 'ROOTCA')).toEqual([]); // same root content: no push
  });

  it('waits for mounted files that are not there yet', async () => {
    const dir = join(work.dir, 'etc/certs');
    const m = new SecretManager(mountedOptions(dir));
    managers.push(m);
    m.start();
    expect(m.lookup('default')).toMatchObject({ status: 'pending', reason: expect.stringMatching(/file not found/) });
    const wait = m.waitFor('default');
    const a = await issued();
    work.write('etc/certs/key.pem', a.key);
    work.write('etc/certs/cert-chain.pem', a.chain);
    expect((await wait).certificateChain).toBe(a.chain);
  });

  it('CA mode still prefers ./etc/certs when both files are there (unless OUTPUT_CERTS points at it)', async () => {
    const a = await issued();
    work.write('etc/certs/cert-chain.pem', a.chain);
    work.write('etc/certs/key.pem', a.key);
    const m = manager();
    m.start();
    expect(m.sources).toEqual({ default: 'file', root: 'ca' });
    expect((await m.waitFor('ROOTCA')).rootCert!.trim()).toBe(cp.rootCertPem.trim());
    const m2 = manager({ outputDir: join(work.dir, 'etc/certs') });
    m2.start();
    expect(m2.sources).toEqual({ default: 'ca', root: 'ca' });
    const item = await m2.waitFor('default');
    expect(readFileSync(join(work.dir, 'etc/certs/cert-chain.pem'), 'utf8')).toBe(item.certificateChain);
  });
});

describe('file resources', () => {
  it('file-cert:, file-root:, file-root:system, and unknown or malformed names', async () => {
    const a = await issued(3600, 'spiffe://cluster.local/ns/default/sa/gateway');
    const cert = work.write('creds/tls.crt', a.chain);
    work.write('creds/tls.key', a.key);
    work.write('creds/ca.crt', `${cp.rootCertPem}-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n`);
    const m = manager();
    m.start();
    const kc = m.lookup(`file-cert:${cert}~creds/tls.key`);
    expect(kc.status === 'ready' && kc.item.certificateChain).toBe(a.chain);
    const root = m.lookup('file-root:creds/ca.crt');
    expect(root.status === 'ready' && root.item.rootCert!.trim()).toBe(cp.rootCertPem.trim()); // the invalid block is dropped
    expect(logs.text()).toMatch(/failed to parse 1 certificate\(s\) of .*ca\.crt/);
    if (existsSync('/etc/ssl/certs/ca-certificates.crt')) {
      const sys = m.lookup('file-root:system');
      expect(sys.status === 'ready' && (sys.item.rootCert!.match(/BEGIN CERTIFICATE/g)?.length ?? 0)).toBeGreaterThan(10);
    }
    expect(m.lookup('file-root:creds/missing.pem')).toMatchObject({ status: 'pending', reason: expect.stringMatching(/file not found/) });
    // a path that cannot be read is named in the reason, as Istio's (Node's read error names none)
    mkdirSync(join(work.dir, 'creds/a-dir.pem'), { recursive: true });
    expect(m.lookup('file-root:creds/a-dir.pem')).toMatchObject({ status: 'pending', reason: `read ${join(work.dir, 'creds/a-dir.pem')}: EISDIR: illegal operation on a directory, read` });
    expect(m.lookup('bogus')).toMatchObject({ status: 'unknown', reason: expect.stringMatching(/unknown resource name "bogus"/) });
    expect(m.lookup('file-cert:only-one-path')).toMatchObject({ status: 'unknown' });
    expect(m.summaries().map((s) => s.resourceName)).toContain(`file-cert:${cert}~creds/tls.key`);
  });

  it('release() drops what a file name left (its state and watches) once no stream subscribes; the defaults stay', async () => {
    work.write('creds/ca.crt', cp.rootCertPem);
    const m = manager();
    m.start();
    const fileNames = () => m.summaries().filter((s) => s.source === 'file').map((s) => s.resourceName);
    const madeUp = Array.from({ length: 2000 }, (_, i) => `file-root:missing/d${i}/ca.pem`);
    for (const n of madeUp) expect(m.lookup(n).status).toBe('pending');
    expect(m.lookup('file-root:creds/ca.crt').status).toBe('ready');
    expect(fileNames()).toHaveLength(2001);
    for (const n of madeUp) m.release(n);
    m.release('default');
    m.release('ROOTCA');
    expect(fileNames()).toEqual(['file-root:creds/ca.crt']);
    // a released name is read again when asked for again, and a change to its file is seen
    m.release('file-root:creds/ca.crt');
    expect(fileNames()).toEqual([]);
    const again = m.lookup('file-root:creds/ca.crt');
    expect(again.status === 'ready' && again.item.rootCert!.trim()).toBe(cp.rootCertPem.trim());
    const changed = new Promise<string>((resolve) => m.onUpdate((n) => n === 'file-root:creds/ca.crt' && resolve(n)));
    const other = await issued(3600);
    work.write('creds/ca.crt', `${cp.rootCertPem}${other.chain}`);
    expect(await changed).toBe('file-root:creds/ca.crt');
  });
});
