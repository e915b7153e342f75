// Hostile or broken clients on the agent's local endpoints: the XDS socket is open to every process
// in the pod (mode 0666, as Istio), and the xDS debug port to every process on the loopback. No
// input on them may take the agent down (and Envoy with it): bytes that are not HTTP/2, HTTP/2
// frames that make no sense, and gRPC messages that do not parse as the request they claim to be.
// The real agent, between a development control plane and these clients; after every kind of
// input it must still be running, and at the end still serve a well-formed client.

import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDelta, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { freePort, tempDir, type RunningProcess } from '../support/processes.js';
import { rng } from '../support/random.js';
import { expectRunning, expectSotwPush, startProxylessAgent, stopSuite, xdsSocketOf } from './support.js';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const SOTW = `${ADS}/StreamAggregatedResources`;
const DELTA = `${ADS}/DeltaAggregatedResources`;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Reproducible bytes (a failure names its round; the same round gives the same input again). */
function seededBytes(seed: number): (n: number) => Buffer {
  const next = rng(seed);
  return (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256)));
}

/** gRPC framing around `body`, with a flag byte and declared length of the caller's choosing. */
function grpcFrame(body: Buffer, compressed = 0, declaredLength = body.length): Buffer {
  const h = Buffer.alloc(5);
  h[0] = compressed;
  h.writeUInt32BE(declaredLength >>> 0, 1);
  return Buffer.concat([h, body]);
}

/**
 * Writes `bytes` on a fresh connection and waits until the agent closes it, or 1 s passes: after
 * some protocol errors Node's HTTP/2 layer sends GOAWAY and stops reading without closing the
 * connection, which then lasts until the keepalive ping goes unanswered (~40 s).
 */
function rawConnection(connect: () => net.Socket, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const c = connect();
    const done = (): void => {
      clearTimeout(timer);
      c.destroy();
      resolve();
    };
    const timer = setTimeout(done, 1000);
    c.on('error', done);
    c.on('close', done);
    c.on('connect', () => c.end(bytes));
    c.resume();
  });
}

/** One gRPC call carrying `body` as its whole request body; resolves once the stream closes. */
function grpcCall(connect: () => net.Socket, path: string, body: Buffer, headers: http2.OutgoingHttpHeaders = {}): Promise<number | undefined> {
  return new Promise((resolve) => {
    const session = http2.connect('http://localhost', { createConnection: connect });
    session.on('error', () => undefined);
    let status: number | undefined;
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    const done = (): void => {
      clearTimeout(timer);
      session.destroy();
      resolve(status);
    };
    const timer = setTimeout(done, 3000);
    stream.on('error', () => undefined);
    stream.on('response', (h) => (status = Number(h['grpc-status'] ?? status)));
    stream.on('trailers', (t) => (status = Number(t['grpc-status'])));
    stream.on('close', done);
    stream.resume();
    stream.end(body);
  });
}

describe('hostile clients on the XDS socket and the xDS debug port', () => {
  let cp: ControlPlane;
  let work: ReturnType<typeof tempDir>;
  let agent: RunningProcess;
  let debugPort: number;
  const toSocket = (): net.Socket => net.connect(xdsSocketOf(work.path));
  const toDebugPort = (): net.Socket => net.connect(debugPort, '127.0.0.1');

  beforeAll(async () => {
    work = tempDir('pa-hostile-');
    cp = await startControlPlane({ plaintext: true });
    cp.setResources(CDS, [{ json: { '@type': CDS, name: 'c1', type: 'STATIC', connect_timeout: '1s' } }], { replace: true });
    debugPort = await freePort();
    agent = await startProxylessAgent({ root: work.path, discoveryAddress: cp.address, env: { PROXY_XDS_DEBUG_VIA_AGENT_PORT: String(debugPort) } });
  });
  afterAll(() => stopSuite(agent, cp, work));

  it('bytes that are not HTTP/2, and HTTP/2 frames of random types, flags and payloads', { timeout: 120_000 }, async () => {
    // rounds of ten at a time: each waits for the agent to close it or for its 1 s
    for (let batch = 0; batch < 4; batch++) {
      const sent: Promise<void>[] = [];
      for (let round = batch * 10; round < (batch + 1) * 10; round++) {
        const bytes = seededBytes(round + 1);
        sent.push(rawConnection(toSocket, bytes(1 + (round * 97) % 3000)), rawConnection(toDebugPort, bytes(1 + (round * 89) % 3000)));
        // a valid preface and SETTINGS, then frames whose 9-byte headers are random within reason
        const frames: Buffer[] = [PREFACE, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])];
        for (let f = 0; f < 6; f++) {
          const header = bytes(9);
          const length = header.readUIntBE(0, 3) % 400;
          header.writeUIntBE(length, 0, 3);
          header[3] = header[3]! % 10; // the frame types HTTP/2 defines
          header.writeUInt32BE(header.readUInt32BE(5) % 8, 5); // small stream ids, so that they meet
          frames.push(header, bytes(length));
        }
        sent.push(rawConnection(toSocket, Buffer.concat(frames)), rawConnection(toDebugPort, Buffer.concat(frames)));
      }
      await Promise.all(sent);
      expectRunning(agent);
    }
  });

  it('gRPC messages that do not parse, are cut short, claim compression or 4 GiB, on every method', { timeout: 120_000 }, async () => {
    const methods = [SOTW, DELTA, `${ADS}/NoSuchMethod`];
    for (const [endpoint, connect] of [['XDS socket', toSocket], ['debug port', toDebugPort]] as const) {
      for (const method of methods) {
        for (let round = 0; round < 15; round++) {
          const bytes = seededBytes(1000 + round);
          await grpcCall(connect, method, grpcFrame(bytes(1 + (round * 131) % 2000)));
        }
        const shapes: [string, Buffer, http2.OutgoingHttpHeaders?][] = [
          ['wire type 6', grpcFrame(Buffer.from([0x0e, 0x01, 0x02]))],
          ['length past the end', grpcFrame(Buffer.from([0x0a, 0x7f, 0x61]))],
          ['compressed flag', grpcFrame(Buffer.from('abc'), 1)],
          ['4 GiB declared', grpcFrame(Buffer.alloc(10), 0, 0xffffffff)],
          ['3 bytes of a frame header', Buffer.from([0, 0, 0])],
          ['body cut short', grpcFrame(Buffer.alloc(0), 0, 100)],
          ['grpc-encoding gzip', grpcFrame(Buffer.alloc(1)), { 'grpc-encoding': 'gzip' }],
        ];
        for (const [label, body, headers] of shapes) {
          await grpcCall(connect, method, body, headers);
          if (agent.child.exitCode !== null) throw new Error(`${endpoint} ${method} ${label}: the agent died:\n${agent.output().slice(-4000)}`);
        }
        expectRunning(agent);
      }
    }
  });

  it('after all of it, still serves well-formed SotW and Delta clients', { timeout: 60_000 }, async () => {
    expectRunning(agent);
    await expectSotwPush(work.path, CDS, 1);
    const delta = openDelta({ address: `unix:${xdsSocketOf(work.path)}`, tls: false });
    try {
      delta.request({ type_url: CDS });
      const res = await delta.next(20_000);
      expect(res.resources.map((r) => r.name)).toEqual(['c1']);
    } finally {
      delta.close();
    }
    // what the malformed requests met is what grpc-go answers: counted as downstream errors
    expect(agent.output()).toMatch(/downstream terminated with unexpected error: grpc: failed to unmarshal the received message: /);
    expectRunning(agent);
  });
});
