// Requests to HTTP servers on this host and in this pod: Envoy's admin API (readiness, drain,
// active connections), the status port (`pilot-agent wait` and `request`) and the application's
// httpGet probes (on the pod IP). node:http, which the agent has loaded
// anyway for its status server, rather than undici (the client of the Wasm fetches, which need
// its connector and interceptors): undici costs ~100 ms and several MB of resident memory to
// load, and these calls run in every pod from the first readiness probe on, and in the postStart
// hook that holds the application's start (bench `http-clients` measures both clients).
// No keep-alive unless the caller passes an agent: a call leaves no socket behind.

import type http from 'node:http';
import type https from 'node:https';
import { lazyBuiltin } from './builtin.js';
import { deadline } from './deadline.js';

export class LocalHttpError extends Error {
  override readonly name = 'LocalHttpError';
  readonly code = 'LOCAL_HTTP';
}

export interface LocalRequestOptions {
  readonly method?: string;
  readonly headers?: http.OutgoingHttpHeaders;
  readonly body?: string;
  /** Bound on the whole exchange. */
  readonly timeoutMs: number;
  /** Largest body read (default 16 MiB). */
  readonly maxBytes?: number;
  /** A longer body fails the call (default), or is cut there and the connection closed. */
  readonly overLimit?: 'fail' | 'truncate';
  /** Source address of the connection. */
  readonly localAddress?: string | undefined;
  /** https: accept any server certificate (the kubelet does not verify an app's probe endpoint). */
  readonly insecure?: boolean;
  readonly signal?: AbortSignal;
  /** A keep-alive agent to reuse connections (the probes' ENABLE_PROBE_KEEPALIVE_CONNECTIONS); none by default. */
  readonly agent?: http.Agent;
  /** Largest response header section (default node's 16 KiB). */
  readonly maxHeaderBytes?: number;
}

export interface LocalResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** The body as UTF-8 text. */
  readonly body: string;
  readonly bytes: Buffer;
}

/** One request; resolves with any HTTP status (the caller judges it), rejects with LocalHttpError. */
export function localRequest(url: string, opts: LocalRequestOptions): Promise<LocalResponse> {
  const method = (opts.method ?? 'GET').toUpperCase();
  const what = `${method} ${url}`;
  const maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  const timeout = deadline(opts.timeoutMs, opts.signal);
  const signal = timeout.signal;
  return new Promise<LocalResponse>((resolve, reject) => {
    const fail = (message: string, cause?: unknown): void => reject(new LocalHttpError(`${what}: ${message}`, cause === undefined ? undefined : { cause }));
    const tls = url.startsWith('https:');
    const options: https.RequestOptions = {
      method,
      agent: opts.agent ?? false,
      signal,
      ...(opts.headers ? { headers: opts.headers } : {}),
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      ...(tls && opts.insecure ? { rejectUnauthorized: false } : {}),
      ...(opts.maxHeaderBytes ? { maxHeaderSize: opts.maxHeaderBytes } : {}),
    };
    // the deadline ends the call by itself: once node has handed the socket over (a 101 or a
    // CONNECT answer) the request emits nothing more, and the call must not wait for it
    signal.addEventListener('abort', () => fail(timeout.expired ? `timed out after ${opts.timeoutMs} ms` : 'aborted'), { once: true });
    let req: http.ClientRequest;
    try {
      req = (tls ? lazyBuiltin.https() : lazyBuiltin.http()).request(url, options, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const done = (): void => {
          const bytes = Buffer.concat(chunks).subarray(0, maxBytes);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: bytes.toString('utf8'), bytes });
        };
        res.on('data', (c: Buffer) => {
          size += c.length;
          chunks.push(c);
          if (size <= maxBytes) return;
          res.removeAllListeners('end');
          res.destroy();
          if (opts.overLimit === 'truncate') done();
          else fail(`response larger than ${maxBytes} bytes`);
        });
        res.on('error', (err) => fail(timeout.expired ? `timed out after ${opts.timeoutMs} ms` : err.message, err));
        res.on('end', done);
      });
    } catch (err) {
      fail((err as Error).message, err); // a URL node cannot request
      return;
    }
    req.on('error', (err) => fail(timeout.expired ? `timed out after ${opts.timeoutMs} ms` : err.message, err));
    // 101 Switching Protocols, or an answer to CONNECT: a final status whose connection now speaks
    // something else. It is the answer (the caller judges the status); the connection is closed.
    const handedOver = (res: http.IncomingMessage, socket: { destroy(): void }): void => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '', bytes: Buffer.alloc(0) });
    };
    req.on('upgrade', handedOver);
    req.on('connect', handedOver);
    req.end(opts.body === undefined || opts.body === '' ? undefined : opts.body);
  }).finally(() => timeout.clear());
}
