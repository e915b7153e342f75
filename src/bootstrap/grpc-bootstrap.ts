// The gRPC xDS bootstrap for proxyless gRPC applications (GRPC_XDS_BOOTSTRAP), as Istio's
// pkg/istio-agent/grpcxds writes it: the application's gRPC library talks xDS to the agent's
// socket (plaintext, the agent proxies to istiod), with the node Istio would describe for Envoy
// (typed metadata only, GENERATOR=grpc), certificates from OUTPUT_CERTS through the file_watcher
// provider, and Istio's inbound listener name template for xDS-enabled servers.

import { makeDirSync } from '../util/make-dir.js';
import { dirname, posix } from 'node:path';
import type { AgentConfig } from '../config/load.js';
import { writeFileAtomicSync } from '../util/atomic-write.js';
import { goSortDeep, type GoJson } from './go-json.js';
import { typedMetadataJson } from './node-metadata.js';
import type { BootstrapOptions } from './options.js';
import { nodeFor } from './template-data.js';

/** Listener resource name a proxyless gRPC server subscribes to; %s is its "ip:port". */
export const SERVER_LISTENER_NAME_TEMPLATE = 'xds.istio.io/grpc/lds/inbound/%s';

/** How often the file_watcher provider re-reads the certificates (Istio: 15 minutes). */
const CERT_REFRESH_INTERVAL = '900s';

export interface GrpcBootstrap {
  xds_servers: { server_uri: string; channel_creds: { type: string }[]; server_features: string[] }[];
  node: {
    id: string;
    metadata: { [k: string]: GoJson };
    locality: { region?: string; zone?: string; sub_zone?: string };
    /** Istio marshals the Node with encoding/json, which writes this oneof as null; kept for parity. */
    UserAgentVersionType: null;
  };
  certificate_providers?: {
    [name: string]: {
      plugin_name: string;
      config: { certificate_file: string; private_key_file: string; ca_certificate_file: string; refresh_interval: string };
    };
  };
  server_listener_resource_name_template: string;
}

/** `unix:///<path>` for the agent's xDS socket (one leading slash kept for an absolute path). */
export function unixServerUri(socketPath: string): string {
  return `unix:///${socketPath.replace(/^\/+/, '')}`;
}

/** Builds the gRPC bootstrap document for `config` (nothing is written). */
export function buildGrpcBootstrap(config: AgentConfig, options: BootstrapOptions = {}): GrpcBootstrap {
  const node = nodeFor(config, options);
  node.typed.Generator = 'grpc';
  const locality: GrpcBootstrap['node']['locality'] = {};
  if (node.locality.region) locality.region = node.locality.region;
  if (node.locality.zone) locality.zone = node.locality.zone;
  if (node.locality.subZone) locality.sub_zone = node.locality.subZone;
  const bootstrap: GrpcBootstrap = {
    xds_servers: [{ server_uri: unixServerUri(config.paths.xdsSocket), channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: {
      id: node.id,
      metadata: goSortDeep(typedMetadataJson(node)) as { [k: string]: GoJson },
      locality,
      UserAgentVersionType: null,
    },
    server_listener_resource_name_template: SERVER_LISTENER_NAME_TEMPLATE,
  };
  const certDir = config.env.OUTPUT_CERTS;
  if (certDir !== '') {
    bootstrap.certificate_providers = {
      default: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: posix.join(certDir, 'cert-chain.pem'),
          private_key_file: posix.join(certDir, 'key.pem'),
          ca_certificate_file: posix.join(certDir, 'root-cert.pem'),
          refresh_interval: CERT_REFRESH_INTERVAL,
        },
      },
    };
  }
  // key order as Istio writes the struct
  const { certificate_providers, server_listener_resource_name_template, ...head } = bootstrap;
  return { ...head, ...(certificate_providers ? { certificate_providers } : {}), server_listener_resource_name_template };
}

/** The document as written: two-space indented JSON (Go's json.MarshalIndent). */
export function renderGrpcBootstrap(config: AgentConfig, options: BootstrapOptions = {}): string {
  return JSON.stringify(buildGrpcBootstrap(config, options), null, 2);
}

/** Writes the gRPC bootstrap to GRPC_XDS_BOOTSTRAP atomically (readers never see a partial file). */
export function writeGrpcBootstrap(config: AgentConfig, options: BootstrapOptions = {}): { path: string; bootstrap: GrpcBootstrap } {
  const bootstrap = buildGrpcBootstrap(config, options);
  const path = config.paths.grpcBootstrap;
  makeDirSync(dirname(path), { mode: 0o700 });
  // rewritten at every start: no fsync (util/atomic-write.ts)
  writeFileAtomicSync(path, JSON.stringify(bootstrap, null, 2), 0o644, { durable: false });
  return { path, bootstrap };
}
