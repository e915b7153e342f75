// The development CA: istio.v1.auth.IstioCertificateService/CreateCertificate, signing workload CSRs
// the way istiod's CA does (security/pkg/pki/util GenCertFromCSR): empty subject (or a dual-use CN
// when the CSR has one), a critical SubjectAltName copied from the CSR (istiod takes the caller's
// authenticated identity; this stand-in trusts the CSR's SPIFFE URI), key usage digitalSignature +
// keyEncipherment, extended key usage serverAuth + clientAuth, basic constraints CA:false,
// notBefore = now - 2 min, notAfter = now + requested lifetime (the default when <= 0, capped by the
// maximum and by the signer's own expiry). The response is [leaf, (intermediate,) root], each PEM
// ending in a newline.
//
// Test hooks: setFailure(mode) to make calls fail in a chosen way, a call counter and a record of
// every request (metadata, CSR, requested lifetime, outcome).

import 'reflect-metadata';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;
type EcKeyAlgorithm = webcrypto.EcKeyAlgorithm;
type RsaHashedImportParams = webcrypto.RsaHashedImportParams;
type EcKeyImportParams = webcrypto.EcKeyImportParams;
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as x509 from '@peculiar/x509';
import { repoRoot } from '../support/paths.js';
import { metadataRecord } from './ads-server.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const subtle = webcrypto.subtle;

export type KeyAlgorithm = 'rsa' | 'ecdsa' | 'ecdsa-p384';

export type CaFailureMode = 'none' | 'unavailable' | 'garbage' | 'wrong-key' | 'short-chain';
export const CA_FAILURE_MODES: readonly CaFailureMode[] = ['none', 'unavailable', 'garbage', 'wrong-key', 'short-chain'];

/** Istio's ClockSkewGracePeriod: certificates start two minutes in the past. */
const CLOCK_SKEW_MS = 2 * 60 * 1000;

const OID_SAN = '2.5.29.17';

/** istio/api's ca.proto, vendored (proto/README.md). */
export const CA_PROTO_PATH = path.join(repoRoot, 'proto', 'istio-api', 'security', 'v1alpha1', 'ca.proto');
export const CA_SERVICE = 'istio.v1.auth.IstioCertificateService';
export const CA_METHOD_PATH = `/${CA_SERVICE}/CreateCertificate`;

export interface IstioCertificateRequest {
  csr: string;
  validity_duration: number;
  metadata?: unknown;
}

export interface IstioCertificateResponse {
  cert_chain: string[];
}

let caDefinition: grpc.ServiceDefinition | undefined;

/** The IstioCertificateService definition, loaded from the vendored ca.proto with proto-loader (not the agent's generated code). */
export function caServiceDefinition(): grpc.ServiceDefinition {
  if (!caDefinition) {
    const pkg = protoLoader.loadSync(CA_PROTO_PATH, {
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
      // google/protobuf/struct.proto resolves to protobufjs's bundled well-known types
      includeDirs: [path.join(repoRoot, 'proto', 'istio-api')],
    });
    caDefinition = pkg[CA_SERVICE] as grpc.ServiceDefinition;
    if (!caDefinition) throw new Error(`${CA_SERVICE} not found in ${CA_PROTO_PATH}`);
  }
  return caDefinition;
}

// ---------------------------------------------------------------------------------------------
// Keys and certificates

export async function generateKeyPair(alg: KeyAlgorithm): Promise<CryptoKeyPair> {
  if (alg === 'rsa') {
    return (await subtle.generateKey(
      { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    )) as CryptoKeyPair;
  }
  return (await subtle.generateKey({ name: 'ECDSA', namedCurve: alg === 'ecdsa-p384' ? 'P-384' : 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
}

function pem(label: string, der: ArrayBuffer | Uint8Array): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  return pem('PRIVATE KEY', await subtle.exportKey('pkcs8', key));
}

/** Ensures exactly one trailing newline (istiod appends "\n" to every chain element). */
function pemWithNewline(s: string): string {
  return `${s.replace(/\s+$/, '')}\n`;
}

function certPem(cert: x509.X509Certificate): string {
  return pemWithNewline(cert.toString('pem'));
}

/** Signature algorithm istiod's Go code would pick for the signing key. */
function signingAlgorithm(key: CryptoKey): Algorithm | EcdsaParams {
  if (key.algorithm.name === 'ECDSA') {
    const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
    return { name: 'ECDSA', hash: curve === 'P-384' ? 'SHA-384' : curve === 'P-521' ? 'SHA-512' : 'SHA-256' } as EcdsaParams;
  }
  return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as Algorithm;
}

/** A positive 128-bit serial number, hex. */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

/** Imports a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) for signing. */
export async function importSigningKey(keyPem: string): Promise<{ key: CryptoKey; keyObject: KeyObject }> {
  const keyObject = createPrivateKey(keyPem);
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  let alg: RsaHashedImportParams | EcKeyImportParams;
  if (keyObject.asymmetricKeyType === 'rsa') {
    alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  } else if (keyObject.asymmetricKeyType === 'ec') {
    const curve = keyObject.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : curve === 'secp521r1' ? 'P-521' : undefined;
    if (!namedCurve) throw new Error(`unsupported EC curve ${curve}`);
    alg = { name: 'ECDSA', namedCurve };
  } else {
    throw new Error(`unsupported CA key type ${keyObject.asymmetricKeyType} (RSA or ECDSA needed)`);
  }
  const key = await subtle.importKey('pkcs8', der, alg, true, ['sign']);
  return { key, keyObject };
}

interface Signer {
  readonly cert: x509.X509Certificate;
  readonly key: CryptoKey;
}

async function createCaCert(o: { subject: string; keys: CryptoKeyPair; issuer?: Signer; ttlMs: number }): Promise<x509.X509Certificate> {
  const now = Date.now();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true), // istiod: KeyUsageCertSign only
    await x509.SubjectKeyIdentifierExtension.create(o.keys.publicKey),
  ];
  if (!o.issuer) {
    return x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name: o.subject,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + o.ttlMs),
      keys: o.keys,
      signingAlgorithm: signingAlgorithm(o.keys.privateKey),
      extensions,
    });
  }
  extensions.push(await x509.AuthorityKeyIdentifierExtension.create(o.issuer.cert.publicKey));
  return x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: o.subject,
    issuer: new x509.Name(o.issuer.cert.subjectName.toArrayBuffer()),
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(Math.min(now + o.ttlMs, o.issuer.cert.notAfter.getTime())),
    publicKey: o.keys.publicKey,
    signingKey: o.issuer.key,
    signingAlgorithm: signingAlgorithm(o.issuer.key),
    extensions,
  });
}

function sanEntries(values: readonly string[]): x509.JsonGeneralNames {
  return values.map((v) => {
    if (net.isIP(v)) return { type: 'ip' as const, value: v };
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) return { type: 'url' as const, value: v };
    return { type: 'dns' as const, value: v };
  });
}

/** Parses a PEM bundle into single PEM certificates. */
export function splitPemCertificates(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map(pemWithNewline) ?? [];
}

export class CaError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'CaError';
  }
}

export interface CertificateAuthorityOptions {
  /** PEM root certificate to sign with (with rootKeyPem); a new self-signed root otherwise. */
  readonly rootCertPem?: string;
  readonly rootKeyPem?: string;
  /** Key type of the generated root (and intermediate). Default 'rsa' (RSA 2048, like istiod's self-signed root). */
  readonly keyAlgorithm?: KeyAlgorithm;
  /** O= of the generated root. Default cluster.local. */
  readonly trustDomain?: string;
  /** Maximum workload certificate lifetime in seconds (longer requests are capped). Default 24h. */
  readonly maxCertTtlSeconds?: number;
  /** Lifetime when the request asks for <= 0. Default min(24h, max). */
  readonly defaultCertTtlSeconds?: number;
  /** Sign workload certificates with an intermediate CA and return [leaf, intermediate, root]. */
  readonly intermediate?: boolean;
}

export interface CaRequestRecord {
  readonly at: number;
  readonly metadata: Readonly<Record<string, readonly string[]>>;
  readonly csr: string;
  readonly validityDuration: number;
  /** The mode in force for this call. */
  readonly failureMode: CaFailureMode;
  outcome?: 'signed' | 'failed';
  /** SANs copied into the certificate. */
  sans?: readonly string[];
  /** The leaf's lifetime in seconds. */
  ttlSeconds?: number;
  error?: string;
}

export interface SignedChain {
  /** [leaf, (intermediate,) root], each PEM with a trailing newline. */
  readonly certChain: string[];
  readonly sans: string[];
  readonly ttlSeconds: number;
}

export class CertificateAuthority {
  /** When set, the SPIFFE URI every certificate is issued for, whatever the CSR asked (istiod signs the caller's authenticated identity). */
  issuedIdentity: string | undefined;
  private failure: CaFailureMode = 'none';
  private failuresLeft = Infinity;
  private delayMs = 0;
  private wrongKey: CryptoKeyPair | undefined;
  /** Calls received, including refused and failed ones. */
  calls = 0;
  readonly requestLog: CaRequestRecord[] = [];

  private constructor(
    readonly root: Signer,
    readonly intermediate: Signer | undefined,
    readonly maxCertTtlSeconds: number,
    readonly defaultCertTtlSeconds: number,
  ) {}

  static async create(opts: CertificateAuthorityOptions = {}): Promise<CertificateAuthority> {
    const alg = opts.keyAlgorithm ?? 'rsa';
    let root: Signer;
    if (opts.rootCertPem || opts.rootKeyPem) {
      if (!opts.rootCertPem || !opts.rootKeyPem) throw new Error('a CA root needs both a certificate and a key');
      const certs = splitPemCertificates(opts.rootCertPem);
      if (certs.length === 0) throw new Error('the CA root certificate file holds no PEM certificate');
      const cert = new x509.X509Certificate(certs[0]!);
      const { key, keyObject } = await importSigningKey(opts.rootKeyPem);
      const fromKey = createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
      if (!Buffer.from(cert.publicKey.rawData).equals(fromKey)) throw new Error('the CA root key does not match the CA root certificate');
      root = { cert, key };
    } else {
      const keys = await generateKeyPair(alg);
      const cert = await createCaCert({ subject: `O=${opts.trustDomain ?? 'cluster.local'}`, keys, ttlMs: 10 * 365 * 24 * 3600 * 1000 });
      root = { cert, key: keys.privateKey };
    }
    let intermediate: Signer | undefined;
    if (opts.intermediate) {
      const keys = await generateKeyPair(alg);
      const cert = await createCaCert({ subject: `O=${opts.trustDomain ?? 'cluster.local'}, CN=Intermediate CA`, keys, issuer: root, ttlMs: 5 * 365 * 24 * 3600 * 1000 });
      intermediate = { cert, key: keys.privateKey };
    }
    const max = opts.maxCertTtlSeconds ?? 24 * 3600;
    if (!(max > 0)) throw new Error('the maximum certificate lifetime must be positive');
    const def = Math.min(opts.defaultCertTtlSeconds ?? 24 * 3600, max);
    return new CertificateAuthority(root, intermediate, max, def);
  }

  get rootCertPem(): string {
    return certPem(this.root.cert);
  }

  get intermediateCertPem(): string | undefined {
    return this.intermediate && certPem(this.intermediate.cert);
  }

  private get signer(): Signer {
    return this.intermediate ?? this.root;
  }

  // -- test hooks --------------------------------------------------------------------------------

  /**
   * Makes the next calls fail: 'unavailable' (gRPC UNAVAILABLE), 'garbage' (non-PEM strings),
   * 'wrong-key' (a valid chain whose leaf certifies a different key than the CSR's),
   * 'short-chain' (only the leaf), 'none' (back to normal). `times` limits how many calls fail.
   */
  setFailure(mode: CaFailureMode, opts: { times?: number } = {}): void {
    if (!CA_FAILURE_MODES.includes(mode)) throw new Error(`unknown CA failure mode ${mode} (${CA_FAILURE_MODES.join(', ')})`);
    this.failure = mode;
    this.failuresLeft = mode === 'none' ? Infinity : (opts.times ?? Infinity);
  }

  get failureMode(): CaFailureMode {
    return this.failure;
  }

  /** Delays every answer (to test client timeouts). */
  setDelay(ms: number): void {
    this.delayMs = ms;
  }

  requests(): CaRequestRecord[] {
    return [...this.requestLog];
  }

  private takeFailure(): CaFailureMode {
    if (this.failure === 'none') return 'none';
    const mode = this.failure;
    if (--this.failuresLeft <= 0) this.setFailure('none');
    return mode;
  }

  // -- signing -----------------------------------------------------------------------------------

  /** Signs a PEM CSR for `validitySeconds` (<= 0: default lifetime; capped at the maximum). */
  async sign(csrPem: string, validitySeconds: number, o: { wrongKey?: boolean } = {}): Promise<SignedChain> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (err) {
      throw new CaError(grpc.status.INVALID_ARGUMENT, `CSR parsing failure: ${(err as Error).message}`);
    }
    let valid = false;
    try {
      valid = await csr.verify();
    } catch (err) {
      throw new CaError(grpc.status.INVALID_ARGUMENT, `CSR signature check failed: ${(err as Error).message}`);
    }
    if (!valid) throw new CaError(grpc.status.INVALID_ARGUMENT, 'CSR signature check failed');
    const sanExt = csr.extensions.find((e) => e.type === OID_SAN);
    const requested = sanExt ? new x509.SubjectAlternativeNameExtension(sanExt.rawData).names.items.filter((n) => n.type === 'url' || n.type === 'dns' || n.type === 'ip') : [];
    // istiod signs the identity it authenticated, not the CSR's: a test may set which
    const sans = this.issuedIdentity !== undefined && requested.length > 0 ? [{ type: 'url' as const, value: this.issuedIdentity }] : requested;
    if (sans.length === 0) throw new CaError(grpc.status.INVALID_ARGUMENT, 'CSR has no subject alternative name (a SPIFFE URI is expected)');
    const ttlSeconds = Math.min(validitySeconds > 0 ? validitySeconds : this.defaultCertTtlSeconds, this.maxCertTtlSeconds);

    const signer = this.signer;
    const now = Date.now();
    if (now >= signer.cert.notAfter.getTime()) throw new CaError(grpc.status.INTERNAL, 'the signing certificate has expired');
    const notAfter = Math.min(now + ttlSeconds * 1000, signer.cert.notAfter.getTime());
    const cn = csr.subjectName.getField('CN')[0];
    let subject = '';
    if (cn !== undefined && cn !== '' && sans[0]!.value.length <= 64) subject = `CN=${sans[0]!.value}`; // Istio's dual-use mode
    let publicKey: x509.PublicKeyType = csr.publicKey;
    if (o.wrongKey) {
      this.wrongKey ??= await generateKeyPair('ecdsa');
      publicKey = this.wrongKey.publicKey;
    }
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject: subject ? subject : new x509.Name([]),
      issuer: new x509.Name(signer.cert.subjectName.toArrayBuffer()),
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(notAfter),
      publicKey,
      signingKey: signer.key,
      signingAlgorithm: signingAlgorithm(signer.key),
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(signer.cert.publicKey),
        // SAN is critical because the subject is empty (X.509 and SPIFFE), as istiod marks it.
        new x509.SubjectAlternativeNameExtension(sans.map((n) => ({ type: n.type, value: n.value })), true),
      ],
    });
    const certChain = [certPem(leaf)];
    if (this.intermediate) certChain.push(certPem(this.intermediate.cert));
    certChain.push(this.rootCertPem);
    return { certChain, sans: sans.map((n) => n.value), ttlSeconds: Math.round((notAfter - now) / 1000) };
  }

  /** A serving certificate (ECDSA P-256) for the given DNS names / IPs, signed by the root. */
  async issueServingCert(sans: readonly string[], ttlSeconds = 365 * 24 * 3600): Promise<{ certChainPem: string; keyPem: string }> {
    const keys = await generateKeyPair('ecdsa');
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject: new x509.Name([]),
      issuer: new x509.Name(this.root.cert.subjectName.toArrayBuffer()),
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(Math.min(now + ttlSeconds * 1000, this.root.cert.notAfter.getTime())),
      publicKey: keys.publicKey,
      signingKey: this.root.key,
      signingAlgorithm: signingAlgorithm(this.root.key),
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(this.root.cert.publicKey),
        new x509.SubjectAlternativeNameExtension(sanEntries(sans), true),
      ],
    });
    return { certChainPem: certPem(cert), keyPem: await privateKeyToPem(keys.privateKey) };
  }

  /**
   * The signing CA's certificate revocation list (PEM), as a plugged-in CA publishes ca-crl.pem
   * (istiod copies it into the istio-ca-crl ConfigMap that pods mount): the given serial numbers
   * (hex) revoked now, next update in `nextUpdateSeconds` (default a day).
   */
  async crlPem(revokedSerials: readonly string[], o: { nextUpdateSeconds?: number } = {}): Promise<string> {
    const signer = this.signer;
    const now = Date.now();
    const crl = await x509.X509CrlGenerator.create({
      issuer: new x509.Name(signer.cert.subjectName.toArrayBuffer()),
      thisUpdate: new Date(now - CLOCK_SKEW_MS),
      nextUpdate: new Date(now + (o.nextUpdateSeconds ?? 24 * 3600) * 1000),
      entries: revokedSerials.map((serialNumber) => ({ serialNumber, revocationDate: new Date(now - CLOCK_SKEW_MS), reason: x509.X509CrlReason.keyCompromise })),
      signingKey: signer.key,
      signingAlgorithm: signingAlgorithm(signer.key),
    });
    // OpenSSL (Envoy, openssl ca -gencrl) labels CRLs "X509 CRL"; @peculiar/x509 writes "CRL"
    return pemWithNewline(crl.toString('pem').replace(/-----(BEGIN|END) CRL-----/g, '-----$1 X509 CRL-----'));
  }

  // -- gRPC --------------------------------------------------------------------------------------

  /** The CreateCertificate handler; `authorize` returns why a call is refused, or undefined. */
  handler(authorize: (md: grpc.Metadata) => string | undefined, log: (msg: string) => void): grpc.UntypedServiceImplementation {
    const createCertificate = (
      call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
      callback: grpc.sendUnaryData<IstioCertificateResponse>,
    ) => {
      this.calls++;
      const rec: CaRequestRecord = {
        at: Date.now(),
        metadata: metadataRecord(call.metadata),
        csr: call.request.csr,
        validityDuration: Number(call.request.validity_duration ?? 0),
        failureMode: this.failure,
      };
      this.requestLog.push(rec);
      if (this.requestLog.length > 1000) this.requestLog.splice(0, this.requestLog.length - 1000);
      const fail = (code: grpc.status, details: string) => {
        rec.outcome = 'failed';
        rec.error = details;
        log(`ca: ${grpc.status[code]}: ${details}`);
        callback({ code, details, metadata: new grpc.Metadata() });
      };
      const run = async () => {
        const refusal = authorize(call.metadata);
        if (refusal) return fail(grpc.status.UNAUTHENTICATED, refusal);
        const mode = this.takeFailure();
        if (mode === 'unavailable') return fail(grpc.status.UNAVAILABLE, 'CA unavailable (test failure mode)');
        if (mode === 'garbage') {
          rec.outcome = 'signed';
          return callback(null, { cert_chain: ['this is not a certificate', 'neither is this'] });
        }
        try {
          const signed = await this.sign(rec.csr, rec.validityDuration, { wrongKey: mode === 'wrong-key' });
          rec.outcome = 'signed';
          rec.sans = signed.sans;
          rec.ttlSeconds = signed.ttlSeconds;
          log(`ca: signed ${signed.sans.join(',')} for ${signed.ttlSeconds}s${mode !== 'none' ? ` [${mode}]` : ''}`);
          callback(null, { cert_chain: mode === 'short-chain' ? signed.certChain.slice(0, 1) : signed.certChain });
        } catch (err) {
          if (err instanceof CaError) return fail(err.code, err.message);
          return fail(grpc.status.INTERNAL, `CSR signing error: ${(err as Error).message}`);
        }
      };
      const go = () => void run().catch((err: unknown) => fail(grpc.status.INTERNAL, String(err)));
      if (this.delayMs > 0) setTimeout(go, this.delayMs);
      else go();
    };
    return { CreateCertificate: createCertificate };
  }
}

/**
 * A workload CSR as the agent builds it: no subject (or a CN), a critical URI SAN with the SPIFFE
 * id, signed with a new RSA 2048 / ECDSA P-256 / P-384 key. For tests and benchmarks.
 */
export async function generateCsr(o: { spiffeId: string; keyAlgorithm?: KeyAlgorithm; commonName?: string }): Promise<{ csrPem: string; keyPem: string; publicKeyDer: Buffer }> {
  const keys = await generateKeyPair(o.keyAlgorithm ?? 'ecdsa');
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: o.commonName ? `CN=${o.commonName}` : new x509.Name([]),
    keys,
    signingAlgorithm: signingAlgorithm(keys.privateKey),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: o.spiffeId }], true)],
  });
  return {
    csrPem: pemWithNewline(csr.toString('pem')),
    keyPem: await privateKeyToPem(keys.privateKey),
    publicKeyDer: Buffer.from(await subtle.exportKey('spki', keys.publicKey)),
  };
}
