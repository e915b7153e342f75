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
