// ProxyConfig (istio.mesh.v1alpha1.ProxyConfig) kept as its proto3 JSON form: camelCase keys,
// durations as "2s", enums as names. That is the shape Istio puts into the node metadata
// (PROXY_CONFIG) and hands to bootstrap templates, so keeping it avoids a second representation.
//
// The schema below is written from the public API docs. It validates types, normalises spellings
// (snake_case keys, numbers in strings, Go-style durations) and keeps fields it does not know
// (with a warning), as Istio's lenient parse does.

import { parseIstioYaml } from '../util/yaml.js';
import { formatProtoDuration, parseAnyDuration } from './duration.js';
import type { IssueList } from './errors.js';

export type Json = string | number | boolean | null | Json[] | { [k: string]: Json };
export type ProxyConfigJson = { readonly [k: string]: Json };

type Spec =
  | { kind: 'string' }
  | { kind: 'int'; min: number; max: number }
  | { kind: 'double' }
  | { kind: 'bool' }
  | { kind: 'duration'; readonly negativeOk?: true }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'strings' }
  | { kind: 'enums'; values: readonly string[] }
  | { kind: 'stringMap' }
  | { kind: 'message'; fields: Schema; oneofs?: readonly (readonly string[])[] }
  | { kind: 'messageMap'; value: Spec }
  | { kind: 'messages'; item: Spec }
  /** Structures the agent passes through without interpreting (kept as given, objects only). */
  | { kind: 'object' };

type Schema = { readonly [camelName: string]: Spec };

const S = { kind: 'string' } as const;
const B = { kind: 'bool' } as const;
const D = { kind: 'duration' } as const;
/** A duration Istio takes negative, as 0 (time.After of a negative duration returns at once). */
const D_NEGATIVE_AS_ZERO = { kind: 'duration', negativeOk: true } as const;
const F = { kind: 'double' } as const;
const O = { kind: 'object' } as const;
const STRS = { kind: 'strings' } as const;
const MAP = { kind: 'stringMap' } as const;
const I32 = { kind: 'int', min: -2147483648, max: 2147483647 } as const;
const U32 = { kind: 'int', min: 0, max: 4294967295 } as const;
const PORT = { kind: 'int', min: 0, max: 65535 } as const;
// google.protobuf wrappers: proto3 JSON spells them as the bare value
const BOOL_VALUE = B;
const INT32_VALUE = I32;
const msg = (fields: Schema, oneofs?: readonly (readonly string[])[]): Spec => ({ kind: 'message', fields, ...(oneofs ? { oneofs } : {}) });
const enumOf = (...values: string[]): Spec => ({ kind: 'enum', values });

/** istio.networking.v1alpha3.ReadinessProbe (a VM's WorkloadGroup probe; agent/workload-health.ts runs it). */
const READINESS_PROBE: Spec = msg(
  {
    initialDelaySeconds: I32,
    timeoutSeconds: I32,
    periodSeconds: I32,
    successThreshold: I32,
    failureThreshold: I32,
    httpGet: msg({ path: S, port: U32, host: S, scheme: S, httpHeaders: { kind: 'messages', item: msg({ name: S, value: S }) } }),
    tcpSocket: msg({ host: S, port: U32 }),
    exec: msg({ command: STRS }),
    grpc: msg({ port: U32, service: S }),
  },
  [['httpGet', 'tcpSocket', 'exec', 'grpc']],
);

const CLIENT_TLS: Spec = msg({
  mode: enumOf('DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'),
  clientCertificate: S,
  privateKey: S,
  caCertificates: S,
  credentialName: S,
  subjectAltNames: STRS,
  sni: S,
  insecureSkipVerify: BOOL_VALUE,
  caCrl: S,
});

const TCP_KEEPALIVE: Spec = msg({ probes: U32, time: D, interval: D });

const REMOTE_SERVICE: Spec = msg({ address: S, tlsSettings: CLIENT_TLS, tcpKeepalive: TCP_KEEPALIVE });

const CUSTOM_TAG: Spec = msg(
  {
    literal: msg({ value: S }),
    environment: msg({ name: S, defaultValue: S }),
    header: msg({ name: S, defaultValue: S }),
  },
  [['literal', 'environment', 'header']],
);

const TRACING: Spec = msg(
  {
    zipkin: msg({ address: S }),
    lightstep: msg({ address: S, accessToken: S }),
    datadog: msg({ address: S }),
    stackdriver: msg({ debug: B, maxNumberOfAttributes: O, maxNumberOfAnnotations: O, maxNumberOfMessageEvents: O }),
    openCensusAgent: msg({ address: S, context: { kind: 'enums', values: ['UNSPECIFIED', 'W3C_TRACE_CONTEXT', 'GRPC_BIN', 'CLOUD_TRACE_CONTEXT', 'B3'] } }),
    customTags: { kind: 'messageMap', value: CUSTOM_TAG },
    maxPathTagLength: U32,
    sampling: F,
    tlsSettings: CLIENT_TLS,
    enableIstioTags: BOOL_VALUE,
  },
  [['zipkin', 'lightstep', 'datadog', 'stackdriver', 'openCensusAgent']],
);

export const PROXY_CONFIG_SCHEMA: Schema = {
  configPath: S,
  binaryPath: S,
  serviceCluster: S,
  tracingServiceName: enumOf('APP_LABEL_AND_NAMESPACE', 'CANONICAL_NAME_ONLY', 'CANONICAL_NAME_AND_NAMESPACE'),
  drainDuration: D,
  parentShutdownDuration: D,
  discoveryAddress: S,
  discoveryRefreshDelay: D,
  zipkinAddress: S,
  statsdUdpAddress: S,
  envoyMetricsServiceAddress: S,
  proxyAdminPort: PORT,
  availabilityZone: S,
  controlPlaneAuthPolicy: enumOf('NONE', 'MUTUAL_TLS', 'INHERIT'),
  customConfigFile: S,
  statNameLength: I32,
  concurrency: INT32_VALUE,
  proxyBootstrapTemplatePath: S,
  interceptionMode: enumOf('REDIRECT', 'TPROXY', 'NONE'),
  tracing: TRACING,
  sds: msg({ enabled: B, k8sSaJwtPath: S }),
  envoyAccessLogService: REMOTE_SERVICE,
  envoyMetricsService: REMOTE_SERVICE,
  proxyMetadata: MAP,
  runtimeValues: MAP,
  statusPort: PORT,
  extraStatTags: STRS,
  gatewayTopology: O,
  terminationDrainDuration: D_NEGATIVE_AS_ZERO,
  meshId: S,
  readinessProbe: READINESS_PROBE,
  proxyStatsMatcher: msg({ inclusionPrefixes: STRS, inclusionSuffixes: STRS, inclusionRegexps: STRS }),
  holdApplicationUntilProxyStarts: BOOL_VALUE,
  caCertificatesPem: STRS,
  image: O,
  privateKeyProvider: O,
  proxyHeaders: O,
  fileFlushInterval: D,
  fileFlushMinSizeKb: U32,
  statsCompression: BOOL_VALUE,
  connectionSettings: O,
};

const ONEOFS: readonly (readonly string[])[] = [['serviceCluster', 'tracingServiceName']];

export const DEFAULT_PROXY_CONFIG: ProxyConfigJson = Object.freeze({
  configPath: './etc/istio/proxy',
  binaryPath: '/usr/local/bin/envoy',
  serviceCluster: 'istio-proxy',
  drainDuration: '45s',
  terminationDrainDuration: '5s',
  proxyAdminPort: 15000,
  controlPlaneAuthPolicy: 'MUTUAL_TLS',
  discoveryAddress: 'istiod.istio-system.svc:15012',
  statNameLength: 189,
  statusPort: 15020,
});

function camel(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

interface Ctx {
  source: string;
  issues: IssueList;
  warn: (msg: string) => void;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function normalizeValue(spec: Spec, value: unknown, path: string, ctx: Ctx): Json | undefined {
  const bad = (message: string): undefined => {
    ctx.issues.add(ctx.source, path, value, message);
    return undefined;
  };
  if (value === null) return undefined; // proto3 JSON: null means "unset"
  switch (spec.kind) {
    case 'string':
      return typeof value === 'string' ? value : bad('expected a string');
    case 'bool':
      if (typeof value === 'boolean') return value;
      if (value === 'true' || value === 'false') return value === 'true';
      return bad('expected true or false');
    case 'int': {
      const n = typeof value === 'string' && /^[+-]?\d+$/.test(value.trim()) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n)) return bad('expected an integer');
      if (n < spec.min || n > spec.max) return bad(`out of range [${spec.min}, ${spec.max}]`);
      return n;
    }
    case 'double': {
      const n = typeof value === 'string' ? Number(value) : value;
      return typeof n === 'number' && Number.isFinite(n) ? n : bad('expected a number');
    }
    case 'duration': {
      if (typeof value !== 'string') return bad('expected a duration string such as "5s"');
      const ms = parseAnyDuration(value);
      if (ms === undefined) return bad('expected a duration such as "5s" or "1.5s"');
      if (ms < 0 && !spec.negativeOk) return bad('duration must not be negative');
      return formatProtoDuration(ms);
    }
    case 'enum': {
      const name = typeof value === 'number' ? undefined : String(value);
      if (name !== undefined && spec.values.includes(name)) return name;
      if (typeof value === 'number') {
        // numeric enum values are valid proto3 JSON; the schema lists names in number order except INHERIT
        if (spec.values.includes('INHERIT') && value === 1000) return 'INHERIT';
        if (Number.isInteger(value) && value >= 0 && value < spec.values.length && spec.values[value] !== 'INHERIT') return spec.values[value]!;
      }
      return bad(`unknown value; expected one of ${spec.values.join(', ')}`);
    }
    case 'strings': {
      if (!Array.isArray(value)) return bad('expected a list of strings');
      const out: string[] = [];
      value.forEach((v, i) => {
        if (typeof v === 'string') out.push(v);
        else ctx.issues.add(ctx.source, `${path}[${i}]`, v, 'expected a string');
      });
      return out;
    }
    case 'enums': {
      if (!Array.isArray(value)) return bad('expected a list');
      const out: string[] = [];
      value.forEach((v, i) => {
        const n = normalizeValue({ kind: 'enum', values: spec.values }, v, `${path}[${i}]`, ctx);
        if (typeof n === 'string') out.push(n);
      });
      return out;
    }
    case 'stringMap': {
      if (!isObject(value)) return bad('expected a map of strings');
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(value)) {
        // Istio's YAML->JSON turns `FOO: on` or `MODE: 0755` into a boolean or a number, which its
        // JSON decoding refuses in a string map; so is it here, rather than passing on "true" or "493"
        if (typeof v === 'string') out[k] = v;
        else if (typeof v === 'number' || typeof v === 'boolean') ctx.issues.add(ctx.source, `${path}.${k}`, v, `expected a string value, not a ${typeof v} (YAML reads true/false, yes/no, on/off, y/n and numbers as such: quote the value); Istio refuses it too`);
        else ctx.issues.add(ctx.source, `${path}.${k}`, v, 'expected a string value');
      }
      return out;
    }
    case 'messages': {
      if (!Array.isArray(value)) return bad('expected a list');
      const out: Json[] = [];
      value.forEach((v, i) => {
        const n = normalizeValue(spec.item, v, `${path}[${i}]`, ctx);
        if (n !== undefined) out.push(n);
      });
      return out;
    }
    case 'messageMap': {
      if (!isObject(value)) return bad('expected a map');
      const out: Record<string, Json> = {};
      for (const [k, v] of Object.entries(value)) {
        const n = normalizeValue(spec.value, v, `${path}.${k}`, ctx);
        if (n !== undefined) out[k] = n;
      }
      return out;
    }
    case 'object':
      if (!isObject(value) && typeof value !== 'number') return bad('expected an object');
      // passed on as given, into the bootstrap and the logs: a structure no real ProxyConfig has
      // would only overflow the stack of whatever walks it later
      return depthOf(value) > MAX_OBJECT_DEPTH ? bad(`nested deeper than ${MAX_OBJECT_DEPTH} levels`) : (value as Json);
    case 'message':
      if (!isObject(value)) return bad('expected an object');
      return normalizeMessage(spec.fields, spec.oneofs ?? [], value, path, ctx);
  }
}

/** Deeper than any ProxyConfig structure the agent passes through (they are a few levels). */
const MAX_OBJECT_DEPTH = 32;

/** How deeply objects and arrays nest in `v`, counting up to just past MAX_OBJECT_DEPTH. */
function depthOf(v: unknown, depth = 0): number {
  if (typeof v !== 'object' || v === null) return depth;
  if (depth > MAX_OBJECT_DEPTH) return depth;
  let max = depth + 1;
  for (const child of Object.values(v)) max = Math.max(max, depthOf(child, depth + 1));
  return max;
}

function normalizeMessage(schema: Schema, oneofs: readonly (readonly string[])[], value: Record<string, unknown>, path: string, ctx: Ctx): { [k: string]: Json } {
  const out: { [k: string]: Json } = {};
  for (const [rawKey, v] of Object.entries(value)) {
    const key = camel(rawKey);
    const fieldPath = path ? `${path}.${key}` : key;
    const spec = schema[key];
    if (!spec) {
      // Istio decodes with AllowUnknownFields, which drops them: neither its effective config nor
      // the PROXY_CONFIG node metadata istiod reads carries them
      ctx.warn(`${ctx.source}: unknown ProxyConfig field "${fieldPath}" ignored`);
      continue;
    }
    const n = normalizeValue(spec, v, fieldPath, ctx);
    if (n !== undefined) out[key] = n;
  }
  for (const group of oneofs) {
    const set = group.filter((k) => k in out);
    if (set.length > 1) ctx.issues.add(ctx.source, path || set.join('/'), set.join(', '), `only one of ${group.join(', ')} may be set`);
  }
  return out;
}

/**
 * Parses a ProxyConfig overlay (YAML or JSON; JSON is YAML) into normalised proto3 JSON.
 * Problems are added to `issues` under `source`; the returned overlay holds only the good fields.
 */
export function parseProxyConfigOverlay(text: string, source: string, issues: IssueList, warn: (msg: string) => void): ProxyConfigJson {
  let doc: unknown;
  try {
    const parsed = parseIstioYaml(text);
    doc = parsed.value;
    if (parsed.repeatedKeys) warn(`${source}: a key is given more than once; the last value is used, as Istio does`);
  } catch (err) {
    issues.add(source, '', text.length > 200 ? `${text.slice(0, 200)}...` : text, `not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
    return {};
  }
  if (doc === null || doc === undefined) return {};
  if (!isObject(doc)) {
    issues.add(source, '', text, 'expected a ProxyConfig object');
    return {};
  }
  return normalizeObject(doc, source, issues, warn);
}

/** Normalises an already-decoded ProxyConfig object (e.g. `defaultConfig` of a mesh file). */
export function normalizeObject(doc: Record<string, unknown>, source: string, issues: IssueList, warn: (msg: string) => void): ProxyConfigJson {
  return normalizeMessage(PROXY_CONFIG_SCHEMA, ONEOFS, doc, '', { source, issues, warn });
}

/** proxyHeaders members an overlay leaves unset keep the base's (Istio's correctProxyHeaders); the others go with the overlay. */
const KEPT_PROXY_HEADERS = ['forwardedClientCert', 'requestId', 'attemptCount', 'server', 'envoyDebugHeaders'] as const;

/**
 * Istio's MergeProxyConfig: every field present in the overlay replaces the base field whole
 * (lists replaced, not appended), except proxyMetadata whose keys merge, overlay winning, and
 * proxyHeaders, whose five members above keep the base's when the overlay leaves them unset: a
 * pod annotation setting only `server` must not drop the mesh's forwardedClientCert (the XFCC
 * handling istiod builds from it).
 */
export function mergeProxyConfig(base: ProxyConfigJson, overlay: ProxyConfigJson): ProxyConfigJson {
  const out: Record<string, Json> = { ...base, ...overlay };
  if (isObject(base.proxyMetadata) && isObject(overlay.proxyMetadata)) {
    out.proxyMetadata = { ...(base.proxyMetadata as Record<string, Json>), ...(overlay.proxyMetadata as Record<string, Json>) };
  }
  if (isObject(base.proxyHeaders) && isObject(overlay.proxyHeaders)) {
    const was = base.proxyHeaders as Record<string, Json>;
    const headers: Record<string, Json> = { ...(overlay.proxyHeaders as Record<string, Json>) };
    // an enum at its zero value (UNDEFINED) is unset, as Go's NonEmptyOrDefault sees it
    for (const k of KEPT_PROXY_HEADERS) if ((headers[k] === undefined || headers[k] === 'UNDEFINED') && was[k] !== undefined) headers[k] = was[k];
    out.proxyHeaders = headers;
  }
  // the cluster-name oneof: setting one member clears the other
  if ('tracingServiceName' in overlay) delete out.serviceCluster;
  if ('serviceCluster' in overlay) delete out.tracingServiceName;
  return out;
}

export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v as object)) deepFreeze(x);
  }
  return v;
}

/** Milliseconds of a normalised proto3 JSON duration field, or `fallback` when unset. */
export function durationMs(pc: ProxyConfigJson, field: string, fallback: number): number {
  const v = pc[field];
  return typeof v === 'string' ? (parseAnyDuration(v) ?? fallback) : fallback;
}
