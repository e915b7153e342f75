// StatusServerOptions from the agent's frozen AgentConfig, so the agent wiring is one call.

import type { AgentConfig } from '../config/load.js';
import { debugConfigView, syncStateView } from './debug.js';
import type { DebugProvider, StatusServerOptions } from './server.js';
import type { TypeSyncState } from '../xds/xds-proxy.js';

export interface StatusServerDeps {
  /** POST /quitquitquit: exit at once (no drain). */
  readonly onQuit: () => void | Promise<void>;
  /** POST /drain: Agent.drainNow(). */
  readonly onDrain: () => void | Promise<void>;
  /** When the DNS proxy is on: whether it has its name table. */
  readonly dnsReady?: () => boolean;
  /** XdsProxy.syncState() of the running xDS proxy. */
  readonly xdsSyncState?: () => ReadonlyMap<string, Readonly<TypeSyncState>> | undefined;
  /** XdsProxy.lastKnownGoodView(): the last-known-good store, shown in /debug/syncz. */
  readonly xdsLastKnownGood?: () => Record<string, unknown>;
  /** XdsProxy.connectionsView(): the open ADS streams, shown in /debug/syncz. */
  readonly xdsConnections?: () => readonly unknown[];
  /** The memory limit and usage (Agent.memory.view()), shown in /debug/config. */
  readonly memory?: () => Record<string, unknown>;
  readonly certs?: DebugProvider;
  readonly wasm?: DebugProvider;
  readonly ndsz?: DebugProvider;
  /** When the agent started, on the performance.now() clock (startup_duration_seconds); process start by default. */
  readonly startedAt?: number;
}

/** Reads an env setting that may not be declared yet (typed access once it is). */
export function statusServerOptionsFrom(config: AgentConfig, deps: StatusServerDeps): StatusServerOptions {
  const statusPort = Number(config.proxyConfig.statusPort ?? 15020);
  const podIp = config.env.INSTANCE_IP;
  // Istio: IPv6 loopback when the pod is IPv6-only, or when the pod IP itself is IPv6
  const ipv6 = config.node.ipv6 || (podIp.includes(':') && !/^fe80:/i.test(podIp));
  return {
    port: statusPort,
    proxyType: config.proxyType,
    adminPort: config.envoy.adminPort,
    localhost: ipv6 ? '::1' : '127.0.0.1',
    podIp,
    probeLocalhost: config.env.REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION,
    probeKeepalive: config.env.ENABLE_PROBE_KEEPALIVE_CONNECTIONS,
    probeHttp2: config.env.ISTIO_ENABLE_HTTP2_PROBING,
    kubeAppProbers: config.env.ISTIO_KUBE_APP_PROBERS,
    prometheusAnnotations: config.env.ISTIO_PROMETHEUS_ANNOTATIONS,
    envoyPrometheusPort: config.env.ENVOY_PROMETHEUS_PORT,
    mergeEnvoyStats: config.env.PILOT_AGENT_MERGE_ENVOY_STATS,
    metricsLocalhostOnly: config.env.METRICS_LOCALHOST_ACCESS_ONLY,
    noEnvoy: config.env.DISABLE_ENVOY,
    grpcBootstrapPath: config.paths.grpcBootstrap,
    profiling: config.flags.profiling,
    ...(deps.dnsReady ? { dnsReady: deps.dnsReady } : {}),
    ...(deps.startedAt !== undefined ? { startedAt: deps.startedAt } : {}),
    onQuit: deps.onQuit,
    onDrain: deps.onDrain,
    debug: {
      config: () => ({ ...debugConfigView(config), ...(deps.memory ? { memory: deps.memory() } : {}) }),
      syncz: () => ({ ...syncStateView(deps.xdsSyncState?.(), deps.xdsLastKnownGood?.()), connections: deps.xdsConnections?.() ?? [] }),
      ...(deps.certs ? { certs: deps.certs } : {}),
      ...(deps.wasm ? { wasm: deps.wasm } : {}),
      ...(deps.ndsz ? { ndsz: deps.ndsz } : {}),
    },
  };
}
