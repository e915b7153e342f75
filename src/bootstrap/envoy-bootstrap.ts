// Produces the Envoy bootstrap file Envoy is started with (envoy-rev.json).
//
// Interim generator: a minimal, valid bootstrap (node, admin, ADS over the agent's XDS socket, SDS
// socket cluster). The template-driven generator with full Istio parity replaces `render` here.

import type { AgentConfig } from '../config/load.js';
import { writeFileAtomicSync } from '../util/atomic-write.js';

const HTTP2_PROTOCOL_OPTIONS = {
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
    '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
    explicit_http_config: { http2_protocol_options: {} },
  },
};

function pipeCluster(name: string, path: string): Record<string, unknown> {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    typed_extension_protocol_options: HTTP2_PROTOCOL_OPTIONS,
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path } } } }] }],
    },
  };
}

export function renderMinimalBootstrap(config: AgentConfig): Record<string, unknown> {
  const adsType = config.env.ISTIO_DELTA_XDS ? 'DELTA_GRPC' : 'GRPC';
  const localhost = config.node.ipv6 ? '::1' : '127.0.0.1';
  return {
    node: {
      id: config.node.serviceNode,
      cluster: String(config.proxyConfig.serviceCluster ?? 'istio-proxy'),
      locality: {},
      metadata: {
        NAMESPACE: config.node.podNamespace,
        NAME: config.node.podName,
        INSTANCE_IPS: config.node.ipAddresses.join(','),
        PROXY_CONFIG: config.proxyConfig,
      },
    },
    admin: {
      address: { socket_address: { address: localhost, port_value: config.envoy.adminPort } },
      profile_path: '/var/lib/istio/data/envoy.prof',
    },
    dynamic_resources: {
      lds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      cds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      ads_config: {
        api_type: adsType,
        set_node_on_first_message_only: true,
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc' } }],
      },
    },
    static_resources: {
      clusters: [pipeCluster('xds-grpc', config.paths.xdsSocket), pipeCluster('sds-grpc', config.paths.sdsSocket)],
    },
  };
}

/**
 * Writes the bootstrap and returns the path Envoy is started with. A `customConfigFile` is used
 * as it is: nothing is generated (Istio's behaviour).
 */
export function writeEnvoyBootstrap(config: AgentConfig): { path: string; generated: boolean } {
  const custom = config.proxyConfig.customConfigFile;
  if (typeof custom === 'string' && custom !== '') return { path: custom, generated: false };
  const doc = renderMinimalBootstrap(config);
  writeFileAtomicSync(config.paths.envoyBootstrap, JSON.stringify(doc, null, 2) + '\n');
  return { path: config.paths.envoyBootstrap, generated: true };
}
