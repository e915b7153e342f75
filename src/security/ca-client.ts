// Client of the Istio CA: istio.v1.auth.IstioCertificateService/CreateCertificate (Istio's citadel
// client, security/pkg/nodeagent/caclient/providers/citadel/client.go, and its retry interceptor,
// pkg/security/retry.go):
//   - request {csr, validity_duration = SECRET_TTL seconds, metadata {CertSigner: ISTIO_META_CERT_SIGNER}};
//   - gRPC metadata: authorization "Bearer <token>" (the token file read for every attempt; absent or
//     empty = no header, as Istio's token provider), ClusterID, CA_HEADER_* headers;
//   - TLS with the configured root (re-read for every attempt, so a rotated root is picked up) and SNI,
//     or plaintext (see options.ts);
//   - up to 5 attempts on CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL and
//     UNAVAILABLE, waiting 100, 200, 400, 800 ms (+/-10 %) in between; a fresh channel per attempt (Istio
//     rebuilds its connection after a failure; CSRs are rare, so we never keep one open);
//   - a response must hold at least two certificates (leaf ... root).
// validateSignedChain() then checks the chain against the key and identity before it is used.
//
// The messages are the generated code of istio/api's ca.proto (src/gen/security/v1alpha1/), loaded
// with the first call.

import { readFileSync } from 'node:fs';
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { GrpcTarget } from '../grpc/client.js';
import { Status, statusName } from '../grpc/status.js';
import { lazy } from '../util/lazy.js';
import { logger } from '../util/logger.js';
import { sleep } from '../util/backoff.js';
import { CSR, securityMetrics } from './metrics.js';
import { readBearerToken } from './token.js';
import type { CaClientOptions } from './options.js';
import { CertificateError, certMatchesKey, parseCertificates, uriSans } from './pem.js';

/**
 * Deadline of one CreateCertificate attempt. Istio sets none; CAs that wait for an approval
 * (istio-csr with an approver, Vault) take seconds to minutes, and a 10 s deadline cancelled every
 * attempt of one that took 12 s, so the agent never got a certificate while the CA signed each one.
 * This bound only keeps a wedged connection from stopping renewals for good.
 */
const CA_CALL_TIMEOUT_MS = 120_000;

const log = logger('ca');

export const CA_METHOD = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

/** Codes retried by Istio's CARetryOptions. */
export const TRANSIENT_CODES: ReadonlySet<number> = new Set([
  Status.CANCELLED,
  Status.DEADLINE_EXCEEDED,
  Status.RESOURCE_EXHAUSTED,
  Status.ABORTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
]);

export class CaClientError extends Error {
  override readonly name = 'CaClientError';
  readonly code = 'CA_CLIENT';
  constructor(
    message: string,
    /** gRPC status of the last attempt, when the call reached gRPC. */
    readonly grpcStatus?: number,
  ) {
    super(message);
  }
}

/** The gRPC client (node:http2, node:tls), loaded with the first call rather than before Envoy's spawn. */
const loadGrpcClient = lazy(() => import('../grpc/client.js'));

const loadCodec = lazy(async () => {
  const [{ create, fromBinary, toBinary }, ca] = await Promise.all([import('@bufbuild/protobuf'), import('../gen/security/v1alpha1/ca_pb.js')]);
  return {
    encodeRequest: (csrPem: string, validitySeconds: number, certSigner: string): Buffer =>
      Buffer.from(
        toBinary(
          ca.IstioCertificateRequestSchema,
          create(ca.IstioCertificateRequestSchema, { csr: csrPem, validityDuration: BigInt(validitySeconds), metadata: { CertSigner: certSigner } }),
        ),
      ),
    decodeResponse: (buf: Uint8Array): string[] => fromBinary(ca.IstioCertificateResponseSchema, buf).certChain,
  };
});

/** IstioCertificateRequest{csr, validity_duration, metadata{CertSigner}} as sent to the CA. */
export async function encodeCertificateRequest(csrPem: string, validitySeconds: number, certSigner: string): Promise<Buffer> {
  return (await loadCodec()).encodeRequest(csrPem, validitySeconds, certSigner);
}

/** The cert_chain of an IstioCertificateResponse. */
export async function decodeCertificateResponse(buf: Uint8Array): Promise<string[]> {
  return (await loadCodec()).decodeResponse(buf);
}

/** The file, or undefined when it does not exist; any other failure (EMFILE, EACCES) is thrown, naming the file. */
function readOptional(path: string, what: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CaClientError(`cannot read the ${what} ${path}: ${(err as Error).message}`);
  }
}

export interface CaClientDeps {
  /** Waits between attempts (tests shorten them). */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly random?: () => number;
}

export class CaClient {
  /** Calls in flight, to cancel on close(). */
  private readonly active = new Set<AbortController>();

  constructor(
    readonly options: CaClientOptions,
    private readonly deps: CaClientDeps = {},
  ) {}

  /** The CA's address and transport, for logs. */
  describe(): string {
    const tls = this.options.tls;
    if (!tls) return `${this.options.address} (plaintext)`;
    return `${this.options.address} (TLS, server name ${tls.serverName}, root ${tls.rootCaPath ?? `system bundle ${tls.osRootBundle || '(Node built-in roots)'}`})`;
  }

  /** Where and how to call, read for each attempt (a rotated root or client certificate is picked up). */
  private target(): GrpcTarget {
    const tls = this.options.tls;
    if (!tls) return { address: this.options.address };
    let ca: Buffer | null;
    if (tls.rootCaPath === null) {
      ca = tls.osRootBundle ? readOptional(tls.osRootBundle, 'system root bundle') ?? null : null;
    } else {
      const buf = readOptional(tls.rootCaPath, 'root CA file for the CA');
      if (!buf) throw new CaClientError(`root CA file for CA does not exist: ${tls.rootCaPath}`);
      ca = buf;
    }
    let clientCertificate: { privateKey: Buffer; certChain: Buffer } | undefined;
    if (tls.clientCert) {
      const k = readOptional(tls.clientCert.keyPath, 'client key for the CA');
      const c = readOptional(tls.clientCert.certChainPath, 'client certificate chain for the CA');
      if (k && c) clientCertificate = { privateKey: k, certChain: c };
    }
    return {
      address: this.options.address,
      tls: { ca, serverName: tls.serverName, ...(clientCertificate ? { clientCertificate } : {}), ...(tls.restrictions ? { restrictions: tls.restrictions } : {}) },
    };
  }

  private metadata(): Record<string, string> {
    const md: Record<string, string> = {};
    const token = readBearerToken(this.options.tokenPath, (reason) => log.warn(`${reason}: calling the CA without an authorization header`));
    if (token) md.authorization = `Bearer ${token}`;
    md.clusterid = this.options.clusterId;
    for (const [k, v] of Object.entries(this.options.headers)) md[k.toLowerCase()] = v;
    return md;
  }

  /** One CreateCertificate call on a fresh connection. */
  private async attempt(request: Buffer, signal?: AbortSignal): Promise<string[]> {
    const { GrpcCallError, unaryCall } = await loadGrpcClient();
    const cancel = new AbortController();
    this.active.add(cancel);
    const onAbort = (): void => cancel.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let res: Buffer;
    try {
      res = await unaryCall(this.target(), CA_METHOD, request, {
        metadata: this.metadata(),
        timeoutMs: this.options.callTimeoutMs ?? CA_CALL_TIMEOUT_MS,
        peerName: 'the CA',
        signal: cancel.signal,
      });
    } catch (err) {
      if (err instanceof GrpcCallError) throw new CaClientError(`create certificate: ${statusName(err.status)}: ${err.details}`, err.status);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.active.delete(cancel);
    }
    try {
      return await decodeCertificateResponse(res);
    } catch (e) {
      throw new CaClientError(`create certificate: cannot decode the response: ${(e as Error).message}`);
    }
  }

  /**
   * Sends a CSR and returns the PEM chain (leaf first), retrying transient failures. Counts one
   * outgoing request (and its latency) per call, as Istio does, and one retry per extra attempt.
   */
  async csrSign(csrPem: string, validitySeconds: number, signal?: AbortSignal): Promise<string[]> {
    const request = await encodeCertificateRequest(csrPem, validitySeconds, this.options.certSigner);
    const maxAttempts = this.options.maxAttempts ?? 5;
    const base = this.options.retryBaseMs ?? 100;
    const wait = this.deps.sleep ?? sleep;
    const random = this.deps.random ?? Math.random;
    securityMetrics.outgoingRequests.inc({ request_type: CSR });
    const t0 = performance.now();
    let lastError = '';
    try {
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0) {
          const ms = Math.round(base * 2 ** (attempt - 1) * (1 + 0.1 * (2 * random() - 1)));
          log.warn(`ca request failed (${lastError}), starting attempt ${attempt} in ${ms}ms`);
          securityMetrics.outgoingRetries.inc({ request_type: CSR });
          await wait(ms, signal);
        }
        try {
          const chain = await this.attempt(request, signal);
          if (chain.length <= 1) throw new CaClientError('invalid empty CertChain: the CA returned fewer than 2 certificates');
          return chain;
        } catch (err) {
          const status = err instanceof CaClientError ? err.grpcStatus : undefined;
          lastError = (err as Error).message;
          if (signal?.aborted || status === undefined || !TRANSIENT_CODES.has(status) || attempt + 1 >= maxAttempts) throw err;
        }
      }
    } catch (err) {
      securityMetrics.failedOutgoingRequests.inc({ request_type: CSR });
      throw err;
    } finally {
      securityMetrics.outgoingLatency.inc({ request_type: CSR }, performance.now() - t0);
    }
  }

  /** Cancels calls in flight. */
  close(): void {
    for (const c of this.active) c.abort();
    this.active.clear();
  }
}

export interface ValidatedChain {
  /** PEM of the chain, leaf first, each block newline-terminated. */
  readonly chainPem: string;
  /** PEM of the last certificate (the root, as Istio infers it when the CA publishes none). */
  readonly rootPem: string;
  readonly certs: readonly X509Certificate[];
  /** The leaf's notAfter, epoch ms. */
  readonly expireTime: number;
  /** The leaf's URI SANs (its SPIFFE identity). */
  readonly identities: readonly string[];
}

/**
 * Checks a CA response before use: at least two entries, every certificate parses, the leaf (first)
 * certifies our key, carries our SPIFFE identity (unless `acceptOtherIdentity`) and is not expired,
 * and every certificate outside the last entry is signed by a later one. Entries may hold several PEM blocks (istiod appends its
 * cert-chain file and root bundle as single entries); the last entry is the root bundle, as Istio
 * infers it when the CA publishes no separate bundle. Throws CertificateError.
 */
export function validateSignedChain(entries: readonly string[], key: KeyObject, spiffeId: string, now = Date.now(), opts: { acceptOtherIdentity?: boolean } = {}): ValidatedChain {
  if (entries.length < 2) throw new CertificateError(`the CA returned ${entries.length} certificate(s); a chain needs the leaf and at least its root`);
  const parsed = entries.map((pem, i) => parseCertificates(pem, `CA response entry ${i}`));
  const certs = parsed.flat();
  const leaf = certs[0]!;
  if (!certMatchesKey(leaf, key)) throw new CertificateError('the leaf certificate returned by the CA does not certify our private key');
  const sans = uriSans(leaf);
  if (!sans.includes(spiffeId) && !opts.acceptOtherIdentity) throw new CertificateError(`the leaf certificate returned by the CA is for ${sans.length ? sans.join(', ') : 'no URI SAN'}, not ${spiffeId}`);
  const expireTime = new Date(leaf.validTo).getTime();
  if (!(expireTime > now)) throw new CertificateError(`the leaf certificate returned by the CA expired at ${leaf.validTo}`);
  const rootCount = parsed[parsed.length - 1]!.length;
  for (let i = 0; i < certs.length - rootCount; i++) {
    const child = certs[i]!;
    const issued = certs.slice(i + 1).some((parent) => child.checkIssued(parent) && child.verify(parent.publicKey));
    if (!issued) throw new CertificateError(`CA response certificate ${i} (${(child.subject ?? '').replace(/\n/g, ', ') || child.subjectAltName || 'no subject'}) is not signed by any later certificate of the chain`);
  }
  const blocks = entries.map((p) => `${p.replace(/\s+$/, '')}\n`);
  return { chainPem: blocks.join(''), rootPem: blocks[blocks.length - 1]!, certs, expireTime, identities: sans };
}
