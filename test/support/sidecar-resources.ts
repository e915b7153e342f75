// xDS resources shaped as istiod builds them for a sidecar, for tests that serve them from the
// development control plane.

export interface OutboundHttpListenerOptions {
  readonly name?: string;
  readonly port: number;
  /** The route name the HttpConnectionManager takes from RDS. */
  readonly route: string;
  /** HttpConnectionManager stat_prefix (istiod: `outbound_0.0.0.0_<port>`). */
  readonly statPrefix?: string;
  /** initial_fetch_timeout of the RDS config source: istiod's `0s` by default, `null` for none (Envoy's 15 s). */
  readonly initialFetchTimeout?: string | null;
  /** HTTP filters before the router. */
  readonly httpFilters?: readonly unknown[];
}

/** An outbound HTTP listener on 0.0.0.0:<port> whose HttpConnectionManager takes its routes from RDS. */
export function outboundHttpListener(o: OutboundHttpListenerOptions): { json: Record<string, unknown> } {
  const name = o.name ?? `0.0.0.0_${o.port}`;
  const timeout = o.initialFetchTimeout === undefined ? '0s' : o.initialFetchTimeout;
  return {
    json: {
      name,
      address: { socket_address: { address: '0.0.0.0', port_value: o.port } },
      traffic_direction: 'OUTBOUND',
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: o.statPrefix ?? `outbound_0.0.0.0_${o.port}`,
                rds: { route_config_name: o.route, config_source: { ads: {}, ...(timeout !== null ? { initial_fetch_timeout: timeout } : {}), resource_api_version: 'V3' } },
                http_filters: [...(o.httpFilters ?? []), { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
              },
            },
          ],
        },
      ],
    },
  };
}

export const WASM_HTTP_FILTER = 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm';

/** An outbound HTTP listener on 0.0.0.0:8080 with inline routes, whose first HTTP filter `filterName` comes from ECDS. */
export function ecdsWasmListener(filterName: string): { json: Record<string, unknown> } {
  return {
    json: {
      '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
      name: '0.0.0.0_8080',
      address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: 'outbound_0.0.0.0_8080',
                route_config: { name: 'local', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 200 } }] }] },
                http_filters: [
                  { name: filterName, config_discovery: { config_source: { ads: {}, resource_api_version: 'V3' }, type_urls: [WASM_HTTP_FILTER] } },
                  { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
                ],
              },
            },
          ],
        },
      ],
    },
  };
}

/** The TypedExtensionConfig `name` as istiod sends a WasmPlugin: its Wasm filter loads remote code from `uri` with `sha256`. */
export function remoteWasmExtension(name: string, uri: string, sha256: string): { json: Record<string, unknown> } {
  return {
    json: {
      '@type': 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig',
      name,
      typed_config: {
        '@type': WASM_HTTP_FILTER,
        config: {
          name,
          root_id: 'hello',
          vm_config: {
            runtime: 'envoy.wasm.runtime.v8',
            code: { remote: { http_uri: { uri, cluster: 'unused', timeout: '10s' }, sha256 } },
            environment_variables: { key_values: { ISTIO_META_WASM_IMAGE_PULL_POLICY: 'IfNotPresent' } },
          },
          configuration: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: '{"greeting":"hi"}' },
        },
      },
    },
  };
}
