// After the server has ended a stream with its status, what the client still sends is neither
// buffered nor read: the stream's HTTP/2 window holds the client. A replaced xDS stream whose client
// went on sending used to be read and buffered up to the request cap, per message (six such
// streams: +368 MB). A raw HTTP/2 client on a real unix socket, watching its unsent bytes.

import http2 from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { frameMessage } from '../../src/grpc/frames.js';
import { GrpcUnixServer, type ServerStream } from '../../src/grpc/server.js';

const METHOD = '/test.Once/Stream';
let dir: string;
let server: GrpcUnixServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pa-grpc-after-'));
  // answers the first request with its status at once, as a replaced stream is ended
  server = new GrpcUnixServer(join(dir, 'sock'), new Map([[METHOD, (call: ServerStream) => call.attach({ onRequest: () => call.finish(), onGone: () => undefined })]]), { name: 'test' });
  await server.start();
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

it('a client that goes on sending after the status is held by flow control, not read', { timeout: 30_000 }, async () => {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(join(dir, 'sock')) });
  session.on('error', () => undefined);
  try {
    const stream = session.request({ ':method': 'POST', ':path': METHOD, 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => undefined);
    const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.on('response', (h) => resolve(h)));
    stream.resume();
    stream.write(frameMessage(Buffer.from('first')));
    expect((await trailers)['grpc-status']).toBe('0');
    // then a 20 MB message the server has no use for
    const big = Buffer.alloc(20 * 1024 * 1024, 1);
    stream.write(frameMessage(big));
    // a server still reading takes it all within milliseconds over a unix socket (60 MiB a stream
    // in the audit); a paused one lets through one window (64 KiB) and no more, however long
    const t0 = Date.now();
    let least = stream.writableLength;
    while (Date.now() - t0 < 1500) {
      await new Promise((r) => setTimeout(r, 50));
      least = Math.min(least, stream.writableLength);
    }
    expect(least).toBeGreaterThan(big.length - 1024 * 1024);
    expect(stream.destroyed).toBe(false);
  } finally {
    session.destroy();
  }
});
