// gRPC client calls over node:http2, each on a connection of its own: the agent's calls to istiod
// (the ADS stream behind each Envoy stream, CSRs to the CA) are few and long-lived or rare, and a
// fresh connection per call picks up a rotated token, root or client certificate and leaves
// nothing behind when the call ends.
//
// TLS: minimum TLS 1.2, or what the compliance policy allows; the server certificate is checked against `serverName` (also sent as SNI,
// unless it is an IP address, which SNI cannot carry); a client certificate when given.

import type http2 from 'node:http2';
import type { Socket } from 'node:net';
import type tls from 'node:tls';
import { frameMessage, GrpcDeframer, wholeMessages } from './frames.js';
import { whileOpen } from './guard.js';
import { keepSessionAlive, type KeepaliveOptions } from './keepalive.js';
import { H2Error, Status, statusFromHeaders, statusFromHttp, statusFromReset, statusName, type GrpcStatus } from './status.js';
import { ipFamily, splitHostPort } from '../util/ip.js';
import { connectLookup } from '../util/shared-lookup.js';
import { lazyBuiltin } from '../util/builtin.js';
import { timerDelay } from '../util/timer-delay.js';

/** A client certificate (PEM key and chain) to present in the TLS handshake. */
export interface ClientCertificate {
  readonly privateKey: Buffer;
  readonly certChain: Buffer;
}

export interface GrpcTarget {
  /** host:port */
  readonly address: string;
  /** Source address for the TCP connection; the OS picks one when absent. */
  readonly localAddress?: string;
  /** undefined: plaintext (h2c). */
  readonly tls?: {
    /** PEM bundle to verify the server with; null for the OS root store. */
    readonly ca: Buffer | null;
    readonly serverName: string;
    readonly clientCertificate?: ClientCertificate;
    /** Versions, ciphers and curves allowed (COMPLIANCE_POLICY); minimum TLS 1.2 otherwise. */
    readonly restrictions?: Pick<tls.ConnectionOptions, 'minVersion' | 'maxVersion' | 'ciphers' | 'ecdhCurve'>;
  };
}

export interface ClientCallOptions {
  /** Request metadata (lower-case names). */
  readonly metadata?: Readonly<Record<string, string>>;
  /** HTTP/2 keepalive pings once connected; none when absent. */
  readonly keepalive?: KeepaliveOptions;
  /**
   * Bound on reaching the server: TCP connect, TLS handshake and the server's HTTP/2 SETTINGS
   * (default 20 s, grpc-go's connect deadline). A peer that accepts and then says nothing fails
   * the call with UNAVAILABLE instead of holding it forever.
   */
  readonly connectTimeoutMs?: number;
  /** Per-stream receive window (bounds what the server can have in flight toward us). */
  readonly streamWindowBytes?: number;
  readonly sessionWindowBytes?: number;
  /** Deadline of the call: sent as grpc-timeout and enforced here (DEADLINE_EXCEEDED). */
  readonly timeoutMs?: number;
  /** Who the server is, in messages ("istiod", "the CA"). */
  readonly peerName?: string;
  /** Cancels the call (CANCELLED). */
  readonly signal?: AbortSignal;
  /** unaryCall: the largest response accepted (default 16 MiB). */
  readonly maxResponseBytes?: number;
  /** The server said our keepalive pings break its policy (GOAWAY ENHANCE_YOUR_CALM "too_many_pings"). */
  readonly onTooManyPings?: () => void;
}

export interface ClientStreamHandlers {
  /** The server was reached (its HTTP/2 SETTINGS arrived). */
  onConnected?(): void;
  /** A chunk of the response body (gRPC frames, possibly cut anywhere). */
  onData(chunk: Buffer): void;
  /** The call ended; `connected` is false when the server was never reached. Called once. */
  onEnd(status: GrpcStatus, connected: boolean, connection: { readonly goawayCode?: number }): void;
}

export interface ClientStream {
  /** Writes framed request bytes; false when the caller should wait for `onceDrain`. */
  write(frame: Buffer): boolean;
  /** Half-closes the request side (no more requests). */
  end(): void;
  onceDrain(listener: () => void): void;
  pause(): void;
  resume(): void;
  /** Cancels the call and closes the connection; no `onEnd` after this. */
  close(): void;
}

/** A call that ended with a status other than OK. */
export class GrpcCallError extends Error {
  override readonly name = 'GrpcCallError';
  readonly code = 'GRPC_CALL_FAILED';
  constructor(
    /** The gRPC status code. */
    readonly status: number,
    readonly details: string,
    /** Whether the server was reached (its HTTP/2 SETTINGS arrived); false: no connection came up. */
    readonly connected = true,
  ) {
    super(`${statusName(status)}: ${details}`);
  }
}

const MAX_UNARY_RESPONSE_BYTES = 16 * 1024 * 1024;

/** grpc-go's minimum connect deadline, which istiod's clients and Istio's agent inherit. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 20_000;

/** Larger DATA frames from the server mean fewer, larger chunks to handle. */
const MAX_FRAME_BYTES = 1024 * 1024;

/** Opens one call on a connection of its own. */
export function openClientStream(target: GrpcTarget, method: string, handlers: ClientStreamHandlers, opts: ClientCallOptions = {}): ClientStream {
  const peer = opts.peerName ?? target.address;
  let ended = false;
  let connected = false;
  let status: GrpcStatus | undefined;
  /** Why the connection (not just this call) failed: gRPC reports that as UNAVAILABLE. */
  let transportFailure: string | undefined;
  let streamFailure: string | undefined;
  /** The server's GOAWAY, if one came: NO_ERROR (0) means it is recycling the connection. */
  let goawayCode: number | undefined;
  const timers: NodeJS.Timeout[] = [];

  /** The connection's own socket (the session only exposes a proxy that may not be destroyed). */
  let transport: Socket | undefined;
  /**
   * Ends the connection. After the server's GOAWAY, Node has begun a graceful close, and its
   * destroy() then only half-closes the socket and waits for the server's FIN: a server that
   * never closes (seen: GOAWAY right after the handshake, connection left open) kept one socket
   * and its file descriptor per call, the CA's retries alone adding one every attempt.
   */
  const closeConnection = (): void => {
    session.destroy();
    const socket = transport;
    if (socket && !socket.destroyed) setImmediate(() => socket.destroy());
  };

  const end = (st: GrpcStatus): void => {
    if (ended) return;
    ended = true;
    for (const t of timers) clearTimeout(t);
    closeConnection();
    handlers.onEnd(st, connected, goawayCode === undefined ? {} : { goawayCode });
  };

  const settings: http2.Settings = { maxFrameSize: MAX_FRAME_BYTES, enablePush: false, ...(opts.streamWindowBytes ? { initialWindowSize: opts.streamWindowBytes } : {}) };
  let session: http2.ClientHttp2Session;
  const t = target.tls;
  if (t) {
    const cert = t.clientCertificate;
    session = lazyBuiltin.http2().connect(`https://${target.address}`, {
      settings,
      ...(t.ca ? { ca: t.ca } : {}),
      ...(cert ? { key: cert.privateKey, cert: cert.certChain } : {}),
      minVersion: 'TLSv1.2',
      ...t.restrictions,
      ...(ipFamily(t.serverName) ? {} : { servername: t.serverName }),
      checkServerIdentity: (_host, certificate) => lazyBuiltin.tls().checkServerIdentity(t.serverName, certificate),
      noDelay: true,
      lookup: connectLookup,
      ...(target.localAddress ? { localAddress: target.localAddress } : {}),
    } as http2.SecureClientSessionOptions);
  } else {
    session = lazyBuiltin.http2().connect(`http://${target.address}`, { settings, noDelay: true, lookup: connectLookup, ...(target.localAddress ? { localAddress: target.localAddress } : {}) } as http2.ClientSessionOptions);
  }
  // noDelay: an ACK or a small request must not wait for Nagle's algorithm (Go, hence istiod and
  // Istio's agent, disables it on every TCP connection)
  session.on('error', (err: Error) => (transportFailure ??= err.message));
  session.once('connect', (_session: http2.ClientHttp2Session, socket: Socket) => (transport = socket));
  // Every session callback below may run after the call was closed and the session destroyed
  // (Node queues 'connect' before it knows): each goes through whileOpen.
  if (opts.sessionWindowBytes) {
    const bytes = opts.sessionWindowBytes;
    session.once('connect', () => whileOpen(session, () => session.setLocalWindowSize(bytes)));
  }
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const connectTimer = setTimeout(() => {
    const hostPort = splitHostPort(target.address);
    const host = 'host' in hostPort ? hostPort.host : target.address;
    const resolving = transport ? undefined : connectLookup.pendingFor(host);
    transportFailure ??=
      resolving === undefined
        ? `no connection to ${peer} (${target.address}) within ${connectTimeoutMs} ms: TCP connect, TLS handshake and HTTP/2 settings did not complete`
        : `no connection to ${peer} (${target.address}) within ${connectTimeoutMs} ms: resolving ${host} has had no answer for ${Math.round(resolving)} ms`;
    end({ code: Status.UNAVAILABLE, details: transportFailure });
  }, timerDelay(connectTimeoutMs));
  timers.push(connectTimer);
  // the server is reached when its HTTP/2 SETTINGS arrive (a TCP or TLS connection is not enough)
  session.once('remoteSettings', () => {
    if (ended) return;
    connected = true;
    clearTimeout(connectTimer);
    handlers.onConnected?.();
    // keepalive from here on: before, the connect deadline is what bounds a silent peer
    if (opts.keepalive) keepSessionAlive(session, opts.keepalive, (reason) => (transportFailure ??= reason));
  });
  session.on('goaway', (code: number, _lastStreamId: number, debug?: Buffer) => {
    goawayCode ??= code;
    const said = debug && debug.length > 0 ? `: ${debug.toString('utf8', 0, Math.min(debug.length, 256))}` : '';
    transportFailure ??= `${peer} sent GOAWAY (HTTP/2 code ${code}${said})`;
    // the server's ping policy refused our keepalive (gRPC's "too_many_pings"): ping less
    if (code === H2Error.ENHANCE_YOUR_CALM && said === ': too_many_pings') opts.onTooManyPings?.();
  });

  const headers: http2.OutgoingHttpHeaders = {
    ':method': 'POST',
    ':path': method,
    ':authority': t?.serverName ?? target.address,
    'content-type': 'application/grpc',
    te: 'trailers',
    'grpc-accept-encoding': 'identity',
    'user-agent': 'pilot-agent-ts',
    ...(opts.timeoutMs !== undefined ? { 'grpc-timeout': `${Math.max(1, Math.ceil(opts.timeoutMs))}m` } : {}),
    ...opts.metadata,
  };
  const stream = session.request(headers);
  if (opts.timeoutMs !== undefined) {
    timers.push(
      setTimeout(() => {
        whileOpen(stream, () => stream.close(H2Error.CANCEL));
        end({ code: Status.DEADLINE_EXCEEDED, details: `no answer from ${peer} within ${opts.timeoutMs} ms` });
      }, timerDelay(opts.timeoutMs)),
    );
  }
  if (opts.signal) {
    const signal = opts.signal;
    const onAbort = (): void => {
      whileOpen(stream, () => stream.close(H2Error.CANCEL));
      end({ code: Status.CANCELLED, details: 'call cancelled' });
    };
    if (signal.aborted) queueMicrotask(onAbort);
    else {
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
  }
  stream.on('response', (h) => {
    const httpStatus = Number(h[':status']);
    const type = String(h['content-type'] ?? '');
    // not a gRPC answer (a proxy's error page, a plain web server): the call ends now, as in
    // grpc-go, and its body is never read as gRPC frames (where an HTML page would be reported
    // as "a compressed message")
    if (httpStatus !== 200) return end({ code: statusFromHttp(httpStatus), details: `${peer} answered HTTP ${httpStatus}${type ? ` (content-type ${JSON.stringify(type)})` : ''}, not a gRPC response` });
    if (!type.startsWith('application/grpc')) return end({ code: Status.UNKNOWN, details: `${peer} answered content-type ${JSON.stringify(type)}, not a gRPC response` });
    status = statusFromHeaders(h); // trailers-only response
  });
  stream.on('trailers', (h) => (status ??= statusFromHeaders(h)));
  stream.on('data', (chunk: Buffer) => {
    if (!ended) handlers.onData(chunk);
  });
  // a call that never got a connection fails with Node's "pending stream has been canceled";
  // the connection's own error (refused, certificate mismatch, ...) is what to report
  stream.on('error', (err: Error) => (streamFailure ??= err.cause instanceof Error ? err.cause.message : err.message));
  const settle = (): void => {
    if (status) return end(status);
    // the connection itself went (a FIN without GOAWAY, a reset): Node marks each of its streams
    // reset with CANCEL, but no RST_STREAM came; grpc-go reports such a loss as UNAVAILABLE
    const connectionGone = session.destroyed || session.closed || transport?.destroyed === true;
    if (transportFailure !== undefined || !connected || connectionGone) {
      return end({ code: Status.UNAVAILABLE, details: transportFailure ?? streamFailure ?? `connection to ${peer} closed` });
    }
    const rst = stream.rstCode;
    if (rst !== undefined && rst !== H2Error.NO_ERROR) {
      return end({ code: statusFromReset(rst), details: streamFailure ?? `stream reset by ${peer} (HTTP/2 code ${rst})` });
    }
    end({ code: Status.INTERNAL, details: streamFailure ?? `${peer} ended the stream without a gRPC status` });
  };
  // 'end' comes after the last 'data' has been delivered, so the status never overtakes a message;
  // without a status yet, the connection may be going down: let its cause be recorded first
  stream.on('end', () => (status ? end(status) : setImmediate(settle)));
  stream.on('close', settle);

  return {
    write: (frame) => stream.write(frame),
    end: () => stream.end(),
    onceDrain: (listener) => stream.once('drain', listener),
    pause: () => stream.pause(),
    resume: () => stream.resume(),
    close: () => {
      if (ended) return;
      ended = true;
      for (const timer of timers) clearTimeout(timer);
      whileOpen(stream, () => stream.close(H2Error.CANCEL));
      closeConnection();
    },
  };
}

/** One request, one response: resolves with the response message, rejects with GrpcCallError. */
export function unaryCall(target: GrpcTarget, method: string, request: Uint8Array, opts: ClientCallOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let response: Buffer | undefined;
    let protocolError: string | undefined;
    const whole = wholeMessages((message, compressed) => {
      if (compressed) protocolError = 'compressed response; compression is not negotiated';
      else if (response) protocolError = 'more than one response message';
      else response = message;
    });
    const maxBytes = opts.maxResponseBytes ?? MAX_UNARY_RESPONSE_BYTES;
    const deframer = new GrpcDeframer({
      ...whole,
      messageStart: (length, compressed) => {
        if (length > maxBytes) {
          // refuse before holding it: a unary answer this large is a broken or hostile server
          protocolError = `response of ${length} bytes exceeds the ${maxBytes}-byte limit`;
          call.close();
          reject(new GrpcCallError(Status.RESOURCE_EXHAUSTED, protocolError));
          return;
        }
        whole.messageStart(length, compressed);
      },
      messageData: (piece) => {
        if (!protocolError) whole.messageData(piece);
      },
    });
    let call: ClientStream;
    try {
      call = openClientStream(
        target,
        method,
        {
          onData: (chunk) => deframer.push(chunk),
          onEnd: (st, connected) => {
            if (st.code !== Status.OK) return reject(new GrpcCallError(st.code, st.details, connected));
            if (protocolError || !response || !deframer.atMessageBoundary) {
              return reject(new GrpcCallError(Status.INTERNAL, protocolError ?? (deframer.atMessageBoundary ? 'no response message' : 'truncated response message')));
            }
            resolve(response);
          },
        },
        opts,
      );
    } catch (err) {
      reject(new GrpcCallError(Status.UNAVAILABLE, (err as Error).message, false));
      return;
    }
    call.write(frameMessage(request));
    call.end();
  });
}
