// Whether a gRPC server answers on a unix socket: the equivalent of grpc-go's blocking dial
// (WithBlock), which Istio's agent uses to tell a live SDS server from a socket file left behind.

import http2 from 'node:http2';
import net from 'node:net';

/**
 * Resolves once a server on `path` has sent its HTTP/2 SETTINGS (a gRPC connection is up);
 * rejects with the reason when the socket refuses, breaks or stays silent for `timeoutMs`.
 */
export function dialUnixSocket(path: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = false;
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(path) });
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`no HTTP/2 server answered on ${path} within ${timeoutMs} ms`)), timeoutMs);
    session.once('remoteSettings', () => finish());
    session.once('error', (err: Error) => finish(err));
    session.once('close', () => finish(new Error(`the connection to ${path} closed before the server answered`)));
  });
}
