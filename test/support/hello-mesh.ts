// A one-service mesh for proxyless tests and the demo: a gRPC "hello" server on loopback and the
// xDS resources (Listener with an API listener, RouteConfiguration, Cluster, ClusterLoadAssignment)
// that route `xds:///hello.default.svc.cluster.local:8080` to it.

import * as grpc from '@grpc/grpc-js';

export const HELLO_SERVICE = 'hello.default.svc.cluster.local:8080';
export const HELLO_CLUSTER = 'outbound|8080||hello.default.svc.cluster.local';
export const HELLO_METHOD = '/hello.Greeter/SayHello';

const identity = (b: Buffer): Buffer => b;

/** Starts the hello gRPC server on 127.0.0.1 (free port); it answers `greetings from <name>: <request>`. */
export async function startHelloServer(name = 'the test server'): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(
    { SayHello: { path: HELLO_METHOD, requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    { SayHello: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(`greetings from ${name}: ${call.request.toString()}`)) },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { server, port };
}

/** The xDS resources of the hello service, by type URL, as proto3 JSON with @type. */
export function helloXdsResources(port: number): Record<string, { json: unknown }[]> {
  return {
    'type.googleapis.com/envoy.config.listener.v3.Listener': [
      {
        json: {
          '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
          name: HELLO_SERVICE,
          api_listener: {
            api_listener: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: 'hello-route' },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
            },
          },
        },
      },
    ],
    'type.googleapis.com/envoy.config.route.v3.RouteConfiguration': [
      {
        json: {
          '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
          name: 'hello-route',
          virtual_hosts: [{ name: 'hello', domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster: HELLO_CLUSTER } }] }],
        },
      },
    ],
    'type.googleapis.com/envoy.config.cluster.v3.Cluster': [
      {
        json: {
          '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
          name: HELLO_CLUSTER,
          type: 'EDS',
          eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
          lb_policy: 'ROUND_ROBIN',
        },
      },
    ],
    'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment': [
      {
        json: {
          '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
          cluster_name: HELLO_CLUSTER,
          // gRPC ignores localities without a weight
          endpoints: [{ locality: {}, load_balancing_weight: 1, lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
        },
      },
    ],
  };
}
