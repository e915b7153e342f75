import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { createCertificate } from './clients.js';
import { CertificateAuthority, generateCsr, generateKeyPair, privateKeyToPem, splitPemCertificates, type KeyAlgorithm } from './ca.js';

const SPIFFE = 'spiffe://cluster.local/ns/default/sa/httpbin';

let tmp: string;
let n = 0;

function writeTmp(name: string, text: string): string {
  const p = path.join(tmp, `${n++}-${name}`);
  fs.writeFileSync(p, text);
  return p;
}

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `openssl verify -CAfile root -untrusted <intermediates> leaf`; returns its output. */
function opensslVerify(chain: readonly string[]): string {
  const root = writeTmp('root.pem', chain[chain.length - 1]!);
  const leaf = writeTmp('leaf.pem', chain[0]!);
  const args = ['verify', '-CAfile', root];
  if (chain.length > 2) args.push('-untrusted', writeTmp('intermediates.pem', chain.slice(1, -1).join('')));
  return openssl([...args, leaf]);
}

function lifetimeSeconds(pemCert: string): number {
  const c = new X509Certificate(pemCert);
  return (Date.parse(c.validTo) - Date.parse(c.validFrom)) / 1000;
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-ca-'));
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('Istio CA', () => {
  let cp: ControlPlane;

  beforeAll(async () => {
    cp = await startControlPlane({ token: 'sekret', ca: { maxCertTtlSeconds: 48 * 3600 } });
  });

  afterAll(async () => {
    await cp.close();
  });

  it.each<[KeyAlgorithm, string]>([
    ['rsa', 'rsaEncryption'],
    ['ecdsa', 'prime256v1'],
    ['ecdsa-p384', 'secp384r1'],
  ])('signs a %s CSR: SPIFFE SAN (critical), empty subject, requested lifetime, [leaf, root]', async (alg, opensslKeyText) => {
    const { csrPem, publicKeyDer } = await generateCsr({ spiffeId: SPIFFE, keyAlgorithm: alg });
    const before = cp.ca.calls;
    const chain = await createCertificate(cp, { csr: csrPem, validitySeconds: 3600 }, { token: 'sekret', metadata: { ClusterID: 'Kubernetes' } });
    expect(cp.ca.calls).toBe(before + 1);
    expect(chain).toHaveLength(2);
    for (const c of chain) expect(c).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n$/);
    expect(chain[1]).toBe(cp.rootCertPem);
    expect(opensslVerify(chain)).toMatch(/: OK\n$/);

    const text = openssl(['x509', '-noout', '-text', '-in', writeTmp('leaf.pem', chain[0]!)]);
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical\n\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin\n/);
    expect(text).toMatch(/Subject: *\n/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Digital Signature, Key Encipherment/);
    expect(text).toMatch(/TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toContain(opensslKeyText);

    const leaf = new X509Certificate(chain[0]!);
    expect(Buffer.from(leaf.publicKey.export({ type: 'spki', format: 'der' }))).toEqual(publicKeyDer);
    expect(leaf.checkIssued(new X509Certificate(chain[1]!))).toBe(true);
    expect(lifetimeSeconds(chain[0]!)).toBe(3600 + 120); // notBefore is two minutes back, as istiod does
    expect(Date.parse(leaf.validTo) - Date.now()).toBeGreaterThan(3590_000);

    const rec = cp.ca.requests().at(-1)!;
    expect(rec).toMatchObject({ outcome: 'signed', sans: [SPIFFE], ttlSeconds: 3600, validityDuration: 3600 });
    expect(rec.metadata.clusterid).toEqual(['Kubernetes']);
  });

  it('caps the lifetime at the maximum and uses the default for 0', async () => {
    const { csrPem } = await generateCsr({ spiffeId: SPIFFE });
    const long = await createCertificate(cp, { csr: csrPem, validitySeconds: 90 * 24 * 3600 }, { token: 'sekret' });
    expect(lifetimeSeconds(long[0]!)).toBe(48 * 3600 + 120);
    const dflt = await createCertificate(cp, { csr: csrPem, validitySeconds: 0 }, { token: 'sekret' });
    expect(lifetimeSeconds(dflt[0]!)).toBe(24 * 3600 + 120);
  });

  it('uses a dual-use CN when the CSR has a subject CN', async () => {
    const { csrPem } = await generateCsr({ spiffeId: SPIFFE, commonName: 'whatever' });
    const chain = await createCertificate(cp, { csr: csrPem, validitySeconds: 600 }, { token: 'sekret' });
    expect(new X509Certificate(chain[0]!).subject).toBe(`CN=${SPIFFE}`);
  });

  it('rejects calls without the bearer token and bad CSRs', async () => {
    const { csrPem } = await generateCsr({ spiffeId: SPIFFE });
    await expect(createCertificate(cp, { csr: csrPem }, {})).rejects.toMatchObject({ code: 16, details: expect.stringMatching(/no authorization metadata/) });
    await expect(createCertificate(cp, { csr: csrPem }, { token: 'wrong' })).rejects.toMatchObject({ code: 16 });
    await expect(createCertificate(cp, { csr: 'not a csr' }, { token: 'sekret' })).rejects.toMatchObject({ code: 3, details: expect.stringMatching(/CSR/) });
    // a CSR whose signature no longer matches its content
    const other = await generateCsr({ spiffeId: SPIFFE });
    const tampered = other.csrPem.replace(/[A-Za-z](?=[A-Za-z0-9+/=]*\n-----END)/, (c) => (c === 'A' ? 'B' : 'A'));
    await expect(createCertificate(cp, { csr: tampered }, { token: 'sekret' })).rejects.toMatchObject({ code: 3 });
  });

  it('fails on demand: unavailable, garbage, wrong-key, short-chain, limited by times', async () => {
    const { csrPem, publicKeyDer } = await generateCsr({ spiffeId: SPIFFE });
    const call = () => createCertificate(cp, { csr: csrPem, validitySeconds: 600 }, { token: 'sekret' });

    cp.ca.setFailure('unavailable', { times: 2 });
    await expect(call()).rejects.toMatchObject({ code: 14 });
    await expect(call()).rejects.toMatchObject({ code: 14 });
    expect(cp.ca.failureMode).toBe('none');
    expect(await call()).toHaveLength(2);

    cp.ca.setFailure('garbage');
    const garbage = await call();
    expect(garbage.length).toBeGreaterThan(0);
    for (const g of garbage) expect(g).not.toContain('-----BEGIN');

    cp.ca.setFailure('wrong-key');
    const wrong = await call();
    expect(opensslVerify(wrong)).toMatch(/OK/); // a valid chain...
    const leafKey = new X509Certificate(wrong[0]!).publicKey.export({ type: 'spki', format: 'der' });
    expect(Buffer.from(leafKey).equals(publicKeyDer)).toBe(false); // ...for somebody else's key

    cp.ca.setFailure('short-chain');
    expect(await call()).toHaveLength(1);

    cp.ca.setFailure('none');
    expect(await call()).toHaveLength(2);
    expect(() => cp.ca.setFailure('bogus' as never)).toThrow(/unknown CA failure mode/);
  });
});

describe('Istio CA with a given root and an intermediate', () => {
  it('signs with the given root through an intermediate: [leaf, intermediate, root]', async () => {
    // a root made elsewhere (PKCS#8 key on disk), as --ca-root-cert/--ca-root-key would pass it
    const made = await CertificateAuthority.create({ keyAlgorithm: 'ecdsa', trustDomain: 'example.org' });
    const rootPem = made.rootCertPem;
    const keyPem = await privateKeyToPem(made.root.key);
    const cp = await startControlPlane({ plaintext: true, ca: { rootCertPem: rootPem, rootKeyPem: keyPem, intermediate: true } });
    try {
      expect(cp.rootCertPem).toBe(rootPem);
      const { csrPem } = await generateCsr({ spiffeId: 'spiffe://example.org/ns/a/sa/b', keyAlgorithm: 'rsa' });
      const chain = await createCertificate(cp, { csr: csrPem, validitySeconds: 600 });
      expect(chain).toHaveLength(3);
      expect(chain[2]).toBe(rootPem);
      expect(new X509Certificate(chain[1]!).subject).toMatch(/CN=Intermediate CA/);
      expect(opensslVerify(chain)).toMatch(/: OK\n$/);
      // without the intermediate the leaf does not verify
      expect(() => opensslVerify([chain[0]!, chain[2]!])).toThrow();
    } finally {
      await cp.close();
    }
  });

  it('refuses a key that does not match the root certificate', async () => {
    const made = await CertificateAuthority.create({ keyAlgorithm: 'ecdsa' });
    const other = await generateKeyPair('ecdsa');
    await expect(CertificateAuthority.create({ rootCertPem: made.rootCertPem, rootKeyPem: await privateKeyToPem(other.privateKey) })).rejects.toThrow(/does not match/);
    expect(splitPemCertificates(made.rootCertPem + made.rootCertPem)).toHaveLength(2);
  });
});
