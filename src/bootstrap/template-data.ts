// AgentConfig + options -> the data map handed to the bootstrap template: Istio's
// Config.toTemplateParams with the option names of istio/pkg/bootstrap/option, so that a custom
// template written for Istio (`--templateFile`, ProxyConfig proxyBootstrapTemplatePath,
// ISTIO_BOOTSTRAP) renders the same here.
//
// Keys (absent when Istio skips them; "json" = a JSON text spliced into the template as is):
//   nodeID, nodeType, cluster, region?, zone?, sub_zone?, meta_json_str (json), metadata (struct),
//   config (ProxyConfig struct), runtime_flags (json), pilot_SAN (json), discovery_host,
//   discovery_address, pilot_grpc_address? (json), xds_type, xds_root_cert, metadata_discovery,
//   log_json, outlier_log_path?, custom_file_path?, workload_identity_socket_file,
//   localhost, wildcard, dns_lookup_family, additional_localhost?, additional_wildcard?, dual_stack?,
//   envoy_status_port, envoy_prometheus_port, secure_metrics_port?, secure_merged_metrics_port?,
//   envoy_status_port_enable_proxy_protocol?, metrics_localhost_access_only, enable_self_discovery?,
//   global_downstream_max_connections, inclusionPrefix?, inclusionSuffix?, inclusionRegexps?,
//   extraStatTags?, histogram_buckets, stats_flush_interval?, stats_eviction_interval?,
//   statsd? (json), zipkin? / lightstep? + lightstepToken / datadog? (json), stackdriver*,
//   tracing_tls? (json), envoy_metrics_service_address? (json), envoy_metrics_service_tls? (json),
//   envoy_metrics_service_tcp_keepalive? (json), envoy_metrics_stats_compression,
//   envoy_accesslog_service_address? (json), envoy_accesslog_service_tls? (json),
//   envoy_accesslog_service_tcp_keepalive? (json), load_stats_config_json_str? (json),
//   sts?, sts_port?, gcp_project_id?, gcp_project_number?
//
// Deliberate differences from Istio, each where Istio writes a bootstrap Envoy refuses:
//   - addresses without a numeric port are an error here (Istio writes `"port_value": }`);
//   - TCP keepalive values are plain numbers (Istio writes `{"value": n}` for UInt32Value);
//   - stats_flush_interval prints as "60s" (Istio's time.Duration prints "1m0s");
//   - the deprecated envoyMetricsServiceAddress is honoured (Istio reads the wrong field);
//   - ISTIO_META_LOAD_STATS_CONFIG_JSON that is not a JSON object is a start-up error naming it
//     (Istio pastes it into the bootstrap as it is, and Envoy refuses the file).

import { posix } from 'node:path';
import type { AgentConfig } from '../config/load.js';
import type { Json, ProxyConfigJson } from '../config/proxy-config.js';
import { BootstrapError } from './errors.js';
import { GoDuration, parseGoDurationNs } from '../config/duration.js';
import { splitHostPort } from '../util/ip.js';
import { goJsonMarshal, goQuoteJson, type GoJson } from './go-json.js';
import { buildNode, ipFamilies, mergedMetadata, metadataGoView, serviceCluster, type NodeInfo, type NodeMetadataInput } from './node-metadata.js';
import { resolveBootstrapOptions, type BootstrapOptions, type ResolvedBootstrapOptions } from './options.js';
import { proxyConfigGoView } from './proxy-config-view.js';

export type TemplateData = Record<string, unknown>;

/**
 * ISTIO_META_LOAD_STATS_CONFIG_JSON goes into the bootstrap as it is, as Envoy's
 * cluster_manager.load_stats_config (an ApiConfigSource). Istio does not look at it: anything but
 * a JSON object gives a bootstrap Envoy refuses to parse, and the pod fails with Envoy's error
 * about a file the user never wrote. Here it is a start-up error naming the variable and the value.
 * Empty is unset, as the template's `if` treats it in Istio.
 */
function loadStatsConfigJson(value: GoJson | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  const shown = typeof value === 'string' ? JSON.stringify(value) : goJsonMarshal(value);
  const bad = (why: string): BootstrapError =>
    new BootstrapError(`invalid ISTIO_META_LOAD_STATS_CONFIG_JSON ${shown.length > 300 ? `${shown.slice(0, 300)}...` : shown}: ${why}`);
  if (typeof value !== 'string') throw bad('expected a string holding a JSON object');
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw bad(`not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad("not a JSON object (Envoy's load_stats_config is an ApiConfigSource)");
  return value;
}

/** A file the bootstrap refers to, written next to it (the Lightstep access token). */
export interface SideFile {
  readonly path: string;
  readonly content: string;
  readonly mode: number;
}

export interface BootstrapInputs {
  readonly data: TemplateData;
  readonly node: NodeInfo;
  readonly sideFiles: readonly SideFile[];
  readonly options: ResolvedBootstrapOptions;
}

const ANNOTATION = {
  extraStatTags: 'sidecar.istio.io/extraStatTags',
  inclusionPrefixes: 'sidecar.istio.io/statsInclusionPrefixes',
  inclusionSuffixes: 'sidecar.istio.io/statsInclusionSuffixes',
  inclusionRegexps: 'sidecar.istio.io/statsInclusionRegexps',
  histogramBuckets: 'sidecar.istio.io/statsHistogramBuckets',
  flushInterval: 'sidecar.istio.io/statsFlushInterval',
  evictionInterval: 'sidecar.istio.io/statsEvictionInterval',
} as const;

/** Stats every proxy keeps: read by the readiness check, the xDS cluster and Wasm. */
const REQUIRED_PREFIXES = ['cluster_manager', 'listener_manager', 'server', 'cluster.xds-grpc', 'wasm'];
const RBAC_SUFFIXES = ['rbac.allowed', 'rbac.denied', 'shadow_allowed', 'shadow_denied'];
/** Needed to count active connections while draining with EXIT_ON_ZERO_ACTIVE_CONNECTIONS. */
const DRAIN_SUFFIX = 'downstream_cx_active';
/** Route stats named by a VirtualService stat_prefix. */
const REQUIRED_REGEXPS = ['vhost\\..*\\.route\\..*'];

const FIPS_140_2 = 'fips-140-2';
const MAX_INT32 = 2147483647;
const CREDENTIAL_FILES_SOCKET = './var/run/secrets/credential-uds/files-socket';
const LIGHTSTEP_TOKEN_FILE = 'lightstep_access_token.txt';
const DEFAULT_STATS_FLUSH_NS = 5_000_000_000n;

function isObject(v: unknown): v is { readonly [k: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** `{"address": "<host>", "port_value": <port>}` for a `host:port` option (Istio's addressConverter). */
export function socketAddressJson(option: string, addr: string, hostIp: string): string {
  const parts = splitHostPort(addr);
  if ('error' in parts) throw new BootstrapError(`unable to parse ${option} address ${JSON.stringify(addr)}: address ${addr}: ${parts.error}`);
  if (!/^\d+$/.test(parts.port) || Number(parts.port) > 65535) {
    throw new BootstrapError(`unable to parse ${option} address ${JSON.stringify(addr)}: port ${JSON.stringify(parts.port)} is not a number in 0..65535`);
  }
  // A tracer host of "$(HOST_IP)" (written for the Kubernetes env expansion) means the node's IP.
  const host = parts.host === '$(HOST_IP)' && hostIp !== '' ? hostIp : parts.host;
  return `{"address": ${goQuoteJson(host)}, "port_value": ${Number(parts.port)}}`;
}

// ---------------------------------------------------------------------------------------------
// TLS to the tracer / metrics / access log services (Istio's transportSocketConverter)

function sdsSecretConfig(name: string): GoJson {
  const source: { [k: string]: GoJson } = {
    api_config_source: {
      api_type: 'GRPC',
      grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc' } }],
      set_node_on_first_message_only: true,
      transport_api_version: 'V3',
    },
    resource_api_version: 'V3',
  };
  // the workload certificate and root are fetched without waiting (Istio's preconfigured configs)
  if (name === 'default' || name === 'ROOTCA') source.initial_fetch_timeout = '0s';
  return { name, sds_config: source };
}

function orDefault(v: string, fallback: string): string {
  return v !== '' ? v : fallback;
}

/** The transport_socket JSON, "" for mode DISABLE. */
export function transportSocketJson(tls: { readonly [k: string]: Json }, sniName: string, node: NodeInfo, isH2: boolean): string {
  const mode = str(tls.mode) || 'DISABLE';
  const sans = Array.isArray(tls.subjectAltNames) ? tls.subjectAltNames.filter((s): s is string => typeof s === 'string') : [];
  const defaultValidation: { [k: string]: GoJson } = sans.length > 0 ? { match_subject_alt_names: sans.map((exact) => ({ exact })) } : {};
  const common: { [k: string]: GoJson } = {};
  let sni = str(tls.sni);
  const typed = node.typed;
  const caPath = orDefault(typed.TLSClientRootCert, str(tls.caCertificates));
  const combined = (rootName: string): GoJson => ({
    default_validation_context: defaultValidation,
    ...(rootName !== '' ? { validation_context_sds_secret_config: sdsSecretConfig(rootName) } : {}),
  });
  let alpn: string[];
  switch (mode) {
    case 'SIMPLE':
      common.combined_validation_context = combined(caPath !== '' ? `file-root:${caPath}` : '');
      alpn = ['h2'];
      break;
    case 'MUTUAL': {
      const cert = orDefault(typed.TLSClientCertChain, str(tls.clientCertificate));
      const key = orDefault(typed.TLSClientKey, str(tls.privateKey));
      if (cert !== '' && key !== '') common.tls_certificate_sds_secret_configs = [sdsSecretConfig(`file-cert:${cert}~${key}`)];
      common.combined_validation_context = combined(caPath !== '' ? `file-root:${caPath}` : '');
      alpn = ['h2'];
      break;
    }
    case 'ISTIO_MUTUAL':
      common.tls_certificate_sds_secret_configs = [sdsSecretConfig('default')];
      common.combined_validation_context = combined('ROOTCA');
      alpn = ['istio', 'h2'];
      if (sni === '') sni = sniName;
      break;
    default:
      return '';
  }
  if (isH2) common.alpn_protocols = alpn;
  const typedConfig: { [k: string]: GoJson } = {
    '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
    common_tls_context: common,
  };
  if (sni !== '') typedConfig.sni = sni;
  return goJsonMarshal({ name: 'envoy.transport_sockets.tls', typed_config: typedConfig });
}

function durationSeconds(v: Json | undefined): number {
  if (typeof v !== 'string') return 0;
  const m = /^(-?\d+)(?:\.\d+)?s$/.exec(v);
  return m ? Number(m[1]) : 0;
}

/** upstream_connection_options for a service's tcpKeepalive (whole seconds, as Istio truncates). */
export function tcpKeepaliveJson(k: { readonly [k: string]: Json }): string {
  const keepalive: { [k: string]: GoJson } = {};
  const probes = typeof k.probes === 'number' ? k.probes : 0;
  if (probes > 0) keepalive.keepalive_probes = probes;
  const time = durationSeconds(k.time);
  if (time > 0) keepalive.keepalive_time = time;
  const interval = durationSeconds(k.interval);
  if (interval > 0) keepalive.keepalive_interval = interval;
  return goJsonMarshal({ tcp_keepalive: keepalive });
}

// ---------------------------------------------------------------------------------------------
// stats

function substitutePodIp(patterns: readonly string[], ips: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of patterns) {
    if (!p.includes('{pod_ip}')) out.push(p);
    else for (const ip of ips) out.push(p.replaceAll('{pod_ip}', ip));
  }
  return out;
}

function stringList(v: Json | undefined): string[] | undefined {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined;
}

/** Go's strconv.Atoi (64-bit int). */
function atoi(s: string | undefined): number | undefined {
  if (s === undefined || !/^[+-]?\d+$/.test(s)) return undefined;
  const n = BigInt(s);
  if (n > (1n << 63n) - 1n || n < -(1n << 63n)) return undefined;
  return Number(n);
}

class HistogramMatch {
  constructor(readonly Prefix: string) {}
  toJSON(): { prefix: string } {
    return { prefix: this.Prefix };
  }
}

/** One `histogram_bucket_settings` entry; marshals like Istio's option.HistogramBucket. */
export class HistogramBucket {
  readonly Match: HistogramMatch;
  constructor(
    prefix: string,
    readonly Buckets: readonly number[] | null,
  ) {
    this.Match = new HistogramMatch(prefix);
  }
  toJSON(): { match: { prefix: string }; buckets: readonly number[] | null } {
    return { match: this.Match.toJSON(), buckets: this.Buckets };
  }
}

function parseBuckets(text: string, warn: (m: string) => void): HistogramBucket[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    warn(`Failed to unmarshal histogram buckets ${text}: ${(err as Error).message}`);
    return [];
  }
  if (v === null) return [];
  const ok = isObject(v) && Object.values(v).every((b) => b === null || (Array.isArray(b) && b.every((x) => typeof x === 'number')));
  if (!ok) {
    warn(`Failed to unmarshal histogram buckets ${text}: expected an object of number lists`);
    return [];
  }
  return Object.entries(v as Record<string, number[] | null>)
    .map(([prefix, buckets]) => new HistogramBucket(prefix, buckets))
    .sort((a, b) => (a.Match.Prefix < b.Match.Prefix ? -1 : a.Match.Prefix > b.Match.Prefix ? 1 : 0));
}

function statsOptions(node: NodeInfo, pc: ProxyConfigJson, data: TemplateData, o: ResolvedBootstrapOptions): void {
  const annotations = node.typed.Annotations ?? {};
  const ips = node.typed.InstanceIPs ?? [];
  const matcher = isObject(pc.proxyStatsMatcher) ? pc.proxyStatsMatcher : {};

  // The annotation replaces the ProxyConfig list (they are not merged); the required entries follow.
  const inclusion = (annotation: string | undefined, required: readonly string[], fromConfig: string[] | undefined): string[] => {
    const list = annotation !== undefined && annotation !== '' ? annotation.split(',') : (fromConfig ?? []);
    return substitutePodIp([...list, ...required], ips);
  };
  const setList = (key: string, list: readonly string[]): void => {
    if (list.length > 0) data[key] = list;
  };
  setList('inclusionPrefix', inclusion(annotations[ANNOTATION.inclusionPrefixes], REQUIRED_PREFIXES, stringList(matcher.inclusionPrefixes)));
  const suffixes = o.exitOnZeroActiveConnections ? [...RBAC_SUFFIXES, DRAIN_SUFFIX] : RBAC_SUFFIXES;
  setList('inclusionSuffix', inclusion(annotations[ANNOTATION.inclusionSuffixes], suffixes, stringList(matcher.inclusionSuffixes)));
  setList('inclusionRegexps', inclusion(annotations[ANNOTATION.inclusionRegexps], REQUIRED_REGEXPS, stringList(matcher.inclusionRegexps)));

  const tags = [...(stringList(pc.extraStatTags) ?? []), ...(annotations[ANNOTATION.extraStatTags] ?? '').split(',')].filter((t) => t !== '');
  setList('extraStatTags', [...new Set(tags)]);

  const bucketsText = annotations[ANNOTATION.histogramBuckets];
  data.histogram_buckets = bucketsText !== undefined ? parseBuckets(bucketsText, o.warn) : [];

  let flushNs = DEFAULT_STATS_FLUSH_NS;
  const flushText = annotations[ANNOTATION.flushInterval];
  if (flushText !== undefined) {
    const d = parseGoDurationNs(flushText);
    if (d === undefined) o.warn(`Failed to parse stats flush interval ${flushText}: time: invalid duration ${JSON.stringify(flushText)}`);
    else {
      flushNs = d;
      if (d !== 0n) data.stats_flush_interval = new GoDuration(d);
    }
  }
  const evictionText = annotations[ANNOTATION.evictionInterval];
  if (evictionText !== undefined) {
    const d = parseGoDurationNs(evictionText);
    if (d === undefined) o.warn(`Failed to parse stats eviction interval ${evictionText}: time: invalid duration ${JSON.stringify(evictionText)}`);
    else if (flushNs === 0n || d % flushNs !== 0n) o.warn('StatsEvictionInterval must be a multiple of the StatsFlushInterval');
    else data.stats_eviction_interval = `${d / 1_000_000_000n}s`;
  }
}

// ---------------------------------------------------------------------------------------------
// runtime flags and connection limit

export function runtimeFlags(pc: ProxyConfigJson, o: ResolvedBootstrapOptions): Record<string, GoJson> {
  const flags: Record<string, GoJson> = {
    're2.max_program_size.error_level': '32768',
    'envoy.deprecated_features:envoy.config.listener.v3.Listener.hidden_envoy_deprecated_use_original_dst': true,
    'envoy.reloadable_features.http_reject_path_with_fragment': false,
    'envoy.reloadable_features.fixed_heap_use_allocated': true,
    // Istio turns this off for envoyproxy/envoy#45212
    'envoy.reloadable_features.coalesce_lb_rebuilds_on_batch_update': false,
  };
  // FIPS 140-2: Envoy's google_grpc client must not go above TLS 1.2
  if (o.compliancePolicy === FIPS_140_2) flags['envoy.reloadable_features.google_grpc_disable_tls_13'] = true;
  if (!o.stripFragmentFromPath) flags['envoy.reloadable_features.http_strip_fragment_from_path_unsafe_if_disabled'] = 'false';
  const values = isObject(pc.runtimeValues) ? pc.runtimeValues : {};
  for (const [k, v] of Object.entries(values)) {
    if (v === '') delete flags[k]; // "" unsets a default flag
    else flags[k] = v === 'true' ? true : v === 'false' ? false : (v as GoJson);
  }
  return flags;
}

/** connectionSettings.globalDownstreamConnectionLimit, else proxyMetadata, else the runtime flag. */
function globalDownstreamMaxConnections(pc: ProxyConfigJson): number {
  const cs = isObject(pc.connectionSettings) ? pc.connectionSettings : undefined;
  const limit = cs ? Number(cs.globalDownstreamConnectionLimit ?? 0) : 0;
  if (Number.isFinite(limit) && limit > 0) return limit;
  const meta = isObject(pc.proxyMetadata) ? pc.proxyMetadata : {};
  const fromMeta = atoi(str(meta.ISTIO_META_GLOBAL_DOWNSTREAM_MAX_CONNECTIONS) || undefined);
  if (fromMeta !== undefined) return fromMeta;
  const runtime = isObject(pc.runtimeValues) ? pc.runtimeValues['overload.global_downstream_max_connections'] : undefined;
  return atoi(typeof runtime === 'string' && runtime !== '' ? runtime : undefined) ?? MAX_INT32;
}

// ---------------------------------------------------------------------------------------------

function nodeInput(config: AgentConfig, o: ResolvedBootstrapOptions): NodeMetadataInput {
  return {
    id: o.nodeId,
    metaEnv: config.metaEnv,
    metaJsonEnv: config.metaJsonEnv,
    podName: config.env.POD_NAME,
    podNamespace: config.env.POD_NAMESPACE,
    serviceAccount: config.env.SERVICE_ACCOUNT,
    dnsProxyAddr: o.dnsProxyAddr,
    proxyConfig: config.proxyConfig,
    instanceIps: o.instanceIps,
    stsPort: o.stsPort,
    envoyStatusPort: o.envoyStatusPort,
    envoyPrometheusPort: o.envoyPrometheusPort,
    envoySecureMetricsPort: o.envoySecureMetricsPort,
    envoySecureMergedMetricsPort: o.envoySecureMergedMetricsPort,
    exitOnZeroActiveConnections: o.exitOnZeroActiveConnections,
    metadataDiscovery: o.metadataDiscovery,
    envoySkipDeprecatedLogs: o.envoySkipDeprecatedLogs,
    workloadIdentitySocketFile: o.workloadIdentitySocketFile,
    podLabels: config.podLabels,
    podLabelsFileExists: o.podLabelsFileExists,
    podAnnotations: config.podAnnotations,
    platformLocality: o.platformLocality,
    platformMetadata: o.platformMetadata,
    pilotSubjectAltNames: o.pilotSubjectAltNames,
    xdsRootCert: o.xdsRootCert,
    outlierLogPath: o.outlierLogPath,
    credentialSocketExists: o.credentialSocketExists,
    customCredentialsFileExists: o.customCredentialsFileExists,
    istioVersion: o.istioVersion,
    warn: o.warn,
  };
}

/** The node Istio would describe for this agent (shared by the Envoy and gRPC bootstraps). */
export function nodeFor(config: AgentConfig, options: BootstrapOptions = {}): NodeInfo {
  return buildNode(nodeInput(config, resolveBootstrapOptions(config, options)));
}

/** AgentConfig + options -> the template data, Istio's option names. Pure but for `sideFiles`. */
export function buildTemplateData(config: AgentConfig, options: BootstrapOptions = {}): BootstrapInputs {
  const o = resolveBootstrapOptions(config, options);
  const pc = config.proxyConfig;
  const node = buildNode(nodeInput(config, o));
  const typed = node.typed;
  const data: TemplateData = {};
  const sideFiles: SideFile[] = [];
  const set = (key: string, value: unknown): void => void (data[key] = value);
  const setIf = (key: string, value: unknown): void => {
    if (value !== undefined && value !== null && value !== '' && value !== 0 && value !== false) data[key] = value;
  };

  const discoveryAddress = str(pc.discoveryAddress);
  let xdsType = o.deltaXds ? 'DELTA_GRPC' : 'GRPC';
  let metadataDiscovery = typed.MetadataDiscovery === true;
  if (node.id.startsWith('waypoint~')) {
    xdsType = 'DELTA_GRPC';
    metadataDiscovery = true;
  }
  if (metadataDiscovery && xdsType === 'GRPC') {
    o.warn('disabling metadata discovery; not supported on SotW XDS');
    metadataDiscovery = false;
  }

  set('nodeID', node.id);
  set('nodeType', node.id.split('~')[0]);
  set('pilot_SAN', `[${((typed.PilotSubjectAltName as string[] | null) ?? []).map((s) => `{"exact":${goQuoteJson(s)}}`).join(',')}]`);
  setIf('outlier_log_path', typed.OutlierLogPath);
  if ('file-credential' in node.raw) set('custom_file_path', CREDENTIAL_FILES_SOCKET);
  set('log_json', o.logAsJson);
  set('discovery_host', discoveryAddress.split(':')[0]);
  set('metadata', metadataGoView(node));
  set('xds_type', xdsType);
  set('metadata_discovery', metadataDiscovery);
  const proxyMetadata = isObject(pc.proxyMetadata) ? pc.proxyMetadata : {};
  set('metrics_localhost_access_only', proxyMetadata.METRICS_LOCALHOST_ACCESS_ONLY === 'true');
  setIf('secure_metrics_port', typed.EnvoySecureMetricsPort);
  setIf('secure_merged_metrics_port', typed.EnvoySecureMergedMetricsPort);

  const platform = o.platformMetadata;
  if (platform.gcp_project_number !== undefined) set('gcp_project_number', platform.gcp_project_number);
  const stsPort = atoi(str(typed.StsPort) || undefined);
  if (stsPort !== undefined && stsPort > 0) {
    set('sts', true);
    set('sts_port', stsPort);
    if (platform.gcp_project !== undefined) set('gcp_project_id', platform.gcp_project);
  }
  set('workload_identity_socket_file', o.workloadIdentitySocketFile);

  // node metadata, locality, stats, runtime
  setIf('region', node.locality.region);
  setIf('zone', node.locality.zone);
  setIf('sub_zone', node.locality.subZone);
  statsOptions(node, pc, data, o);
  set('meta_json_str', goJsonMarshal(mergedMetadata(node)));
  set('runtime_flags', goJsonMarshal(runtimeFlags(pc, o)));
  set('envoy_status_port', typed.EnvoyStatusPort);
  set('envoy_prometheus_port', typed.EnvoyPrometheusPort);
  set('global_downstream_max_connections', globalDownstreamMaxConnections(pc));

  // address families
  const ips = typed.InstanceIPs ?? [];
  const fam = ipFamilies(ips);
  if (fam.allV4 || (!fam.allV6 && !o.dualStack)) {
    set('localhost', '127.0.0.1');
    set('wildcard', '0.0.0.0');
    set('dns_lookup_family', 'V4_ONLY');
  } else if (fam.allV6) {
    set('localhost', '::1');
    set('wildcard', '::');
    set('dns_lookup_family', 'V6_ONLY');
  } else {
    if (fam.firstFamily === undefined) throw new BootstrapError(`cannot tell the IP family of the first instance IP ${JSON.stringify(ips[0] ?? '')}`);
    const v6First = fam.firstFamily === 6;
    set('localhost', v6First ? '::1' : '127.0.0.1');
    set('additional_localhost', v6First ? '127.0.0.1' : '::1');
    set('wildcard', v6First ? '::' : '0.0.0.0');
    set('additional_wildcard', v6First ? '0.0.0.0' : '::');
    set('dns_lookup_family', 'ALL');
    set('dual_stack', true);
  }
  if (o.envoyStatusPortProxyProtocol) set('envoy_status_port_enable_proxy_protocol', true);
  if (typed.EnableSelfDiscovery) set('enable_self_discovery', true);

  // ProxyConfig
  set('config', proxyConfigGoView(pc));
  set('cluster', serviceCluster(node, pc));
  if (discoveryAddress !== '') set('pilot_grpc_address', socketAddressJson('pilot_grpc_address', discoveryAddress, o.hostIp));
  set('discovery_address', discoveryAddress);
  const statsd = str(pc.statsdUdpAddress);
  if (statsd !== '') set('statsd', socketAddressJson('statsd', statsd, o.hostIp));
  set('xds_root_cert', typed.XDSRootCert);

  if (isObject(pc.tracing)) {
    const tracing = pc.tracing;
    let isH2 = false;
    const address = (tracer: string): string => (isObject(tracing[tracer]) ? str((tracing[tracer] as Record<string, Json>).address) : '');
    if (isObject(tracing.zipkin)) {
      if (address('zipkin') !== '') set('zipkin', socketAddressJson('zipkin', address('zipkin'), o.hostIp));
    } else if (isObject(tracing.lightstep)) {
      isH2 = true;
      const configPath = str(pc.configPath);
      const tokenPath = posix.join(configPath, LIGHTSTEP_TOKEN_FILE);
      sideFiles.push({ path: tokenPath, content: str(tracing.lightstep.accessToken), mode: 0o644 });
      if (address('lightstep') !== '') set('lightstep', socketAddressJson('lightstep', address('lightstep'), o.hostIp));
      set('lightstepToken', tokenPath);
    } else if (isObject(tracing.datadog)) {
      if (address('datadog') !== '') set('datadog', socketAddressJson('datadog', address('datadog'), o.hostIp));
    } else if (isObject(tracing.stackdriver)) {
      const sd = tracing.stackdriver;
      const project = platform.gcp_project;
      if (project === undefined) throw new BootstrapError('unable to process Stackdriver tracer: missing GCP Project');
      const limit = (v: Json | undefined): number => (isObject(v) && typeof v.value !== 'undefined' ? Number(v.value) : typeof v === 'number' || typeof v === 'string' ? Number(v) : 200);
      set('stackdriver', true);
      set('stackdriverProjectID', project);
      set('stackdriverDebug', sd.debug === true);
      set('stackdriverMaxAnnotations', limit(sd.maxNumberOfAnnotations));
      set('stackdriverMaxAttributes', limit(sd.maxNumberOfAttributes));
      set('stackdriverMaxEvents', limit(sd.maxNumberOfMessageEvents));
    }
    if (isObject(tracing.tlsSettings)) set('tracing_tls', transportSocketJson(tracing.tlsSettings, 'tracer', node, isH2));
  }

  const metricsService = isObject(pc.envoyMetricsService) ? pc.envoyMetricsService : undefined;
  if (metricsService && str(metricsService.address) !== '') {
    set('envoy_metrics_service_address', socketAddressJson('envoy_metrics_service_address', str(metricsService.address), o.hostIp));
    if (isObject(metricsService.tlsSettings)) set('envoy_metrics_service_tls', transportSocketJson(metricsService.tlsSettings, 'envoy_metrics_service', node, true));
    if (isObject(metricsService.tcpKeepalive)) set('envoy_metrics_service_tcp_keepalive', tcpKeepaliveJson(metricsService.tcpKeepalive));
  } else if (str(pc.envoyMetricsServiceAddress) !== '') {
    set('envoy_metrics_service_address', socketAddressJson('envoy_metrics_service_address', str(pc.envoyMetricsServiceAddress), o.hostIp));
  }
  set('envoy_metrics_stats_compression', typeof pc.statsCompression === 'boolean' ? pc.statsCompression : true);
  const accessLogService = isObject(pc.envoyAccessLogService) ? pc.envoyAccessLogService : undefined;
  if (accessLogService && str(accessLogService.address) !== '') {
    set('envoy_accesslog_service_address', socketAddressJson('envoy_accesslog_service_address', str(accessLogService.address), o.hostIp));
    if (isObject(accessLogService.tlsSettings)) set('envoy_accesslog_service_tls', transportSocketJson(accessLogService.tlsSettings, 'envoy_accesslog_service', node, true));
    if (isObject(accessLogService.tcpKeepalive)) set('envoy_accesslog_service_tcp_keepalive', tcpKeepaliveJson(accessLogService.tcpKeepalive));
  }

  // Load Reporting Service, configured by ISTIO_META_LOAD_STATS_CONFIG_JSON
  const lrs = loadStatsConfigJson(node.raw.LOAD_STATS_CONFIG_JSON);
  if (lrs !== undefined) set('load_stats_config_json_str', lrs);

  return { data, node, sideFiles, options: o };
}
