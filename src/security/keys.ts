// Workload keys and certificate signing requests, as Istio's GenCSR makes them
// (security/pkg/pki/util/generate_csr.go): a fresh RSA (WORKLOAD_RSA_KEY_SIZE) or ECDSA (P-256/P-384,
// ECC_SIGNATURE_ALGORITHM=ECDSA) key, an empty subject (no CN) and one critical subjectAltName
// extension holding the SPIFFE URI; SHA-256 signatures (SHA-384 on P-384, as Go picks). Keys are PEM
// PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"), or PKCS#8 ("PRIVATE KEY") with PKCS8_KEY.
//
// Keys come from node:crypto (OpenSSL). The CSR structure is built by libraries: node-forge for RSA
// (signed with node:crypto over forge's CertificationRequestInfo DER, so the RSA operation is native),
// @peculiar/x509 over node's WebCrypto for ECDSA. Both libraries are loaded on first use.

import { generateKeyPair as generateKeyPairCb, KeyObject, sign, webcrypto } from 'node:crypto';
import { promisify } from 'node:util';
import { lazy } from '../util/lazy.js';

const generateKeyPair = promisify(generateKeyPairCb);

export type EccCurve = 'P256' | 'P384';

export type KeySpec =
  | { readonly type: 'rsa'; readonly bits: number; readonly pkcs8: boolean }
  | { readonly type: 'ecdsa'; readonly curve: EccCurve; readonly pkcs8: boolean };

export interface KeyAndCsr {
  /** PEM private key, in the encoding the spec asks for. */
  readonly keyPem: string;
  /** PEM "CERTIFICATE REQUEST". */
  readonly csrPem: string;
  readonly key: KeyObject;
}

/** Istio's minimum (MinimumRsaKeySize). */
export const MINIMUM_RSA_KEY_SIZE = 2048;

export function describeKeySpec(spec: KeySpec): string {
  return spec.type === 'rsa' ? `RSA ${spec.bits}` : `ECDSA ${spec.curve}`;
}

type Forge = typeof import('node-forge');
type X509 = typeof import('@peculiar/x509');

const loadForge = lazy(async (): Promise<Forge> => {
  const m = await import('node-forge');
  // bundled, a CommonJS package imported dynamically exposes only `default`
  return ((m as { default?: Forge }).default ?? m) as Forge;
});

/** @peculiar/x509, loaded on first use (also for CA CRLs). */
export const loadX509 = lazy(async (): Promise<X509> => {
  await import('reflect-metadata'); // @peculiar/x509's ASN.1 schemas need it loaded first
  const m = await import('@peculiar/x509');
  // bundled, a CommonJS package imported dynamically exposes only `default`
  const x509 = ((m as { default?: X509 }).default ?? m) as X509;
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  return x509;
});

function exportKey(key: KeyObject, spec: KeySpec): string {
  const type = spec.pkcs8 ? 'pkcs8' : spec.type === 'rsa' ? 'pkcs1' : 'sec1';
  return key.export({ type, format: 'pem' }) as string;
}

async function rsaKeyAndCsr(spec: Extract<KeySpec, { type: 'rsa' }>, spiffeUri: string): Promise<KeyAndCsr> {
  if (spec.bits < MINIMUM_RSA_KEY_SIZE) {
    throw new Error(`requested key size does not meet the minimum required size of ${MINIMUM_RSA_KEY_SIZE} (requested: ${spec.bits})`);
  }
  const [forge, pair] = await Promise.all([loadForge(), generateKeyPair('rsa', { modulusLength: spec.bits, publicExponent: 0x10001 })]);
  const { pki, asn1 } = forge;
  const csr = pki.createCertificationRequest();
  csr.publicKey = pki.publicKeyFromPem(pair.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  csr.setSubject([]);
  csr.setAttributes([
    {
      name: 'extensionRequest',
      extensions: [{ name: 'subjectAltName', critical: true, altNames: [{ type: 6 /* URI */, value: spiffeUri }] }],
    },
  ]);
  // node-forge exports getCertificationRequestInfo (x509.js) but its typings omit it
  const info = (pki as unknown as { getCertificationRequestInfo(c: typeof csr): ReturnType<typeof asn1.fromDer> }).getCertificationRequestInfo(csr);
  const signature = sign('sha256', Buffer.from(asn1.toDer(info).getBytes(), 'binary'), pair.privateKey);
  const signed = csr as typeof csr & { certificationRequestInfo: unknown; signatureOid: string; signature: string };
  signed.certificationRequestInfo = info;
  signed.signatureOid = pki.oids.sha256WithRSAEncryption!;
  signed.signature = signature.toString('binary');
  return { keyPem: exportKey(pair.privateKey, spec), csrPem: pki.certificationRequestToPem(csr), key: pair.privateKey };
}

async function ecdsaKeyAndCsr(spec: Extract<KeySpec, { type: 'ecdsa' }>, spiffeUri: string): Promise<KeyAndCsr> {
  const x509 = await loadX509();
  const namedCurve = spec.curve === 'P384' ? 'P-384' : 'P-256';
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name([]),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: spec.curve === 'P384' ? 'SHA-384' : 'SHA-256' } as webcrypto.EcdsaParams,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeUri }], true)],
  });
  const key = KeyObject.from(keys.privateKey);
  return { keyPem: exportKey(key, spec), csrPem: `${csr.toString('pem').trim()}\n`, key };
}

/** A new private key and a CSR for `spiffeUri` signed with it. */
export function generateKeyAndCsr(spec: KeySpec, spiffeUri: string): Promise<KeyAndCsr> {
  return spec.type === 'rsa' ? rsaKeyAndCsr(spec, spiffeUri) : ecdsaKeyAndCsr(spec, spiffeUri);
}
