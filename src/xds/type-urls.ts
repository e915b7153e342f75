// Every type URL the agent treats specially, in one place.

export const TYPE_PREFIX = 'type.googleapis.com/';

export const TypeUrl = {
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  Secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
  /** ECDS: rewritten for Wasm before Envoy sees it. */
  ExtensionConfig: 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig',
  /** Consumed by the agent's DNS proxy, never forwarded to Envoy. */
  NameTable: 'type.googleapis.com/istio.networking.nds.v1.NameTable',
  /** Consumed by the agent (dynamic ProxyConfig), never forwarded to Envoy. */
  ProxyConfig: 'type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig',
  /** The agent's report of the workload's health to istiod (ProxyConfig readinessProbe), a request only. */
  HealthInformation: 'type.googleapis.com/istio.v1.HealthInformation',
  /** Workload discovery: Envoy's peer metadata discovery subscribes to it. */
  Workload: 'type.googleapis.com/istio.workload.Workload',
} as const;

/**
 * Types relayed to Envoy: Envoy's own, and Istio's Workload (Istio's forwardToEnvoy). Any other
 * type from upstream, e.g. istio.workload.Address or istio.security.Authorization (ztunnel's), is
 * dropped as Istio drops it.
 */
export function isRelayedToEnvoy(typeUrl: string): boolean {
  return typeUrl.startsWith('type.googleapis.com/envoy.') || typeUrl === TypeUrl.Workload;
}

/** istiod's debug types (istio.io/debug, istio.io/debug/syncz, ...): answered to the agent's debug port. */
export const DEBUG_TYPE = 'istio.io/debug';

export function isDebugType(typeUrl: string): boolean {
  return typeUrl.startsWith(DEBUG_TYPE);
}

/**
 * Resource types only istiod's debug responses carry (CSDS client status, admin config dumps).
 * Envoy never subscribes to them, so a push of them is held whole and routed by its own type.
 */
export function isDebugPayloadType(typeUrl: string): boolean {
  return typeUrl.startsWith('type.googleapis.com/envoy.admin.') || typeUrl.startsWith('type.googleapis.com/envoy.service.status.') || isDebugType(typeUrl);
}

export function shortType(typeUrl: string): string {
  const known: Record<string, string> = {
    [TypeUrl.Cluster]: 'CDS',
    [TypeUrl.Listener]: 'LDS',
    [TypeUrl.RouteConfiguration]: 'RDS',
    [TypeUrl.ClusterLoadAssignment]: 'EDS',
    [TypeUrl.Secret]: 'SDS',
    [TypeUrl.ExtensionConfig]: 'ECDS',
    [TypeUrl.NameTable]: 'NDS',
    [TypeUrl.ProxyConfig]: 'PCDS',
    [TypeUrl.Workload]: 'WDS',
  };
  return known[typeUrl] ?? typeUrl.replace(TYPE_PREFIX, '');
}
