// The agent's unary gRPC calls (the CA's CreateCertificate) against a real grpc-js server and a
// bare node:http2 server scripted to misbehave: deadlines, cancellation, oversized or extra
// answers, and the request metadata that reaches the server.

import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GrpcCallError, unaryCall } from '../../src/grpc/client.js';
import { frameMessage } from '../../src/grpc/frames.js';
import { Status } from '../../src/grpc/status.js';

const METHOD = '/test.Echo/Call';
const identity = (b: Buffer): Buffer => b;

describe('unary calls to a grpc-js server', () => {
  let server: grpc.Server;
  let address: string;
  const seen: grpc.Metadata[] = [];

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(
      { call: { path: METHOD, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
      {
        call: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
          seen.push(call.metadata);
          if (call.request.toString() === 'fail') return cb({ code: grpc.status.PERMISSION_DENIED, details: 'no entry for ü' });
          cb(null, Buffer.concat([Buffer.from('echo:'), call.request]));
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });
  afterAll(() => server.forceShutdown());

  it('returns the answer and sends the metadata and a grpc-timeout', async () => {
    const res = await unaryCall({ address }, METHOD, Buffer.from('hi'), { metadata: { authorization: 'Bearer t0k', clusterid: 'Kubernetes' }, timeoutMs: 5000 });
    expect(res.toString()).toBe('echo:hi');
    const md = seen.at(-1)!;
    expect(md.get('authorization')).toEqual(['Bearer t0k']);
    expect(md.get('clusterid')).toEqual(['Kubernetes']);
  });

  it("rejects with the server's status and decoded message", async () => {
    const err = await unaryCall({ address }, METHOD, Buffer.from('fail')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GrpcCallError);
    expect(err).toMatchObject({ code: 'GRPC_CALL_FAILED', status: Status.PERMISSION_DENIED, details: 'no entry for ü', connected: true });
  });

  it('is UNAVAILABLE when nothing listens', async () => {
    const err = await unaryCall({ address: '127.0.0.1:1' }, METHOD, Buffer.from('x')).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: Status.UNAVAILABLE, connected: false });
  });
});

describe('unary calls to a misbehaving server', () => {
  let server: http2.Http2Server;
  let address: string;
  let behave: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;

  beforeAll(async () => {
    server = http2.createServer();
    server.on('stream', (stream, headers) => {
      stream.on('error', () => undefined);
      behave(stream, headers);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  const answer = (stream: http2.ServerHttp2Stream, ...messages: Buffer[]): void => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    for (const m of messages) stream.write(m);
    stream.end();
  };

  it('gives up at the deadline with DEADLINE_EXCEEDED, having told the server (grpc-timeout)', async () => {
    let timeoutHeader: string | undefined;
    behave = (_stream, headers) => (timeoutHeader = String(headers['grpc-timeout'])); // never answers
    const err = await unaryCall({ address }, METHOD, Buffer.from('x'), { timeoutMs: 300, peerName: 'the CA' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: Status.DEADLINE_EXCEEDED, details: 'no answer from the CA within 300 ms' });
    expect(timeoutHeader).toBe('300m');
  });

  it('is CANCELLED when its signal aborts', async () => {
    behave = () => undefined;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const err = await unaryCall({ address }, METHOD, Buffer.from('x'), { signal: ac.signal }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: Status.CANCELLED });
  });

  it('refuses an answer over the size limit before holding it', async () => {
    behave = (stream) => answer(stream, frameMessage(Buffer.alloc(2 * 1024 * 1024, 1)));
    const err = await unaryCall({ address }, METHOD, Buffer.from('x'), { maxResponseBytes: 1024 * 1024 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: Status.RESOURCE_EXHAUSTED });
    expect((err as GrpcCallError).details).toContain('2097152 bytes exceeds the 1048576-byte limit');
  });

  it('rejects two answers, a truncated answer, or none, as INTERNAL', async () => {
    behave = (stream) => answer(stream, frameMessage(Buffer.from('a')), frameMessage(Buffer.from('b')));
    expect(await unaryCall({ address }, METHOD, Buffer.from('x')).catch((e: unknown) => e)).toMatchObject({ status: Status.INTERNAL, details: 'more than one response message' });
    behave = (stream) => answer(stream, frameMessage(Buffer.from('abcdef')).subarray(0, 8));
    expect(await unaryCall({ address }, METHOD, Buffer.from('x')).catch((e: unknown) => e)).toMatchObject({ status: Status.INTERNAL, details: 'truncated response message' });
    behave = (stream) => answer(stream);
    expect(await unaryCall({ address }, METHOD, Buffer.from('x')).catch((e: unknown) => e)).toMatchObject({ status: Status.INTERNAL, details: 'no response message' });
  });
});
