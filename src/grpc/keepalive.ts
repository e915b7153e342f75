// HTTP/2 keepalive for the agent's gRPC connections, both ends: a PING every interval, and the
// connection dropped when one is not answered in time, so that a hung peer (stopped, not dead, or
// behind a black-holed route) does not keep its streams open forever.

import type http2 from 'node:http2';
import { timerDelay } from '../util/timer-delay.js';

export interface KeepaliveOptions {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

/** Istio's gRPC keepalive (pkg/keepalive defaults): a ping every 30 s, 10 s to answer. */
export const ISTIO_KEEPALIVE: KeepaliveOptions = Object.freeze({ intervalMs: 30_000, timeoutMs: 10_000 });

/**
 * GRPC_KEEPALIVE_INTERVAL / GRPC_KEEPALIVE_TIMEOUT as grpc-go applies them, which is what Istio's
 * values become: a client pings at most every 10 s, a server at most every second (0 on a server:
 * every 2 h); a timeout of 0 means 20 s.
 */
export function grpcGoKeepalive(intervalMs: number, timeoutMs: number, side: 'client' | 'server'): KeepaliveOptions {
  const interval = side === 'client' ? Math.max(intervalMs, 10_000) : intervalMs === 0 ? 2 * 3_600_000 : Math.max(intervalMs, 1000);
  return Object.freeze({ intervalMs: interval, timeoutMs: timeoutMs === 0 ? 20_000 : timeoutMs });
}

/**
 * Pings `session` until it closes; `onTimeout` runs (then the session is destroyed) when a ping
 * goes unanswered. Returns a function that stops the pings.
 */
export function keepSessionAlive(session: http2.Http2Session, opts: KeepaliveOptions, onTimeout: (reason: string) => void = () => undefined): () => void {
  const interval = setInterval(() => {
    const timer = setTimeout(() => {
      onTimeout(`keepalive ping not answered within ${opts.timeoutMs} ms`);
      session.destroy();
    }, timerDelay(opts.timeoutMs)).unref();
    try {
      session.ping(() => clearTimeout(timer));
    } catch {
      clearTimeout(timer); // the session is closing
    }
  }, timerDelay(opts.intervalMs)).unref();
  const stop = (): void => clearInterval(interval);
  session.once('close', stop);
  return stop;
}
