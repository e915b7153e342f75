// Requests to HTTP servers on this host and in this pod: Envoy's admin API (readiness, drain,
// active connections), the status port (`pilot-agent wait` and `request`) and the application's
// httpGet probes (on the pod IP). node:http, which the agent has loaded
// anyway for its status server, rather than undici (the client of the Wasm fetches, which need
// its connector and interceptors): undici costs ~100 ms and several MB of resident memory to
// load, and these calls run in every pod from the first readiness probe on, and in the postStart
// hook that holds the application's start (bench `http-clients` measures both clients).
// No keep-alive unless the caller passes an agent: a call leaves no socket behind.

import type http from 'node:http';
import type http2 from 'node:http2';
import type https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { lazyBuiltin } from './builtin.js';
import { deadline } from './deadline.js';
import { ipFamily } from './ip.js';

export class LocalHttpError extends Error {
  override readonly name = 'LocalHttpError';
  readonly code = 'LOCAL_HTTP';
}

export interface LocalRequestOptions {
  readonly method?: string;
  readonly headers?: http.OutgoingHttpHeaders;
  readonly body?: string;
  /** Bound on the whole exchange; undefined: none (the caller's signal ends the call). */
  readonly timeoutMs: number | undefined;
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
  /**
   * https: offer HTTP/2 as well as HTTP/1.1 in ALPN and speak what the server picks, as Go's
   * transport with HTTP/2 configured (the kubelet's prober and Istio's, ISTIO_ENABLE_HTTP2_PROBING).
   * Not with an `agent` (its pooled connections are HTTP/1.1).
   */
  readonly offerHttp2?: boolean;
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
    const parsed = URL.canParse(url) ? new URL(url) : undefined;
    const options: https.RequestOptions = {
      method,
      agent: opts.agent ?? false,
      signal,
      ...(opts.headers ? { headers: opts.headers } : {}),
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      ...(tls && opts.insecure ? { rejectUnauthorized: false } : {}),
      // SNI names the URL's host, never a Host header, and is left out for an IP (as Go's client)
      ...(tls && parsed ? { servername: serverName(parsed) } : {}),
      ...(opts.maxHeaderBytes ? { maxHeaderSize: opts.maxHeaderBytes } : {}),
    };
    // the deadline ends the call by itself: once node has handed the socket over (a 101 or a
    // CONNECT answer) the request emits nothing more, and the call must not wait for it
    signal.addEventListener('abort', () => fail(timeout.expired ? `timed out after ${opts.timeoutMs} ms` : 'aborted'), { once: true });
    if (tls && opts.offerHttp2 && !opts.agent) {
      if (!parsed) return fail('not a URL');
      negotiate(parsed, opts, signal, fail, (socket) => {
        if (socket.alpnProtocol === 'h2') http2Request(parsed, method, opts, socket, maxBytes, signal, resolve, fail);
        else {
          // no agent, so that the request goes over this connection (an agent, even agent: false's
          // own, would open another and leave this one open)
          const { agent: _agent, ...direct } = options;
          http1Request({ ...direct, createConnection: () => socket });
        }
      });
      return;
    }
    http1Request(options);

    function http1Request(options: https.RequestOptions): void {
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
    }
  }).finally(() => timeout.clear());
}

/** The TLS server name for a URL: its host name; none for an IP address (SNI carries names only). */
function serverName(url: URL): string {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return ipFamily(host) === 0 ? host : '';
}

/** Opens the TLS connection offering h2 and http/1.1; `then` gets it once the handshake is done. */
function negotiate(url: URL, opts: LocalRequestOptions, signal: AbortSignal, fail: (message: string, cause?: unknown) => void, then: (socket: TLSSocket) => void): void {
  const name = serverName(url);
  const socket = lazyBuiltin.tls().connect({
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 443),
    ALPNProtocols: ['h2', 'http/1.1'],
    rejectUnauthorized: !opts.insecure,
    ...(name ? { servername: name } : {}),
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
  });
  const onAbort = (): void => void socket.destroy();
  signal.addEventListener('abort', onAbort, { once: true });
  socket.once('error', (err) => fail(err.message, err));
  socket.once('secureConnect', () => {
    socket.removeAllListeners('error');
    signal.removeEventListener('abort', onAbort);
    then(socket);
  });
}

/** Connection-specific fields HTTP/2 forbids (RFC 9113 8.2.2); Go's transport leaves them out too. */
const NOT_IN_HTTP2 = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host']);

/** One request over an HTTP/2 connection on `socket`, closed when the answer is read. */
function http2Request(
  u: URL,
  method: string,
  opts: LocalRequestOptions,
  socket: TLSSocket,
  maxBytes: number,
  signal: AbortSignal,
  resolve: (r: LocalResponse) => void,
  fail: (message: string, cause?: unknown) => void,
): void {
  const session = lazyBuiltin.http2().connect(u.origin, {
    createConnection: () => socket,
    settings: { enablePush: false, ...(opts.maxHeaderBytes ? { maxHeaderListSize: opts.maxHeaderBytes } : {}) },
    ...(opts.maxHeaderBytes ? { maxHeaderListPairs: Math.max(128, Math.floor(opts.maxHeaderBytes / 64)) } : {}),
  });
  const end = (): void => void session.destroy();
  signal.addEventListener('abort', end, { once: true });
  session.on('error', (err) => fail(err.message, err));
  const headers: http2.OutgoingHttpHeaders = { ':method': method, ':path': `${u.pathname}${u.search}`, ':authority': u.host, ':scheme': 'https' };
  for (const [name, value] of Object.entries(opts.headers ?? {})) {
    const key = name.toLowerCase();
    if (key === 'host' && value !== undefined) headers[':authority'] = String(value);
    else if (!NOT_IN_HTTP2.has(key) && value !== undefined) headers[key] = value;
  }
  const body = opts.body === undefined || opts.body === '' ? undefined : opts.body;
  let stream: http2.ClientHttp2Stream;
  try {
    stream = session.request(headers, { endStream: body === undefined });
  } catch (err) {
    end();
    fail((err as Error).message, err);
    return;
  }
  stream.on('error', (err) => fail(err.message, err));
  stream.on('response', (h) => {
    const status = Number(h[':status'] ?? 0);
    const responseHeaders: http.IncomingHttpHeaders = {};
    for (const [k, v] of Object.entries(h)) if (!k.startsWith(':')) responseHeaders[k] = v as string | string[];
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      const bytes = Buffer.concat(chunks).subarray(0, maxBytes);
      resolve({ status, headers: responseHeaders, body: bytes.toString('utf8'), bytes });
      end();
    };
    stream.on('data', (c: Buffer) => {
      size += c.length;
      chunks.push(c);
      if (size <= maxBytes) return;
      stream.removeAllListeners('end');
      if (opts.overLimit === 'truncate') done();
      else {
        end();
        fail(`response larger than ${maxBytes} bytes`);
      }
    });
    stream.on('end', done);
  });
  stream.on('close', () => fail(`the HTTP/2 stream closed without an answer (code ${stream.rstCode})`));
  if (body !== undefined) stream.end(body);
}
