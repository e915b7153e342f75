// The sockets the agent binds before Envoy's spawn: what a client sends before the server is there
// reaches the server whole once it takes over; clients that give up are forgotten; a stop before
// the hand-over leaves no connection and no socket file. Real sockets, real HTTP/2 and HTTP/1.1.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HeldListener } from './held-listener.js';

let dir: string;
const cleanups: (() => unknown)[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pa-held-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

/** An HTTP/2 client on the unix socket that sends `count` POSTs at once and collects the answers. */
function h2Requests(path: string, count: number): Promise<string[]> {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(path) });
  cleanups.push(() => session.destroy());
  session.on('error', () => undefined);
  return Promise.all(
    Array.from({ length: count }, (_, i) => {
      const req = session.request({ ':method': 'POST', ':path': `/echo/${i}` });
      req.end(`body ${i} `.repeat(2000));
      let answer = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (answer += d));
      return new Promise<string>((resolve, reject) => {
        req.on('end', () => resolve(answer));
        req.on('error', reject);
      });
    }),
  );
}

function echoServer(): http2.Http2Server {
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    let body = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (body += d));
    stream.on('end', () => {
      stream.respond({ ':status': 200 });
      stream.end(`${String(headers[':path'])} got ${body.length} bytes, first ${JSON.stringify(body.slice(0, 6))}`);
    });
  });
  return server;
}

describe('HeldListener', () => {
  it('holds HTTP/2 requests sent before a server exists, and the server answers all of them whole once it takes over', async () => {
    const path = join(dir, 'xds.sock');
    const listener = await HeldListener.unix(path, { name: 'xDS' });
    cleanups.push(() => listener.close());
    const answers = h2Requests(path, 3);
    await vi.waitFor(() => expect(listener.waiting).toBe(1));
    // give the client time to send its preface and the three request bodies into the socket
    await new Promise((r) => setTimeout(r, 100));
    listener.handTo(echoServer());
    expect(await answers).toEqual([0, 1, 2].map((i) => `/echo/${i} got ${`body ${i} `.length * 2000} bytes, first "body ${i}"`));
    expect(listener.waiting).toBe(0);
    // connections after the hand-over go straight to the server
    expect(await h2Requests(path, 1)).toEqual([`/echo/0 got ${'body 0 '.length * 2000} bytes, first "body 0"`]);
  });

  it('hands over a client that gave up while waiting: its connection just ends there, the others are served', async () => {
    const path = join(dir, 'sds.sock');
    const listener = await HeldListener.unix(path, { name: 'SDS' });
    cleanups.push(() => listener.close());
    const quitter = net.connect(path);
    await vi.waitFor(() => expect(listener.waiting).toBe(1));
    quitter.end();
    const answers = h2Requests(path, 1);
    await vi.waitFor(() => expect(listener.waiting).toBe(2));
    const ended: net.Socket[] = [];
    const server = echoServer();
    server.prependListener('connection', (s: net.Socket) => s.on('close', () => ended.push(s)));
    listener.handTo(server);
    expect(await answers).toEqual([`/echo/0 got ${'body 0 '.length * 2000} bytes, first "body 0"`]);
    await vi.waitFor(() => expect(ended).toHaveLength(1));
  });

  it('closed before the hand-over: the waiting client is disconnected and the socket file removed', async () => {
    const path = join(dir, 'xds.sock');
    const listener = await HeldListener.unix(path, { name: 'xDS' });
    const client = net.connect(path);
    const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
    client.on('error', () => undefined);
    await vi.waitFor(() => expect(listener.waiting).toBe(1));
    await listener.close();
    await closed;
    expect(existsSync(path)).toBe(false);
    expect(() => listener.handTo(echoServer())).toThrow(`the listener on ${path} is closed`);
    await listener.close(); // idempotent
  });

  it('takes over a socket file left by a killed process, and refuses a live one or a file that is not a socket, naming the path', async () => {
    const path = join(dir, 'left.sock');
    // bound and never closed: the file stays, nobody listens
    execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path)})`]);
    expect(existsSync(path)).toBe(true);
    const logs: string[] = [];
    const listener = await HeldListener.unix(path, { name: 'SDS', log: (m) => logs.push(m) });
    cleanups.push(() => listener.close());
    expect(logs).toEqual([`removing stale SDS socket ${path}`]);

    await expect(HeldListener.unix(path, { name: 'SDS' })).rejects.toThrow(`cannot serve SDS on ${path}: another SDS server is listening there`);
    const file = join(dir, 'file');
    writeFileSync(file, 'not a socket');
    await expect(HeldListener.unix(file, { name: 'xDS' })).rejects.toThrow(`cannot serve xDS on ${file}: the path exists and is not a socket`);
    const long = join(dir, 'x'.repeat(120));
    await expect(HeldListener.unix(long, { name: 'xDS' })).rejects.toThrow('a unix socket path is limited to 107 bytes');
  });

  it('on TCP, holds an HTTP/1.1 request until a server takes the connection, and reports the port it picked', async () => {
    const listener = await HeldListener.tcp('127.0.0.1', 0);
    cleanups.push(() => listener.close());
    expect(listener.port).toBeGreaterThan(0);
    const answer = new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: listener.port, path: '/debug/syncz', agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve(`${res.statusCode} ${body}`));
        })
        .on('error', reject);
    });
    await vi.waitFor(() => expect(listener.waiting).toBe(1));
    const server = http.createServer((req, res) => res.end(`served ${req.url}`));
    listener.handTo(server);
    expect(await answer).toBe('200 served /debug/syncz');
    expect(() => listener.handTo(server)).toThrow(`the connections on port ${listener.port} are already served`);
  });
});
