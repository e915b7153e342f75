// Dials istiod (or any xDS server) for one downstream stream (src/grpc/client.ts): a fresh
// connection each time, so the token file is re-read, a rotated client certificate is used, and
// nothing outlives the stream. What to dial and how (TLS, token, headers) is upstream-options.ts.

import { openClientStream, type ClientStream, type ClientStreamHandlers, type GrpcTarget } from '../grpc/client.js';
import { ISTIO_KEEPALIVE, type KeepaliveOptions } from '../grpc/keepalive.js';
import { splitHostPort } from '../util/ip.js';
import { logger } from '../util/logger.js';
import { rateLimited } from '../util/rate-limited.js';
import { readBearerToken } from '../security/token.js';
import type { UpstreamOptions } from './upstream-options.js';

/**
 * HTTP/2 settings toward istiod. The per-stream receive window bounds what one push can have in
 * flight toward us while Envoy is slow (the proxy stops reading then); 16 MiB lets istiod stream
 * at full speed (with the 64 KiB default a 10 MB push needs ~160 window round trips).
 */
const STREAM_WINDOW_BYTES = 16 * 1024 * 1024;
const SESSION_WINDOW_BYTES = 32 * 1024 * 1024;

/** Said at most every 10 s: Envoy reconnects often while istiod refuses the call. */
const warnUnreadableToken = rateLimited((reason: string) => logger('xdsproxy').warn(`${reason}: connecting to istiod without an authorization header`));

/**
 * Opens one ADS stream to istiod on a connection of its own: the token file is re-read, a rotated
 * root or client certificate is used, and nothing outlives the stream.
 */
export function openUpstream(opts: UpstreamOptions, method: string, handlers: ClientStreamHandlers, tuning: { keepalive?: KeepaliveOptions; onTooManyPings?: () => void } = {}): ClientStream {
  const hp = splitHostPort(opts.address);
  if ('error' in hp) throw new Error(`discovery address ${JSON.stringify(opts.address)} is not host:port: ${hp.error}`);
  const metadata: Record<string, string> = {};
  if (opts.tokenPath) {
    const token = readBearerToken(opts.tokenPath, warnUnreadableToken);
    if (token) metadata.authorization = `Bearer ${token}`;
  }
  metadata.clusterid = opts.clusterId;
  for (const [k, v] of Object.entries(opts.headers)) metadata[k.toLowerCase()] = v;
  const cert = opts.tls?.clientCertificate?.();
  const target: GrpcTarget = {
    address: opts.address,
    ...(opts.tls
      ? { tls: { ca: opts.tls.rootCa(), serverName: opts.tls.serverName, ...(cert ? { clientCertificate: cert } : {}), ...(opts.tls.restrictions ? { restrictions: opts.tls.restrictions } : {}) } }
      : {}),
  };
  return openClientStream(target, method, handlers, {
    metadata,
    keepalive: tuning.keepalive ?? opts.keepalive ?? ISTIO_KEEPALIVE,
    ...(tuning.onTooManyPings ? { onTooManyPings: tuning.onTooManyPings } : {}),
    streamWindowBytes: STREAM_WINDOW_BYTES,
    sessionWindowBytes: SESSION_WINDOW_BYTES,
    peerName: 'istiod',
    ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
  });
}
