// The stand-in's SDS client: what Envoy does with Istio's `sds-grpc` cluster. One gRPC channel to the
// cluster's unix socket, one SotW stream envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets,
// the node on the first request only (set_node_on_first_message_only), a subscription to the
// secrets Istio's listeners and clusters reference (`default`, `ROOTCA`), and for every response:
//   - each Secret is checked as Envoy's TLS context would: a tls_certificate's chain and key parse
//     and the key matches the leaf; a validation_context's trusted_ca holds at least one certificate;
//   - ACK (version_info = the response's version, response_nonce = its nonce) when all pass,
//     NACK otherwise (version_info = the last accepted version, error_detail INTERNAL + the reason),
//     keeping the previous secrets;
//   - the stream is reopened with backoff (500 ms doubling to 30 s) when it ends, re-sending the
//     subscription with the last accepted version, as Envoy does.
// Messages are encoded and decoded with @bufbuild/protobuf over the Envoy API registry of
// test/support/envoy-protos.ts, independently of the agent's own protobufjs encoder.

import { X509Certificate, createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import 'reflect-metadata'; // @peculiar/x509's ASN.1 schemas need it loaded first
import { X509Crl } from '@peculiar/x509';
import { create, fromBinary, fromJson, toBinary, type JsonValue, type Message } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { envoyRegistry, messageSchema } from '../support/envoy-protos.js';

export const SDS_METHOD = '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets';
export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

export interface ReceivedSecret {
  readonly name: string;
  /** version_info of the response that carried it. */
  readonly version: string;
  readonly nonce: string;
  readonly kind: 'tls_certificate' | 'validation_context';
  /** tls_certificate: the certificate chain (PEM). */
  readonly certChainPem?: string;
  /** tls_certificate: SHA-256 of the private key PEM (the key itself is never recorded). */
  readonly privateKeySha256?: string;
  /** tls_certificate: the private key PEM, kept in memory only (tests check that it matches). */
  readonly privateKeyPem?: string;
  /** validation_context: the trusted CA bundle (PEM). */
  readonly trustedCaPem?: string;
  /** validation_context: the certificate revocation list(s) (PEM), when sent. */
  readonly crlPem?: string;
  readonly receivedAt: string;
}

export interface SdsClientEvents {
  /** Every accepted secret, in arrival order. */
  onSecret?(secret: ReceivedSecret): void;
  onAck?(version: string, nonce: string): void;
  onNack?(version: string, nonce: string, reason: string): void;
  log?(msg: string): void;
}

export interface SdsClientOptions {
  /** gRPC target, e.g. `unix:/abs/path/socket` or `unix:relative/socket`. */
  readonly target: string;
  readonly resourceNames: readonly string[];
  /** The bootstrap's node, as canonical proto JSON (id, cluster, metadata, ...). */
  readonly node?: Record<string, unknown>;
  /** Reconnect backoff bounds (Envoy: 500 ms .. 30 s). */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
}

interface RequestFields {
  versionInfo: string;
  resourceNames: string[];
  responseNonce: string;
  errorDetail?: { code: number; message: string };
}

interface SecretMsg {
  name: string;
  type: { case: 'tlsCertificate'; value: { certificateChain?: { specifier: { case: string | undefined; value?: unknown } }; privateKey?: { specifier: { case: string | undefined; value?: unknown } } } } | { case: 'validationContext'; value: { trustedCa?: { specifier: { case: string | undefined; value?: unknown } }; crl?: { specifier: { case: string | undefined; value?: unknown } } } } | { case: undefined };
}

function inlineText(ds: { specifier: { case: string | undefined; value?: unknown } } | undefined, what: string): string {
  if (!ds) throw new Error(`${what} is missing`);
  const { case: c, value } = ds.specifier;
  if (c === 'inlineBytes') return Buffer.from(value as Uint8Array).toString('utf8');
  if (c === 'inlineString') return String(value);
  throw new Error(`${what}: only inline data sources are supported by the stand-in (got ${c ?? 'none'})`);
}

/** Envoy's checks of a TLS certificate secret: chain and key parse, the key matches the leaf. */
function checkTlsCertificate(chainPem: string, keyPem: string): void {
  const first = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(chainPem)?.[0];
  if (!first) throw new Error('Failed to load certificate chain from <inline>');
  const leaf = new X509Certificate(first);
  const key = createPrivateKey(keyPem);
  const a = leaf.publicKey.export({ type: 'spki', format: 'der' });
  const b = createPublicKey(key).export({ type: 'spki', format: 'der' });
  if (!a.equals(b)) throw new Error('Failed to load private key from <inline>: the key does not match the certificate');
}

/** Envoy's check of a validation context's crl: at least one X509 CRL, and every one parses. */
function checkCrl(pem: string): void {
  const blocks = pem.match(/-----BEGIN X509 CRL-----[\s\S]*?-----END X509 CRL-----/g) ?? [];
  if (blocks.length === 0) throw new Error('Failed to load CRL from <inline>');
  for (const b of blocks) {
    try {
      new X509Crl(b);
    } catch (err) {
      throw new Error(`Failed to load CRL from <inline>: ${(err as Error).message}`);
    }
  }
}

function checkTrustedCa(pem: string): void {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error('Failed to load trusted CA certificates from <inline>');
  for (const b of blocks) new X509Certificate(b);
}

export class SdsClient {
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  private closed = false;
  private acceptedVersion = '';
  private lastNonce = '';
  private backoff: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly current = new Map<string, ReceivedSecret>();
  acks = 0;
  nacks = 0;
  streamsOpened = 0;
  connected = false;

  constructor(
    private readonly options: SdsClientOptions,
    private readonly events: SdsClientEvents = {},
  ) {
    this.backoff = options.backoffMs?.initial ?? 500;
  }

  /** The latest accepted secret per name. */
  secrets(): ReceivedSecret[] {
    return [...this.current.values()];
  }

  secret(name: string): ReceivedSecret | undefined {
    return this.current.get(name);
  }

  start(): void {
    if (this.closed || this.call) return;
    this.client ??= new grpc.Client(this.options.target, grpc.credentials.createInsecure(), { 'grpc.enable_channelz': 0 });
    const call = this.client.makeBidiStreamRequest(SDS_METHOD, (b: Buffer) => b, (b: Buffer) => b);
    this.call = call;
    this.streamsOpened++;
    call.on('data', (buf: Buffer) => {
      if (this.call !== call) return;
      this.connected = true;
      this.backoff = this.options.backoffMs?.initial ?? 500;
      this.onResponse(buf);
    });
    call.on('error', (err: grpc.ServiceError) => this.onStreamEnd(call, `${grpc.status[err.code] ?? err.code}: ${err.details}`));
    call.on('end', () => this.onStreamEnd(call, 'stream ended'));
    // a new stream starts over: the node again, the names, the last accepted version, no nonce
    this.send({ versionInfo: this.acceptedVersion, resourceNames: [...this.options.resourceNames], responseNonce: '' }, true);
  }

  private onStreamEnd(call: grpc.ClientDuplexStream<Buffer, Buffer>, why: string): void {
    if (this.call !== call) return;
    this.call = undefined;
    this.connected = false;
    this.lastNonce = '';
    if (this.closed) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.options.backoffMs?.max ?? 30_000);
    this.events.log?.(`SDS stream closed (${why}); reconnecting in ${wait}ms`);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.start();
    }, wait);
    this.timer.unref();
  }

  private send(fields: RequestFields, withNode = false): void {
    const registry = envoyRegistry();
    const schema = messageSchema('envoy.service.discovery.v3.DiscoveryRequest');
    const init: Record<string, unknown> = { ...fields, typeUrl: SECRET_TYPE_URL };
    if (withNode && this.options.node) {
      init.node = fromJson(messageSchema('envoy.config.core.v3.Node'), { ...this.options.node, user_agent_name: 'envoy' } as JsonValue, { registry, ignoreUnknownFields: true });
    }
    if (fields.errorDetail) init.errorDetail = create(messageSchema('google.rpc.Status'), fields.errorDetail);
    const msg = create(schema, init as never) as Message;
    this.call?.write(Buffer.from(toBinary(schema, msg)));
  }

  private onResponse(buf: Buffer): void {
    const schema = messageSchema('envoy.service.discovery.v3.DiscoveryResponse');
    let version = '';
    let nonce = '';
    try {
      const res = fromBinary(schema, buf) as unknown as { versionInfo: string; nonce: string; typeUrl: string; resources: { typeUrl: string; value: Uint8Array }[] };
      version = res.versionInfo;
      nonce = res.nonce;
      this.lastNonce = nonce;
      if (res.typeUrl !== SECRET_TYPE_URL) throw new Error(`unexpected type_url ${res.typeUrl}`);
      const receivedAt = new Date().toISOString();
      const accepted: ReceivedSecret[] = [];
      for (const any of res.resources) {
        if (any.typeUrl !== SECRET_TYPE_URL) throw new Error(`unexpected resource type ${any.typeUrl}`);
        const s = fromBinary(messageSchema('envoy.extensions.transport_sockets.tls.v3.Secret'), any.value) as unknown as SecretMsg;
        if (!s.name) throw new Error('a Secret without a name');
        if (s.type.case === 'tlsCertificate') {
          const chain = inlineText(s.type.value.certificateChain, `${s.name}: certificate_chain`);
          const key = inlineText(s.type.value.privateKey, `${s.name}: private_key`);
          checkTlsCertificate(chain, key);
          accepted.push({ name: s.name, version, nonce, kind: 'tls_certificate', certChainPem: chain, privateKeyPem: key, privateKeySha256: createHash('sha256').update(key).digest('hex'), receivedAt });
        } else if (s.type.case === 'validationContext') {
          const ca = inlineText(s.type.value.trustedCa, `${s.name}: trusted_ca`);
          checkTrustedCa(ca);
          const crl = s.type.value.crl ? inlineText(s.type.value.crl, `${s.name}: crl`) : undefined;
          if (crl !== undefined) checkCrl(crl);
          accepted.push({ name: s.name, version, nonce, kind: 'validation_context', trustedCaPem: ca, ...(crl !== undefined ? { crlPem: crl } : {}), receivedAt });
        } else {
          throw new Error(`${s.name}: unsupported secret type`);
        }
      }
      for (const a of accepted) {
        this.current.set(a.name, a);
        this.events.onSecret?.(a);
      }
      this.acceptedVersion = version;
      this.acks++;
      this.send({ versionInfo: version, resourceNames: [...this.options.resourceNames], responseNonce: nonce });
      this.events.onAck?.(version, nonce);
    } catch (err) {
      const reason = (err as Error).message;
      this.nacks++;
      this.send({ versionInfo: this.acceptedVersion, resourceNames: [...this.options.resourceNames], responseNonce: nonce || this.lastNonce, errorDetail: { code: grpc.status.INTERNAL, message: reason } });
      this.events.onNack?.(version, nonce, reason);
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.call = undefined;
    this.client?.close();
    this.client = undefined;
  }
}
