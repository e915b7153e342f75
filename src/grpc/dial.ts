// Whether a server answers on a unix socket. `unixSocketAccepts` asks the kernel only (node:net);
// `dialUnixSocket` is the equivalent of grpc-go's blocking dial (WithBlock), which Istio's agent
// uses to tell a live SDS server from a socket file left behind. A socket file left by a killed
// process refuses at once, so the HTTP/2 half (node:http2, loaded on first use) runs only when
// something listens: start-up after a crash need not load it before Envoy's spawn.

import net from 'node:net';
import { lazyBuiltin } from '../util/builtin.js';
import { timerDelay } from '../util/timer-delay.js';

/** Resolves once a connection to `path` is accepted; rejects with the reason (ECONNREFUSED, ENOENT, a timeout). */
export function unixSocketAccepts(path: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    const done = (err?: Error): void => {
      sock.destroy();
      if (err) reject(err);
      else resolve();
    };
    sock.once('connect', () => done());
    sock.once('error', (err: Error) => done(err));
    sock.setTimeout(timerDelay(timeoutMs), () => done(new Error(`connecting to ${path} took more than ${timeoutMs} ms`)));
  });
}

/**
 * Resolves once a server on `path` has sent its HTTP/2 SETTINGS (a gRPC connection is up);
 * rejects with the reason when the socket refuses, breaks or stays silent for `timeoutMs`.
 */
export async function dialUnixSocket(path: string, timeoutMs: number): Promise<void> {
  await unixSocketAccepts(path, timeoutMs);
  return new Promise((resolve, reject) => {
    let done = false;
    const session = lazyBuiltin.http2().connect('http://localhost', { createConnection: () => net.connect(path) });
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`no HTTP/2 server answered on ${path} within ${timeoutMs} ms`)), timerDelay(timeoutMs));
    session.once('remoteSettings', () => finish());
    session.once('error', (err: Error) => finish(err));
    session.once('close', () => finish(new Error(`the connection to ${path} closed before the server answered`)));
  });
}
