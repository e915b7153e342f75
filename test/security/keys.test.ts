// Workload keys and CSRs, checked with openssl: the signature verifies, the subject is empty, the
// only extension is a critical URI SAN with the SPIFFE identity, the key type/size/curve and PEM
// encoding are those asked for, and the CSR certifies the returned key.

import { createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateKeyAndCsr, type KeySpec } from '../../src/security/keys.js';
import { openssl, opensslStatus, SPIFFE_ID } from './support.js';

const cases: { spec: KeySpec; header: string; text: RegExp; sig: RegExp }[] = [
  { spec: { type: 'rsa', bits: 2048, pkcs8: false }, header: 'RSA PRIVATE KEY', text: /Public-Key: \(2048 bit\)/, sig: /sha256WithRSAEncryption/ },
  { spec: { type: 'rsa', bits: 3072, pkcs8: true }, header: 'PRIVATE KEY', text: /Public-Key: \(3072 bit\)/, sig: /sha256WithRSAEncryption/ },
  { spec: { type: 'ecdsa', curve: 'P256', pkcs8: false }, header: 'EC PRIVATE KEY', text: /NIST CURVE: P-256|prime256v1/, sig: /ecdsa-with-SHA256/ },
  { spec: { type: 'ecdsa', curve: 'P384', pkcs8: true }, header: 'PRIVATE KEY', text: /NIST CURVE: P-384|secp384r1/, sig: /ecdsa-with-SHA384/ },
];

describe('generateKeyAndCsr', () => {
  for (const c of cases) {
    const label = c.spec.type === 'rsa' ? `RSA ${c.spec.bits}` : `ECDSA ${c.spec.curve}`;
    it(`${label}${c.spec.pkcs8 ? ' PKCS#8' : ''}: openssl verifies the CSR; no CN, critical SPIFFE URI SAN`, async () => {
      const { csrPem, keyPem, key } = await generateKeyAndCsr(c.spec, SPIFFE_ID);
      expect(keyPem.startsWith(`-----BEGIN ${c.header}-----`)).toBe(true);
      const r = opensslStatus(['req', '-verify', '-noout', '-text'], csrPem);
      expect(r.status, r.output).toBe(0);
      expect(r.output).toMatch(/verify OK/);
      expect(r.output).toMatch(/Subject:\s*\n/); // empty subject: no CN, no O
      expect(r.output).not.toMatch(/CN\s*=/);
      expect(r.output).toMatch(/X509v3 Subject Alternative Name: critical\s*\n\s*URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/hello\s*\n/);
      expect(r.output).toMatch(c.text);
      expect(r.output).toMatch(c.sig);
      // the CSR certifies the returned key
      const csrPub = openssl(['req', '-noout', '-pubkey'], csrPem);
      expect(createPublicKey(csrPub).export({ type: 'spki', format: 'der' }).equals(createPublicKey(key).export({ type: 'spki', format: 'der' }))).toBe(true);
      // openssl reads the key too
      expect(opensslStatus(['pkey', '-noout'], keyPem).status).toBe(0);
    });
  }

  it('long identities (multi-byte DER lengths) still verify and carry the whole URI', async () => {
    // 300+ characters: the SAN's octet string and the URI itself need the 0x82 long length form
    const longId = `spiffe://${'td.'.repeat(40)}example/ns/${'n'.repeat(63)}/sa/${'s'.repeat(120)}`;
    const { csrPem } = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, longId);
    const r = opensslStatus(['req', '-verify', '-noout', '-text'], csrPem);
    expect(r.status, r.output).toBe(0);
    expect(r.output.replace(/\s+/g, '')).toContain(`URI:${longId}`);
  });

  it('encodes the 3-byte DER length form, and refuses a field too large for any length form it writes', async () => {
    const hugeId = `spiffe://cluster.local/ns/default/sa/${'s'.repeat(70_000)}`;
    const { csrPem } = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, hugeId);
    const r = opensslStatus(['req', '-verify', '-noout'], csrPem);
    expect(r.status, r.output).toBe(0);
    const oversized = `spiffe://cluster.local/ns/default/sa/${'s'.repeat(16 * 1024 * 1024)}`;
    await expect(generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, oversized)).rejects.toThrow(/CSR field of \d+ bytes/);
  });

  it('refuses an identity that is not printable ASCII, naming it', async () => {
    await expect(generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, 'spiffe://cluster.local/ns/d\u00e9faut/sa/x')).rejects.toThrow(/IA5String.*d\u00e9faut/);
  });

  it('refuses RSA keys below 2048 bits, as Istio does', async () => {
    await expect(generateKeyAndCsr({ type: 'rsa', bits: 1024, pkcs8: false }, SPIFFE_ID)).rejects.toThrow(/minimum required size of 2048/);
  });

  it('makes a new key every time', async () => {
    const a = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, SPIFFE_ID);
    const b = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, SPIFFE_ID);
    expect(a.keyPem).not.toBe(b.keyPem);
  });
});
