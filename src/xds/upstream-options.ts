// What the xDS proxy dials and how, from the agent configuration; read before Envoy's spawn, so
// that a bad setting stops start-up, without loading the HTTP/2 client (upstream.ts).
// TLS follows Istio: min TLS 1.2 (Node's floor) or COMPLIANCE_POLICY's versions, ciphers and
// curves; SNI/verification name = host of the discovery address, "localhost" mapped to
// istiod.istio-system.svc, ISTIOD_SAN overriding; root CA from XDS_ROOT_CA (SYSTEM = OS bundle),
// else ./etc/certs/root-cert.pem, else the PROV_CERT root, else (FILE_MOUNTED_CERTS) proxyMetadata
// ISTIO_META_TLS_CLIENT_ROOT_CERT, else (PILOT_CERT_PROVIDER=none: an error)
// ./var/run/secrets/istio/root-cert.pem. Plaintext when controlPlaneAuthPolicy is NONE.

import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { AgentConfig } from '../config/load.js';
import { discoveryServerName } from '../config/istiod-address.js';
import type { ClientCertificate } from '../grpc/client.js';
import { grpcGoKeepalive, type KeepaliveOptions } from '../grpc/keepalive.js';
import { tlsRestrictions, type TlsRestrictions } from '../security/compliance-policy.js';
import { lazyBuiltin } from '../util/builtin.js';

export interface UpstreamOptions {
  readonly address: string;
  /** undefined: plaintext. */
  readonly tls?: {
    /** PEM bundle, read for each stream (the mounted root may be updated); null for the OS root store. */
    readonly rootCa: () => Buffer | null;
    readonly serverName: string;
    /** The workload certificate, once one is provisioned. */
    readonly clientCertificate?: () => ClientCertificate | undefined;
    /** COMPLIANCE_POLICY's versions, ciphers and curves. */
    readonly restrictions?: TlsRestrictions;
  };
  /** Re-read for every stream; absent file = no authorization header. */
  readonly tokenPath?: string;
  readonly clusterId: string;
  readonly headers: Readonly<Record<string, string>>;
  /** HTTP/2 keepalive pings; Istio's 30 s interval and 10 s timeout when absent. */
  readonly keepalive?: KeepaliveOptions;
  /** Bound on TCP connect + TLS handshake + HTTP/2 settings (default 20 s, grpc-go's). */
  readonly connectTimeoutMs?: number;
}

/** proxyMetadata naming the root for the xDS connection when FILE_MOUNTED_CERTS is set (Istio's MetadataClientRootCert). */
export const METADATA_CLIENT_ROOT_CERT = 'ISTIO_META_TLS_CLIENT_ROOT_CERT';

/** Root CA for the xDS connection, as Istio's FindRootCAForXDS picks it; null = OS bundle. */
export function xdsRootCaPath(config: AgentConfig): string | null {
  const at = (p: string): string => resolve(config.paths.cwd, p);
  const explicit = config.env.XDS_ROOT_CA;
  if (explicit === 'SYSTEM') return null;
  if (explicit) return at(explicit);
  const legacy = at('./etc/certs/root-cert.pem');
  if (existsSync(legacy)) return legacy;
  if (config.env.PROV_CERT) return resolve(at(config.env.PROV_CERT), 'root-cert.pem');
  if (config.env.FILE_MOUNTED_CERTS) {
    const named = (config.proxyConfig.proxyMetadata as Record<string, string> | undefined)?.[METADATA_CLIENT_ROOT_CERT] ?? '';
    if (!named) throw new UpstreamConfigError(`root CA file for XDS: FILE_MOUNTED_CERTS is set but ProxyConfig proxyMetadata ${METADATA_CLIENT_ROOT_CERT} names no file (and ./etc/certs/root-cert.pem does not exist)`);
    return at(named);
  }
  if (config.env.PILOT_CERT_PROVIDER === 'none') {
    throw new UpstreamConfigError('root CA file for XDS required but configured provider as none (set XDS_ROOT_CA, or PILOT_CERT_PROVIDER)');
  }
  return at('./var/run/secrets/istio/root-cert.pem');
}

/**
 * Key and chain files Istio presents to istiod (its GetKeyCertsForXDS): PROV_CERT's, or with
 * FILE_MOUNTED_CERTS the files proxyMetadata ISTIO_META_TLS_CLIENT_KEY / _CERT_CHAIN name.
 */
export function xdsClientCertificateFiles(config: AgentConfig): { readonly key: string; readonly certChain: string } | undefined {
  const at = (p: string): string => resolve(config.paths.cwd, p);
  if (config.env.PROV_CERT) return { key: resolve(at(config.env.PROV_CERT), 'key.pem'), certChain: resolve(at(config.env.PROV_CERT), 'cert-chain.pem') };
  if (config.env.FILE_MOUNTED_CERTS) {
    const md = (config.proxyConfig.proxyMetadata ?? {}) as Record<string, string>;
    const key = md.ISTIO_META_TLS_CLIENT_KEY ?? '';
    const certChain = md.ISTIO_META_TLS_CLIENT_CERT_CHAIN ?? '';
    if (key && certChain) return { key: at(key), certChain: at(certChain) };
  }
  return undefined;
}

/**
 * Reads the files for each connection, as Istio loads them for each handshake: a missing,
 * unreadable or expired certificate means none is presented (the token still is).
 */
export function clientCertificateFromFiles(files: { readonly key: string; readonly certChain: string }, now: () => number = Date.now): () => ClientCertificate | undefined {
  return () => {
    try {
      const certChain = readFileSync(files.certChain);
      const privateKey = readFileSync(files.key);
      if (Date.parse(new (lazyBuiltin.crypto().X509Certificate)(certChain).validTo) <= now()) return undefined;
      return { privateKey, certChain };
    } catch {
      return undefined;
    }
  };
}

export class UpstreamConfigError extends Error {
  readonly code = 'XDS_UPSTREAM_CONFIG';
}

/**
 * Builds the upstream options from the agent configuration; throws when the root CA is unreadable.
 * The client certificate is the files Istio names (PROV_CERT, FILE_MOUNTED_CERTS metadata), else
 * `workloadCertificate`.
 */
export function upstreamOptionsFrom(config: AgentConfig, workloadCertificate?: () => ClientCertificate | undefined): UpstreamOptions {
  const files = xdsClientCertificateFiles(config);
  const clientCertificate = files ? clientCertificateFromFiles(files) : workloadCertificate;
  const base = {
    address: String(config.proxyConfig.discoveryAddress),
    tokenPath: config.paths.token,
    clusterId: config.env.ISTIO_META_CLUSTER_ID,
    headers: config.xdsHeaders,
    keepalive: grpcGoKeepalive(config.env.GRPC_KEEPALIVE_INTERVAL, config.env.GRPC_KEEPALIVE_TIMEOUT, 'client'),
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
      restrictions: tlsRestrictions(config.env.COMPLIANCE_POLICY),
    },
  };
}
