// Dials istiod (or any xDS server) for one downstream stream: a fresh channel each time, so the
// token file is re-read, a rotated client certificate is used, and nothing outlives the stream.
// TLS follows Istio: min TLS 1.2 (Node's floor), SNI/verification name = host of the discovery
// address, "localhost" mapped to istiod.istio-system.svc, ISTIOD_SAN overriding; root CA from
// XDS_ROOT_CA (SYSTEM = OS bundle), else ./etc/certs/root-cert.pem, else
// ./var/run/secrets/istio/root-cert.pem. Plaintext when controlPlaneAuthPolicy is NONE.

import * as grpc from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { AgentConfig } from '../config/load.js';
import { splitHostPort } from '../config/validate-proxy-config.js';

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
}

const identity = (b: Buffer): Buffer => b;
const identityOut = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // real pushes exceed the 4 MiB default many times over
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  // HTTP/2 receive window: with the 64 KiB default a 10 MB push needs ~160 window round trips;
  // 16 MiB lets istiod stream a push at full speed while still bounding what one stream buffers
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  // one stream per channel: never let a retry policy replay a stream
  'grpc.enable_retries': 0,
  // a channel per Envoy stream: keep them out of the global channelz registry
  'grpc.enable_channelz': 0,
};

export interface UpstreamStream {
  readonly call: grpc.ClientDuplexStream<Uint8Array, Buffer>;
  close(): void;
}

export function openUpstream(opts: UpstreamOptions, method: string): UpstreamStream {
  let creds: grpc.ChannelCredentials;
  const channelOptions: grpc.ChannelOptions = { ...CHANNEL_OPTIONS };
  if (opts.tls) {
    const cert = opts.tls.clientCertificate?.();
    creds = grpc.credentials.createSsl(opts.tls.rootCa(), cert?.privateKey ?? null, cert?.certChain ?? null);
    channelOptions['grpc.ssl_target_name_override'] = opts.tls.serverName;
    channelOptions['grpc.default_authority'] = opts.tls.serverName;
  } else {
    creds = grpc.credentials.createInsecure();
  }
  const client = new grpc.Client(opts.address, creds, channelOptions);
  const md = new grpc.Metadata();
  if (opts.tokenPath && existsSync(opts.tokenPath)) {
    const token = readFileSync(opts.tokenPath, 'utf8').trim();
    if (token) md.set('authorization', `Bearer ${token}`);
  }
  md.set('clusterid', opts.clusterId);
  for (const [k, v] of Object.entries(opts.headers)) md.set(k.toLowerCase(), v);
  const call = client.makeBidiStreamRequest(method, identityOut, identity, md);
  return {
    call,
    close: () => {
      call.cancel();
      client.close();
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
