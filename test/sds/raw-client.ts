// A low-level SDS test client: one StreamSecrets stream over the unix socket, requests written as
// given (to exercise ACK, NACK, stale nonces and subscription changes), responses queued and decoded
// with @bufbuild/protobuf over the Envoy registry (independently of the agent's protobufjs encoder).

import { create, fromBinary, toBinary, type Message } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { messageSchema } from '../support/envoy-protos.js';

export const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

export interface DecodedSecret {
  readonly name: string;
  readonly certificateChain?: string;
  readonly privateKey?: string;
  readonly trustedCa?: string;
}

export interface DecodedResponse {
  readonly versionInfo: string;
  readonly nonce: string;
  readonly typeUrl: string;
  readonly secrets: DecodedSecret[];
}

export interface RequestInit {
  readonly names: readonly string[];
  readonly version?: string;
  readonly nonce?: string;
  readonly error?: string;
  readonly nodeId?: string;
  readonly typeUrl?: string;
}

type DataSource = { specifier: { case: string | undefined; value?: unknown } } | undefined;

function text(ds: DataSource): string | undefined {
  if (!ds) return undefined;
  const v = ds.specifier.value;
  return v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : typeof v === 'string' ? v : undefined;
}

export function decodeResponse(buf: Uint8Array): DecodedResponse {
  const res = fromBinary(messageSchema('envoy.service.discovery.v3.DiscoveryResponse'), buf) as unknown as { versionInfo: string; nonce: string; typeUrl: string; resources: { typeUrl: string; value: Uint8Array }[] };
  const secrets = res.resources.map((any) => {
    if (any.typeUrl !== SECRET_TYPE) throw new Error(`unexpected resource type ${any.typeUrl}`);
    const s = fromBinary(messageSchema('envoy.extensions.transport_sockets.tls.v3.Secret'), any.value) as unknown as {
      name: string;
      type: { case: 'tlsCertificate'; value: { certificateChain?: DataSource; privateKey?: DataSource } } | { case: 'validationContext'; value: { trustedCa?: DataSource } } | { case: undefined };
    };
    if (s.type.case === 'tlsCertificate') return { name: s.name, certificateChain: text(s.type.value.certificateChain)!, privateKey: text(s.type.value.privateKey)! };
    if (s.type.case === 'validationContext') return { name: s.name, trustedCa: text(s.type.value.trustedCa)! };
    return { name: s.name };
  });
  return { versionInfo: res.versionInfo, nonce: res.nonce, typeUrl: res.typeUrl, secrets };
}

export class RawSdsClient {
  readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;
  readonly responses: DecodedResponse[] = [];
  private readonly queue: DecodedResponse[] = [];
  private waiters: ((r: DecodedResponse) => void)[] = [];
  ended: { code: number; details: string } | undefined;

  constructor(socketPath: string, method = '/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets') {
    this.client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
    this.call = this.client.makeBidiStreamRequest(method, (b: Buffer) => b, (b: Buffer) => b);
    this.call.on('data', (buf: Buffer) => {
      const r = decodeResponse(buf);
      this.responses.push(r);
      const w = this.waiters.shift();
      if (w) w(r);
      else this.queue.push(r);
    });
    this.call.on('error', (err: grpc.ServiceError) => (this.ended = { code: err.code, details: err.details }));
    this.call.on('end', () => (this.ended ??= { code: 0, details: 'end' }));
  }

  send(init: RequestInit): void {
    const schema = messageSchema('envoy.service.discovery.v3.DiscoveryRequest');
    const msg = create(schema, {
      versionInfo: init.version ?? '',
      resourceNames: [...init.names],
      typeUrl: init.typeUrl ?? SECRET_TYPE,
      responseNonce: init.nonce ?? '',
      ...(init.nodeId ? { node: { id: init.nodeId, cluster: 'test' } } : {}),
      ...(init.error ? { errorDetail: { code: 13, message: init.error } } : {}),
    } as never) as Message;
    this.call.write(Buffer.from(toBinary(schema, msg)));
  }

  /** ACKs a response, keeping (or changing) the subscription. */
  ack(r: DecodedResponse, names: readonly string[]): void {
    this.send({ names, version: r.versionInfo, nonce: r.nonce });
  }

  next(timeoutMs = 10_000): Promise<DecodedResponse> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== onResponse);
        reject(new Error(`no SDS response within ${timeoutMs}ms${this.ended ? ` (stream ended: ${JSON.stringify(this.ended)})` : ''}`));
      }, timeoutMs);
      const onResponse = (r: DecodedResponse): void => {
        clearTimeout(timer);
        resolve(r);
      };
      this.waiters.push(onResponse);
    });
  }

  /** Resolves when no response arrives within `ms`; rejects with the response otherwise. */
  async none(ms: number): Promise<void> {
    const before = this.responses.length;
    await new Promise((r) => setTimeout(r, ms));
    if (this.responses.length !== before) throw new Error(`unexpected SDS response: ${JSON.stringify(this.responses.slice(before).map((r) => r.secrets.map((s) => s.name)))}`);
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}
