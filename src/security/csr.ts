// The PKCS#10 certificate signing request Istio's GenCSR makes (security/pkg/pki/util/generate_csr.go),
// encoded directly in DER: an empty subject, the key's SubjectPublicKeyInfo (as OpenSSL exports it),
// and one extensionRequest attribute holding a critical subjectAltName with the SPIFFE URI; the
// signature is node:crypto's over the encoded CertificationRequestInfo.
//
// Why hand-encoded: this is the only ASN.1 the agent writes, and its shape is fixed (RFC 2986 +
// RFC 5280 §4.2.1.6). The libraries that build CSRs cost more than the whole rest of start-up's
// certificate work: node-forge is 372 KB of bundled code and @peculiar/asn1-x509 276 KB, all of it
// for V8 to compile in every pod at start (node-forge's compile raced Envoy's spawn while the
// warm-up ran before it). Every CSR is checked with `openssl req -verify` in
// test/security/keys.test.ts.

import type { KeyObject } from 'node:crypto';
import { lazyBuiltin } from '../util/builtin.js';

/** DER tag bytes used here (X.690). */
const TAG = {
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  sequence: 0x30,
  set: 0x31,
  /** GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String. */
  uri: 0x86,
  /** CertificationRequestInfo attributes: [0] IMPLICIT SET OF Attribute. */
  attributes: 0xa0,
} as const;

/** Encoded OBJECT IDENTIFIERs (tag, length, arcs). */
const OID = {
  extensionRequest: Buffer.from('06092a864886f70d01090e', 'hex'), // 1.2.840.113549.1.9.14 (PKCS#9)
  subjectAltName: Buffer.from('0603551d11', 'hex'), // 2.5.29.17
  sha256WithRSAEncryption: Buffer.from('06092a864886f70d01010b', 'hex'), // 1.2.840.113549.1.1.11
  ecdsaWithSha256: Buffer.from('06082a8648ce3d040302', 'hex'), // 1.2.840.10045.4.3.2
  ecdsaWithSha384: Buffer.from('06082a8648ce3d040303', 'hex'), // 1.2.840.10045.4.3.3
} as const;

const BOOLEAN_TRUE = Buffer.from([0x01, 0x01, 0xff]);
const VERSION_1 = Buffer.from([TAG.integer, 0x01, 0x00]); // CSR version v1 is encoded as 0

/** One DER TLV; lengths use the short form below 128 and the minimal long form above (up to 3 bytes). */
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  let header: Buffer;
  if (n < 0x80) header = Buffer.from([tag, n]);
  else if (n < 0x100) header = Buffer.from([tag, 0x81, n]);
  else if (n < 0x10000) header = Buffer.from([tag, 0x82, n >> 8, n & 0xff]);
  else if (n < 0x1000000) header = Buffer.from([tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  else throw new Error(`CSR field of ${n} bytes is larger than a CSR can reasonably be`);
  return Buffer.concat([header, body]);
}

export type CsrSignature = 'sha256WithRSAEncryption' | 'ecdsaWithSha256' | 'ecdsaWithSha384';

const SIGNATURES: Record<CsrSignature, { digest: string; algorithm: Buffer }> = {
  // RFC 4055: the RSA PKCS#1 v1.5 algorithms carry an explicit NULL parameter
  sha256WithRSAEncryption: { digest: 'sha256', algorithm: tlv(TAG.sequence, OID.sha256WithRSAEncryption, Buffer.from([TAG.null, 0x00])) },
  // RFC 5758: the ECDSA algorithms carry no parameters
  ecdsaWithSha256: { digest: 'sha256', algorithm: tlv(TAG.sequence, OID.ecdsaWithSha256) },
  ecdsaWithSha384: { digest: 'sha384', algorithm: tlv(TAG.sequence, OID.ecdsaWithSha384) },
};

/**
 * A PEM "CERTIFICATE REQUEST" for `uri` (a SPIFFE ID), certifying `privateKey`'s public half and
 * signed with it. node:crypto signs ECDSA in DER (r, s) form, which is what X.509 carries.
 */
export function buildCsrPem(privateKey: KeyObject, publicKeySpkiDer: Buffer, uri: string, signature: CsrSignature): string {
  if (!/^[\x20-\x7e]+$/.test(uri)) throw new Error(`CSR subjectAltName URI must be printable ASCII (an IA5String), got ${JSON.stringify(uri)}`);
  const generalNames = tlv(TAG.sequence, tlv(TAG.uri, Buffer.from(uri, 'ascii')));
  const extension = tlv(TAG.sequence, OID.subjectAltName, BOOLEAN_TRUE, tlv(TAG.octetString, generalNames));
  const extensionRequest = tlv(TAG.sequence, OID.extensionRequest, tlv(TAG.set, tlv(TAG.sequence, extension)));
  const emptySubject = tlv(TAG.sequence);
  const info = tlv(TAG.sequence, VERSION_1, emptySubject, publicKeySpkiDer, tlv(TAG.attributes, extensionRequest));
  const { digest, algorithm } = SIGNATURES[signature];
  const sig = lazyBuiltin.crypto().sign(digest, info, privateKey);
  // BIT STRING content starts with the number of unused bits in the last byte: none
  const der = tlv(TAG.sequence, info, algorithm, tlv(TAG.bitString, Buffer.from([0x00]), sig));
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE REQUEST-----\n${lines.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}
