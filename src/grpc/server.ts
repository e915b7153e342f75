// A gRPC server on a unix socket (plaintext HTTP/2, as Envoy and proxyless apps speak to the
// agent's xDS and SDS sockets), for streaming methods: requests are handed over whole, responses
// are written as whole messages or, for the xDS proxy, as pieces of one as they arrive.

import type http2 from 'node:http2';
import { frameHeader, GrpcDeframer, wholeMessages } from './frames.js';
import { whileOpen } from './guard.js';
import { ISTIO_KEEPALIVE, keepSessionAlive, type KeepaliveOptions } from './keepalive.js';
import { encodeGrpcMessage, H2Error, Status, type GrpcStatus } from './status.js';
import { HeldListener, type UnixListenerOptions } from './held-listener.js';
import { WITHOUT_NODE_DATE } from '../util/time.js';
import { lazyBuiltin } from '../util/builtin.js';

/** Outgoing bytes a slow Envoy may leave unread before the proxy stops reading istiod. */
const DOWNSTREAM_BUFFER_BYTES = 1024 * 1024;

/**
 * Largest request message taken from a client by default. Istio's agent uses gRPC's 4 MiB
 * (ISTIO_GPRC_MAXRECVMSGSIZE); a subscription naming tens of thousands of resources comes close to
 * that, so the default here is larger, and still a bound on what a client can make us hold.
 */
export const DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024;

export type StreamEnd = 'end' | 'cancel' | 'error';

export interface ServerStreamHandlers {
  /** A whole request message from the client. */
  onRequest(message: Buffer): void;
  /** The client half-closed, cancelled or broke the stream. Called once, never after `finish`. */
  onGone(kind: StreamEnd, reason: string): void;
}

/** One call from a client (Envoy). */
export class ServerStream {
  private headersSent = false;
  private finished = false;
  private clientGone = false;
  /** The client half-closed: it sends no more. */
  private clientEnded = false;
  private pendingStatus: GrpcStatus = { code: Status.OK, details: '' };
  private handlers: ServerStreamHandlers | undefined;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    /** The full method path, e.g. /envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources. */
    readonly method: string,
    private readonly maxRequestBytes: number = DEFAULT_MAX_REQUEST_BYTES,
    /** Where a handler's failure on one request is reported (the stream ends; the process goes on). */
    private readonly report?: (message: string) => void,
  ) {}

  /** Starts delivering the client's requests and stream events. */
  attach(handlers: ServerStreamHandlers): void {
    this.handlers = handlers;
    const s = this.stream;
    let refused = false;
    const whole = wholeMessages((message, compressed) => {
      if (compressed) this.gone('error', 'the client sent a compressed request; compression is not negotiated here');
      else if (!this.finished && !this.clientGone) this.deliver(handlers, message);
    });
    const deframer = new GrpcDeframer({
      messageStart: (length, compressed) => {
        // judged on the declared length, before a byte of it is held
        if (length > this.maxRequestBytes) {
          refused = true;
          const reason = `request message of ${length} bytes exceeds the ${this.maxRequestBytes}-byte limit`;
          // the status is set before the handler hears of it, so that however it ends the stream,
          // the client is told why
          this.pendingStatus = { code: Status.RESOURCE_EXHAUSTED, details: reason };
          this.gone('error', reason);
          this.finish();
          // RST_STREAM after the status: the client must stop sending the rest
          whileOpen(s, () => s.close(H2Error.NO_ERROR));
          return;
        }
        whole.messageStart(length, compressed);
      },
      messageData: (piece) => {
        if (!refused) whole.messageData(piece);
      },
      messageEnd: () => {
        if (!refused) whole.messageEnd();
      },
    });
    s.on('data', (chunk: Buffer) => {
      // after our status nothing more is read (it was buffered, up to the request cap, per message)
      if (!refused && !this.finished) deframer.push(chunk);
    });
    s.on('end', () => {
      this.clientEnded = true;
      this.gone(deframer.atMessageBoundary ? 'end' : 'error', 'the client half-closed the stream');
    });
    s.on('aborted', () => this.gone('cancel', 'the client cancelled the stream'));
    s.on('error', (err: Error) => this.gone('error', err.message));
    s.on('close', () => this.gone('cancel', 'stream closed'));
  }

  /**
   * Hands a request to the handler. A handler that throws (a request no check foresaw) ends this
   * stream with INTERNAL, as acceptGrpcStream does for a handler failing at the start: one client's
   * input must not reach the process's last-resort handler, which stops Envoy with the agent.
   */
  private deliver(handlers: ServerStreamHandlers, message: Buffer): void {
    try {
      handlers.onRequest(message);
    } catch (err) {
      const reason = `handling a ${message.length}-byte request on ${this.method} failed: ${(err as Error).message}`;
      this.report?.(`${reason}\n${(err as Error).stack ?? ''}`);
      // the status is set before the handler hears of the end, so that however it ends the
      // stream, the client is told why
      this.pendingStatus = { code: Status.INTERNAL, details: reason };
      this.gone('error', reason);
      this.finish();
    }
  }

  /** Reports the client's end once; the server side may still finish (e.g. answer a half-close). */
  private gone(kind: StreamEnd, reason: string): void {
    if (this.clientGone || this.finished) return;
    this.clientGone = true;
    this.handlers?.onGone(kind, reason);
  }

  /**
   * Writes response bytes (frame headers and bodies, in order). Returns false when Envoy is not
   * keeping up: the caller stops reading istiod until `onceDrain`.
   */
  write(bytes: Buffer, callback?: () => void): boolean {
    if (this.finished || this.stream.destroyed) {
      callback?.();
      return true;
    }
    this.sendHeaders();
    const ok = this.stream.write(bytes, callback && (() => callback()));
    return ok || this.stream.writableLength <= DOWNSTREAM_BUFFER_BYTES;
  }

  /**
   * Writes several buffers as one: a write in flight holds the next ones in the stream's buffer
   * until the socket has taken it, so a frame header written alone would leave in a packet of its
   * own, a whole event-loop turn before its body (and wake the client twice).
   */
  writeAll(parts: readonly Buffer[], callback?: () => void): boolean {
    this.stream.cork();
    let ok = true;
    for (let i = 0; i < parts.length; i++) ok = this.write(parts[i]!, i === parts.length - 1 ? callback : undefined);
    this.stream.uncork();
    return ok;
  }

  /**
   * Writes one whole message; `callback` runs once it has been handed to the socket (or the stream
   * is gone). Returns false, as `write` does, when the client is not keeping up.
   */
  writeMessage(message: Buffer, callback: () => void): boolean {
    return this.writeAll([frameHeader(message.length), message], callback);
  }

  onceDrain(listener: () => void): void {
    this.stream.once('drain', listener);
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  /** Ends the stream with `status` (OK when undefined). Idempotent. */
  finish(status?: GrpcStatus): void {
    if (this.finished) return;
    this.finished = true;
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    if (status) this.pendingStatus = status;
    const trailers = { 'grpc-status': String(this.pendingStatus.code), ...(this.pendingStatus.details ? { 'grpc-message': encodeGrpcMessage(this.pendingStatus.details) } : {}) };
    try {
      if (!this.headersSent) {
        // trailers-only response
        this.headersSent = true;
        s.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers }, { endStream: true, ...WITHOUT_NODE_DATE });
        this.stopClientSending();
      } else {
        s.end();
      }
    } catch {
      s.destroy(); // the session or stream went away meanwhile
    }
  }

  /**
   * After our status, what a client still sends is neither buffered nor read: the stream is paused,
   * so HTTP/2 flow control holds the client once the stream's window is full. A replaced stream's
   * client went on sending, and each request was buffered up to the cap (six such streams: +368 MB).
   * grpc-go resets such a stream; an RST_STREAM sent right after the status reached grpc-js clients
   * before the status, failing their call, so the window does the job here.
   */
  private stopClientSending(): void {
    if (this.clientEnded) return;
    whileOpen(this.stream, () => this.stream.pause());
  }

  /** Resets the stream (RST_STREAM INTERNAL_ERROR): for when no clean end is possible. Idempotent. */
  reset(): void {
    if (this.finished) return;
    this.finished = true;
    whileOpen(this.stream, () => this.stream.close(H2Error.INTERNAL_ERROR));
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    const s = this.stream;
    whileOpen(s, () => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity' }, { waitForTrailers: true, ...WITHOUT_NODE_DATE }));
    s.once('wantTrailers', () => {
      const st = this.pendingStatus;
      whileOpen(s, () => s.sendTrailers({ 'grpc-status': String(st.code), ...(st.details ? { 'grpc-message': encodeGrpcMessage(st.details) } : {}) }));
      this.stopClientSending();
    });
  }
}

export interface GrpcUnixServerOptions extends UnixListenerOptions {
  /** Largest request message accepted (default DEFAULT_MAX_REQUEST_BYTES). */
  readonly maxRequestBytes?: number;
  /** Keepalive pings to each client (default Istio's 30 s / 10 s). */
  readonly keepalive?: KeepaliveOptions;
  /** Streams one client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS; default Node's, unbounded). */
  readonly maxConcurrentStreams?: number;
  /** Where a handler failing on one stream is reported, with its stack (default `log`). */
  readonly logError?: (message: string) => void;
}

/** Serves a set of methods, each a handler of streams, on a unix socket. */
export class GrpcUnixServer {
  private listener: HeldListener | undefined;
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(
    private readonly path: string,
    /** Method path -> handler; any other method is answered UNIMPLEMENTED. */
    private readonly methods: ReadonlyMap<string, (stream: ServerStream) => void>,
    private readonly options: GrpcUnixServerOptions,
  ) {}

  /**
   * Serves on `listener` when given (bound earlier, see held-listener.ts; its path must be this
   * server's), otherwise binds the socket itself.
   */
  async start(listener?: HeldListener): Promise<void> {
    if (listener && listener.path !== this.path) throw new Error(`${this.options.name} server for ${this.path} given the listener of ${listener.path}`);
    const bound = listener ?? (await HeldListener.unix(this.path, { ...this.options, warn: this.options.logError ?? this.options.log }));
    const settings: http2.Settings = { enablePush: false, ...(this.options.maxConcurrentStreams !== undefined ? { maxConcurrentStreams: this.options.maxConcurrentStreams } : {}) };
    const server = lazyBuiltin.http2().createServer({ settings, maxSessionMemory: 64 });
    server.on('session', (session) => {
      this.sessions.add(session);
      // a hung Envoy (stopped, not dead) would otherwise keep its stream, and istiod's, forever
      keepSessionAlive(session, this.options.keepalive ?? ISTIO_KEEPALIVE);
      session.on('close', () => this.sessions.delete(session));
      session.on('error', () => undefined); // the stream's own events report it
    });
    server.on('stream', (stream, headers) => this.accept(stream, headers));
    server.on('error', (err: Error) => this.options.log?.(`${this.options.name} server on ${this.path}: ${err.message}`));
    bound.handTo(server);
    this.listener = bound;
  }

  private accept(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    acceptGrpcStream(stream, headers, this.methods, this.options);
  }

  /** Stops listening and closes every connection. Idempotent. */
  async close(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    if (!listener) return;
    const closing = listener.close();
    for (const s of this.sessions) s.destroy();
    await closing;
  }
}

/**
 * Serves one HTTP/2 stream as a gRPC call of one of `methods` (any other method: UNIMPLEMENTED), for
 * servers other than GrpcUnixServer that speak gRPC on some of their streams.
 */
export function acceptGrpcStream(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  methods: ReadonlyMap<string, (stream: ServerStream) => void>,
  options: Pick<GrpcUnixServerOptions, 'name' | 'log' | 'logError' | 'maxRequestBytes'>,
): void {
  const logError = options.logError ?? options.log;
  stream.on('error', () => undefined);
  const reject = (code: number, message: string): void =>
    whileOpen(stream, () => stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message) }, { endStream: true, ...WITHOUT_NODE_DATE }));
  const path = String(headers[':path']);
  const handler = methods.get(path);
  if (headers[':method'] !== 'POST') return reject(Status.UNIMPLEMENTED, `method ${String(headers[':method'])} is not supported`);
  if (!String(headers['content-type'] ?? '').startsWith('application/grpc')) {
    whileOpen(stream, () => stream.respond({ ':status': 415 }, { endStream: true, ...WITHOUT_NODE_DATE }));
    return;
  }
  if (!handler) return reject(Status.UNIMPLEMENTED, `unknown method ${path}: this socket serves ${[...methods.keys()].join(', ')}`);
  const encoding = headers['grpc-encoding'];
  if (encoding !== undefined && encoding !== 'identity') return reject(Status.UNIMPLEMENTED, `grpc-encoding ${String(encoding)} is not supported`);
  const call = new ServerStream(stream, path, options.maxRequestBytes, logError && ((m) => logError(`${options.name} stream: ${m}`)));
  try {
    handler(call);
  } catch (err) {
    // one client's stream failing must not reach the process's last-resort handler
    logError?.(`${options.name} stream ${path} failed: ${(err as Error).stack ?? String(err)}`);
    call.finish({ code: Status.INTERNAL, details: (err as Error).message });
  }
}
