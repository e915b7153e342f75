// What the bootstrap needs beyond AgentConfig: facts about the platform and the agent's own run
// that Istio passes to bootstrap.GetNodeMetaData / bootstrap.Config next to the ProxyConfig
// (Istio version, instance IPs, pilot SAN, ports...). Every one has a default derived from the
// AgentConfig, as pilot-agent derives it; tests and the `bootstrap` command inject their own.

import { existsSync } from 'node:fs';
import type { AgentConfig } from '../config/load.js';
import { buildInfo } from '../version.js';
import type { Locality } from './node-metadata.js';
import { platformFacts } from './platform.js';

export interface BootstrapOptions {
  /** Istio version written as ISTIO_VERSION (ISTIO_META_ISTIO_VERSION wins). */
  readonly istioVersion?: string;
  /** Envoy node ID; default `config.node.serviceNode`. */
  readonly nodeId?: string;
  /** Proxy IPs; default `config.node.ipAddresses`. Duplicates are dropped. */
  readonly instanceIps?: readonly string[];
  /** PILOT_SAN; default the discovery host when controlPlaneAuthPolicy is MUTUAL_TLS, else none. */
  readonly pilotSubjectAltNames?: readonly string[];
  /** --outlierLogPath */
  readonly outlierLogPath?: string;
  /** --stsPort */
  readonly stsPort?: number;
  readonly envoyStatusPort?: number;
  readonly envoyPrometheusPort?: number;
  readonly envoySecureMetricsPort?: number;
  readonly envoySecureMergedMetricsPort?: number;
  readonly workloadIdentitySocketFile?: string;
  /** COMPLIANCE_POLICY (fips-140-2 adds the TLS 1.3 runtime guard). */
  readonly compliancePolicy?: string;
  /** Locality reported by the platform (cloud metadata); used when no locality label is set. */
  readonly platformLocality?: Locality;
  /** Platform metadata (gcp_project, ...). */
  readonly platformMetadata?: Readonly<Record<string, string>>;
  /** --log_as_json: Envoy's application log in JSON. */
  readonly logAsJson?: boolean;
  /** ISTIO_DUAL_STACK */
  readonly dualStack?: boolean;
  /** ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL */
  readonly envoyStatusPortProxyProtocol?: boolean;
  /** HTTP_STRIP_FRAGMENT_FROM_PATH_UNSAFE_IF_DISABLED (default true). */
  readonly stripFragmentFromPath?: boolean;
  /** PEER_METADATA_DISCOVERY when set; undefined lets ENABLE_HBONE decide. */
  readonly metadataDiscovery?: boolean;
  /** DNS_PROXY_ADDR when set in the environment. */
  readonly dnsProxyAddr?: string;
  /** ./var/run/secrets/credential-uds/socket exists. */
  readonly credentialSocketExists?: boolean;
  /** The workload SDS socket belongs to someone else; the agent serves file certificates only. */
  readonly customCredentialsFileExists?: boolean;
  /** XDS_ROOT_CA */
  readonly xdsRootCert?: string;
  /** HOST_IP, substituted for a `$(HOST_IP)` tracer host. */
  readonly hostIp?: string;
  /** ISTIO_DELTA_XDS */
  readonly deltaXds?: boolean;
  readonly exitOnZeroActiveConnections?: boolean;
  readonly envoySkipDeprecatedLogs?: boolean;
  /** ./etc/istio/pod/labels could be read (default: checked on disk). */
  readonly podLabelsFileExists?: boolean;
  /** Where Istio logs warnings (bad annotations, ...). */
  readonly warn?: (message: string) => void;
}

type Optional = 'metadataDiscovery' | 'dnsProxyAddr' | 'platformLocality';
export type ResolvedBootstrapOptions = { readonly [K in Exclude<keyof BootstrapOptions, Optional>]-?: Exclude<BootstrapOptions[K], undefined> } & {
  readonly metadataDiscovery: boolean | undefined;
  readonly dnsProxyAddr: string | undefined;
  readonly platformLocality: Locality | undefined;
};


/** Istio's GetPilotSan: the discovery host (`localhost` read as istiod.istio-system.svc). */
export function pilotSan(discoveryAddress: string): string {
  const host = discoveryAddress.split(':')[0] ?? '';
  return host === 'localhost' ? 'istiod.istio-system.svc' : host;
}

export function resolveBootstrapOptions(config: AgentConfig, o: BootstrapOptions = {}): ResolvedBootstrapOptions {
  const pc = config.proxyConfig;
  const discoveryAddress = typeof pc.discoveryAddress === 'string' ? pc.discoveryAddress : '';
  const isSet = (name: (typeof config.envSet)[number]): boolean => config.envSet.includes(name);
  const warn = o.warn ?? (() => {});
  // the platform's facts unless the caller brings its own (tests, golden cases)
  const platform = o.platformMetadata === undefined && o.platformLocality === undefined ? platformFacts(config.env) : undefined;
  if (platform?.warning) warn(platform.warning);
  return {
    istioVersion: o.istioVersion ?? buildInfo.istioCompatVersion,
    nodeId: o.nodeId ?? config.node.serviceNode,
    instanceIps: o.instanceIps ?? config.node.ipAddresses,
    pilotSubjectAltNames: o.pilotSubjectAltNames ?? (pc.controlPlaneAuthPolicy === 'MUTUAL_TLS' ? [pilotSan(discoveryAddress)] : []),
    outlierLogPath: o.outlierLogPath ?? config.flags.outlierLogPath,
    stsPort: o.stsPort ?? config.flags.stsPort,
    envoyStatusPort: o.envoyStatusPort ?? config.env.ENVOY_STATUS_PORT,
    envoyPrometheusPort: o.envoyPrometheusPort ?? config.env.ENVOY_PROMETHEUS_PORT,
    envoySecureMetricsPort: o.envoySecureMetricsPort ?? config.env.ENVOY_SECURE_METRICS_PORT,
    envoySecureMergedMetricsPort: o.envoySecureMergedMetricsPort ?? config.env.ENVOY_SECURE_MERGED_METRICS_PORT,
    workloadIdentitySocketFile: o.workloadIdentitySocketFile ?? config.env.WORKLOAD_IDENTITY_SOCKET_FILE,
    compliancePolicy: o.compliancePolicy ?? config.env.COMPLIANCE_POLICY,
    platformLocality: o.platformLocality ?? platform?.locality,
    platformMetadata: o.platformMetadata ?? platform?.metadata ?? {},
    logAsJson: o.logAsJson ?? false,
    dualStack: o.dualStack ?? config.env.ISTIO_DUAL_STACK,
    envoyStatusPortProxyProtocol: o.envoyStatusPortProxyProtocol ?? config.env.ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL,
    stripFragmentFromPath: o.stripFragmentFromPath ?? config.env.HTTP_STRIP_FRAGMENT_FROM_PATH_UNSAFE_IF_DISABLED,
    // Istio distinguishes "PEER_METADATA_DISCOVERY=false" from unset (then ENABLE_HBONE decides)
    metadataDiscovery: 'metadataDiscovery' in o ? o.metadataDiscovery : isSet('PEER_METADATA_DISCOVERY') ? config.env.PEER_METADATA_DISCOVERY : undefined,
    // DNS_PROXY_ADDR goes into the node metadata only when the pod sets it
    dnsProxyAddr: 'dnsProxyAddr' in o ? o.dnsProxyAddr : isSet('DNS_PROXY_ADDR') ? config.env.DNS_PROXY_ADDR : undefined,
    credentialSocketExists: o.credentialSocketExists ?? false,
    customCredentialsFileExists: o.customCredentialsFileExists ?? false,
    xdsRootCert: o.xdsRootCert ?? config.env.XDS_ROOT_CA,
    hostIp: o.hostIp ?? config.env.HOST_IP,
    deltaXds: o.deltaXds ?? config.env.ISTIO_DELTA_XDS,
    exitOnZeroActiveConnections: o.exitOnZeroActiveConnections ?? config.env.EXIT_ON_ZERO_ACTIVE_CONNECTIONS,
    envoySkipDeprecatedLogs: o.envoySkipDeprecatedLogs ?? config.env.ENVOY_SKIP_DEPRECATED_LOGS,
    podLabelsFileExists: o.podLabelsFileExists ?? existsSync(config.paths.podLabels),
    warn,
  };
}
