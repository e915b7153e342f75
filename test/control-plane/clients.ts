// gRPC clients of the development control plane, built from the same protos, for tests and
// benchmarks: SotW and Delta ADS streams with a response queue, and the Istio CA call.

import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { JsonValue } from '@bufbuild/protobuf';
import { messageSchema } from '../support/envoy-protos.js';
import { caServiceDefinition, CA_METHOD_PATH, type IstioCertificateRequest, type IstioCertificateResponse } from './ca.js';
import { resourceNameOf } from './resources.js';
import {
  UNLIMITED_MESSAGE_OPTIONS,
  adsMethods,
  decodeMessage,
  messageFromJson,
  messageToJson,
  xdsSchemas,
  type AnyMsg,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from './xds-protos.js';

export interface Target {
  /** host:port */
  readonly address: string;
  readonly tls: boolean;
  /** Trust anchor when tls (the control plane's rootCertPem). */
  readonly rootCertPem?: string;
}

export interface ClientOptions {
  /** Sent as `authorization: Bearer <token>`. */
  readonly token?: string;
  /** Extra request metadata (e.g. ClusterID). */
  readonly metadata?: Readonly<Record<string, string>>;
  /**
   * TLS server name (SNI and verified SAN) instead of the address host. Default for IP-literal
   * addresses: istiod.istio-system.svc (Node refuses IP addresses as SNI); '' keeps the IP.
   */
  readonly serverName?: string;
}

export function channelCredentials(target: Target): grpc.ChannelCredentials {
  if (!target.tls) return grpc.credentials.createInsecure();
  if (!target.rootCertPem) throw new Error('a TLS target needs rootCertPem');
  return grpc.credentials.createSsl(Buffer.from(target.rootCertPem));
}

export function createClient(target: Target, opts: ClientOptions = {}): grpc.Client {
  const channelOptions: grpc.ChannelOptions = { ...UNLIMITED_MESSAGE_OPTIONS };
  const host = target.address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  const serverName = opts.serverName ?? (net.isIP(host) ? 'istiod.istio-system.svc' : undefined);
  if (target.tls && serverName) channelOptions['grpc.ssl_target_name_override'] = serverName;
  return new grpc.Client(target.address, channelCredentials(target), channelOptions);
}

function requestMetadata(opts: ClientOptions): grpc.Metadata {
  const md = new grpc.Metadata();
  if (opts.token !== undefined) md.set('authorization', `Bearer ${opts.token}`);
  for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
  return md;
}

/** A bidi xDS stream with a queue of received responses and the final status. */
export class XdsStream<Req, Res> {
  private readonly queue: Res[] = [];
  private readonly waiters: { resolve: (r: Res) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  private ended: grpc.StatusObject | undefined;
  /** Resolves with the stream's final status (never rejects). */
  readonly status: Promise<grpc.StatusObject>;
  /** Every response received, in order. */
  readonly received: Res[] = [];

  constructor(
    private readonly client: grpc.Client,
    private readonly call: grpc.ClientDuplexStream<Req, Res>,
  ) {
    call.on('data', (res: Res) => {
      this.received.push(res);
      const w = this.waiters.shift();
      if (w) {
        clearTimeout(w.timer);
        w.resolve(res);
      } else {
        this.queue.push(res);
      }
    });
    this.status = new Promise((resolve) => {
      call.on('status', (st: grpc.StatusObject) => {
        this.ended = st;
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(new Error(`stream ended with ${grpc.status[st.code]}: ${st.details}`));
        }
        resolve(st);
      });
    });
    call.on('error', () => undefined); // reported through status
  }

  send(req: Req): void {
    this.call.write(req);
  }

  /** The next response (queued or future). */
  next(timeoutMs = 10_000): Promise<Res> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.ended) return Promise.reject(new Error(`stream ended with ${grpc.status[this.ended.code]}: ${this.ended.details}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.findIndex((w) => w.timer === timer);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no response within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push({ resolve, reject, timer });
    });
  }

  /** Resolves true when no response arrives within `ms` (the queue must be empty too). */
  async expectNone(ms = 300): Promise<boolean> {
    if (this.queue.length > 0) return false;
    try {
      const r = await this.next(ms);
      this.queue.unshift(r);
      return false;
    } catch {
      return this.queue.length === 0;
    }
  }

  /** Half-closes, cancels and closes the channel. */
  close(): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error('stream closed'));
    }
    try {
      this.call.end();
      this.call.cancel();
    } catch {
      // already closed
    }
    this.client.close();
  }
}

/** Proto3 JSON of a DiscoveryRequest (snake_case or camelCase), e.g. `{ type_url, resource_names }`. */
export type DiscoveryRequestJson = Record<string, unknown>;

export class SotwClient extends XdsStream<DiscoveryRequest, DiscoveryResponse> {
  /** Sends a request given as proto3 JSON. */
  request(json: DiscoveryRequestJson): void {
    this.send(messageFromJson<DiscoveryRequest>(xdsSchemas().DiscoveryRequest, json));
  }

  ack(res: DiscoveryResponse, resourceNames: readonly string[] = []): void {
    this.request({ type_url: res.typeUrl, version_info: res.versionInfo, response_nonce: res.nonce, resource_names: [...resourceNames] });
  }

  nack(res: DiscoveryResponse, message: string, opts: { lastVersion?: string; resourceNames?: readonly string[] } = {}): void {
    this.request({
      type_url: res.typeUrl,
      version_info: opts.lastVersion ?? '',
      response_nonce: res.nonce,
      resource_names: [...(opts.resourceNames ?? [])],
      error_detail: { code: grpc.status.INVALID_ARGUMENT, message },
    });
  }
}

export class DeltaClient extends XdsStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
  request(json: DiscoveryRequestJson): void {
    this.send(messageFromJson<DeltaDiscoveryRequest>(xdsSchemas().DeltaDiscoveryRequest, json));
  }

  ack(res: DeltaDiscoveryResponse): void {
    this.request({ type_url: res.typeUrl, response_nonce: res.nonce });
  }

  nack(res: DeltaDiscoveryResponse, message: string): void {
    this.request({ type_url: res.typeUrl, response_nonce: res.nonce, error_detail: { code: grpc.status.INVALID_ARGUMENT, message } });
  }
}

export function openSotw(target: Target, opts: ClientOptions = {}): SotwClient {
  const client = createClient(target, opts);
  const m = adsMethods().sotw;
  const call = client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, requestMetadata(opts));
  return new SotwClient(client, call);
}

export function openDelta(target: Target, opts: ClientOptions = {}): DeltaClient {
  const client = createClient(target, opts);
  const m = adsMethods().delta;
  const call = client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, requestMetadata(opts));
  return new DeltaClient(client, call);
}

/** Decodes a packed resource to proto3 JSON (snake_case) with its name. */
export function decodeResource(any: AnyMsg): { name: string | undefined; json: JsonValue } {
  const schema = messageSchema(any.typeUrl);
  const msg = decodeMessage<object>(schema, any.value);
  return { name: resourceNameOf(schema, msg as never), json: messageToJson(schema, msg) };
}

/** Names of the resources in a SotW response. */
export function resourceNames(res: DiscoveryResponse): string[] {
  return res.resources.map((a) => decodeResource(a).name ?? '');
}

/** Calls IstioCertificateService/CreateCertificate; resolves with the cert chain. */
export function createCertificate(
  target: Target,
  req: { csr: string; validitySeconds?: number; metadata?: Record<string, unknown> },
  opts: ClientOptions & { deadlineMs?: number } = {},
): Promise<string[]> {
  const client = createClient(target, opts);
  const m = caServiceDefinition().CreateCertificate as grpc.MethodDefinition<IstioCertificateRequest, IstioCertificateResponse>;
  const body: IstioCertificateRequest = { csr: req.csr, validity_duration: req.validitySeconds ?? 0 };
  if (req.metadata) body.metadata = { fields: Object.fromEntries(Object.entries(req.metadata).map(([k, v]) => [k, { string_value: String(v) }])) };
  return new Promise<string[]>((resolve, reject) => {
    client.makeUnaryRequest(
      CA_METHOD_PATH,
      m.requestSerialize,
      m.responseDeserialize,
      body,
      requestMetadata(opts),
      { deadline: Date.now() + (opts.deadlineMs ?? 10_000) },
      (err, res) => {
        client.close();
        if (err) reject(err);
        else resolve(res?.cert_chain ?? []);
      },
    );
  });
}
