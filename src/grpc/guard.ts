// The HTTP/2 layer keeps delivering events for sessions and streams the agent has already torn
// down (a 'connect' queued before destroy(), a 'wantTrailers' racing a reset), and most calls
// throw once their session or stream is gone. A flapping Envoy makes those races routine, so every
// such call goes through `whileOpen`: on something already gone it does nothing, because that
// object's own 'close'/'error' events report why it went. Errors that do not mean "already gone"
// are programming errors and still propagate.

import type http2 from 'node:http2';

/** Node's codes for a call on an HTTP/2 session or stream that has closed or is closing. */
const GONE = new Set([
  'ERR_HTTP2_INVALID_SESSION',
  'ERR_HTTP2_INVALID_STREAM',
  'ERR_HTTP2_GOAWAY_SESSION',
  'ERR_HTTP2_STREAM_CANCEL',
  'ERR_HTTP2_SOCKET_UNBOUND',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
]);

export function isGoneError(err: unknown): boolean {
  return GONE.has((err as NodeJS.ErrnoException | undefined)?.code ?? '');
}

/** Runs `action` on `target` unless it is already closed or destroyed; "already gone" errors are ignored. */
export function whileOpen(target: http2.Http2Session | http2.Http2Stream, action: () => void): void {
  if (target.destroyed || target.closed) return;
  try {
    action();
  } catch (err) {
    if (!isGoneError(err)) throw err;
  }
}
