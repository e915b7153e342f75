// Workload keys and certificate signing requests, as Istio's GenCSR makes them
// (security/pkg/pki/util/generate_csr.go): a fresh RSA (WORKLOAD_RSA_KEY_SIZE) or ECDSA (P-256/P-384,
// ECC_SIGNATURE_ALGORITHM=ECDSA) key, an empty subject (no CN) and one critical subjectAltName
// extension holding the SPIFFE URI; SHA-256 signatures (SHA-384 on P-384, as Go picks). Keys are PEM
// PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"), or PKCS#8 ("PRIVATE KEY") with PKCS8_KEY.
//
// Keys come from node:crypto (OpenSSL, generated off the main thread); the CSR is encoded in
// security/csr.ts and signed with node:crypto, so no ASN.1 library loads on the way to a certificate.

import type { KeyObject } from 'node:crypto';
import { buildCsrPem, type CsrSignature } from './csr.js';
import { lazyBuiltin } from '../util/builtin.js';

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

/** A key or CSR could not be made (a renewal then makes a new one on its next attempt). */
export class KeyGenerationError extends Error {
  override readonly name = 'KeyGenerationError';
  readonly code = 'KEY_GENERATION_FAILED';
}

/** Istio's minimum (MinimumRsaKeySize). */
export const MINIMUM_RSA_KEY_SIZE = 2048;

export function describeKeySpec(spec: KeySpec): string {
  return spec.type === 'rsa' ? `RSA ${spec.bits}` : `ECDSA ${spec.curve}`;
}

function exportKey(key: KeyObject, spec: KeySpec): string {
  const type = spec.pkcs8 ? 'pkcs8' : spec.type === 'rsa' ? 'pkcs1' : 'sec1';
  return key.export({ type, format: 'pem' }) as string;
}

/** In node:crypto's thread pool, so start-up and the proxy are not held while the key is made. */
function newKeyPair(spec: KeySpec): Promise<{ publicKey: KeyObject; privateKey: KeyObject }> {
  const { generateKeyPair } = lazyBuiltin.crypto();
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKey: KeyObject, privateKey: KeyObject): void => (err ? reject(err) : resolve({ publicKey, privateKey }));
    if (spec.type === 'rsa') generateKeyPair('rsa', { modulusLength: spec.bits, publicExponent: 0x10001 }, done);
    else generateKeyPair('ec', { namedCurve: spec.curve === 'P384' ? 'P-384' : 'P-256' }, done);
  });
}

/** A new private key and a CSR for `spiffeUri` signed with it; failures are KeyGenerationError. */
export async function generateKeyAndCsr(spec: KeySpec, spiffeUri: string): Promise<KeyAndCsr> {
  try {
    if (spec.type === 'rsa' && spec.bits < MINIMUM_RSA_KEY_SIZE) {
      throw new Error(`requested key size does not meet the minimum required size of ${MINIMUM_RSA_KEY_SIZE} (requested: ${spec.bits})`);
    }
    const pair = await newKeyPair(spec);
    // Go's x509 signs with SHA-256, except SHA-384 on P-384
    const signature: CsrSignature = spec.type === 'rsa' ? 'sha256WithRSAEncryption' : spec.curve === 'P384' ? 'ecdsaWithSha384' : 'ecdsaWithSha256';
    const csrPem = buildCsrPem(pair.privateKey, pair.publicKey.export({ type: 'spki', format: 'der' }), spiffeUri, signature);
    return { keyPem: exportKey(pair.privateKey, spec), csrPem, key: pair.privateKey };
  } catch (err) {
    throw new KeyGenerationError(`cannot make a ${describeKeySpec(spec)} key and CSR: ${(err as Error).message}`, { cause: err });
  }
}
