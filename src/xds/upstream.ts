// Dials istiod (or any xDS server) for one downstream stream, over Node's HTTP/2 (see
// grpc-frames.ts for why not a gRPC library): a fresh connection each time, so the token file is
// re-read, a rotated client certificate is used, and nothing outlives the stream.
// TLS follows Istio: min TLS 1.2 (Node's floor), SNI/verification name = host of the discovery
// address, "localhost" mapped to istiod.istio-system.svc, ISTIOD_SAN overriding; root CA from
// XDS_ROOT_CA (SYSTEM = OS bundle), else ./etc/certs/root-cert.pem, else
// ./var/run/secrets/istio/root-cert.pem. Plaintext when controlPlaneAuthPolicy is NONE.

import * as grpc from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import tls from 'node:tls';
import type { AgentConfig } from '../config/load.js';
import { splitHostPort } from '../config/validate-proxy-config.js';
import { statusFromHeaders, statusFromHttp, statusFromReset, type GrpcStatus } from './grpc-frames.js';

export interface ClientCertificate {
  readonly privateKey: Buffer;
  readonly certChain: Buffer;
}

export interface UpstreamOptions {
  readonly address: string;
  /** undefined: plaintext. */
  readonly tls?: {
    /** PEM bundle, read for each stream (the mounted root may be updated); null for the OS root store. */
    readonly rootCa: () => Buffer | null;
    readonly serverName: string;
    /** The workload certificate, once one is provisioned. */
    readonly clientCertificate?: () => ClientCertificate | undefined;
  };
  /** Re-read for every stream; absent file = no authorization header. */
  readonly tokenPath?: string;
  readonly clusterId: string;
  readonly headers: Readonly<Record<string, string>>;
  /** HTTP/2 keepalive pings; Istio's 30 s interval and 10 s timeout when absent. */
  readonly keepalive?: { readonly intervalMs: number; readonly timeoutMs: number };
}

/**
 * HTTP/2 settings toward istiod. The per-stream receive window bounds what one push can have in
 * flight toward us while Envoy is slow (the proxy stops reading then); 16 MiB lets istiod stream
 * at full speed (with the 64 KiB default a 10 MB push needs ~160 window round trips). Larger DATA
 * frames mean fewer, larger chunks to forward.
 */
const STREAM_WINDOW_BYTES = 16 * 1024 * 1024;
const SESSION_WINDOW_BYTES = 32 * 1024 * 1024;
const MAX_FRAME_BYTES = 1024 * 1024;
const KEEPALIVE_INTERVAL_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 10_000;

export interface UpstreamHandlers {
  /** A chunk of the response body (gRPC frames, possibly cut anywhere). */
  onData(chunk: Buffer): void;
  /** The stream ended; `connected` is false when istiod was never reached. Called once. */
  onEnd(status: GrpcStatus, connected: boolean): void;
}

export interface UpstreamStream {
  /** Writes framed request bytes; false when the caller should wait for `onDrain`. */
  write(frame: Buffer): boolean;
  onceDrain(listener: () => void): void;
  pause(): void;
  resume(): void;
  /** Cancels the stream and closes the connection; no `onEnd` after this. */
  close(): void;
}

/**
 * Opens one ADS stream to istiod on a connection of its own: the token file is re-read, a rotated
 * client certificate is used, and nothing outlives the stream.
 */
export function openUpstream(opts: UpstreamOptions, method: string, handlers: UpstreamHandlers): UpstreamStream {
  if (!splitHostPort(opts.address)) throw new Error(`discovery address ${JSON.stringify(opts.address)} is not host:port`);
  let ended = false;
  let connected = false;
  let status: GrpcStatus | undefined;
  /** Why the connection (not just this stream) failed: gRPC reports that as UNAVAILABLE. */
  let transportFailure: string | undefined;
  let streamFailure: string | undefined;

  const end = (st: GrpcStatus): void => {
    if (ended) return;
    ended = true;
    clearInterval(keepalive);
    session.destroy();
    handlers.onEnd(st, connected);
  };

  const settings: http2.Settings = { initialWindowSize: STREAM_WINDOW_BYTES, maxFrameSize: MAX_FRAME_BYTES, enablePush: false };
  const authority = opts.tls?.serverName ?? opts.address;
  let session: http2.ClientHttp2Session;
  if (opts.tls) {
    const serverName = opts.tls.serverName;
    const cert = opts.tls.clientCertificate?.();
    const ca = opts.tls.rootCa();
    session = http2.connect(`https://${opts.address}`, {
      settings,
      ...(ca ? { ca } : {}),
      ...(cert ? { key: cert.privateKey, cert: cert.certChain } : {}),
      minVersion: 'TLSv1.2',
      // SNI carries the name, except an IP address (which SNI cannot carry); the certificate is
      // checked against the name either way
      ...(isIP(serverName) ? {} : { servername: serverName }),
      checkServerIdentity: (_host, peer) => tls.checkServerIdentity(serverName, peer),
    });
  } else {
    session = http2.connect(`http://${opts.address}`, { settings });
  }
  session.on('error', (err: Error) => (transportFailure ??= err.message));
  session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW_BYTES));
  // istiod is reached when its HTTP/2 SETTINGS arrive (a TCP or TLS connection alone is not enough)
  session.once('remoteSettings', () => (connected = true));
  session.on('goaway', (code: number) => (transportFailure ??= `istiod sent GOAWAY (HTTP/2 code ${code})`));
  const { intervalMs, timeoutMs } = opts.keepalive ?? { intervalMs: KEEPALIVE_INTERVAL_MS, timeoutMs: KEEPALIVE_TIMEOUT_MS };
  const keepalive = setInterval(() => {
    const timer = setTimeout(() => {
      transportFailure ??= `keepalive ping not answered within ${timeoutMs} ms`;
      session.destroy();
    }, timeoutMs).unref();
    try {
      session.ping(() => clearTimeout(timer));
    } catch {
      clearTimeout(timer); // the session is closing
    }
  }, intervalMs).unref();

  const headers: http2.OutgoingHttpHeaders = {
    ':method': 'POST',
    ':path': method,
    ':authority': authority,
    'content-type': 'application/grpc',
    te: 'trailers',
    'grpc-accept-encoding': 'identity',
    'user-agent': 'pilot-agent-ts',
  };
  if (opts.tokenPath && existsSync(opts.tokenPath)) {
    const token = readFileSync(opts.tokenPath, 'utf8').trim();
    if (token) headers.authorization = `Bearer ${token}`;
  }
  headers.clusterid = opts.clusterId;
  for (const [k, v] of Object.entries(opts.headers)) headers[k.toLowerCase()] = v;

  const stream = session.request(headers);
  stream.on('response', (h) => {
    const httpStatus = Number(h[':status']);
    if (httpStatus !== 200) {
      status = { code: statusFromHttp(httpStatus), details: `istiod answered HTTP ${httpStatus}` };
      return;
    }
    const type = String(h['content-type'] ?? '');
    if (!type.startsWith('application/grpc')) status = { code: grpc.status.UNKNOWN, details: `istiod answered content-type ${JSON.stringify(type)}` };
    else status = statusFromHeaders(h); // trailers-only response
  });
  stream.on('trailers', (h) => (status ??= statusFromHeaders(h)));
  stream.on('data', (chunk: Buffer) => {
    if (!ended) handlers.onData(chunk);
  });
  stream.on('error', (err: Error) => (streamFailure ??= err.message));
  const settle = (): void => {
    if (status) return end(status);
    if (transportFailure !== undefined || !connected) {
      return end({ code: grpc.status.UNAVAILABLE, details: transportFailure ?? streamFailure ?? 'connection to istiod closed' });
    }
    const rst = stream.rstCode;
    if (rst !== undefined && rst !== http2.constants.NGHTTP2_NO_ERROR) {
      return end({ code: statusFromReset(rst), details: streamFailure ?? `stream reset by istiod (HTTP/2 code ${rst})` });
    }
    end({ code: grpc.status.INTERNAL, details: streamFailure ?? 'istiod ended the stream without a gRPC status' });
  };
  // 'end' comes after the last 'data' has been delivered, so the status never overtakes a push;
  // without a status yet, the connection may be going down: let its cause be recorded first
  stream.on('end', () => (status ? end(status) : setImmediate(settle)));
  stream.on('close', settle);

  return {
    write: (frame) => stream.write(frame),
    onceDrain: (listener) => stream.once('drain', listener),
    pause: () => stream.pause(),
    resume: () => stream.resume(),
    close: () => {
      if (ended) return;
      ended = true;
      clearInterval(keepalive);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      session.destroy();
    },
  };
}

/** Istio's pilot SAN rule: the host of the discovery address, with localhost meaning istiod. */
export function discoveryServerName(discoveryAddress: string, istiodSan: string): string {
  if (istiodSan) return istiodSan;
  const host = splitHostPort(discoveryAddress)?.host ?? discoveryAddress;
  return host.includes('localhost') ? 'istiod.istio-system.svc' : host;
}

/** Root CA for the xDS connection, as Istio's FindRootCAForXDS picks it; null = OS bundle. */
export function xdsRootCaPath(config: AgentConfig): string | null {
  const at = (p: string): string => resolve(config.paths.cwd, p);
  const explicit = config.env.XDS_ROOT_CA;
  if (explicit === 'SYSTEM') return null;
  if (explicit) return at(explicit);
  const legacy = at('./etc/certs/root-cert.pem');
  if (existsSync(legacy)) return legacy;
  if (config.env.PROV_CERT) return resolve(at(config.env.PROV_CERT), 'root-cert.pem');
  return at('./var/run/secrets/istio/root-cert.pem');
}

export class UpstreamConfigError extends Error {
  readonly code = 'XDS_UPSTREAM_CONFIG';
}

/** Builds the upstream options from the agent configuration; throws when the root CA is unreadable. */
export function upstreamOptionsFrom(config: AgentConfig, clientCertificate?: () => ClientCertificate | undefined): UpstreamOptions {
  const base = {
    address: String(config.proxyConfig.discoveryAddress),
    tokenPath: config.paths.token,
    clusterId: config.env.ISTIO_META_CLUSTER_ID,
    headers: config.xdsHeaders,
  };
  if (config.proxyConfig.controlPlaneAuthPolicy === 'NONE') return base;
  const rootPath = xdsRootCaPath(config);
  const rootCa = (): Buffer | null => {
    if (rootPath === null) return null;
    try {
      return readFileSync(rootPath);
    } catch (err) {
      throw new UpstreamConfigError(`root CA for the xDS connection ${rootPath} cannot be read: ${(err as Error).message}`, { cause: err });
    }
  };
  rootCa(); // fail at start-up, naming the file, rather than on Envoy's first stream
  return {
    ...base,
    tls: {
      rootCa,
      serverName: discoveryServerName(String(config.proxyConfig.discoveryAddress), config.env.ISTIOD_SAN),
      ...(clientCertificate ? { clientCertificate } : {}),
    },
  };
}
