// The xDS debug port (PROXY_XDS_DEBUG_VIA_AGENT, localhost:15004): istiod's debug API (the
// istio.io/debug/* xDS types: syncz, config_dump, ...) asked over the agent's own connection to
// istiod, so that a pod can reach it without credentials of its own. As Istio's agent served it
// (pkg/istio-agent xds_proxy.go initDebugInterface and tap_proxy.go, Istio 1.10 to 1.24):
//
//   HTTP   GET /debug/<type>[?resourceName=<name>] -> a DiscoveryRequest for istio.io/debug/<type>
//          (`/debug` alone: istio.io/debug) on the current Envoy stream's upstream; istiod's
//          answer as JSON (debug-response.ts). 503 "proxy not connected to Istiod" when no client
//          is connected, 504 when istiod does not answer within 5 s, 400 for a query that does not
//          parse, 404 for other paths.
//   gRPC   (h2c on the same port) AggregatedDiscoveryService/StreamAggregatedResources: the first
//          request, when its type is istio.io/debug/..., is asked the same way (15 s) and its
//          answer sent back as a SotW DiscoveryResponse; Delta is not implemented.
//
// Loopback only. HTTP/1.1 and HTTP/2 share the port: a connection is told apart by its first
// bytes (the HTTP/2 preface starts "PRI").

import type http from 'node:http';
import type http2 from 'node:http2';
import type net from 'node:net';
import { goQuoteJson } from '../bootstrap/go-json.js';
import { HeldListener } from '../grpc/held-listener.js';
import { acceptGrpcStream, type ServerStream } from '../grpc/server.js';
import { Status, unmarshalFailure } from '../grpc/status.js';
import { logger } from '../util/logger.js';
import { dateOwnHttp1, httpDate, WITHOUT_NODE_DATE } from '../util/time.js';
import { debugResponseJson, encodeDebugResponse, readDebugResponse } from './debug-response.js';
import { DELTA, SOTW } from './protocol.js';
import { DEBUG_TYPE } from './type-urls.js';
import { scan, summarizeSotwRequest, XdsField } from './wire.js';
import { TapNotConnectedError, type TapRequest, type TapResult } from './xds-proxy.js';
import { lazyBuiltin } from '../util/builtin.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('default');
const proxyLog = logger('xdsproxy');

/** How long an HTTP request waits for istiod (Istio: 5 s), and a gRPC tap (Istio: 15 s). */
const HTTP_TAP_TIMEOUT_MS = 5_000;
const GRPC_TAP_TIMEOUT_MS = 15_000;

export interface DebugPortOptions {
  /** Loopback address to listen on. */
  readonly host: string;
  /** 15004 by default (PROXY_XDS_DEBUG_VIA_AGENT_PORT); 0 picks a free port. */
  readonly port: number;
  /** The port, bound already (before Envoy's spawn); otherwise start() binds host and port. */
  readonly listener?: HeldListener;
  readonly proxy: { tapRequest(request: TapRequest, timeoutMs: number): Promise<TapResult | undefined> };
  /** How long a connection may take to send its first request (default 30 s, Istio's ReadTimeout). */
  readonly firstRequestTimeoutMs?: number;
}

interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

const TEXT = { 'content-type': 'text/plain; charset=utf-8' };

/** Go's url.ParseQuery: the first value of each key, and the first error met (parsing goes on). */
export function parseGoQuery(raw: string): { values: Map<string, string>; error?: string } {
  const values = new Map<string, string>();
  let error: string | undefined;
  const unescape = (s: string): string | undefined => {
    const bytes: number[] = [];
    for (let i = 0; i < s.length; i++) {
      const c = s[i]!;
      if (c === '+') bytes.push(0x20);
      else if (c === '%') {
        const hex = s.slice(i + 1, i + 3);
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
          error ??= `invalid URL escape ${goQuoteJson(s.slice(i, i + 3))}`;
          return undefined;
        }
        bytes.push(parseInt(hex, 16));
        i += 2;
      } else bytes.push(...Buffer.from(c));
    }
    return Buffer.from(bytes).toString('utf8');
  };
  for (const part of raw.split('&')) {
    if (part === '') continue;
    if (part.includes(';')) {
      error ??= 'invalid semicolon separator in query';
      continue;
    }
    const eq = part.indexOf('=');
    const key = unescape(eq < 0 ? part : part.slice(0, eq));
    if (key === undefined) continue;
    const value = unescape(eq < 0 ? '' : part.slice(eq + 1));
    if (value === undefined) continue;
    if (!values.has(key)) values.set(key, value);
  }
  return { values, ...(error !== undefined ? { error } : {}) };
}

/** Istio's ReadTimeout on its debug server. */
const FIRST_REQUEST_MS = 30_000;

export class XdsDebugPort {
  private listener: HeldListener | undefined;
  // Istio's server: ReadTimeout 30 s, IdleTimeout 90 s
  private readonly h1 = lazyBuiltin.http().createServer({ headersTimeout: 30_000, requestTimeout: 30_000 }, (req, res) => void this.serveHttp1(req, res));
  private readonly h2 = lazyBuiltin.http2().createServer({ settings: { enablePush: false } });
  private readonly sockets = new Set<net.Socket>();
  private readonly firstRequestDeadlines = new WeakMap<net.Socket, NodeJS.Timeout>();
  private boundPort = 0;

  constructor(private readonly options: DebugPortOptions) {
    this.h1.keepAliveTimeout = 90_000;
    this.h2.on('stream', (stream, headers) => this.serveHttp2(stream, headers));
    this.h2.on('session', (session) => {
      session.setTimeout(90_000, () => session.close());
      session.on('error', () => undefined);
    });
  }

  /** The port listened on (the one picked when 0 was asked for). */
  get port(): number {
    return this.boundPort;
  }

  /** Serves on `options.listener` when given (bound before Envoy's spawn), otherwise binds the port. */
  async start(): Promise<void> {
    const listener = this.options.listener ?? (await HeldListener.tcp(this.options.host, this.options.port, { name: 'debug', warn: (m) => log.warn(m) }));
    listener.handTo({ emit: (_event, socket) => (this.sniff(socket), true) });
    this.listener = listener;
    this.boundPort = listener.port;
    const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
    log.info(`starting Http service at ${host}:${this.boundPort}`);
  }

  /**
   * Hands a connection to the HTTP/2 or the HTTP/1.1 server, by its first bytes. Istio's ReadTimeout
   * (30 s) bounds a connection until its first request has arrived: the servers here are handed
   * sockets, never listen, so node's own header and request timeouts never run, and a connection
   * that sent nothing, or half a request, was held for ever (1,100 of them took the agent's fds).
   */
  private sniff(socket: net.Socket): void {
    this.sockets.add(socket);
    const firstRequest = setTimeout(() => socket.destroy(), timerDelay(this.options.firstRequestTimeoutMs ?? FIRST_REQUEST_MS));
    this.firstRequestDeadlines.set(socket, firstRequest);
    socket.once('close', () => {
      clearTimeout(firstRequest);
      this.sockets.delete(socket);
    });
    socket.on('error', () => undefined);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      if (head.length < 3) return;
      socket.off('data', onData);
      socket.pause();
      if (head.subarray(0, 3).toString('latin1') === 'PRI') {
        // HTTP/2: the session's idle timeout takes over once its preface and settings are through
        clearTimeout(firstRequest);
        socket.unshift(head);
        this.h2.emit('connection', socket);
      } else {
        // the HTTP/1 parser reads the socket itself from here on: the bytes already read go in first
        this.h1.emit('connection', socket);
        socket.emit('data', head);
        socket.resume();
      }
    };
    socket.on('data', onData);
  }

  private async serveHttp1(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // the first request is in: keep-alive's idle timeout bounds the connection from here
    clearTimeout(this.firstRequestDeadlines.get(req.socket));
    const a = await this.safeAnswer(req.url ?? '/');
    dateOwnHttp1(res);
    res.writeHead(a.status, a.headers);
    res.end(a.body);
  }

  private serveHttp2(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    if (String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      acceptGrpcStream(
        stream,
        headers,
        new Map([
          [SOTW.method, (call: ServerStream) => this.grpcTap(call)],
          [DELTA.method, (call: ServerStream) => call.finish({ code: Status.UNKNOWN, details: 'not implemented' })],
        ]),
        { name: 'xDS debug', log: (m) => log.warn(m), logError: (m) => log.error(m) },
      );
      return;
    }
    stream.on('error', () => undefined);
    void this.safeAnswer(String(headers[':path'] ?? '/')).then((a) => {
      if (stream.destroyed) return;
      stream.respond({ ':status': a.status, date: httpDate(Date.now()), ...a.headers }, WITHOUT_NODE_DATE);
      stream.end(a.body);
    });
  }

  /** A failure of the agent's own is the caller's 500, never the process's end. */
  private async safeAnswer(rawUrl: string): Promise<Answer> {
    try {
      return await this.answer(rawUrl);
    } catch (err) {
      log.error(`xDS debug request ${rawUrl} failed: ${(err as Error).stack ?? String(err)}`);
      return { status: 500, headers: TEXT, body: `${(err as Error).message}\n` };
    }
  }

  /** Istio's makeTapHandler, behind its mux ("/debug" and "/debug/..."). */
  private async answer(rawUrl: string): Promise<Answer> {
    const q = rawUrl.indexOf('?');
    let path: string;
    try {
      path = decodeURIComponent(q < 0 ? rawUrl : rawUrl.slice(0, q));
    } catch {
      return { status: 400, headers: TEXT, body: '400 Bad Request' };
    }
    if (path !== '/debug' && !path.startsWith('/debug/')) return { status: 404, headers: { ...TEXT, 'x-content-type-options': 'nosniff' }, body: '404 page not found\n' };
    const query = parseGoQuery(q < 0 ? '' : rawUrl.slice(q + 1));
    if (query.error !== undefined) return { status: 400, headers: TEXT, body: `${query.error}\n` };
    const typeUrl = `istio.io${path}`;
    const resourceName = query.values.get('resourceName') ?? '';
    let result: TapResult | undefined;
    try {
      result = await this.options.proxy.tapRequest({ typeUrl, resourceNames: resourceName ? [resourceName] : [] }, HTTP_TAP_TIMEOUT_MS);
    } catch (err) {
      if (!(err instanceof TapNotConnectedError)) throw err;
      return { status: 503, headers: TEXT, body: `${err.message}\n` };
    }
    if (!result) {
      log.info(`timed out waiting for Istiod to respond to ${goQuoteJson(typeUrl)}`);
      return { status: 504, headers: {}, body: '' };
    }
    const json = debugResponseJson(readDebugResponse(result));
    if (json.warning) proxyLog.warn(json.warning);
    return { status: 200, headers: { 'content-type': 'application/json' }, body: json.body };
  }

  /** Istio's tapProxy.StreamAggregatedResources: one debug request, one answer, then the stream ends. */
  private grpcTap(call: ServerStream): void {
    let asked = false;
    call.attach({
      onRequest: (msg) => {
        if (asked) return;
        asked = true;
        let typeUrl: string;
        const resourceNames: string[] = [];
        try {
          typeUrl = summarizeSotwRequest(msg).typeUrl;
          scan(msg, (_f, s, e) => resourceNames.push(Buffer.from(msg.subarray(s, e)).toString('utf8')), new Set([XdsField.DiscoveryRequest.resource_names]));
        } catch (err) {
          // as grpc-go answers a request that does not unmarshal; the port and the agent go on
          const status = unmarshalFailure(err);
          log.warn(`xDS debug port: ${status.details}`);
          return call.finish(status);
        }
        if (!typeUrl.startsWith(`${DEBUG_TYPE}/`)) return call.finish();
        this.options.proxy.tapRequest({ typeUrl, resourceNames, sotwRequest: msg }, GRPC_TAP_TIMEOUT_MS).then(
          (result) => {
            if (!result) return call.finish({ code: Status.INTERNAL, details: `timed out waiting for Istiod to respond to ${goQuoteJson(typeUrl)}` });
            const reply = result.protocol === 'sotw' ? result.message : Buffer.from(encodeDebugResponse(readDebugResponse(result)));
            call.writeMessage(reply, () => call.finish());
          },
          (err: unknown) => {
            log.error(`failed to call tap request: ${(err as Error).message}`);
            call.finish({ code: Status.UNKNOWN, details: (err as Error).message });
          },
        );
      },
      onGone: () => undefined,
    });
  }

  /** Stops listening and closes every connection. Idempotent. */
  async close(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    if (!listener) return;
    const closing = listener.close();
    for (const s of this.sockets) s.destroy();
    await closing;
  }
}
