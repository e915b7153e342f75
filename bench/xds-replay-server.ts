// Upstream for bench `xds`: an ADS server that answers each initial request with a pre-encoded
// response of realistic clusters (built from Istio's sidecar config dump), so that what is timed
// is transport, not the control plane's encoding. The size is chosen by the request's first
// resource name, `size:<bytes>`. Prints `listening on <port>` once ready.

import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs/minimal.js';
import { buildResourceSet } from '../test/control-plane/index.js';
import { summarizeDeltaRequest, summarizeSotwRequest } from '../src/xds/wire.js';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const sizes = process.argv.slice(2).map(Number);
const LEN = 2;

function sotwResponse(resources: readonly { name: string; binary: Uint8Array }[]): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | LEN).string('v1');
  for (const r of resources) w.uint32((2 << 3) | LEN).fork().uint32((1 << 3) | LEN).string(CDS).uint32((2 << 3) | LEN).bytes(r.binary).ldelim();
  w.uint32((4 << 3) | LEN).string(CDS);
  w.uint32((5 << 3) | LEN).string('n1');
  return Buffer.from(w.finish());
}

function deltaResponse(resources: readonly { name: string; binary: Uint8Array }[]): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | LEN).string('v1');
  for (const r of resources) {
    w.uint32((2 << 3) | LEN).fork();
    w.uint32((3 << 3) | LEN).string(r.name);
    w.uint32((1 << 3) | LEN).string('1');
    w.uint32((2 << 3) | LEN).fork().uint32((1 << 3) | LEN).string(CDS).uint32((2 << 3) | LEN).bytes(r.binary).ldelim();
    w.ldelim();
  }
  w.uint32((4 << 3) | LEN).string(CDS);
  w.uint32((5 << 3) | LEN).string('n1');
  return Buffer.from(w.finish());
}

const sotw = new Map<number, Buffer>();
const delta = new Map<number, Buffer>();
for (const size of sizes) {
  const set = buildResourceSet({ targetBytes: size, kinds: ['clusters'], onlyTargeted: true });
  const clusters = set.byType.get(CDS) ?? [];
  sotw.set(size, sotwResponse(clusters));
  delta.set(size, deltaResponse(clusters));
}

function firstName(buf: Buffer, field: number): string {
  const r = protobuf.Reader.create(buf);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === field && (tag & 7) === LEN) return r.string();
    r.skipType(tag & 7);
  }
  return '';
}

const identity = (b: Buffer): Buffer => b;
const method = (path: string): grpc.MethodDefinition<Buffer, Buffer> => ({
  path, requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity,
});
const server = new grpc.Server({ 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
const svc = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
server.addService(
  { sotw: method(`${svc}/StreamAggregatedResources`), delta: method(`${svc}/DeltaAggregatedResources`) },
  {
    sotw: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (req: Buffer) => {
        if (summarizeSotwRequest(req).responseNonce) return; // ACK
        const size = Number(firstName(req, 3).replace('size:', ''));
        const res = sotw.get(size);
        if (res) call.write(res);
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
    delta: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (req: Buffer) => {
        if (summarizeDeltaRequest(req).responseNonce) return;
        const size = Number(firstName(req, 3).replace('size:', ''));
        const res = delta.get(size);
        if (res) call.write(res);
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
  },
);
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  const actual = [...sotw.entries()].map(([s, b]) => `${s}:${b.length}`).join(',');
  process.stdout.write(`listening on ${port} sizes ${actual}\n`);
});
