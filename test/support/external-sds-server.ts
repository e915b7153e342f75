// An SDS server that is not the agent: what SPIRE's agent (or any other workload identity
// provider) puts on the workload SDS socket. Real gRPC (@grpc/grpc-js) on a unix socket, State of
// the World StreamSecrets: a request without a nonce is answered with the secrets it names that
// this server holds; ACKs and NACKs are recorded, never answered. Messages are encoded with
// @bufbuild/protobuf over the Envoy registry, independently of the agent's encoder.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { create, fromBinary, toBinary, type Message } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { messageSchema } from './envoy-protos.js';

const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
const SERVICE = 'envoy.service.secret.v3.SecretDiscoveryService';

export type ServedSecret = { readonly certificateChain: string; readonly privateKey: string } | { readonly trustedCa: string };

export interface SdsRequestRecord {
  readonly nodeId: string;
  readonly names: readonly string[];
  readonly nonce: string;
  readonly nack?: string;
}

export interface ExternalSdsServer {
  readonly socketPath: string;
  readonly requests: readonly SdsRequestRecord[];
  /** Streams opened by clients so far. */
  readonly streams: () => number;
  /** Stops serving. */
  close(): Promise<void>;
}

interface RawRequest {
  node?: { id: string };
  resourceNames: string[];
  responseNonce: string;
  errorDetail?: { message: string };
}

function encodeSecret(name: string, s: ServedSecret): Uint8Array {
  const schema = messageSchema('envoy.extensions.transport_sockets.tls.v3.Secret');
  const inline = (text: string) => ({ specifier: { case: 'inlineBytes', value: Buffer.from(text) } });
  const type =
    'trustedCa' in s
      ? { case: 'validationContext', value: { trustedCa: inline(s.trustedCa) } }
      : { case: 'tlsCertificate', value: { certificateChain: inline(s.certificateChain), privateKey: inline(s.privateKey) } };
  return toBinary(schema, create(schema, { name, type } as never) as Message);
}

/** Serves `secrets` (name -> secret) on `socketPath` until closed. */
export async function startExternalSdsServer(socketPath: string, secrets: ReadonlyMap<string, ServedSecret>): Promise<ExternalSdsServer> {
  mkdirSync(dirname(socketPath), { recursive: true });
  const requests: SdsRequestRecord[] = [];
  let streams = 0;
  let version = 0;
  const reqSchema = messageSchema('envoy.service.discovery.v3.DiscoveryRequest');
  const resSchema = messageSchema('envoy.service.discovery.v3.DiscoveryResponse');
  const server = new grpc.Server();
  const method: grpc.MethodDefinition<Buffer, Buffer> = {
    path: `/${SERVICE}/StreamSecrets`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (b) => b,
    requestDeserialize: (b) => b,
    responseSerialize: (b) => b,
    responseDeserialize: (b) => b,
  };
  server.addService({ StreamSecrets: method } as grpc.ServiceDefinition, {
    StreamSecrets: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      streams++;
      let nodeId = '';
      call.on('data', (buf: Buffer) => {
        const req = fromBinary(reqSchema, buf) as unknown as RawRequest;
        nodeId ||= req.node?.id ?? '';
        requests.push({ nodeId, names: [...req.resourceNames], nonce: req.responseNonce, ...(req.errorDetail ? { nack: req.errorDetail.message } : {}) });
        if (req.responseNonce) return;
        const names = req.resourceNames.filter((n) => secrets.has(n));
        if (names.length === 0) return;
        version++;
        const res = create(resSchema, {
          versionInfo: `external-${version}`,
          nonce: `external-nonce-${version}`,
          typeUrl: SECRET_TYPE,
          resources: names.map((n) => ({ typeUrl: SECRET_TYPE, value: encodeSecret(n, secrets.get(n)!) })),
        } as never) as Message;
        call.write(Buffer.from(toBinary(resSchema, res)));
      });
      call.on('error', () => undefined);
      call.on('end', () => call.end());
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return {
    socketPath,
    requests,
    streams: () => streams,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
