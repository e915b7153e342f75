// Every environment variable the agent reads is declared here, once, with its default and
// description (as istio/pkg/env does). `readEnvSettings` parses them all; nothing else in the agent
// touches process.env. A value that does not parse is warned about and the default used, as
// istio/pkg/env does: these values reach every pod of a mesh through proxyMetadata, where a typo
// must not stop every proxy. Only where Istio's agent also fails to start is a bad value an error.

import { formatGoDuration, parseGoDuration } from './duration.js';
import type { IssueList } from './errors.js';

type Parser<T> = (raw: string) => { ok: true; value: T } | { ok: false; message: string };

export interface EnvVar<T> {
  readonly name: string;
  readonly defaultValue: T;
  readonly description: string;
  readonly parse: Parser<T>;
  /** Why a bad value stops start-up (Istio's agent fails on it too); unset: warned, default used. */
  readonly fatal?: string;
}

const str: Parser<string> = (raw) => ({ ok: true, value: raw });

// Go's strconv.ParseBool, which Istio's env package uses.
const bool: Parser<boolean> = (raw) => {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw)) return { ok: true, value: true };
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(raw)) return { ok: true, value: false };
  return { ok: false, message: 'expected a boolean (true/false/1/0)' };
};

const int = (min = -Infinity, max = Infinity): Parser<number> => (raw) => {
  if (!/^[+-]?\d+$/.test(raw.trim())) return { ok: false, message: 'expected an integer' };
  const n = Number(raw.trim());
  if (n < min || n > max) return { ok: false, message: `expected an integer in [${min}, ${max}]` };
  return { ok: true, value: n };
};

const port: Parser<number> = int(0, 65535);

const float: Parser<number> = (raw) => {
  const n = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(n)) return { ok: false, message: 'expected a number' };
  return { ok: true, value: n };
};

/** Durations in Go syntax ("5s", "1h30m"), stored as milliseconds. */
const duration: Parser<number> = (raw) => {
  const ms = parseGoDuration(raw);
  if (ms === undefined) return { ok: false, message: 'expected a duration such as "5s", "100ms" or "1h30m"' };
  if (ms < 0) return { ok: false, message: 'duration must not be negative' };
  return { ok: true, value: ms };
};

/** A duration Istio takes negative, as 0 (time.Sleep of a negative duration returns at once). */
const durationNegativeAsZero: Parser<number> = (raw) => {
  const ms = parseGoDuration(raw);
  if (ms === undefined) return { ok: false, message: 'expected a duration such as "5s", "100ms" or "1h30m"' };
  return { ok: true, value: Math.max(0, ms) };
};

/** Go's GOMEMLIMIT syntax: a byte count with an optional B, KiB, MiB, GiB or TiB suffix, or "off"; in bytes, 0 for off. */
const goMemLimit: Parser<number> = (raw) => {
  if (raw.trim() === 'off') return { ok: true, value: 0 };
  const m = /^(\d+)(B|KiB|MiB|GiB|TiB)?$/.exec(raw.trim());
  if (!m) return { ok: false, message: 'expected a byte count with an optional B, KiB, MiB, GiB or TiB suffix (as Go reads it), or "off"' };
  const scale = { B: 1, KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 }[m[2] ?? 'B'] ?? 1;
  const value = Number(m[1]) * scale;
  if (!Number.isSafeInteger(value)) return { ok: false, message: 'too large' };
  return { ok: true, value };
};

const oneOf = <T extends string>(values: readonly T[], caseInsensitive = false): Parser<T> => (raw) => {
  const hit = values.find((v) => (caseInsensitive ? v.toLowerCase() === raw.toLowerCase() : v === raw));
  return hit !== undefined ? { ok: true, value: hit } : { ok: false, message: `expected one of ${values.map((v) => JSON.stringify(v)).join(', ')}` };
};

/**
 * A proxy as Go's http.ProxyFromEnvironment reads one: a URL, or `host[:port]` taken as http://
 * (net/http tries "http://" + the value when it has no scheme or host). http and https proxies
 * only: undici speaks no SOCKS on the guarded path.
 */
const proxyUrl: Parser<string> = (raw) => {
  const value = raw.trim();
  const parse = (v: string): URL | undefined => {
    try {
      const u = new URL(v);
      return u.host ? u : undefined;
    } catch {
      return undefined;
    }
  };
  // a value with a scheme must parse as it is (Go would retry it with http:// in front, making
  // `http://[bad` a proxy named "http"); host[:port] is taken as http://
  const u = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? parse(value) : parse(`http://${value}`);
  if (!u) return { ok: false, message: 'expected a proxy URL such as http://proxy.example:3128, or host:port' };
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return { ok: false, message: `proxy scheme ${u.protocol.replace(/:$/, '')} is not supported (http or https)` };
  return { ok: true, value: u.href.replace(/\/$/, '') };
};

function def<T>(name: string, defaultValue: T, parse: Parser<T>, description: string, fatal?: string): EnvVar<T> {
  return { name, defaultValue, parse, description, ...(fatal ? { fatal } : {}) };
}

/** Istio puts these in typed node metadata (a StringBool), whose JSON decoding fails its start. */
const TYPED_NODE_METADATA = 'typed node metadata: Istio fails to start on it too';

const HOUR = 3_600_000;

export const ENV = {
  // Pod identity (downward API)
  POD_NAME: def('POD_NAME', '', str, 'Name of the pod; with POD_NAMESPACE forms the proxy ID.'),
  POD_NAMESPACE: def('POD_NAMESPACE', '', str, 'Namespace of the pod.'),
  INSTANCE_IP: def('INSTANCE_IP', '', str, 'Pod IP; listed first among the proxy IPs.'),
  SERVICE_ACCOUNT: def('SERVICE_ACCOUNT', '', str, 'Name of the service account (workload identity).'),
  HOST_IP: def('HOST_IP', '', str, 'Node IP; substituted for $(HOST_IP) in ISTIO_BOOTSTRAP_OVERRIDE.'),
  ISTIO_META_CLUSTER_ID: def('ISTIO_META_CLUSTER_ID', '', str, 'Cluster ID sent to istiod and the CA as ClusterID metadata.'),
  ISTIO_CPU_LIMIT: def('ISTIO_CPU_LIMIT', 0, int(0, 2 ** 31 - 1), 'CPU limit of the container, rounded up; sets Envoy concurrency when ProxyConfig does not.'),
  PROXY_CONFIG: def('PROXY_CONFIG', '', str, 'ProxyConfig as YAML or JSON (set by the injector); overrides the mesh file defaultConfig.'),
  GOMEMLIMIT: def('GOMEMLIMIT', 0, goMemLimit, "The agent's memory limit, set by the injector from the container's limit (Go syntax, bytes); else the cgroup limit applies.", "the Go runtime of Istio's agent refuses to start on a malformed GOMEMLIMIT"),

  // Certificates and the CA
  TRUST_DOMAIN: def('TRUST_DOMAIN', 'cluster.local', str, 'Trust domain of SPIFFE identities.'),
  CA_ADDR: def('CA_ADDR', '', str, 'Address of the CA; defaults to discoveryAddress.'),
  CA_PROVIDER: def('CA_PROVIDER', 'Citadel', str, 'Name of the CA provider.'),
  PILOT_CERT_PROVIDER: def('PILOT_CERT_PROVIDER', 'istiod', str, 'Provider of the istiod certificate (istiod, kubernetes, custom, none).'),
  XDS_ROOT_CA: def('XDS_ROOT_CA', '', str, 'Root CA file for the xDS connection; "SYSTEM" for the OS bundle.'),
  CA_ROOT_CA: def('CA_ROOT_CA', '', str, 'Root CA file for the CA connection; "SYSTEM" for the OS bundle.'),
  ISTIOD_SAN: def('ISTIOD_SAN', '', str, 'Overrides the server name used to verify istiod.'),
  JWT_POLICY: def('JWT_POLICY', 'third-party-jwt', str, "The JWT validation policy; as in Istio every value uses the projected token ./var/run/secrets/tokens/istio-token (first-party-jwt is deprecated and logged)."),
  PROV_CERT: def('PROV_CERT', '', str, 'Directory of provisioned certificates (VMs).'),
  OUTPUT_CERTS: def('OUTPUT_CERTS', '', str, 'Directory where the key and certificates are written; empty to not write them.'),
  KUBERNETES_SERVICE_HOST: def('KUBERNETES_SERVICE_HOST', '', str, 'Set by Kubernetes in every pod; when set, OUTPUT_CERTS files are written 0644 (readable by the other containers of the pod), else 0600.'),
  FILE_MOUNTED_CERTS: def('FILE_MOUNTED_CERTS', false, bool, 'Use certificates mounted as files instead of the CA.'),
  SECRET_TTL: def('SECRET_TTL', 24 * HOUR, duration, 'Lifetime requested for workload certificates.'),
  SECRET_GRACE_PERIOD_RATIO: def('SECRET_GRACE_PERIOD_RATIO', 0.5, float, 'Fraction of the lifetime left when the certificate is rotated.'),
  SECRET_GRACE_PERIOD_RATIO_JITTER: def('SECRET_GRACE_PERIOD_RATIO_JITTER', 0.01, float, 'Random spread of the grace period ratio, to stagger renewals.'),
  WORKLOAD_RSA_KEY_SIZE: def('WORKLOAD_RSA_KEY_SIZE', 2048, int(2048, 16384), 'RSA key size for workload certificates.'),
  PKCS8_KEY: def('PKCS8_KEY', false, bool, 'Write private keys as PKCS#8 instead of PKCS#1.'),
  ECC_SIGNATURE_ALGORITHM: def('ECC_SIGNATURE_ALGORITHM', '', oneOf(['', 'ECDSA']), 'Set to ECDSA to use elliptic-curve keys.'),
  ECC_CURVE: def('ECC_CURVE', 'P256', oneOf(['P256', 'P384']), 'Elliptic curve used with ECDSA.'),
  ISTIO_META_CERT_SIGNER: def('ISTIO_META_CERT_SIGNER', '', str, 'Cert signer requested for the workload certificate.'),
  WORKLOAD_IDENTITY_SOCKET_FILE: def('WORKLOAD_IDENTITY_SOCKET_FILE', 'socket', str, 'File name of the workload SDS socket under ./var/run/secrets/workload-spiffe-uds; a server already answering there (e.g. SPIRE) serves the workload certificate, and a name other than "socket" must be such a server.'),
  PILOT_ENABLE_CA_CRL: def('PILOT_ENABLE_CA_CRL', true, bool, "Add the CA's revocation list (./var/run/secrets/istio/crl/ca-crl.pem, istiod's istio-ca-crl ConfigMap) to ROOTCA and file-root secrets; watched, and a file that does not parse never replaces a good list."),
  FILE_DEBOUNCE_DURATION: def('FILE_DEBOUNCE_DURATION', 100, duration, 'Delay before re-reading a changed certificate file.'),
  CREDENTIAL_FETCHER_TYPE: def('CREDENTIAL_FETCHER_TYPE', 'JWT', str, 'Type of credential fetcher.'),
  XDS_AUTH_PROVIDER: def('XDS_AUTH_PROVIDER', '', str, 'Provider for xDS auth; empty for none.'),

  // Bootstrap and Envoy
  ISTIO_BOOTSTRAP: def('ISTIO_BOOTSTRAP', '', str, 'Path of the Envoy bootstrap template to use.'),
  ISTIO_BOOTSTRAP_OVERRIDE: def('ISTIO_BOOTSTRAP_OVERRIDE', '', str, 'YAML/JSON file passed to Envoy as --config-yaml.'),
  ISTIO_DELTA_XDS: def('ISTIO_DELTA_XDS', true, bool, 'Use Delta xDS (DELTA_GRPC) between Envoy and the agent.'),
  ENVOY_STATUS_PORT: def('ENVOY_STATUS_PORT', 15021, port, 'Envoy health status port.'),
  ENVOY_PROMETHEUS_PORT: def('ENVOY_PROMETHEUS_PORT', 15090, port, 'Envoy Prometheus port.'),
  ENVOY_SECURE_METRICS_PORT: def('ENVOY_SECURE_METRICS_PORT', 0, port, 'Envoy mTLS metrics port (Envoy stats only).'),
  ENVOY_SECURE_MERGED_METRICS_PORT: def('ENVOY_SECURE_MERGED_METRICS_PORT', 0, port, 'Envoy mTLS merged metrics port.'),
  ISTIO_ENVOY_ENABLE_CORE_DUMP: def('ISTIO_ENVOY_ENABLE_CORE_DUMP', false, bool, 'Start Envoy with --enable-core-dump.'),
  ENVOY_SKIP_DEPRECATED_LOGS: def('ENVOY_SKIP_DEPRECATED_LOGS', true, bool, 'Start Envoy with --skip-deprecated-logs.'),
  COMPLIANCE_POLICY: def('COMPLIANCE_POLICY', '', str, "TLS compliance policy (fips-140-2, fips-140-3, pqc): versions, cipher suites and curves of the agent's TLS to istiod, the CA and Wasm registries, and Envoy's google_grpc ciphers; an unknown value is logged and restricts nothing, as in Istio."),
  MINIMUM_DRAIN_DURATION: def('MINIMUM_DRAIN_DURATION', 5000, durationNegativeAsZero, 'With EXIT_ON_ZERO_ACTIVE_CONNECTIONS: wait this long before polling active connections.'),
  EXIT_ON_ZERO_ACTIVE_CONNECTIONS: def('EXIT_ON_ZERO_ACTIVE_CONNECTIONS', false, bool, 'Stop Envoy as soon as inbound connections reach zero while draining.'),
  DISABLE_ENVOY: def('DISABLE_ENVOY', false, bool, 'Run every agent feature but Envoy (proxyless gRPC).'),
  GRPC_XDS_BOOTSTRAP: def('GRPC_XDS_BOOTSTRAP', './etc/istio/proxy/grpc-bootstrap.json', str, 'Where to write the gRPC xDS bootstrap for proxyless apps.'),
  PEER_METADATA_DISCOVERY: def('PEER_METADATA_DISCOVERY', false, bool, 'Enable the peer metadata discovery extension in Envoy.'),
  ISTIO_META_ENABLE_SELF_DISCOVERY: def('ISTIO_META_ENABLE_SELF_DISCOVERY', false, bool, 'Add a local_cluster to the bootstrap for zone-aware routing.', TYPED_NODE_METADATA),
  ISTIO_DUAL_STACK: def('ISTIO_DUAL_STACK', false, bool, 'Configure Envoy for dual-stack (IPv4 and IPv6) addresses.'),
  ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL: def('ENVOY_STATUS_PORT_ENABLE_PROXY_PROTOCOL', false, bool, 'Accept the PROXY protocol on the Envoy status port.'),
  HTTP_STRIP_FRAGMENT_FROM_PATH_UNSAFE_IF_DISABLED: def('HTTP_STRIP_FRAGMENT_FROM_PATH_UNSAFE_IF_DISABLED', true, bool, 'Strip URI fragments from request paths (Envoy runtime flag).'),
  CLOUD_PLATFORM: def('CLOUD_PLATFORM', '', str, 'Cloud platform (gcp, aws, azure, none); empty: GCP when GCP_METADATA is set. Only GCP static metadata is used: no cloud metadata server is queried.'),
  GCP_METADATA: def('GCP_METADATA', '', str, 'PROJECT_ID|PROJECT_NUMBER|CLUSTER_NAME|CLUSTER_LOCATION, put in the bootstrap as PLATFORM_METADATA.'),
  GCP_QUOTA_PROJECT: def('GCP_QUOTA_PROJECT', '', str, 'GCP quota project (PLATFORM_METADATA gcp_quota_project), with GCP_METADATA.'),
  GCP_ZONE: def('GCP_ZONE', '', str, "GCP zone of the workload: the bootstrap's locality when the pod has no locality label (else the zone in a GKE resolv.conf)."),
  PROXY_CONFIG_XDS_AGENT: def('PROXY_CONFIG_XDS_AGENT', false, bool, "Subscribe to istiod's ProxyConfig over xDS (istio.mesh.v1alpha1.ProxyConfig) and merge its caCertificatesPem into ROOTCA."),

  // xDS proxy
  GRPC_KEEPALIVE_INTERVAL: def('GRPC_KEEPALIVE_INTERVAL', 30_000, duration, 'HTTP/2 keepalive ping interval on the connections to istiod (at least 10 s, as grpc-go clamps it) and on the xDS socket (at least 1 s).'),
  GRPC_KEEPALIVE_TIMEOUT: def('GRPC_KEEPALIVE_TIMEOUT', 10_000, duration, 'How long a keepalive ping may go unanswered before the connection is closed (0: 20 s, as grpc-go).'),
  ISTIO_GPRC_MAXSTREAMS: def('ISTIO_GPRC_MAXSTREAMS', 100_000, int(1, 2 ** 31 - 1), 'Concurrent streams one client may open on the xDS socket (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).'),
  ISTIO_GPRC_MAXRECVMSGSIZE: def('ISTIO_GPRC_MAXRECVMSGSIZE', 64 * 1024 * 1024, int(1024), "Largest request message accepted from Envoy on the xDS socket, in bytes (Istio's default is gRPC's 4 MiB; 64 MiB here)."),

  PROXY_XDS_DEBUG_VIA_AGENT: def('PROXY_XDS_DEBUG_VIA_AGENT', true, bool, "Serve istiod's xDS debug API (istio.io/debug/*: syncz, config_dump) on localhost:PROXY_XDS_DEBUG_VIA_AGENT_PORT, asked over the agent's connection to istiod (Istio 1.10-1.24; removed in Istio 1.25)."),
  PROXY_XDS_DEBUG_VIA_AGENT_PORT: def('PROXY_XDS_DEBUG_VIA_AGENT_PORT', 15004, port, 'Port of the xDS debug API (loopback only; 0 picks a free port).'),

  PROXY_XDS_LAST_KNOWN_GOOD: def('PROXY_XDS_LAST_KNOWN_GOOD', false, bool, 'Save what Envoy ACKs (and the workload certificate) under ./var/lib/istio/data, and serve it when istiod or the CA is unreachable at start (not in Istio).'),
  PROXY_XDS_LAST_KNOWN_GOOD_MAX_BYTES: def('PROXY_XDS_LAST_KNOWN_GOOD_MAX_BYTES', 256 * 1024 * 1024, int(1024), 'Bound on the last-known-good xDS store, in bytes (not in Istio).'),

  // DNS proxy
  ISTIO_META_DNS_CAPTURE: def('ISTIO_META_DNS_CAPTURE', false, bool, 'Serve DNS on DNS_PROXY_ADDR for captured port-53 traffic.', TYPED_NODE_METADATA),
  ISTIO_META_ENABLE_DNS_SERVER: def('ISTIO_META_ENABLE_DNS_SERVER', false, bool, 'Serve DNS on DNS_PROXY_ADDR without capture (gateways).'),
  DNS_PROXY_ADDR: def('DNS_PROXY_ADDR', 'localhost:15053', str, 'Address of the DNS proxy.'),
  DNS_FORWARD_PARALLEL: def('DNS_FORWARD_PARALLEL', false, bool, 'Query all upstream nameservers at once.'),
  DNS_FORWARD_TIMEOUT: def('DNS_FORWARD_TIMEOUT', 5000, duration, 'Timeout of upstream DNS queries.'),

  // Wasm
  WASM_INSECURE_REGISTRIES: def('WASM_INSECURE_REGISTRIES', '', str, 'Comma-separated registries allowed over plain HTTP or unverified TLS; "*" for all.'),
  WASM_MODULE_EXPIRY: def('WASM_MODULE_EXPIRY', 24 * HOUR, duration, 'Cache expiry of an unused Wasm module.'),
  WASM_PURGE_INTERVAL: def('WASM_PURGE_INTERVAL', HOUR, duration, 'Interval between purges of expired Wasm modules.'),
  WASM_HTTP_REQUEST_TIMEOUT: def('WASM_HTTP_REQUEST_TIMEOUT', 15_000, duration, 'Timeout of one HTTP request fetching a Wasm module.'),
  WASM_HTTP_REQUEST_MAX_RETRIES: def('WASM_HTTP_REQUEST_MAX_RETRIES', 5, int(0, 100), 'Retries of a failed Wasm module HTTP fetch.'),
  ISTIO_WASM_MAX_BINARY_SIZE_BYTES: def('ISTIO_WASM_MAX_BINARY_SIZE_BYTES', 256 * 1024 * 1024, int(1), 'Largest Wasm module accepted.'),
  BLOCKED_CIDRS_IN_WASM_FETCH: def('BLOCKED_CIDRS_IN_WASM_FETCH', '', str, 'Comma-separated CIDRs that Wasm fetches must not dial.'),
  ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION: def('ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION', true, bool, 'Fetch remote Wasm modules named in ECDS and hand Envoy local files; false relays ECDS to Envoy unchanged.'),
  // Proxies for Wasm module and registry fetches, read as Go's http.ProxyFromEnvironment does (upper case first)
  HTTPS_PROXY: def('HTTPS_PROXY', '', proxyUrl, 'Proxy for https Wasm and registry fetches.'),
  https_proxy: def('https_proxy', '', proxyUrl, 'HTTPS_PROXY, when that is unset.'),
  HTTP_PROXY: def('HTTP_PROXY', '', proxyUrl, 'Proxy for plain http Wasm and registry fetches.'),
  http_proxy: def('http_proxy', '', proxyUrl, 'HTTP_PROXY, when that is unset.'),
  NO_PROXY: def('NO_PROXY', '', str, 'Hosts reached without the proxy: names (and their subdomains; .name: subdomains only), IPs, CIDRs, optional :port, or *.'),
  no_proxy: def('no_proxy', '', str, 'NO_PROXY, when that is unset.'),

  // Status port
  ISTIO_KUBE_APP_PROBERS: def('ISTIO_KUBE_APP_PROBERS', '', str, 'JSON of the app probes rewritten by the injector.'),
  ISTIO_PROMETHEUS_ANNOTATIONS: def('ISTIO_PROMETHEUS_ANNOTATIONS', '', str, 'JSON of the app metrics targets to merge.'),
  METRICS_LOCALHOST_ACCESS_ONLY: def('METRICS_LOCALHOST_ACCESS_ONLY', false, bool, 'Serve merged metrics to loopback callers only.'),
  PILOT_AGENT_MERGE_ENVOY_STATS: def('PILOT_AGENT_MERGE_ENVOY_STATS', true, bool, "Include Envoy's stats in the merged metrics."),
  ENABLE_PROBE_KEEPALIVE_CONNECTIONS: def('ENABLE_PROBE_KEEPALIVE_CONNECTIONS', false, bool, "Keep httpGet probe connections to the app open between probes (older Istio's behaviour; kubelet opens one per probe)."),
  ISTIO_ENABLE_HTTP2_PROBING: def('ISTIO_ENABLE_HTTP2_PROBING', true, bool, 'HTTPS httpGet probes offer HTTP/2 in ALPN and speak what the app picks, as the kubelet does.'),
  REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION: def('REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION', false, bool, "Send app probes to loopback instead of the pod IP (Istio's legacy behaviour)."),
} as const;

export type EnvName = keyof typeof ENV;
export type EnvSettings = { readonly [K in EnvName]: (typeof ENV)[K]['defaultValue'] extends infer D ? D extends boolean ? boolean : D extends number ? number : D extends string ? string : D : never };

/** Env vars forwarded by prefix: node metadata, JSON metadata, extra gRPC headers. */
export const ENV_PREFIXES = {
  ISTIO_META: 'ISTIO_META_',
  ISTIO_METAJSON: 'ISTIO_METAJSON_',
  XDS_HEADER: 'XDS_HEADER_',
  CA_HEADER: 'CA_HEADER_',
} as const;

/** Names of the declared variables that are set (non-empty): some Istio behaviour depends on "set at all". */
export function declaredEnvSet(env: Readonly<Record<string, string | undefined>>): ReadonlySet<EnvName> {
  return new Set((Object.keys(ENV) as EnvName[]).filter((n) => env[n] !== undefined && env[n] !== ''));
}

/** A default as a warning names it: what the variable would have to say to mean it. */
function shownDefault(v: EnvVar<unknown>): string {
  if (v.parse === duration || v.parse === durationNegativeAsZero) return formatGoDuration(v.defaultValue as number);
  return typeof v.defaultValue === 'string' ? JSON.stringify(v.defaultValue) : String(v.defaultValue);
}

/** Parses every declared variable: a bad value is an issue where Istio fails too, else a warning and the default. */
export function readEnvSettings(env: Readonly<Record<string, string | undefined>>, issues: IssueList, warn: (message: string) => void): EnvSettings {
  const out: Record<string, unknown> = {};
  for (const v of Object.values(ENV) as EnvVar<unknown>[]) {
    const raw = env[v.name];
    if (raw === undefined || raw === '') {
      out[v.name] = v.defaultValue;
      continue;
    }
    const parsed = v.parse(raw);
    if (parsed.ok) out[v.name] = parsed.value;
    else {
      if (v.fatal) issues.add(`env ${v.name}`, '', raw, `${parsed.message} (${v.fatal})`);
      else warn(`invalid environment variable value: env ${v.name}: ${parsed.message} (value: ${JSON.stringify(raw.length > 256 ? `${raw.slice(0, 256)}...` : raw)}); using the default, ${shownDefault(v)}`);
      out[v.name] = v.defaultValue;
    }
  }
  return Object.freeze(out) as EnvSettings;
}

/** Variables whose names start with `prefix`, prefix kept, in a frozen record. */
export function envWithPrefix(env: Readonly<Record<string, string | undefined>>, prefix: string): Readonly<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith(prefix) && v !== undefined) out[k] = v;
  return Object.freeze(out);
}
