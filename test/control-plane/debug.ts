// istiod's answers to the xDS debug types a proxy may ask for on its own ADS stream
// (pilot/pkg/xds statusgen.go, debug.go connectionConfigDump), which Istio's agent relays from its
// debug port (localhost:15004):
//   - istio.io/debug/syncz: one envoy.service.status.v3.ClientConfig per connected proxy (a node
//     whose metadata has PROXY_CONFIG), named by its node id: the node's id and metadata
//     CLUSTER_ID, NAMESPACE, ISTIO_VERSION, and per watched type its status (SYNCED when the last
//     response sent was ACKed, STALE when not yet, NOT_SENT, ERROR after a NACK, with the reason),
//     sorted by type;
//   - istio.io/debug/config_dump with one resource name (a proxy id): that proxy's configuration as
//     an admin ConfigDump's configs (bootstrap, clusters, listeners, scoped routes, routes, secrets,
//     ECDS), each an unnamed resource; nothing for another count of names or an unknown proxy.
// Callers outside istio-system see only proxies of their own namespace (istiod's namespace filter
// for authenticated callers; the caller's namespace here is its node's NAMESPACE metadata).
// Debug requests never open a watch: every request is answered once.

import type { JsonValue } from '@bufbuild/protobuf';
import type { ResourceStore, StoredResource } from './resources.js';
import { messageSchema } from '../support/envoy-protos.js';
import { TypeUrl, createMessage, encodeMessage, messageFromJson, type AnyMsg } from './xds-protos.js';

export const DEBUG_TYPE = 'istio.io/debug';
export const SYNCZ = `${DEBUG_TYPE}/syncz`;
export const CONFIG_DUMP = `${DEBUG_TYPE}/config_dump`;

const SYSTEM_NAMESPACE = 'istio-system';

/** What the debug generator needs to know of one watched type of a stream. */
export interface WatchedType {
  readonly typeUrl: string;
  readonly wildcard: boolean;
  readonly names: readonly string[];
  readonly nonceSent?: string;
  readonly nonceAcked?: string;
  readonly lastSentAt?: number;
  readonly nack?: { readonly message: string };
}

/** A connected stream, as the debug generator sees it. */
export interface DebugStreamView {
  readonly node?: JsonValue;
  readonly watched: readonly WatchedType[];
}

export interface DebugResource {
  /** '' for config_dump's unnamed resources. */
  readonly name: string;
  readonly resource: AnyMsg;
}

function nodeOf(s: DebugStreamView): { id: string; metadata: Record<string, unknown> } {
  const n = (s.node ?? {}) as { id?: string; metadata?: Record<string, unknown> };
  return { id: n.id ?? '', metadata: n.metadata ?? {} };
}

/** istiod's callerNamespaceFilter: '' means unrestricted. */
function callerNamespace(caller: DebugStreamView): string {
  const ns = String(nodeOf(caller).metadata.NAMESPACE ?? '');
  return ns === SYSTEM_NAMESPACE ? '' : ns;
}

const any = (typeName: string, json: unknown): AnyMsg => ({ typeUrl: `type.googleapis.com/${typeName}`, value: encodeMessage(messageSchema(typeName), messageFromJson(messageSchema(typeName), json)) });

function syncz(streams: readonly DebugStreamView[], namespace: string): DebugResource[] {
  const out: DebugResource[] = [];
  for (const s of streams) {
    const { id, metadata } = nodeOf(s);
    if (metadata.PROXY_CONFIG === undefined) continue; // not a proxy (istioctl, say)
    if (namespace && metadata.NAMESPACE !== namespace) continue;
    const configs = [...s.watched]
      .sort((a, b) => (a.typeUrl < b.typeUrl ? -1 : a.typeUrl > b.typeUrl ? 1 : 0))
      .map((w) => {
        const at = new Date(w.lastSentAt ?? 0).toISOString();
        const status = w.nack ? 'ERROR' : !w.nonceSent ? 'NOT_SENT' : w.nonceAcked === w.nonceSent ? 'SYNCED' : 'STALE';
        return { type_url: w.typeUrl, config_status: status, last_updated: at, ...(w.nack ? { error_state: { last_update_attempt: at, details: w.nack.message } } : {}) };
      });
    const meta: Record<string, unknown> = {};
    for (const k of ['CLUSTER_ID', 'NAMESPACE', 'ISTIO_VERSION']) if (metadata[k] !== undefined && metadata[k] !== '') meta[k] = metadata[k];
    out.push({ name: id, resource: any('envoy.service.status.v3.ClientConfig', { node: { id, metadata: meta }, generic_xds_configs: configs }) });
  }
  return out;
}

function configDump(streams: readonly DebugStreamView[], proxyId: string, namespace: string, store: ResourceStore): DebugResource[] {
  const target = streams.find((s) => nodeOf(s).id === proxyId);
  if (!target || (namespace && nodeOf(target).metadata.NAMESPACE !== namespace)) return [];
  // what the proxy is given of each type: every resource of a wildcard type, else the names it watches
  const given = (typeUrl: string): StoredResource[] => {
    const w = target.watched.find((x) => x.typeUrl === typeUrl);
    if (!w) return typeUrl === TypeUrl.Cluster || typeUrl === TypeUrl.Listener ? store.all(typeUrl) : [];
    return w.wildcard ? store.all(typeUrl) : w.names.map((n) => store.get(typeUrl, n)).filter((r): r is StoredResource => r !== undefined);
  };
  const packed = (r: StoredResource): AnyMsg => ({ typeUrl: r.typeUrl, value: r.binary });
  const version = store.version(TypeUrl.Cluster);
  const admin = (name: string, init: object): AnyMsg => {
    const schema = messageSchema(`envoy.admin.v3.${name}`);
    return { typeUrl: `type.googleapis.com/envoy.admin.v3.${name}`, value: encodeMessage(schema, createMessage(schema, init)) };
  };
  const configs = [
    admin('BootstrapConfigDump', {}),
    admin('ClustersConfigDump', { versionInfo: version, dynamicActiveClusters: given(TypeUrl.Cluster).map((r) => ({ cluster: packed(r) })) }),
    admin('ListenersConfigDump', { versionInfo: version, dynamicListeners: given(TypeUrl.Listener).map((r) => ({ name: r.name, activeState: { listener: packed(r), versionInfo: version } })) }),
    admin('ScopedRoutesConfigDump', {}),
    admin('RoutesConfigDump', { dynamicRouteConfigs: given(TypeUrl.RouteConfiguration).map((r) => ({ versionInfo: version, routeConfig: packed(r) })) }),
    admin('SecretsConfigDump', { dynamicActiveSecrets: given(TypeUrl.Secret).map((r) => ({ versionInfo: version, secret: packed(r) })) }),
    admin('EcdsConfigDump', { ecdsFilters: given(TypeUrl.TypedExtensionConfig).map((r) => ({ versionInfo: version, ecdsFilter: packed(r) })) }),
  ];
  return configs.map((resource) => ({ name: '', resource }));
}

/** The resources of istiod's answer to a debug request of `caller` (names: the request's). */
export function debugResources(typeUrl: string, names: readonly string[], caller: DebugStreamView, streams: readonly DebugStreamView[], store: ResourceStore): DebugResource[] {
  const namespace = callerNamespace(caller);
  if (typeUrl === SYNCZ) return syncz(streams, namespace);
  if (typeUrl === CONFIG_DUMP) return names.length === 1 ? configDump(streams, names[0]!, namespace, store) : [];
  return [];
}
