// The seam where the stand-in's xDS clients will connect, like Envoy does, to the agent's xDS proxy
// and SDS server. Istio's bootstrap names them as static clusters with unix-socket endpoints:
//   xds-grpc: load_assignment...endpoint.address.pipe.path = ./etc/istio/proxy/XDS
//   sds-grpc: load_assignment...endpoint.address.pipe.path = ./var/run/secrets/workload-spiffe-uds/socket
// and dynamic_resources.ads_config (api_type GRPC or DELTA_GRPC) points at xds-grpc.
//
// Today connectXdsClients() only resolves those targets and reports them; the server goes live on
// its own timer. To make the stand-in a real xDS client later, implement connectXdsClients():
//   - dial `unix:<path>` with @grpc/grpc-js (insecure credentials), one channel per target;
//   - ADS: open envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources
//     (or DeltaAggregatedResources when api_type is DELTA_GRPC); serialize with @bufbuild/protobuf
//     using the registry from test/support/envoy-protos.ts (envoyRegistry()), send the bootstrap
//     node on the first request, subscribe to CDS then LDS, ACK/NACK by parsing each resource with
//     parseEnvoyJson semantics;
//   - SDS: SecretDiscoveryService/StreamSecrets for the names referenced by the clusters/listeners;
//   - report progress through the hooks: onCdsUpdate/onLdsUpdate(success | rejected) drive
//     cluster_manager.cds.* and listener_manager.lds.* stats and the PRE_INIT -> LIVE transition.
// Keep every stream's 'error' listener and unref() timers so the process can exit promptly.

export interface GrpcTarget {
  /** The static cluster's name (xds-grpc, sds-grpc). */
  readonly cluster: string;
  /** Unix socket path from the cluster's pipe address (relative paths are relative to Envoy's cwd). */
  readonly pipePath?: string;
  /** host:port when the cluster uses a socket address instead. */
  readonly socketAddress?: string;
}

export interface XdsTargets {
  /** The ADS server (dynamic_resources.ads_config's cluster), normally xds-grpc. */
  readonly ads?: GrpcTarget & { readonly apiType: string };
  /** The SDS server (cluster sds-grpc), when the bootstrap defines it. */
  readonly sds?: GrpcTarget;
}

export interface XdsHooks {
  onCdsUpdate(result: 'success' | 'rejected'): void;
  onLdsUpdate(result: 'success' | 'rejected'): void;
  log(msg: string): void;
}

export interface XdsConnections {
  /** Whether real clients are running (false until the seam is implemented). */
  readonly active: boolean;
  close(): void;
}

type Json = Record<string, unknown>;

function obj(v: unknown): Json | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}

function firstEndpointAddress(cluster: Json): Json | undefined {
  const endpoints = obj(cluster.load_assignment)?.endpoints;
  if (!Array.isArray(endpoints)) return undefined;
  for (const e of endpoints) {
    const lbs = obj(e)?.lb_endpoints;
    if (!Array.isArray(lbs)) continue;
    for (const lb of lbs) {
      const address = obj(obj(obj(lb)?.endpoint)?.address);
      if (address) return address;
    }
  }
  return undefined;
}

function targetFor(clusters: Json[], name: string): GrpcTarget | undefined {
  const cluster = clusters.find((c) => c.name === name);
  if (!cluster) return undefined;
  const address = firstEndpointAddress(cluster);
  const pipe = obj(address?.pipe);
  if (pipe && typeof pipe.path === 'string') return { cluster: name, pipePath: pipe.path };
  const sock = obj(address?.socket_address);
  if (sock) return { cluster: name, socketAddress: `${String(sock.address)}:${String(sock.port_value ?? 0)}` };
  return { cluster: name };
}

/** Finds the ADS and SDS servers named by a bootstrap (canonical proto-name JSON). */
export function findXdsTargets(bootstrap: Json): XdsTargets {
  const clusters = (obj(bootstrap.static_resources)?.clusters as Json[] | undefined) ?? [];
  const ads = obj(obj(bootstrap.dynamic_resources)?.ads_config);
  let adsTarget: XdsTargets['ads'];
  const services = ads?.grpc_services;
  if (Array.isArray(services)) {
    const clusterName = obj(obj(services[0])?.envoy_grpc)?.cluster_name;
    if (typeof clusterName === 'string') {
      const t = targetFor(clusters, clusterName);
      if (t) adsTarget = { ...t, apiType: String(ads?.api_type ?? 'GRPC') };
    }
  }
  const sds = targetFor(clusters, 'sds-grpc');
  return { ...(adsTarget ? { ads: adsTarget } : {}), ...(sds ? { sds } : {}) };
}

/**
 * Connects the stand-in's ADS and SDS clients. Not implemented yet: returns an inactive handle after
 * logging the targets, and the caller simulates xDS progress instead. See the header comment.
 */
export function connectXdsClients(targets: XdsTargets, hooks: XdsHooks): XdsConnections {
  if (targets.ads) hooks.log(`ADS target ${targets.ads.cluster} (${targets.ads.apiType}) at ${targets.ads.pipePath ?? targets.ads.socketAddress ?? '?'}: not connecting (stand-in)`);
  if (targets.sds) hooks.log(`SDS target ${targets.sds.cluster} at ${targets.sds.pipePath ?? targets.sds.socketAddress ?? '?'}: not connecting (stand-in)`);
  return { active: false, close() {} };
}
