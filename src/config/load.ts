// Turns flags + env + mesh file + PROXY_CONFIG + pod annotations + downward-API files into one
// frozen AgentConfig, with Istio's precedence (pilot/cmd/pilot-agent/config):
//   defaults -> mesh file defaultConfig -> PROXY_CONFIG -> proxy.istio.io/config annotation
//   -> concurrency (ISTIO_CPU_LIMIT, then the legacy --concurrency flag) -> annotation shortcuts.
// Every problem found on the way is collected and raised at once as a ConfigError.

import { existsSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { resolve } from 'node:path';
import { parseIstioYaml } from '../util/yaml.js';
import { declaredEnvSet, ENV, ENV_PREFIXES, envWithPrefix, readEnvSettings, type EnvName, type EnvSettings } from './env-vars.js';
import { IssueList } from './errors.js';
import { readDownwardApiFile } from './pod-info.js';
import {
  DEFAULT_PROXY_CONFIG,
  deepFreeze,
  durationMs,
  mergeProxyConfig,
  normalizeObject,
  parseProxyConfigOverlay,
  type ProxyConfigJson,
} from './proxy-config.js';
import { DEFAULT_PROXY_FLAGS, type ProxyFlags } from './proxy-flags.js';
import { validateProxyConfig } from './validate-proxy-config.js';
import { ipFamily } from '../util/ip.js';

/**
 * The node types `pilot-agent proxy` runs Envoy as (Istio's model.NodeType). Istio also accepts
 * ztunnel and agentgateway, which are not Envoy proxies and are not run by this agent.
 */
export const PROXY_TYPES = ['sidecar', 'router', 'waypoint'] as const;
export type ProxyType = (typeof PROXY_TYPES)[number];

export { DEFAULT_PROXY_FLAGS, type ProxyFlags } from './proxy-flags.js';

export interface NodeIdentity {
  /** POD_NAME.POD_NAMESPACE */
  readonly id: string;
  readonly podName: string;
  readonly podNamespace: string;
  /** INSTANCE_IP first, then the host's non-loopback, non-link-local addresses. */
  readonly ipAddresses: readonly string[];
  readonly dnsDomain: string;
  /** `<type>~<first IP>~<id>~<domain>`, the Envoy node ID. */
  readonly serviceNode: string;
  /** Every address is IPv6 (Envoy then gets --local-address-ip-version v6). */
  readonly ipv6: boolean;
  readonly dualStack: boolean;
}

export interface AgentPaths {
  readonly cwd: string;
  readonly configDir: string;
  readonly envoyBootstrap: string;
  readonly xdsSocket: string;
  readonly sdsSocket: string;
  /** '' when GRPC_XDS_BOOTSTRAP is set empty: no gRPC xDS bootstrap is written (Istio's check is `!= ""`). */
  readonly grpcBootstrap: string;
  readonly podLabels: string;
  readonly podAnnotations: string;
  readonly token: string;
}

export interface EnvoyLaunch {
  readonly binaryPath: string;
  /** 0 means "let Envoy decide" (flag omitted). */
  readonly concurrency: number;
  readonly logLevel: string;
  readonly componentLogLevel: string;
  readonly drainDurationSeconds: number;
  readonly terminationDrainMs: number;
  readonly minimumDrainMs: number;
  readonly exitOnZeroActiveConnections: boolean;
  readonly fileFlushIntervalMs: number;
  readonly fileFlushMinSizeKb: number;
  readonly skipDeprecatedLogs: boolean;
  readonly enableCoreDump: boolean;
  readonly bootstrapOverride: string;
  readonly adminPort: number;
}

export interface AgentConfig {
  readonly proxyType: ProxyType;
  readonly flags: ProxyFlags;
  readonly env: EnvSettings;
  /** Declared env vars that were set (non-empty), for behaviour that depends on "set at all". */
  readonly envSet: readonly EnvName[];
  readonly proxyConfig: ProxyConfigJson;
  /** ISTIO_META_* variables (prefix kept), including proxyMetadata's ISTIO_META_ entries. */
  readonly metaEnv: Readonly<Record<string, string>>;
  /** ISTIO_METAJSON_* variables (prefix kept). */
  readonly metaJsonEnv: Readonly<Record<string, string>>;
  /** XDS_HEADER_<K> -> K, sent on the upstream xDS stream. */
  readonly xdsHeaders: Readonly<Record<string, string>>;
  /** CA_HEADER_<K> -> K, sent on CSR calls. */
  readonly caHeaders: Readonly<Record<string, string>>;
  readonly podLabels: Readonly<Record<string, string>>;
  readonly podAnnotations: Readonly<Record<string, string>>;
  readonly node: NodeIdentity;
  readonly paths: AgentPaths;
  readonly envoy: EnvoyLaunch;
  /** Non-fatal findings (unknown ProxyConfig fields, ...), for the caller to log. */
  readonly warnings: readonly string[];
}

export interface LoadInput {
  readonly proxyType?: string;
  readonly flags?: Partial<ProxyFlags>;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Directory that Istio's relative paths (./etc/istio/...) resolve against; the process cwd by default. */
  readonly cwd?: string;
  /** Host interface addresses; read from the OS by default (tests pass their own). */
  readonly hostAddresses?: readonly string[];
}

const ANNOTATION_PROXY_CONFIG = 'proxy.istio.io/config';
const ANNOTATION_DISCOVERY_ADDRESS = 'sidecar.istio.io/discoveryAddress';
const ANNOTATION_STATUS_PORT = 'status.sidecar.istio.io/port';
const ANNOTATION_EXCLUDE_INTERFACES = 'traffic.sidecar.istio.io/excludeInterfaces';

function isLinkLocal(ip: string): boolean {
  return ip.startsWith('169.254.') || /^fe[89ab][0-9a-f]:/i.test(ip);
}

function hostAddresses(excludedInterfaces: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (excludedInterfaces.has(name)) continue;
    for (const a of addrs ?? []) {
      if (a.internal || isLinkLocal(a.address) || a.address === '0.0.0.0' || a.address === '::') continue;
      out.push(a.address.replace(/%.*$/, ''));
    }
  }
  return out;
}

export function loadAgentConfig(input: LoadInput): AgentConfig {
  const issues = new IssueList();
  const warnings: string[] = [];
  const warn = (m: string): void => void warnings.push(m);
  const cwd = input.cwd ?? process.cwd();
  const at = (p: string): string => resolve(cwd, p);
  const flags: ProxyFlags = Object.freeze({ ...DEFAULT_PROXY_FLAGS, ...input.flags });

  const proxyTypeRaw = input.proxyType ?? 'sidecar';
  const knownType = PROXY_TYPES.find((t) => t === proxyTypeRaw);
  if (!knownType) issues.add('argument', 'proxy type', proxyTypeRaw, `invalid proxy type (want ${PROXY_TYPES.join(', ')})`);
  const proxyType: ProxyType = knownType ?? 'sidecar';
  // a negative one is ignored, as Istio ignores any but a positive one
  if (!Number.isInteger(flags.concurrency)) issues.add('flag --concurrency', '', flags.concurrency, 'expected an integer');
  if (!Number.isInteger(flags.stsPort) || flags.stsPort < 0 || flags.stsPort > 65535) issues.add('flag --stsPort', '', flags.stsPort, 'expected a port in 0..65535');

  const env = readEnvSettings(input.env, issues, warn);

  const podLabelsPath = at('./etc/istio/pod/labels');
  const podAnnotationsPath = at('./etc/istio/pod/annotations');
  const podLabels = readDownwardApiFile(podLabelsPath, issues);
  const podAnnotations = readDownwardApiFile(podAnnotationsPath, issues);

  // 1. defaults, 2. mesh file defaultConfig
  let pc: ProxyConfigJson = DEFAULT_PROXY_CONFIG;
  const meshPath = at(flags.meshConfig);
  if (flags.meshConfig && existsSync(meshPath)) {
    const source = `file ${flags.meshConfig} (--meshConfig)`;
    try {
      const parsed = parseIstioYaml(readFileSync(meshPath, 'utf8'));
      if (parsed.repeatedKeys) warn(`${source}: a key is given more than once; the last value is used, as Istio does`);
      const mesh: unknown = parsed.value;
      if (mesh !== null && typeof mesh === 'object' && !Array.isArray(mesh)) {
        const dc = (mesh as Record<string, unknown>).defaultConfig;
        if (dc !== undefined && dc !== null) {
          if (typeof dc === 'object' && !Array.isArray(dc)) pc = mergeProxyConfig(pc, normalizeObject(dc as Record<string, unknown>, `${source} defaultConfig`, issues, warn));
          else issues.add(source, 'defaultConfig', dc, 'expected a ProxyConfig object');
        }
      } else if (mesh !== null && mesh !== undefined) {
        issues.add(source, '', String(mesh), 'expected a MeshConfig object');
      }
    } catch (err) {
      issues.add(source, '', '', `not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  // 3. PROXY_CONFIG, 4. annotation
  const proxyConfigEnv = input.env.PROXY_CONFIG ?? '';
  if (proxyConfigEnv.trim() !== '') pc = mergeProxyConfig(pc, parseProxyConfigOverlay(proxyConfigEnv, 'env PROXY_CONFIG', issues, warn));
  const annotationPc = podAnnotations[ANNOTATION_PROXY_CONFIG];
  if (annotationPc !== undefined && annotationPc.trim() !== '') {
    pc = mergeProxyConfig(pc, parseProxyConfigOverlay(annotationPc, `annotation ${ANNOTATION_PROXY_CONFIG}`, issues, warn));
  }

  const effective: Record<string, unknown> = { ...pc };
  // Concurrency: ProxyConfig, else the CPU limit, and the legacy flag above both.
  if (effective.concurrency === undefined && env.ISTIO_CPU_LIMIT !== 0) effective.concurrency = env.ISTIO_CPU_LIMIT;
  if (flags.concurrency > 0) {
    warn(`legacy --concurrency=${flags.concurrency} flag detected; prefer to use ProxyConfig`);
    effective.concurrency = flags.concurrency;
  }
  if (!('tracingServiceName' in effective) && !effective.serviceCluster) effective.serviceCluster = flags.serviceCluster;
  if (flags.templateFile && !effective.customConfigFile) effective.proxyBootstrapTemplatePath = flags.templateFile;
  // Annotation shortcuts win over everything (Istio's applyAnnotations).
  const discAnno = podAnnotations[ANNOTATION_DISCOVERY_ADDRESS];
  if (discAnno !== undefined) effective.discoveryAddress = discAnno;
  const statusAnno = podAnnotations[ANNOTATION_STATUS_PORT];
  if (statusAnno !== undefined) {
    // the injector accepts the port with spaces around it (its parsePort trims), so a pod may carry them
    if (/^\d+$/.test(statusAnno.trim())) effective.statusPort = Number(statusAnno.trim());
    else issues.add(`annotation ${ANNOTATION_STATUS_PORT}`, '', statusAnno, 'expected a port number');
  }
  const proxyConfig = deepFreeze(effective as ProxyConfigJson);
  validateProxyConfig(proxyConfig, 'ProxyConfig (effective)', issues, warn);

  // Node identity
  const podName = env.POD_NAME;
  const podNamespace = env.POD_NAMESPACE;
  const ips: string[] = [];
  if (env.INSTANCE_IP && ipFamily(env.INSTANCE_IP)) ips.push(env.INSTANCE_IP);
  else if (env.INSTANCE_IP) issues.add('env INSTANCE_IP', '', env.INSTANCE_IP, 'not an IP address');
  const excluded = new Set((podAnnotations[ANNOTATION_EXCLUDE_INTERFACES] ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  let hostIps = [...(input.hostAddresses ?? hostAddresses(excluded))];
  if (hostIps.length === 0) hostIps = ['127.0.0.1', '::1'];
  for (const ip of hostIps) if (!ips.includes(ip)) ips.push(ip);
  const id = `${podName}.${podNamespace}`;
  const dnsDomain = flags.domain || `${podNamespace}.svc.cluster.local`;
  const ipv6 = ips.every((ip) => ipFamily(ip) === 6);
  const dualStack = ips.some((ip) => ipFamily(ip) === 6) && ips.some((ip) => ipFamily(ip) === 4);
  const node: NodeIdentity = Object.freeze({
    id,
    podName,
    podNamespace,
    ipAddresses: Object.freeze(ips),
    dnsDomain,
    serviceNode: `${proxyType}~${ips[0]}~${id}~${dnsDomain}`,
    ipv6,
    dualStack,
  });

  const configDir = at(typeof proxyConfig.configPath === 'string' ? proxyConfig.configPath : './etc/istio/proxy');
  const paths: AgentPaths = Object.freeze({
    cwd,
    configDir,
    envoyBootstrap: resolve(configDir, 'envoy-rev.json'),
    xdsSocket: resolve(configDir, 'XDS'),
    sdsSocket: at(`./var/run/secrets/workload-spiffe-uds/${env.WORKLOAD_IDENTITY_SOCKET_FILE}`),
    // unlike other string variables (set-but-empty is unset here), an empty GRPC_XDS_BOOTSTRAP is
    // Istio's way to turn the gRPC bootstrap off
    grpcBootstrap: input.env.GRPC_XDS_BOOTSTRAP === '' ? '' : at(env.GRPC_XDS_BOOTSTRAP),
    podLabels: podLabelsPath,
    podAnnotations: podAnnotationsPath,
    token: at('./var/run/secrets/tokens/istio-token'),
  });

  const fileFlushMinSizeKb = typeof proxyConfig.fileFlushMinSizeKb === 'number' ? proxyConfig.fileFlushMinSizeKb : 0;
  const envoy: EnvoyLaunch = Object.freeze({
    binaryPath: String(proxyConfig.binaryPath ?? ''),
    concurrency: typeof proxyConfig.concurrency === 'number' ? proxyConfig.concurrency : 0,
    logLevel: flags.proxyLogLevel,
    componentLogLevel: flags.proxyComponentLogLevel,
    drainDurationSeconds: Math.floor(durationMs(proxyConfig, 'drainDuration', 45_000) / 1000),
    terminationDrainMs: durationMs(proxyConfig, 'terminationDrainDuration', 5000),
    minimumDrainMs: env.MINIMUM_DRAIN_DURATION,
    exitOnZeroActiveConnections: env.EXIT_ON_ZERO_ACTIVE_CONNECTIONS,
    fileFlushIntervalMs: durationMs(proxyConfig, 'fileFlushInterval', 1000),
    fileFlushMinSizeKb,
    skipDeprecatedLogs: env.ENVOY_SKIP_DEPRECATED_LOGS,
    enableCoreDump: env.ISTIO_ENVOY_ENABLE_CORE_DUMP,
    bootstrapOverride: env.ISTIO_BOOTSTRAP_OVERRIDE ? at(env.ISTIO_BOOTSTRAP_OVERRIDE) : '',
    adminPort: typeof proxyConfig.proxyAdminPort === 'number' ? proxyConfig.proxyAdminPort : 15000,
  });

  // proxyMetadata entries are environment for the proxy: ISTIO_META_ ones become node metadata,
  // with the process env winning (Istio reads proxyMetadata first, then os.Environ()).
  const metaEnv: Record<string, string> = {};
  const proxyMetadata = (proxyConfig.proxyMetadata ?? {}) as Record<string, string>;
  for (const [k, v] of Object.entries(proxyMetadata)) if (k.startsWith(ENV_PREFIXES.ISTIO_META)) metaEnv[k] = v;
  Object.assign(metaEnv, envWithPrefix(input.env, ENV_PREFIXES.ISTIO_META));
  for (const k of Object.keys(metaEnv)) if (k.startsWith(ENV_PREFIXES.ISTIO_METAJSON)) delete metaEnv[k];
  const stripPrefix = (prefix: string): Record<string, string> =>
    Object.fromEntries(Object.entries(envWithPrefix(input.env, prefix)).map(([k, v]) => [k.slice(prefix.length), v]));

  issues.throwIfAny(warnings);
  return deepFreeze({
    proxyType,
    flags,
    env,
    envSet: [...declaredEnvSet(input.env)],
    proxyConfig,
    metaEnv,
    metaJsonEnv: { ...envWithPrefix(input.env, ENV_PREFIXES.ISTIO_METAJSON) },
    xdsHeaders: stripPrefix(ENV_PREFIXES.XDS_HEADER),
    caHeaders: stripPrefix(ENV_PREFIXES.CA_HEADER),
    podLabels,
    podAnnotations,
    node,
    paths,
    envoy,
    warnings,
  });
}

/** For `--help`-style listings and docs: every env var with its default and description. */
export function describeEnv(): { name: string; default: unknown; description: string }[] {
  return Object.values(ENV).map((v) => ({ name: v.name, default: v.defaultValue, description: v.description }));
}

/**
 * The configuration as the agent starts with it: statsdUdpAddress resolved to an IP, as Istio's
 * ConstructProxyConfig does (statsd-address.ts; node:dns is loaded only when the field is set).
 */
export async function withResolvedAddresses(config: AgentConfig): Promise<AgentConfig> {
  if (!config.proxyConfig.statsdUdpAddress) return config;
  return (await import('./statsd-address.js')).withResolvedStatsd(config);
}
