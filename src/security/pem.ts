// PEM and X.509 helpers over node:crypto: splitting bundles, parsing certificates, matching a key
// to a leaf, reading SPIFFE URIs. No ASN.1 is written here; parsing is crypto.X509Certificate's.

import type { KeyObject, X509Certificate } from 'node:crypto';
import { isoUtc } from '../util/time.js';
import { lazyBuiltin } from '../util/builtin.js';

/**
 * BEGIN and END count only at the start of a line, as for OpenSSL and Go's encoding/pem: a block
 * they skip (an indented BEGIN) must not pass validation here and then be read differently by
 * Envoy (a chain whose indented leaf passed, while OpenSSL's first certificate was the intermediate).
 */
const CERT_BLOCK = /^-----BEGIN CERTIFICATE-----[\s\S]*?^-----END CERTIFICATE-----/gm;

/** The CERTIFICATE blocks of a PEM bundle, each normalised to end in one newline. */
export function splitPemCertificates(bundle: string): string[] {
  return (bundle.match(CERT_BLOCK) ?? []).map((b) => `${b.trim()}\n`);
}

/** Joins PEM blocks so each ends with exactly one newline (istiod's concatCerts shape). */
export function concatPem(blocks: readonly string[]): string {
  return blocks.map((b) => `${b.replace(/\s+$/, '')}\n`).join('');
}

export class CertificateError extends Error {
  override readonly name = 'CertificateError';
  readonly code = 'CERTIFICATE_INVALID';
}

const CERT_BEGIN = /^-----BEGIN CERTIFICATE-----/gm;

/**
 * Refuses a bundle with a CERTIFICATE block that no END line closes: a file caught in the middle
 * of being written. Splitting alone keeps the whole blocks before it, so a chain missing its last
 * intermediate, or a root bundle missing its last root, would pass for a good one and replace
 * the secret in force (Envoy, given Istio's file as it is, refuses it and keeps the previous).
 */
function refuseCutBlocks(bundle: string, blocks: readonly string[], what: string): void {
  const begun = bundle.match(CERT_BEGIN)?.length ?? 0;
  if (begun > blocks.length) throw new CertificateError(`${what}: a PEM certificate block is cut short (BEGIN without END): the file may be in the middle of being written`);
}

/** Parses every certificate of a PEM bundle; throws when one does not parse, one is cut short, or there are none. */
export function parseCertificates(bundle: string, what = 'certificate chain'): X509Certificate[] {
  const blocks = splitPemCertificates(bundle);
  if (blocks.length === 0) throw new CertificateError(`${what}: no PEM certificate found`);
  refuseCutBlocks(bundle, blocks, what);
  return blocks.map((b, i) => {
    try {
      return new (lazyBuiltin.crypto().X509Certificate)(b);
    } catch (err) {
      throw new CertificateError(`${what}: certificate ${i} does not parse: ${(err as Error).message}`);
    }
  });
}

/**
 * The valid certificates of a root bundle, skipping those that do not parse (as Istio's
 * ParseRootCerts does); throws when none is valid.
 */
export function parseRootBundle(bundle: string, what = 'root bundle'): { pem: string; certs: X509Certificate[]; skipped: number } {
  const blocks = splitPemCertificates(bundle);
  refuseCutBlocks(bundle, blocks, what);
  const certs: X509Certificate[] = [];
  const kept: string[] = [];
  for (const b of blocks) {
    try {
      certs.push(new (lazyBuiltin.crypto().X509Certificate)(b));
      kept.push(b);
    } catch {
      // skipped below
    }
  }
  if (certs.length === 0) throw new CertificateError(`${what}: no valid PEM certificate found`);
  return { pem: concatPem(kept), certs, skipped: blocks.length - kept.length };
}

/** SubjectPublicKeyInfo DER of a key (private or public). */
export function spkiDer(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? lazyBuiltin.crypto().createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'der' });
}

/** Whether the certificate certifies this key (same SubjectPublicKeyInfo). */
export function certMatchesKey(cert: X509Certificate, key: KeyObject): boolean {
  return spkiDer(cert.publicKey).equals(spkiDer(key));
}

/** URIs of the subjectAltName extension (`URI:...` entries of crypto's rendering). */
export function uriSans(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (!san) return [];
  const out: string[] = [];
  // Node renders `DNS:a, URI:spiffe://x, IP Address:1.2.3.4`; values with commas are JSON-quoted.
  const re = /(?:^|,\s*)URI:("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (let m = re.exec(san); m; m = re.exec(san)) {
    const raw = m[1]!;
    out.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return out;
}

/** Parses a PEM private key (PKCS#1, PKCS#8 or SEC1); throws a CertificateError naming `what`. */
export function parsePrivateKey(pem: string | Buffer, what = 'private key'): KeyObject {
  try {
    return lazyBuiltin.crypto().createPrivateKey(pem);
  } catch (err) {
    throw new CertificateError(`${what} does not parse: ${(err as Error).message}`);
  }
}

/**
 * Validates a key and certificate chain pair as tls.LoadX509KeyPair does (the leaf certifies the
 * key), returning the parsed chain.
 */
export function validateKeyCertPair(chainPem: string, keyPem: string, what = 'key/certificate pair'): { chain: X509Certificate[]; key: KeyObject } {
  const chain = parseCertificates(chainPem, `${what}: certificate chain`);
  const key = parsePrivateKey(keyPem, `${what}: private key`);
  if (!certMatchesKey(chain[0]!, key)) throw new CertificateError(`${what}: the private key does not match the leaf certificate`);
  return { chain, key };
}

export interface CertificateSummary {
  readonly serialNumber: string;
  readonly subject: string;
  readonly issuer: string;
  readonly subjectAltNames: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly fingerprintSha256: string;
  readonly isCa: boolean;
}

export function summarizeCertificate(cert: X509Certificate): CertificateSummary {
  return {
    serialNumber: cert.serialNumber,
    subject: (cert.subject ?? '').replace(/\n/g, ', '),
    issuer: (cert.issuer ?? '').replace(/\n/g, ', '),
    subjectAltNames: cert.subjectAltName ?? '',
    notBefore: isoUtc(Date.parse(cert.validFrom)),
    notAfter: isoUtc(Date.parse(cert.validTo)),
    fingerprintSha256: cert.fingerprint256,
    isCa: cert.ca,
  };
}
