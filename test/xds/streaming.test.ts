// The proxy's own gRPC-over-HTTP/2 data path: deframing and scanning pushes piece by piece (any
// chunking), streaming a large push on before istiod has finished sending it, holding whole what
// the agent must see, and gRPC status rules toward Envoy when istiod misbehaves. The upstream here
// is a bare node:http2 server the test scripts frame by frame, so partial sends can be observed.

import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { lstatSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs/minimal.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { frameHeader, frameMessage, GrpcDeframer, type FrameSink } from '../../src/grpc/frames.js';
import { decodeGrpcMessage, encodeGrpcMessage } from '../../src/grpc/status.js';
import { DELTA, SOTW, type XdsProtocol } from '../../src/xds/protocol.js';
import { ResponseScanner } from '../../src/xds/response-scanner.js';
import { summarizeDeltaResponse, summarizeSotwResponse } from '../../src/xds/wire.js';
import type { UpstreamOptions } from '../../src/xds/upstream-options.js';
import { XdsProxy } from '../../src/xds/xds-proxy.js';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const ECDS = 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig';
const LEN = 2;

function anyOf(typeUrl: string, value: Uint8Array): Uint8Array {
  return protobuf.Writer.create().uint32((1 << 3) | LEN).string(typeUrl).uint32((2 << 3) | LEN).bytes(value).finish();
}

/** A SotW DiscoveryResponse with `count` resources of `each` bytes, resources typed `resourceType`. */
function sotwResponse(typeUrl: string, count: number, each: number, opts: { resourceType?: string; nonce?: string } = {}): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | LEN).string('v7');
  for (let i = 0; i < count; i++) w.uint32((2 << 3) | LEN).bytes(anyOf(opts.resourceType ?? typeUrl, Buffer.alloc(each, i % 251)));
  w.uint32((4 << 3) | LEN).string(typeUrl);
  w.uint32((5 << 3) | LEN).string(opts.nonce ?? 'nonce-1');
  return Buffer.from(w.finish());
}

/** A Delta response whose Resource messages put `name` first (as some encoders do). */
function deltaResponse(typeUrl: string, count: number, each: number): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | LEN).string('sys-3');
  for (let i = 0; i < count; i++) {
    const r = protobuf.Writer.create();
    r.uint32((3 << 3) | LEN).string(`r${i}`);
    r.uint32((1 << 3) | LEN).string('1');
    r.uint32((2 << 3) | LEN).bytes(anyOf(typeUrl, Buffer.alloc(each, 7)));
    w.uint32((2 << 3) | LEN).bytes(r.finish());
  }
  w.uint32((4 << 3) | LEN).string(typeUrl);
  w.uint32((5 << 3) | LEN).string('dn');
  return Buffer.from(w.finish());
}

/** Cuts `buf` into pieces of pseudo-random sizes between 1 and `max` bytes (seeded). */
function randomPieces(buf: Buffer, max: number, seed: number): Buffer[] {
  const out: Buffer[] = [];
  let s = seed;
  for (let i = 0; i < buf.length; ) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (s % max);
    out.push(buf.subarray(i, i + n));
    i += n;
  }
  return out;
}

describe('gRPC deframing', () => {
  it('yields the same messages however the bytes are cut, zero-length ones included', () => {
    const messages = [Buffer.from('a'), Buffer.alloc(0), Buffer.alloc(70_000, 3), Buffer.from('last')];
    const wire = Buffer.concat(messages.map((m) => frameMessage(m)));
    for (const [max, seed] of [[1, 1], [3, 2], [7, 3], [4096, 4], [1 << 20, 5]] as const) {
      const got: Buffer[] = [];
      let parts: Buffer[] = [];
      const sink: FrameSink = {
        messageStart: (length, compressed) => {
          expect(compressed).toBe(false);
          parts = [];
          expect(length).toBe(messages[got.length]!.length);
        },
        messageData: (piece) => parts.push(Buffer.from(piece)),
        messageEnd: () => got.push(Buffer.concat(parts)),
      };
      const d = new GrpcDeframer(sink);
      for (const p of randomPieces(wire, max, seed)) d.push(p);
      expect(got).toEqual(messages);
      expect(d.atMessageBoundary).toBe(true);
    }
  });

  it('keeps what arrives while held and delivers it, in order, on release', () => {
    const wire = Buffer.concat([frameMessage(Buffer.from('one')), frameMessage(Buffer.from('two'))]);
    const ends: string[] = [];
    let body = '';
    const d: GrpcDeframer = new GrpcDeframer({
      messageStart: () => (body = ''),
      messageData: (p) => (body += p.toString()),
      messageEnd: () => {
        ends.push(body);
        d.hold();
      },
    });
    d.push(wire);
    expect(ends).toEqual(['one']);
    expect(d.bufferedBytes).toBe(5 + 3);
    d.release();
    expect(ends).toEqual(['one', 'two']);
    expect(d.atMessageBoundary).toBe(true);
  });

  it('holds from inside a piece of a message body, keeping the rest of the body for release', () => {
    const wire = frameMessage(Buffer.alloc(300, 9));
    const pieces: number[] = [];
    const d: GrpcDeframer = new GrpcDeframer({
      messageStart: () => undefined,
      messageData: (p) => {
        pieces.push(p.length);
        if (pieces.length === 1) d.hold();
      },
      messageEnd: () => pieces.push(-1),
    });
    d.push(wire.subarray(0, 105));
    d.push(wire.subarray(105, 205));
    d.push(wire.subarray(205));
    expect(pieces).toEqual([100]);
    expect(d.bufferedBytes).toBe(200);
    d.release();
    expect(pieces).toEqual([100, 100, 100, -1]);
    expect(d.atMessageBoundary).toBe(true);
  });

  it('reports a stream cut inside a message', () => {
    const d = new GrpcDeframer({ messageStart: () => undefined, messageData: () => undefined, messageEnd: () => undefined });
    d.push(frameMessage(Buffer.alloc(10)).subarray(0, 9));
    expect(d.atMessageBoundary).toBe(false);
  });

  it('percent-encodes grpc-message and decodes it back', () => {
    const text = 'wasm: bad sha256 "ab%cd" für Modul ✓\nnext line';
    const encoded = encodeGrpcMessage(text);
    expect(encoded).toMatch(/^[\x20-\x7e]*$/);
    expect(encoded).toContain('%25');
    expect(decodeGrpcMessage(encoded)).toBe(text);
    expect(decodeGrpcMessage('100%')).toBe('100%'); // malformed escape kept as it came
  });
});

describe('response scanning', () => {
  it('reads version, type, nonce, count and the first resource type from any chunking (SotW and Delta)', () => {
    const cases: [XdsProtocol, Buffer, (b: Uint8Array) => unknown][] = [
      [SOTW, sotwResponse(CDS, 300, 900), summarizeSotwResponse],
      [DELTA, deltaResponse(CDS, 200, 700), summarizeDeltaResponse],
    ];
    for (const [protocol, message, summarize] of cases) {
      for (const [max, seed] of [[1, 9], [13, 8], [5000, 7], [1 << 20, 6]] as const) {
        const s = new ResponseScanner(protocol.kind);
        for (const p of randomPieces(message, max, seed)) s.push(p);
        expect(s.firstResourceType).toBe(CDS);
        expect(s.finish()).toEqual(summarize(message));
      }
    }
  });

  it('reads the same summary wherever the message is cut, for resources of every length size', () => {
    // lengths whose varints take one, two and three bytes, and empty resources, after a first
    // resource that is a real Any
    const resource = (n: number): Uint8Array => Buffer.alloc(n, n % 251);
    const sotw = protobuf.Writer.create().uint32((1 << 3) | LEN).string('v9');
    sotw.uint32((2 << 3) | LEN).bytes(anyOf(CDS, resource(40)));
    for (const n of [0, 1, 2, 127, 128, 129, 300, 0, 16383, 16384, 1]) sotw.uint32((2 << 3) | LEN).bytes(resource(n));
    sotw.uint32((4 << 3) | LEN).string(CDS).uint32((5 << 3) | LEN).string('n9');
    const message = Buffer.from(sotw.finish());
    const want = summarizeSotwResponse(message);
    expect(want.resourceCount).toBe(12);
    for (let cut = 0; cut <= message.length; cut++) {
      const s = new ResponseScanner('sotw');
      s.push(message.subarray(0, cut));
      s.push(message.subarray(cut));
      expect(s.finish()).toEqual(want);
      expect(s.firstResourceType).toBe(CDS);
    }
  });

  it('rejects a resource longer than the message and a length varint of more than ten bytes, however cut', () => {
    const head = protobuf.Writer.create().uint32((2 << 3) | LEN).bytes(anyOf(CDS, Buffer.alloc(8))).finish();
    const tooLong = Buffer.concat([head, Buffer.from([(2 << 3) | LEN, 0x90, 0x03]), Buffer.alloc(100)]); // declares 400 bytes
    const longVarint = Buffer.concat([head, Buffer.from([(2 << 3) | LEN]), Buffer.alloc(10, 0x80), Buffer.from([1])]);
    for (const [message, error] of [[tooLong, /message ends inside a field/], [longVarint, /varint longer than 10 bytes/]] as const) {
      for (let cut = 0; cut <= message.length; cut++) {
        const s = new ResponseScanner('sotw');
        s.push(message.subarray(0, cut));
        s.push(message.subarray(cut));
        expect(() => s.finish()).toThrow(error);
      }
    }
  });

  it('knows the first resource type from its first bytes, long before the end', () => {
    const message = sotwResponse(CDS, 50, 100_000);
    const s = new ResponseScanner('sotw');
    s.push(message.subarray(0, 8192));
    expect(s.firstResourceType).toBe(CDS);
  });

  it('says "unknowable" for a response without resources, and rejects malformed bytes', () => {
    const empty = new ResponseScanner('sotw');
    empty.push(sotwResponse(CDS, 0, 0));
    expect(empty.finish().resourceCount).toBe(0);
    expect(empty.firstResourceType).toBeUndefined();

    const truncated = new ResponseScanner('sotw');
    truncated.push(sotwResponse(CDS, 3, 100).subarray(0, 150));
    expect(() => truncated.finish()).toThrow(/malformed xDS response: message ends inside a field/);

    // a tag varint cut by the message's end (istiod's grpc-go would fail to unmarshal it)
    const cutTag = new ResponseScanner('sotw');
    cutTag.push(Buffer.from([0xff, 0xff, 0xff]));
    expect(() => cutTag.finish()).toThrow(/malformed xDS response: message ends inside a field/);

    const group = new ResponseScanner('sotw');
    group.push(Buffer.from([(7 << 3) | 3, 0]));
    expect(() => group.finish()).toThrow(/unsupported wire type 3 for field 7/);
  });
});

// ----- end to end through the proxy, against a scripted HTTP/2 istiod -----------------------------

type Script = (stream: http2.ServerHttp2Stream, path: string) => void | Promise<void>;

let dir: string;
let istiod: http2.Http2Server;
let istiodPort: number;
let script: Script;
let proxy: XdsProxy | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pa-xds-stream-'));
  istiod = http2.createServer();
  istiod.on('stream', (stream, headers) => {
    let buf = Buffer.alloc(0);
    let started = false;
    stream.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (started || buf.length < 5 || buf.length < 5 + buf.readUInt32BE(1)) return;
      started = true;
      void script(stream, String(headers[':path']));
    });
    stream.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => istiod.listen(0, '127.0.0.1', resolve));
  istiodPort = (istiod.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((r) => istiod.close(r));
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

async function startProxy(over: Partial<UpstreamOptions> = {}): Promise<{ proxy: XdsProxy; socketPath: string }> {
  const socketPath = join(dir, `XDS-${Math.random().toString(36).slice(2)}`);
  proxy = new XdsProxy({ socketPath, upstream: { address: `127.0.0.1:${istiodPort}`, clusterId: 'Kubernetes', headers: {}, ...over } });
  await proxy.start();
  return { proxy, socketPath };
}

/** A raw HTTP/2 ADS client on the socket, to watch response bytes arrive piece by piece. */
function rawClient(socketPath: string, protocol: XdsProtocol): { received: () => number; body: () => Buffer; session: http2.ClientHttp2Session; stream: http2.ClientHttp2Stream } {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  const stream = session.request({ ':method': 'POST', ':path': protocol.method, 'content-type': 'application/grpc', te: 'trailers' });
  const chunks: Buffer[] = [];
  let bytes = 0;
  stream.on('data', (c: Buffer) => {
    chunks.push(c);
    bytes += c.length;
  });
  stream.on('error', () => undefined);
  stream.write(frameMessage(protocol.encodeRequest({ typeUrl: CDS, responseNonce: '' })));
  return { received: () => bytes, body: () => Buffer.concat(chunks), session, stream };
}

function respond(stream: http2.ServerHttp2Stream): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
}

/** A gRPC client of our own socket (a real one: grpc-js), returning the final status. */
function grpcStatusOf(socketPath: string, method = SOTW.method): Promise<grpc.StatusObject> {
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  const call = client.makeBidiStreamRequest(method, (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b);
  call.on('data', () => undefined);
  call.on('error', () => undefined);
  call.write(SOTW.encodeRequest({ typeUrl: CDS, responseNonce: '' }));
  return new Promise((resolve) =>
    call.on('status', (st) => {
      client.close();
      resolve(st);
    }),
  );
}

describe('streaming through the proxy', () => {
  it('forwards the start of a large push before istiod has sent the rest, byte for byte', { timeout: 30_000 }, async () => {
    const message = sotwResponse(CDS, 40, 100_000); // ~4 MB
    const half = 2_000_000;
    let sendRest: () => void = () => undefined;
    script = (stream) => {
      respond(stream);
      stream.write(frameHeader(message.length));
      stream.write(message.subarray(0, half));
      sendRest = () => stream.write(message.subarray(half));
    };
    const { proxy: p, socketPath } = await startProxy();
    const client = rawClient(socketPath, SOTW);
    try {
      // most of the first half reaches Envoy while istiod still holds the second half
      await vi.waitFor(() => expect(client.received()).toBeGreaterThan(half / 2), { timeout: 10_000 });
      expect(p.syncState().get(CDS)).toBeUndefined(); // the push is not complete yet
      sendRest();
      await vi.waitFor(() => expect(client.received()).toBe(5 + message.length), { timeout: 10_000 });
      expect(client.body().equals(Buffer.concat([frameHeader(message.length), message]))).toBe(true);
      const sync = p.syncState().get(CDS)!;
      expect(sync).toMatchObject({ lastForwarding: 'streamed', lastVersion: 'v7', lastNonce: 'nonce-1', lastResources: 40, lastBytes: message.length });
    } finally {
      client.session.destroy();
    }
  });

  it('resets Envoy\'s stream, rather than ending it, when istiod fails in the middle of a streamed push', { timeout: 30_000 }, async () => {
    const message = sotwResponse(CDS, 40, 100_000);
    let fail: () => void = () => undefined;
    script = (stream) => {
      respond(stream);
      stream.write(frameHeader(message.length));
      stream.write(message.subarray(0, 1_000_000));
      fail = () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    };
    const { socketPath } = await startProxy();
    const client = rawClient(socketPath, SOTW);
    let trailers: http2.IncomingHttpHeaders | undefined;
    client.stream.on('trailers', (t) => (trailers = t));
    const closed = new Promise((resolve) => client.stream.on('close', resolve));
    try {
      // istiod fails once Envoy has part of the push
      await vi.waitFor(() => expect(client.received()).toBeGreaterThan(0), { timeout: 10_000 });
      fail();
      await closed;
      expect(client.received()).toBeGreaterThan(0); // part of the push had been streamed on
      expect(client.received()).toBeLessThan(5 + message.length);
      expect(trailers).toBeUndefined(); // no status after a truncated message
      expect(client.stream.rstCode).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
    } finally {
      client.session.destroy();
    }
  });

  it('holds a large ECDS push whole for its interceptor, and streams a Delta push', { timeout: 30_000 }, async () => {
    const ecds = sotwResponse(ECDS, 4, 50_000);
    const cds = deltaResponse(CDS, 30, 10_000);
    script = (stream, path) => {
      respond(stream);
      stream.write(frameMessage(path === DELTA.method ? cds : ecds));
    };
    const { proxy: p, socketPath } = await startProxy();
    const seen: number[] = [];
    p.registerInterceptor(ECDS, { intercept: (message) => (seen.push(message.length), { kind: 'forward', message }) });
    const sotw = rawClient(socketPath, SOTW);
    await vi.waitFor(() => expect(sotw.received()).toBe(5 + ecds.length), { timeout: 10_000 });
    expect(seen).toEqual([ecds.length]);
    expect(p.syncState().get(ECDS)!.lastForwarding).toBe('held');
    sotw.session.destroy();
    const delta = rawClient(socketPath, DELTA);
    await vi.waitFor(() => expect(delta.received()).toBe(5 + cds.length), { timeout: 10_000 });
    expect(delta.body().subarray(5).equals(cds)).toBe(true);
    expect(p.syncState().get(CDS)).toMatchObject({ lastForwarding: 'streamed', lastVersion: 'sys-3', lastNonce: 'dn', lastResources: 30 });
    delta.session.destroy();
  });

  it('more ECDS rewrites queued than its bound, the last sharing a write with a large push: nothing stalls or splits', { timeout: 30_000 }, async () => {
    // past 8 queued rewrites istiod is paused; the push that began in the same DATA frame must not
    // start streaming then (its rest would never be read, and the rewrites wait for its end)
    const ecds = (i: number): Buffer => sotwResponse(ECDS, 1, 100, { nonce: `e${i}` });
    const cds = sotwResponse(CDS, 40, 50_000, { nonce: 'c' });
    script = (stream) => {
      respond(stream);
      for (let i = 1; i <= 8; i++) stream.write(frameMessage(ecds(i)));
      const big = frameMessage(cds);
      stream.write(Buffer.concat([frameMessage(ecds(9)), big.subarray(0, 10_000)]));
      setTimeout(() => stream.write(big.subarray(10_000)), 100);
    };
    const { proxy: p, socketPath } = await startProxy();
    const rewritten: string[] = [];
    p.registerInterceptor(ECDS, {
      intercept: async (message, ctx) => {
        await new Promise((r) => setTimeout(r, 100)); // a Wasm server taking its time
        rewritten.push(ctx.summary.nonce);
        return { kind: 'forward', message };
      },
    });
    const client = rawClient(socketPath, SOTW);
    const total = 9 * (5 + ecds(1).length) + 5 + cds.length;
    try {
      // /debug/syncz counts each ECDS push when it arrives, not when its rewrite begins
      await vi.waitFor(() => expect(p.syncState().get(ECDS)?.responses).toBe(9), { timeout: 10_000, interval: 5 });
      expect(rewritten.length).toBeLessThan(8);
      expect(p.syncState().get(ECDS)).toMatchObject({ lastNonce: 'e9', lastAck: 'pending' });
      await vi.waitFor(() => expect(client.received()).toBe(total), { timeout: 15_000, interval: 50 });
      const pieces: Buffer[] = [];
      const whole: Buffer[] = [];
      const sink: FrameSink = { messageStart: () => (pieces.length = 0), messageData: (b) => pieces.push(Buffer.from(b)), messageEnd: () => whole.push(Buffer.concat(pieces)) };
      new GrpcDeframer(sink).push(client.body());
      // every message whole (the push intact), the ECDS ones in istiod's order
      expect(whole).toHaveLength(10);
      expect(whole.filter((m) => m.equals(cds))).toHaveLength(1);
      expect(whole.filter((m) => !m.equals(cds))).toEqual(Array.from({ length: 9 }, (_, i) => ecds(i + 1)));
      expect(rewritten).toEqual(['e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'e7', 'e8', 'e9']);
    } finally {
      client.session.destroy();
    }
  });

  it('maps istiod HTTP errors to gRPC statuses for Envoy', async () => {
    for (const [http, code] of [[401, grpc.status.UNAUTHENTICATED], [503, grpc.status.UNAVAILABLE], [404, grpc.status.UNIMPLEMENTED]] as const) {
      script = (stream) => stream.respond({ ':status': http }, { endStream: true });
      const { socketPath } = await startProxy();
      const st = await grpcStatusOf(socketPath);
      expect(st.code).toBe(code);
      expect(st.details).toContain(`HTTP ${http}`);
      await proxy!.close();
    }
  });

  it('ends Envoy\'s stream with INTERNAL when istiod ends in the middle of a message', async () => {
    script = (stream) => {
      respond(stream);
      stream.write(frameHeader(1000));
      // a valid beginning (version_info, 20 bytes declared, 8 sent): cut short, not malformed
      stream.write(Buffer.concat([Buffer.from([0x0a, 20]), Buffer.alloc(8, 0x61)]));
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end();
    };
    const { socketPath } = await startProxy();
    const st = await grpcStatusOf(socketPath);
    expect(st.code).toBe(grpc.status.INTERNAL);
    expect(st.details).toContain('middle of a message');
  });

  it('reports an answer that is not gRPC (a proxy\'s HTML error page) as what it is, never reading it as frames', async () => {
    script = (stream) => {
      stream.respond({ ':status': 503, 'content-type': 'text/html' });
      stream.end('<html><body>upstream connect error or disconnect/reset before headers</body></html>');
    };
    const { socketPath } = await startProxy();
    const st = await grpcStatusOf(socketPath);
    expect(st.code).toBe(grpc.status.UNAVAILABLE);
    expect(st.details).toBe('istiod answered HTTP 503 (content-type "text/html"), not a gRPC response');
  });

  it('takes only a decimal grpc-status: "" and "0x0" are malformed, not OK', async () => {
    for (const bad of ['', '0x0']) {
      script = (stream) => {
        respond(stream);
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': bad }));
        stream.end();
      };
      const { socketPath } = await startProxy();
      const st = await grpcStatusOf(socketPath);
      expect(st.code, JSON.stringify(bad)).toBe(grpc.status.INTERNAL);
      expect(st.details).toBe(`malformed grpc-status ${JSON.stringify(bad)}`);
      await proxy?.close();
      proxy = undefined;
    }
  });

  it('passes istiod\'s status and percent-encoded message through', async () => {
    script = (stream) => {
      respond(stream);
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(grpc.status.PERMISSION_DENIED), 'grpc-message': encodeGrpcMessage('token rejected: ü%') }));
      stream.end();
    };
    const { socketPath } = await startProxy();
    const st = await grpcStatusOf(socketPath);
    expect(st.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(st.details).toBe('token rejected: ü%');
  });

  it('takes over a stale XDS socket left by a crash, but never deletes another file or a live socket', async () => {
    const { socketPath } = await startProxy();
    // live: the first proxy still listens there
    const second = new XdsProxy({ socketPath, upstream: { address: `127.0.0.1:${istiodPort}`, clusterId: 'Kubernetes', headers: {} } });
    await expect(second.start()).rejects.toThrow(`cannot serve xDS on ${socketPath}: another xDS server is listening there`);
    const file = join(dir, 'not-a-socket');
    writeFileSync(file, 'keep me');
    const third = new XdsProxy({ socketPath: file, upstream: { address: `127.0.0.1:${istiodPort}`, clusterId: 'Kubernetes', headers: {} } });
    await expect(third.start()).rejects.toThrow('the path exists and is not a socket');
    // stale: a process that listened there was killed, leaving the socket file
    const stale = join(dir, 'XDS-stale');
    const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(lstatSync(stale).isSocket()).toBe(true);
    const fourth = new XdsProxy({ socketPath: stale, upstream: { address: `127.0.0.1:${istiodPort}`, clusterId: 'Kubernetes', headers: {} } });
    await fourth.start();
    expect((await grpcStatusOf(stale, '/not.a/Method')).code).toBe(grpc.status.UNIMPLEMENTED); // served by the new proxy
    await fourth.close();
  });

  it('answers UNIMPLEMENTED for any method but the two ADS ones', async () => {
    const { socketPath } = await startProxy();
    const st = await grpcStatusOf(socketPath, '/envoy.service.discovery.v3.AggregatedDiscoveryService/Other');
    expect(st.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(st.details).toContain('unknown method');
  });

  it('drops an istiod that accepts the connection and then says nothing, at the connect deadline', async () => {
    // accepts TCP and then says nothing, as a hung peer or a black-holed route would
    await withSilentPeer(false, async (port) => {
      const { socketPath } = await startProxy({ address: `127.0.0.1:${port}`, connectTimeoutMs: 300, keepalive: { intervalMs: 100, timeoutMs: 200 } });
      const st = await grpcStatusOf(socketPath);
      expect(st.details).toContain('within 300 ms: TCP connect, TLS handshake and HTTP/2 settings did not complete');
      expect(st.code).toBe(grpc.status.UNAVAILABLE);
    });
  });

  it('drops an istiod that stops answering keepalive pings once connected, so Envoy reconnects', async () => {
    // completes the HTTP/2 handshake (its SETTINGS), then never answers anything again
    await withSilentPeer(true, async (port) => {
      const { socketPath } = await startProxy({ address: `127.0.0.1:${port}`, keepalive: { intervalMs: 100, timeoutMs: 200 } });
      const st = await grpcStatusOf(socketPath);
      expect(st.details).toContain('keepalive ping not answered within 200 ms');
      expect(st.code).toBe(grpc.status.UNAVAILABLE);
    });
  });
});

/** A TCP peer that accepts and never answers; with `settings`, after sending an HTTP/2 server preface. */
async function withSilentPeer(settings: boolean, body: (port: number) => Promise<void>): Promise<void> {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((sock) => {
    sockets.push(sock);
    sock.on('error', () => undefined);
    if (settings) sock.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // an empty SETTINGS frame
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  try {
    await body((silent.address() as AddressInfo).port);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  }
}
