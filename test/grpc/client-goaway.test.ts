// An upstream (istiod or the CA) that sends GOAWAY right after the handshake and leaves the TCP
// connection open: every call must still release its socket. Node's session.destroy() only
// half-closes a connection already in graceful close, and waits for a FIN that never comes.
// The server runs in a child process, so that only the client's sockets are counted here.

import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openClientStream, unaryCall } from '../../src/grpc/client.js';
import { Status } from '../../src/grpc/status.js';

const SERVER = `
const http2 = require('node:http2');
const server = http2.createServer();
server.on('session', (s) => { s.on('error', () => {}); setImmediate(() => { try { s.goaway(0); } catch {} }); });
server.on('stream', (st) => st.on('error', () => {}));
server.listen(0, '127.0.0.1', () => console.log(server.address().port));`;

let server: ChildProcess;
let address: string;
const openFds = (): number => readdirSync('/proc/self/fd').length;

beforeAll(async () => {
  server = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => server.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
  address = `127.0.0.1:${port}`;
});
afterAll(() => {
  server.kill('SIGKILL');
});

describe('a server that sends GOAWAY and keeps the connection open', () => {
  it('unary calls fail UNAVAILABLE naming the GOAWAY and keep no socket', async () => {
    const before = openFds();
    for (let i = 0; i < 30; i++) {
      await expect(unaryCall({ address }, '/istio.v1.auth.IstioCertificateService/CreateCertificate', Buffer.alloc(10), { timeoutMs: 5000 })).rejects.toThrow(/UNAVAILABLE: .* sent GOAWAY \(HTTP\/2 code 0\)/);
    }
    await expect.poll(openFds, { timeout: 5000 }).toBeLessThanOrEqual(before + 2);
  });

  it('streams end UNAVAILABLE and keep no socket', async () => {
    const before = openFds();
    for (let i = 0; i < 30; i++) {
      const status = await new Promise<{ code: number }>((resolve) => {
        openClientStream({ address }, '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', { onData: () => undefined, onEnd: (st) => resolve(st) });
      });
      expect(status.code).toBe(Status.UNAVAILABLE);
    }
    await sleep(100);
    await expect.poll(openFds, { timeout: 5000 }).toBeLessThanOrEqual(before + 2);
  });
});
