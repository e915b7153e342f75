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
// The CA proto (proto/istio/v1/auth/ca.proto) is loaded with protobufjs on the first call.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KeyObject, X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { logger } from '../util/logger.js';
import { sleep } from './backoff.js';
import { CSR, securityMetrics } from './metrics.js';
import type { CaClientOptions } from './options.js';
import { CertificateError, certMatchesKey, parseCertificates, uriSans } from './pem.js';

const log = logger('ca');

export const CA_METHOD = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

/** Codes retried by Istio's CARetryOptions. */
export const TRANSIENT_CODES: ReadonlySet<grpc.status> = new Set([
  grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
  grpc.status.INTERNAL,
  grpc.status.UNAVAILABLE,
]);

export class CaClientError extends Error {
  override readonly name = 'CaClientError';
  constructor(
    message: string,
    /** gRPC status of the last attempt, when the call reached gRPC. */
    readonly code?: grpc.status,
  ) {
    super(message);
  }
}

interface CaTypes {
  readonly request: protobuf.Type;
  readonly response: protobuf.Type;
}

let types: CaTypes | undefined;

/** proto/istio/v1/auth/ca.proto, found upwards from this module (src/, dist/ or dist-test/ layouts). */
function caProtoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'proto', 'istio', 'v1', 'auth', 'ca.proto');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new CaClientError('proto/istio/v1/auth/ca.proto not found above the agent module');
}

function caTypes(): CaTypes {
  if (!types) {
    // protobufjs is loaded on the first CA call (synchronously, it is CommonJS); google/protobuf/struct.proto
    // is one of its bundled well-known types
    const protobufjs = createRequire(import.meta.url)('protobufjs') as typeof import('protobufjs');
    const root = new protobufjs.Root().loadSync(caProtoPath(), { keepCase: true });
    types = { request: root.lookupType('istio.v1.auth.IstioCertificateRequest'), response: root.lookupType('istio.v1.auth.IstioCertificateResponse') };
  }
  return types;
}

export function encodeCertificateRequest(csrPem: string, validitySeconds: number, certSigner: string): Buffer {
  const { request } = caTypes();
  const msg = request.fromObject({
    csr: csrPem,
    validity_duration: validitySeconds,
    metadata: { fields: { CertSigner: { stringValue: certSigner } } }, // protobufjs' bundled struct.proto uses camelCase names
  });
  return Buffer.from(request.encode(msg).finish());
}

export function decodeCertificateResponse(buf: Buffer): string[] {
  const { response } = caTypes();
  const obj = response.toObject(response.decode(buf), { arrays: true }) as { cert_chain: string[] };
  return obj.cert_chain;
}

function readOptional(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}

export interface CaClientDeps {
  /** Waits between attempts (tests shorten them). */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly random?: () => number;
}

export class CaClient {
  private readonly active = new Set<grpc.Client>();

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

  private credentials(): grpc.ChannelCredentials {
    const tls = this.options.tls;
    if (!tls) return grpc.credentials.createInsecure();
    let root: Buffer | null;
    if (tls.rootCaPath === null) {
      root = tls.osRootBundle ? readOptional(tls.osRootBundle) ?? null : null;
    } else {
      const buf = readOptional(tls.rootCaPath);
      if (!buf) throw new CaClientError(`root CA file for CA does not exist or cannot be read: ${tls.rootCaPath}`);
      root = buf;
    }
    let key: Buffer | null = null;
    let chain: Buffer | null = null;
    if (tls.clientCert) {
      const k = readOptional(tls.clientCert.keyPath);
      const c = readOptional(tls.clientCert.certChainPath);
      if (k && c) {
        key = k;
        chain = c;
      }
    }
    return grpc.credentials.createSsl(root, key, chain);
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    const token = readOptional(this.options.tokenPath)?.toString('utf8').trim();
    if (token) md.set('authorization', `Bearer ${token}`);
    else log.debug(`no token at ${this.options.tokenPath}: calling the CA without an authorization header`);
    md.set('clusterid', this.options.clusterId);
    for (const [k, v] of Object.entries(this.options.headers)) md.add(k.toLowerCase(), v);
    return md;
  }

  /** One CreateCertificate call on a fresh channel. */
  private attempt(request: Buffer, signal?: AbortSignal): Promise<string[]> {
    const channelOptions: grpc.ChannelOptions = { 'grpc.enable_retries': 0, 'grpc.enable_channelz': 0, 'grpc.max_receive_message_length': 16 * 1024 * 1024 };
    if (this.options.tls) {
      channelOptions['grpc.ssl_target_name_override'] = this.options.tls.serverName;
      channelOptions['grpc.default_authority'] = this.options.tls.serverName;
    }
    const client = new grpc.Client(this.options.address, this.credentials(), channelOptions);
    this.active.add(client);
    const deadline = Date.now() + (this.options.callTimeoutMs ?? 10_000);
    return new Promise<string[]>((resolve, reject) => {
      const call = client.makeUnaryRequest(
        CA_METHOD,
        (b: Buffer) => b,
        (b: Buffer) => b,
        request,
        this.metadata(),
        { deadline },
        (err, res) => {
          signal?.removeEventListener('abort', onAbort);
          this.active.delete(client);
          client.close();
          if (err) return reject(new CaClientError(`create certificate: ${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`, err.code));
          try {
            resolve(decodeCertificateResponse(res!));
          } catch (e) {
            reject(new CaClientError(`create certificate: cannot decode the response: ${(e as Error).message}`));
          }
        },
      );
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Sends a CSR and returns the PEM chain (leaf first), retrying transient failures. Counts one
   * outgoing request (and its latency) per call, as Istio does, and one retry per extra attempt.
   */
  async csrSign(csrPem: string, validitySeconds: number, signal?: AbortSignal): Promise<string[]> {
    const request = encodeCertificateRequest(csrPem, validitySeconds, this.options.certSigner);
    const maxAttempts = this.options.maxAttempts ?? 5;
    const base = this.options.retryBaseMs ?? 100;
    const wait = this.deps.sleep ?? sleep;
    const random = this.deps.random ?? Math.random;
    securityMetrics.outgoingRequests.inc({ request_type: CSR });
    const t0 = performance.now();
    try {
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0) {
          const ms = Math.round(base * 2 ** (attempt - 1) * (1 + 0.1 * (2 * random() - 1)));
          log.warn(`ca request failed, starting attempt ${attempt} in ${ms}ms`);
          securityMetrics.outgoingRetries.inc({ request_type: CSR });
          await wait(ms, signal);
        }
        try {
          const chain = await this.attempt(request, signal);
          if (chain.length <= 1) throw new CaClientError('invalid empty CertChain: the CA returned fewer than 2 certificates');
          return chain;
        } catch (err) {
          const code = err instanceof CaClientError ? err.code : undefined;
          if (signal?.aborted || code === undefined || !TRANSIENT_CODES.has(code) || attempt + 1 >= maxAttempts) throw err;
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
    for (const c of this.active) c.close();
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
}

/**
 * Checks a CA response before use: at least two entries, every certificate parses, the leaf (first)
 * certifies our key, carries our SPIFFE identity and is not expired, and every certificate outside the
 * last entry is signed by a later one. Entries may hold several PEM blocks (istiod appends its
 * cert-chain file and root bundle as single entries); the last entry is the root bundle, as Istio
 * infers it when the CA publishes no separate bundle. Throws CertificateError.
 */
export function validateSignedChain(entries: readonly string[], key: KeyObject, spiffeId: string, now = Date.now()): ValidatedChain {
  if (entries.length < 2) throw new CertificateError(`the CA returned ${entries.length} certificate(s); a chain needs the leaf and at least its root`);
  const parsed = entries.map((pem, i) => parseCertificates(pem, `CA response entry ${i}`));
  const certs = parsed.flat();
  const leaf = certs[0]!;
  if (!certMatchesKey(leaf, key)) throw new CertificateError('the leaf certificate returned by the CA does not certify our private key');
  const sans = uriSans(leaf);
  if (!sans.includes(spiffeId)) throw new CertificateError(`the leaf certificate returned by the CA is for ${sans.length ? sans.join(', ') : 'no URI SAN'}, not ${spiffeId}`);
  const expireTime = new Date(leaf.validTo).getTime();
  if (!(expireTime > now)) throw new CertificateError(`the leaf certificate returned by the CA expired at ${leaf.validTo}`);
  const rootCount = parsed[parsed.length - 1]!.length;
  for (let i = 0; i < certs.length - rootCount; i++) {
    const child = certs[i]!;
    const issued = certs.slice(i + 1).some((parent) => child.checkIssued(parent) && child.verify(parent.publicKey));
    if (!issued) throw new CertificateError(`CA response certificate ${i} (${(child.subject ?? '').replace(/\n/g, ', ') || child.subjectAltName || 'no subject'}) is not signed by any later certificate of the chain`);
  }
  const blocks = entries.map((p) => `${p.replace(/\s+$/, '')}\n`);
  return { chainPem: blocks.join(''), rootPem: blocks[blocks.length - 1]!, certs, expireTime };
}
