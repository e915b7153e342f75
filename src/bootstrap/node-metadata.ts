// The Envoy node (id, locality, metadata) as Istio's bootstrap.GetNodeMetaData builds it.
//
// Metadata comes in two layers that are merged when written:
// - untyped ("raw"): every ISTIO_META_<K>=v (proxyMetadata first, the process env winning) as K: v,
//   then the members of every ISTIO_METAJSON_<X>={json object} at the top level, DNS_PROXY_ADDR;
// - typed: the raw map decoded into Istio's BootstrapNodeMetadata struct (JSON names such as
//   NAMESPACE, LABELS, INSTANCE_IPS; Go's decoder matches names case-insensitively and refuses
//   wrong types), then overwritten by what the agent knows: instance IPs, ports, ProxyConfig, labels
//   (ISTIO_METAJSON_LABELS and the downward-API file), annotations (file), locality...
// The written metadata is the typed struct marshalled with `omitempty`, plus every raw key the
// typed output lacks. A typed field at its zero value is omitted, so the raw value shows through
// (ISTIO_META_DNS_CAPTURE=false is written as "false", =1 as "true").

import type { Json, ProxyConfigJson } from '../config/proxy-config.js';
import { NodeMetadataError } from './errors.js';
import { compareUtf8, goJsonMarshal, type GoJson } from './go-json.js';
import { goStruct, proxyConfigGoView, proxyConfigProtoJson } from './proxy-config-view.js';
import { ipFamily } from '../util/ip.js';

export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subZone: string;
}

export interface NodeMetadataInput {
  /** Envoy node ID: `<type>~<ip>~<pod>.<ns>~<domain>`. */
  readonly id: string;
  /** ISTIO_META_* variables, prefix kept (proxyMetadata entries merged, env winning). */
  readonly metaEnv: Readonly<Record<string, string>>;
  /** ISTIO_METAJSON_* variables, prefix kept. */
  readonly metaJsonEnv: Readonly<Record<string, string>>;
  /** POD_NAME / POD_NAMESPACE / SERVICE_ACCOUNT; empty means unset. */
  readonly podName: string;
  readonly podNamespace: string;
  readonly serviceAccount: string;
  /** DNS_PROXY_ADDR when set in the environment (Istio copies it as it is). */
  readonly dnsProxyAddr?: string;
  readonly proxyConfig: ProxyConfigJson;
  readonly instanceIps: readonly string[];
  readonly stsPort: number;
  readonly envoyStatusPort: number;
  readonly envoyPrometheusPort: number;
  readonly envoySecureMetricsPort: number;
  readonly envoySecureMergedMetricsPort: number;
  readonly exitOnZeroActiveConnections: boolean;
  /** PEER_METADATA_DISCOVERY when set; undefined = follow ENABLE_HBONE. */
  readonly metadataDiscovery?: boolean;
  readonly envoySkipDeprecatedLogs: boolean;
  readonly workloadIdentitySocketFile: string;
  /** Downward-API labels file content (./etc/istio/pod/labels). */
  readonly podLabels: Readonly<Record<string, string>>;
  /**
   * Whether that file could be read. When it could not, LABELS stays the very map built from
   * ISTIO_METAJSON_LABELS (STATIC_LABELS), so the locality rewrite shows in both, as in Istio.
   * Default: the file had labels.
   */
  readonly podLabelsFileExists?: boolean;
  /** Downward-API annotations file content (./etc/istio/pod/annotations). */
  readonly podAnnotations: Readonly<Record<string, string>>;
  /** Locality from the platform, used when no locality label is set. */
  readonly platformLocality?: Locality;
  readonly platformMetadata?: Readonly<Record<string, string>>;
  readonly pilotSubjectAltNames: readonly string[];
  readonly xdsRootCert: string;
  readonly outlierLogPath: string;
  readonly credentialSocketExists?: boolean;
  readonly customCredentialsFileExists?: boolean;
  /** Version of the Istio this agent stands in for; ISTIO_META_ISTIO_VERSION wins. */
  readonly istioVersion: string;
  /** Sink for the warnings Istio logs (bad ISTIO_METAJSON_* values, ...). */
  readonly warn?: (message: string) => void;
}

type FieldKind = 'string' | 'stringBool' | 'ptrStringBool' | 'int' | 'stringMap' | 'stringSlice' | 'stringList' | 'podPorts' | 'proxyConfig';

/** BootstrapNodeMetadata's JSON-visible fields, in Go declaration order (embedded NodeMetadata first). */
const FIELDS: readonly (readonly [json: string, go: string, kind: FieldKind])[] = [
  ['PROXY_CONFIG', 'ProxyConfig', 'proxyConfig'],
  ['ISTIO_VERSION', 'IstioVersion', 'string'],
  ['ISTIO_REVISION', 'IstioRevision', 'string'],
  ['LABELS', 'Labels', 'stringMap'],
  ['STATIC_LABELS', 'StaticLabels', 'stringMap'],
  ['ANNOTATIONS', 'Annotations', 'stringMap'],
  ['INSTANCE_IPS', 'InstanceIPs', 'stringList'],
  ['NAMESPACE', 'Namespace', 'string'],
  ['NODE_NAME', 'NodeName', 'string'],
  ['WORKLOAD_NAME', 'WorkloadName', 'string'],
  ['INTERCEPTION_MODE', 'InterceptionMode', 'string'],
  ['SERVICE_ACCOUNT', 'ServiceAccount', 'string'],
  ['HTTP_PROXY_PORT', 'HTTPProxyPort', 'string'],
  ['MESH_ID', 'MeshID', 'string'],
  ['CLUSTER_ID', 'ClusterID', 'string'],
  ['NETWORK', 'Network', 'string'],
  ['REQUESTED_NETWORK_VIEW', 'RequestedNetworkView', 'stringList'],
  ['POD_PORTS', 'PodPorts', 'podPorts'],
  ['TLS_SERVER_CERT_CHAIN', 'TLSServerCertChain', 'string'],
  ['TLS_SERVER_KEY', 'TLSServerKey', 'string'],
  ['TLS_SERVER_ROOT_CERT', 'TLSServerRootCert', 'string'],
  ['TLS_CLIENT_CERT_CHAIN', 'TLSClientCertChain', 'string'],
  ['TLS_CLIENT_KEY', 'TLSClientKey', 'string'],
  ['TLS_CLIENT_ROOT_CERT', 'TLSClientRootCert', 'string'],
  ['BASE', 'CertBaseDir', 'string'],
  ['IDLE_TIMEOUT', 'IdleTimeout', 'string'],
  ['HTTP10', 'HTTP10', 'string'],
  ['GENERATOR', 'Generator', 'string'],
  ['ENABLE_SELF_DISCOVERY', 'EnableSelfDiscovery', 'stringBool'],
  ['DNS_CAPTURE', 'DNSCapture', 'stringBool'],
  ['DNS_AUTO_ALLOCATE', 'DNSAutoAllocate', 'stringBool'],
  ['DNS_PROXY_ADDR', 'DNSProxyAddr', 'string'],
  ['ENABLE_HBONE', 'EnableHBONE', 'stringBool'],
  ['DISABLE_HBONE_SEND', 'DisableHBONESend', 'stringBool'],
  ['AUTO_REGISTER_GROUP', 'AutoRegisterGroup', 'string'],
  ['WORKLOAD_ENTRY', 'WorkloadEntry', 'string'],
  ['UNPRIVILEGED_POD', 'UnprivilegedPod', 'string'],
  ['PLATFORM_METADATA', 'PlatformMetadata', 'stringMap'],
  ['STS_PORT', 'StsPort', 'string'],
  ['ENVOY_STATUS_PORT', 'EnvoyStatusPort', 'int'],
  ['ENVOY_PROMETHEUS_PORT', 'EnvoyPrometheusPort', 'int'],
  ['ENVOY_SECURE_METRICS_PORT', 'EnvoySecureMetricsPort', 'int'],
  ['ENVOY_SECURE_MERGED_METRICS_PORT', 'EnvoySecureMergedMetricsPort', 'int'],
  ['EXIT_ON_ZERO_ACTIVE_CONNECTIONS', 'ExitOnZeroActiveConnections', 'stringBool'],
  ['INBOUND_LISTENER_EXACT_BALANCE', 'InboundListenerExactBalance', 'stringBool'],
  ['OUTBOUND_LISTENER_EXACT_BALANCE', 'OutboundListenerExactBalance', 'stringBool'],
  ['CLOUDRUN_ADDR', 'CloudrunAddr', 'string'],
  ['METADATA_DISCOVERY', 'MetadataDiscovery', 'ptrStringBool'],
  ['ENVOY_SKIP_DEPRECATED_LOGS', 'EnvoySkipDeprecatedLogs', 'stringBool'],
  ['WORKLOAD_IDENTITY_SOCKET_FILE', 'WorkloadIdentitySocketFile', 'string'],
  ['NAME', 'InstanceName', 'string'],
  ['OWNER', 'Owner', 'string'],
  ['PILOT_SAN', 'PilotSubjectAltName', 'stringSlice'],
  ['OUTLIER_LOG_PATH', 'OutlierLogPath', 'string'],
  ['APP_CONTAINERS', 'AppContainers', 'string'],
  ['ISTIO_PROXY_SHA', 'IstioProxySHA', 'string'],
];

export interface PodPort {
  readonly name?: string;
  readonly containerPort: number;
  readonly protocol: string;
}

/** The typed metadata, keyed by Go field name (the struct Istio's templates see as `.metadata`). */
export type TypedMetadata = Record<string, unknown> & {
  ProxyConfig: ProxyConfigJson | null;
  IstioVersion: string;
  Labels: Record<string, string> | null;
  StaticLabels: Record<string, string> | null;
  Annotations: Record<string, string> | null;
  InstanceIPs: string[] | null;
  Namespace: string;
  WorkloadName: string;
  EnableHBONE: boolean;
  EnableSelfDiscovery: boolean;
  MetadataDiscovery: boolean | null;
  TLSClientCertChain: string;
  TLSClientKey: string;
  TLSClientRootCert: string;
  Generator: string;
  XDSRootCert: string;
};

export interface NodeInfo {
  readonly id: string;
  readonly locality: Locality;
  readonly typed: TypedMetadata;
  readonly raw: Record<string, GoJson>;
}

function zero(kind: FieldKind): unknown {
  switch (kind) {
    case 'string':
      return '';
    case 'stringBool':
      return false;
    case 'int':
      return 0;
    default:
      return null;
  }
}

function isJsonObject(v: unknown): v is { [k: string]: GoJson } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v === 'object' ? 'object' : typeof v;
}

/** strconv.ParseBool */
function parseGoBool(s: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return undefined;
}

function asciiFold(s: string): string {
  return s.replace(/[a-z]/g, (c) => c.toUpperCase());
}

const FIELD_BY_NAME = new Map(FIELDS.map((f) => [f[0], f]));
const FIELD_BY_FOLDED = new Map(FIELDS.map((f) => [asciiFold(f[0]), f]));

/** json.Unmarshal of the raw map into BootstrapNodeMetadata (Go's rules: case-insensitive names, strict types). */
function decodeTyped(raw: Record<string, GoJson>): TypedMetadata {
  const typed: Record<string, unknown> = {};
  for (const [, go, kind] of FIELDS) typed[go] = zero(kind);
  const errors: string[] = [];
  const typeError = (json: string, v: unknown, want: string): void =>
    void errors.push(`json: cannot unmarshal ${jsonType(v)} into Go struct field BootstrapNodeMetadata.${json} of type ${want}`);
  for (const key of Object.keys(raw).sort(compareUtf8)) {
    const field = FIELD_BY_NAME.get(key) ?? FIELD_BY_FOLDED.get(asciiFold(key));
    if (!field) continue;
    const [json, go, kind] = field;
    const v = raw[key]!;
    switch (kind) {
      case 'string':
        if (typeof v === 'string') typed[go] = v;
        else if (v !== null) typeError(json, v, 'string');
        break;
      case 'int':
        if (typeof v === 'number' && Number.isInteger(v)) typed[go] = v;
        else if (v !== null) typeError(json, v, 'int');
        break;
      case 'stringBool':
      case 'ptrStringBool': {
        const b = typeof v === 'string' ? parseGoBool(v) : undefined;
        if (b === undefined) {
          errors.push(`${json}: ${typeof v === 'string' ? `strconv.ParseBool: parsing ${JSON.stringify(v)}: invalid syntax` : 'invalid syntax'}`);
        } else typed[go] = b;
        break;
      }
      case 'stringMap':
        if (isJsonObject(v)) {
          const m: Record<string, string> = { ...((typed[go] as Record<string, string> | null) ?? {}) };
          for (const [mk, mv] of Object.entries(v)) {
            if (typeof mv === 'string') m[mk] = mv;
            else if (mv !== null) typeError(`${json}`, mv, 'string');
          }
          typed[go] = m;
        } else if (v !== null) typeError(json, v, 'map[string]string');
        break;
      case 'stringSlice':
        if (Array.isArray(v)) {
          const list: string[] = [];
          for (const x of v) {
            if (typeof x === 'string') list.push(x);
            else if (x !== null) typeError(json, x, 'string');
            else list.push('');
          }
          typed[go] = list;
        } else if (v !== null) typeError(json, v, '[]string');
        break;
      case 'stringList':
        if (typeof v === 'string') typed[go] = v === '' ? [] : v.split(',');
        else if (v !== null) typeError(json, v, 'string');
        break;
      case 'podPorts': {
        let ports: unknown;
        try {
          ports = typeof v === 'string' ? JSON.parse(v) : undefined;
        } catch {
          ports = undefined;
        }
        if (Array.isArray(ports)) {
          typed[go] = ports.map((p: unknown) => {
            const o = isJsonObject(p) ? p : {};
            return { name: typeof o.name === 'string' ? o.name : '', containerPort: typeof o.containerPort === 'number' ? o.containerPort : 0, protocol: typeof o.protocol === 'string' ? o.protocol : '' };
          });
        } else if (ports === null) typed[go] = null;
        else errors.push(`${json}: expected a JSON string holding a list of ports`);
        break;
      }
      case 'proxyConfig':
        // replaced by the agent's ProxyConfig below; only the shape is checked, as protojson would
        if (!isJsonObject(v) && v !== null) errors.push(`${json}: proto: syntax error: unexpected token ${jsonType(v)}`);
        break;
    }
  }
  if (errors.length > 0) throw new NodeMetadataError(`failed to generate bootstrap metadata: ${errors[0]}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`);
  typed.XDSRootCert = '';
  return typed as TypedMetadata;
}

/** json.Marshal of the typed struct with `omitempty`, as a JSON object. */
function encodeTyped(typed: TypedMetadata): Record<string, GoJson> {
  const out: Record<string, GoJson> = {};
  for (const [json, go, kind] of FIELDS) {
    const v = typed[go];
    switch (kind) {
      case 'string':
        if (typeof v === 'string' && v !== '') out[json] = v;
        break;
      case 'int':
        if (typeof v === 'number' && v !== 0) out[json] = v;
        break;
      case 'stringBool':
        if (v === true) out[json] = 'true';
        break;
      case 'ptrStringBool':
        if (typeof v === 'boolean') out[json] = v ? 'true' : 'false';
        break;
      case 'stringMap':
        if (isJsonObject(v) && Object.keys(v).length > 0) out[json] = { ...(v as Record<string, string>) };
        break;
      case 'stringSlice':
        if (Array.isArray(v) && v.length > 0) out[json] = [...(v as string[])];
        break;
      case 'stringList':
        if (Array.isArray(v) && v.length > 0) out[json] = (v as string[]).join(',');
        break;
      case 'podPorts':
        if (Array.isArray(v) && v.length > 0) {
          // a JSON text in a string, fields in Go's declaration order (name is omitempty)
          const ports = (v as PodPort[]).map((p) => `{${p.name ? `"name":${goJsonMarshal(p.name)},` : ''}"containerPort":${goJsonMarshal(p.containerPort)},"protocol":${goJsonMarshal(p.protocol)}}`);
          out[json] = `[${ports.join(',')}]`;
        }
        break;
      case 'proxyConfig':
        if (v) out[json] = proxyConfigProtoJson(v as ProxyConfigJson) as GoJson;
        break;
    }
  }
  return out;
}

/** ISTIO_METAJSON_LABELS is read as map[string]string: non-string members are dropped (and warned about). */
function jsonStringToMap(text: string, warn: (m: string) => void): Record<string, string> {
  const out: Record<string, string> = {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    warn(`Env variable with value ${JSON.stringify(text)} failed json unmarshal: ${(err as Error).message}`);
    return out;
  }
  if (!isJsonObject(v)) {
    if (v !== null) warn(`Env variable with value ${JSON.stringify(text)} failed json unmarshal: not an object`);
    return out;
  }
  for (const [k, x] of Object.entries(v)) {
    if (typeof x === 'string') out[k] = x;
    else if (x !== null) warn(`Env variable with value ${JSON.stringify(text)} failed json unmarshal: ${k} is not a string`);
  }
  return out;
}

const LOCALITY_LABEL = 'istio-locality';
const TOPOLOGY_LOCALITY_LABEL = 'topology.istio.io/locality';
const POD_TEMPLATE_HASH = 'pod-template-hash';

function localityFromLabel(label: string): Locality {
  const items = label.split('/');
  return { region: items[0] ?? '', zone: items[1] ?? '', subZone: items[2] ?? '' };
}

/** Builds the node: Istio's GetNodeMetaData. Throws NodeMetadataError where Istio fails. */
export function buildNode(input: NodeMetadataInput): NodeInfo {
  const warn = input.warn ?? (() => {});
  const raw: Record<string, GoJson> = {};
  for (const key of Object.keys(input.metaEnv).sort(compareUtf8)) raw[key.slice('ISTIO_META_'.length)] = input.metaEnv[key]!;
  for (const key of Object.keys(input.metaJsonEnv).sort(compareUtf8)) {
    const text = input.metaJsonEnv[key]!;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (err) {
      warn(`Env variable ${key.slice('ISTIO_METAJSON_'.length)} [${text}] failed json unmarshal: ${(err as Error).message}`);
      continue;
    }
    if (isJsonObject(v)) Object.assign(raw, v);
    else if (v !== null) warn(`Env variable ${key.slice('ISTIO_METAJSON_'.length)} [${text}] failed json unmarshal: not a JSON object`);
  }
  if (input.dnsProxyAddr) raw.DNS_PROXY_ADDR = input.dnsProxyAddr;

  const typed = decodeTyped(raw);
  if (typed.IstioVersion === '') typed.IstioVersion = input.istioVersion;
  typed.InstanceIPs = [...new Set(input.instanceIps)];
  if (input.stsPort !== 0) typed.StsPort = String(input.stsPort);
  typed.EnvoyStatusPort = input.envoyStatusPort;
  typed.EnvoyPrometheusPort = input.envoyPrometheusPort;
  typed.EnvoySecureMetricsPort = input.envoySecureMetricsPort;
  typed.EnvoySecureMergedMetricsPort = input.envoySecureMergedMetricsPort;
  typed.ExitOnZeroActiveConnections = input.exitOnZeroActiveConnections;
  typed.MetadataDiscovery = input.metadataDiscovery ?? null;
  typed.EnvoySkipDeprecatedLogs = input.envoySkipDeprecatedLogs;
  typed.WorkloadIdentitySocketFile = input.workloadIdentitySocketFile;
  typed.ProxyConfig = input.proxyConfig;

  // attributes from the pod's env (extractAttributesMetadata)
  const metaJsonLabels = input.metaJsonEnv.ISTIO_METAJSON_LABELS;
  if (metaJsonLabels !== undefined) {
    const m = jsonStringToMap(metaJsonLabels, warn);
    if (Object.keys(m).length > 0) {
      typed.Labels = m;
      typed.StaticLabels = m; // one map, as in Istio
    }
  }
  if (input.podName) typed.InstanceName = input.podName;
  if (input.podNamespace) typed.Namespace = input.podNamespace;
  if (input.serviceAccount) typed.ServiceAccount = input.serviceAccount;
  if (input.platformMetadata && Object.keys(input.platformMetadata).length > 0) typed.PlatformMetadata = { ...input.platformMetadata };

  // pod labels (static ones first, the downward-API file over them) and annotations
  if (input.podLabelsFileExists ?? Object.keys(input.podLabels).length > 0) {
    const labels: Record<string, string> = { ...(typed.StaticLabels ?? {}) };
    for (const [k, v] of Object.entries(input.podLabels)) if (k !== POD_TEMPLATE_HASH) labels[k] = v;
    typed.Labels = labels;
  }
  if (Object.keys(input.podAnnotations).length > 0) typed.Annotations = { ...(typed.Annotations ?? {}), ...input.podAnnotations };

  // locality: topology.istio.io/locality, else istio-locality (dots read as slashes), else the platform
  const labels: Record<string, string> = typed.Labels ?? {};
  const localityLabel = Object.prototype.hasOwnProperty.call(labels, TOPOLOGY_LOCALITY_LABEL) ? labels[TOPOLOGY_LOCALITY_LABEL]! : (labels[LOCALITY_LABEL] ?? '');
  let locality: Locality;
  if (localityLabel === '') locality = input.platformLocality ?? { region: '', zone: '', subZone: '' };
  else {
    const sanitized = localityLabel.includes('/') ? localityLabel : localityLabel.replaceAll('.', '/');
    labels[LOCALITY_LABEL] = sanitized; // in place: STATIC_LABELS may be the same map
    locality = localityFromLabel(sanitized);
  }

  typed.PilotSubjectAltName = [...input.pilotSubjectAltNames];
  typed.XDSRootCert = input.xdsRootCert;
  typed.OutlierLogPath = input.outlierLogPath;
  if (input.credentialSocketExists) raw.credential = 'true';
  if (input.customCredentialsFileExists) raw['file-credential'] = 'true';
  if (typed.MetadataDiscovery === null) typed.MetadataDiscovery = typed.EnableHBONE;

  return { id: input.id, locality, typed, raw };
}

/** The metadata as written into the Envoy bootstrap: typed fields plus the raw keys they lack. */
export function mergedMetadata(node: NodeInfo): Record<string, GoJson> {
  const out = encodeTyped(node.typed);
  for (const [k, v] of Object.entries(node.raw)) if (!(k in out)) out[k] = v;
  return out;
}

/** The typed metadata only (what the gRPC xDS bootstrap carries). */
export function typedMetadataJson(node: NodeInfo): Record<string, GoJson> {
  return encodeTyped(node.typed);
}

/** `.metadata` of the template data: the BootstrapNodeMetadata struct, Go field names. */
export function metadataGoView(node: NodeInfo): object {
  const fields: Record<string, unknown> = {};
  for (const [, go, kind] of FIELDS) {
    const v = node.typed[go];
    if (kind === 'proxyConfig') fields[go] = v ? proxyConfigGoView(v as ProxyConfigJson) : null;
    else if (kind === 'podPorts') fields[go] = Array.isArray(v) ? (v as PodPort[]).map((p) => goStruct('PodPort', { Name: p.name ?? '', ContainerPort: p.containerPort, Protocol: p.protocol })) : [];
    else if (kind === 'stringMap') fields[go] = v ?? {};
    else if (kind === 'stringSlice' || kind === 'stringList') fields[go] = v ?? [];
    else fields[go] = v;
  }
  fields.XDSRootCert = node.typed.XDSRootCert;
  fields.Raw = { ...node.raw };
  return goStruct('BootstrapNodeMetadata', fields);
}

// ---------------------------------------------------------------------------------------------
// service cluster (node.cluster)

const APP_LABELS_BACKWARD_COMPATIBLE = ['app', 'app.kubernetes.io/name', 'service.istio.io/canonical-name'];
const CANONICAL_NAME_LABELS = ['service.istio.io/canonical-name', 'app.kubernetes.io/name', 'app'];

function lookupLabel(labels: Readonly<Record<string, string>>, keys: readonly string[]): string | undefined {
  for (const k of keys) if (Object.prototype.hasOwnProperty.call(labels, k)) return labels[k];
  return undefined;
}

function serviceClusterOrDefault(name: string, typed: TypedMetadata): string {
  if (name !== '' && name !== 'istio-proxy') return name;
  const app = lookupLabel(typed.Labels ?? {}, APP_LABELS_BACKWARD_COMPATIBLE);
  if (app !== undefined) return `${app}.${typed.Namespace}`;
  if (typed.WorkloadName !== '') return `${typed.WorkloadName}.${typed.Namespace}`;
  if (typed.Namespace !== '') return `istio-proxy.${typed.Namespace}`;
  return 'istio-proxy';
}

/** node.cluster: ProxyConfig serviceCluster, or the tracingServiceName rule, with Istio's fallbacks. */
export function serviceCluster(node: NodeInfo, pc: ProxyConfigJson): string {
  const typed = node.typed;
  if (typeof pc.serviceCluster === 'string') return serviceClusterOrDefault(pc.serviceCluster, typed);
  const rule = pc.tracingServiceName as Json | undefined;
  if (rule === undefined || rule === null) return serviceClusterOrDefault('istio-proxy', typed);
  const workloadName = typed.WorkloadName || 'istio-proxy';
  const canonical = lookupLabel(typed.Labels ?? {}, CANONICAL_NAME_LABELS) ?? workloadName;
  switch (rule) {
    case 'CANONICAL_NAME_ONLY':
      return serviceClusterOrDefault(canonical, typed);
    case 'CANONICAL_NAME_AND_NAMESPACE':
      return typed.Namespace !== '' ? `${canonical}.${typed.Namespace}` : serviceClusterOrDefault(canonical, typed);
    default:
      return serviceClusterOrDefault('istio-proxy', typed);
  }
}

/** Istio's IP family checks over the instance IPs (unparsable addresses are skipped, as Istio does). */
export function ipFamilies(ips: readonly string[]): { allV4: boolean; allV6: boolean; firstFamily: 4 | 6 | undefined } {
  const fams = ips.map((ip) => ipFamily(ip));
  const first = ips[0];
  let firstFamily: 4 | 6 | undefined;
  if (first !== undefined && fams[0] !== 0) firstFamily = fams[0] === 6 && !/^fe[89ab][0-9a-f]:/i.test(first) ? 6 : 4;
  return { allV4: fams.every((f) => f !== 6), allV6: fams.every((f) => f !== 4), firstFamily };
}
