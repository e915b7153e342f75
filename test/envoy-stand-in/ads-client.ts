// The stand-in's ADS client: what Envoy does with the bootstrap's `dynamic_resources.ads_config`
// (Istio: the `xds-grpc` cluster, a unix socket served by the agent's xDS proxy). One gRPC channel,
// one stream at a time, envoy.service.discovery.v3.AggregatedDiscoveryService/
// StreamAggregatedResources (api_type GRPC) or DeltaAggregatedResources (DELTA_GRPC), and Envoy's
// order of subscriptions:
//   - CDS (wildcard) first; the node goes on the stream's first request only
//     (set_node_on_first_message_only, as Istio's bootstrap sets);
//   - after a CDS response: EDS for the clusters of type EDS (eds_cluster_config.service_name, or
//     the cluster's name);
//   - once the first CDS response is handled (accepted or rejected: Envoy's cluster manager
//     initialises either way) and its EDS clusters have warmed: LDS (wildcard);
//   - after an LDS response: RDS for the route names HttpConnectionManager `rds` configs reference,
//     and ECDS for the names of filters configured through `config_discovery`.
// Every resource of every response is decoded strictly with the Envoy protos
// (test/support/envoy-protos.ts): the bytes must parse, every nested google.protobuf.Any must name a
// type of the Envoy API registry and parse too, and unknown fields are refused unless `strict` is
// off (then they are counted, as Envoy counts server.dynamic_unknown_fields). A few of Envoy's own
// checks are added: names are present and unique, the resource's type matches the response's, an
// ECDS config has a typed_config, and a Wasm filter's local code file exists and is a Wasm module.
// All good: ACK (SotW: version_info and nonce of the response; Delta: the nonce) and the resources
// replace what the client held. Anything wrong: NACK with error_detail (INTERNAL, Envoy's message
// naming the resource), nothing applied, the last accepted version kept.
// When the stream ends, it is reopened with backoff (500 ms doubling to 30 s, reset by a response)
// and every subscription is re-sent: SotW with the last accepted versions, Delta with
// initial_resource_versions. Timers are unref'd.
//
// Warming (warming.ts), as Envoy's init managers: an EDS cluster is warming until its
// ClusterLoadAssignment arrives, a listener until the RouteConfigurations (RDS) and
// TypedExtensionConfigs (ECDS) it uses arrive, each bounded by its ConfigSource's
// initial_fetch_timeout (default 15 s, 0 = for ever, Istio's choice). Envoy's cluster manager is
// initialised (LDS is subscribed) once the first CDS response is handled and its clusters have
// warmed; the server is initialised (workers start) once the first LDS response is handled and its
// listeners have warmed. CDS and LDS themselves are bounded by the bootstrap's cds_config /
// lds_config initial_fetch_timeout (options.initialFetchTimeoutMs).
//
// A test control, not Envoy: EDS, RDS and ECDS resources can be withheld (withhold(), release()):
// the response is ACKed as usual, but a withheld resource is kept aside as if it had not arrived
// (what Envoy held before stays) until it is released.
//
// Differences from Envoy, on purpose: a response is accepted or rejected as a whole (Envoy keeps the
// valid clusters/listeners of a partly bad CDS/LDS update); SDS secrets and DNS resolution do not
// hold warming.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { create, fromBinary, fromJson, toBinary, toJson, type JsonValue, type Message } from '@bufbuild/protobuf';
import { anyUnpack, type Any } from '@bufbuild/protobuf/wkt';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import { envoyRegistry, messageSchema } from '../support/envoy-protos.js';
import { initialFetchTimeoutMs, Warming, type Dependency, type DependencyType, type OwnerKind, type OwnerState } from './warming.js';

export const ADS_SOTW_METHOD = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
export const ADS_DELTA_METHOD = '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources';

/** The xDS types the stand-in subscribes to, by Envoy's short names. */
export const ADS_TYPE_URLS = {
  CDS: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  EDS: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  LDS: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RDS: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  ECDS: 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig',
} as const;

export type AdsType = keyof typeof ADS_TYPE_URLS;
const ADS_TYPES = Object.keys(ADS_TYPE_URLS) as AdsType[];
/** The types clusters and listeners warm on: the ones a test may withhold. */
export const WITHHOLDABLE_TYPES: readonly DependencyType[] = ['EDS', 'RDS', 'ECDS'];

const HCM_TYPE = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const VM_CONFIG_TYPE = 'envoy.extensions.wasm.v3.VmConfig';
/** envoy.config.cluster.v3.Cluster.DiscoveryType.EDS */
const CLUSTER_TYPE_EDS = 3;
/** Names listed per record-file event (the count is always given). */
const RECORD_NAMES_MAX = 1000;

export interface ClusterSummary {
  readonly name: string;
  /** alt_stat_name when set: Envoy names the cluster's stats after it. */
  readonly statName: string;
}

export interface ListenerSummary {
  readonly name: string;
  /** Stat prefix: stat_prefix when set, else the address with `:` as `_` (0.0.0.0_15006). */
  readonly prefix: string;
  /** host:port (or the pipe path). */
  readonly address: string;
  readonly direction: 'INBOUND' | 'OUTBOUND' | 'UNSPECIFIED';
}

/** One accepted (or rejected) response, as reported to the server and the record file. */
export interface AdsUpdate {
  readonly type: AdsType;
  readonly typeUrl: string;
  /** version_info (SotW) or system_version_info (Delta) of the response. */
  readonly version: string;
  readonly nonce: string;
  /** Names of the resources the response carried. */
  readonly names: readonly string[];
  /** Delta: names the response removed. */
  readonly removed?: readonly string[];
  /** Everything the client holds of the type after the update (accepted updates only). */
  readonly held: number;
  readonly ack: boolean;
  readonly reason?: string;
  /** The first response of the type since the client started. */
  readonly first: boolean;
  /** Unknown fields seen (accepted only with strict off). */
  readonly unknownFields: number;
  /** CDS: every cluster held after an accepted update. */
  readonly clusters?: readonly ClusterSummary[];
  /** LDS: every listener held after an accepted update. */
  readonly listeners?: readonly ListenerSummary[];
}

/** An initial fetch that timed out: CDS / LDS (no name) or a dependency clusters or listeners waited on. */
export interface InitFetchTimeout {
  readonly type: AdsType;
  readonly name?: string;
  /** The subscription's stats scope; Envoy counts `<statPrefix>init_fetch_timeout`. */
  readonly statPrefix: string;
  readonly timeoutMs: number;
  /** Clusters / listeners that stopped waiting. */
  readonly released: readonly { kind: OwnerKind; name: string }[];
}

export interface AdsClientEvents {
  onUpdate?(update: AdsUpdate): void;
  /** The first CDS response was handled and its clusters warmed (Envoy's cluster manager is initialised; LDS starts). */
  onClustersInitialized?(): void;
  /** The first LDS response was handled too and its listeners warmed: Envoy's init manager is done, workers start. */
  onInitialized?(): void;
  /** A cluster or listener started or finished warming, or went away (see warmingState()). */
  onWarmingChanged?(): void;
  onInitFetchTimeout?(timeout: InitFetchTimeout): void;
  /** Resources that arrived while withheld (kept aside), and withheld ones released. */
  onWithheld?(type: DependencyType, names: readonly string[]): void;
  onReleased?(type: DependencyType, names: readonly string[]): void;
  /** A stream was opened (1 for the first, then one per reconnect). */
  onStreamOpen?(stream: number): void;
  /** The stream ended; `types` were subscribed on it (Envoy counts update_failure for them). */
  onStreamClosed?(stream: number, reason: string, types: readonly AdsType[], retryInMs: number): void;
  log?(msg: string): void;
}

export interface AdsClientOptions {
  /** gRPC target, e.g. `unix:/abs/path/XDS` or `127.0.0.1:15010`. */
  readonly target: string;
  /** `GRPC` (state of the world) or `DELTA_GRPC` (incremental). */
  readonly apiType: 'GRPC' | 'DELTA_GRPC';
  /** The bootstrap's node, as canonical proto JSON. */
  readonly node?: Record<string, unknown>;
  /** Whether the bootstrap takes CDS / LDS over ADS (dynamic_resources.cds_config / lds_config). Default both. */
  readonly cds?: boolean;
  readonly lds?: boolean;
  /** Refuse unknown fields (default true); false accepts and counts them, as Envoy does. */
  readonly strict?: boolean;
  /** Reconnect backoff bounds (Envoy: 500 ms .. 30 s). */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  /** Directory relative Wasm file names are resolved against (Envoy's cwd). Default process.cwd(). */
  readonly cwd?: string;
  /**
   * initial_fetch_timeout of the bootstrap's cds_config / lds_config, in ms (0: wait for ever, as
   * Istio's bootstrap sets). Default 0 for both.
   */
  readonly initialFetchTimeoutMs?: { readonly cds?: number; readonly lds?: number };
  /** Withhold these from the start: `{ EDS: ['name'] }`, `'*'` for every name of the type. */
  readonly withhold?: Partial<Record<DependencyType, readonly string[]>>;
}

interface HeldResource {
  readonly name: string;
  /** Delta: the resource's version; SotW: the response's version_info. */
  readonly version: string;
  readonly message: Message;
  /** A digest of the resource's bytes: a changed cluster or listener warms again. */
  readonly fingerprint: string;
  /** ECDS only: proto3 JSON (proto field names), for tests checking rewritten Wasm file names. */
  readonly json?: JsonValue;
  /** LDS: route names its HttpConnectionManagers take from RDS, filter names configured through ECDS. */
  readonly rds?: readonly string[];
  readonly ecds?: readonly string[];
  /** CDS / LDS: what the cluster or listener warms on. */
  readonly dependencies?: readonly Dependency[];
}

interface TypeState {
  readonly type: AdsType;
  readonly typeUrl: string;
  readonly wildcard: boolean;
  /** Named subscriptions (non-wildcard types). */
  names: Set<string>;
  /** Whether the subscription was sent on the current stream. */
  sentOnStream: boolean;
  /** Delta: names as last sent on the current stream. */
  sentNames: Set<string>;
  /** Last accepted version_info (SotW) / system_version_info (Delta). */
  version: string;
  /** Last nonce received on the current stream. */
  nonce: string;
  held: Map<string, HeldResource>;
  responses: number;
  acks: number;
  nacks: number;
  lastNack?: { version: string; nonce: string; reason: string; at: string };
  lastUpdateAt?: string;
}

interface DecodedRequestFields {
  readonly typeUrl: string;
  readonly versionInfo?: string;
  readonly resourceNames?: readonly string[];
  readonly responseNonce?: string;
  readonly subscribe?: readonly string[];
  readonly unsubscribe?: readonly string[];
  readonly initialVersions?: Readonly<Record<string, string>>;
  readonly error?: string;
}

interface SotwResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: Any[];
}

interface DeltaResponse {
  systemVersionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: { name: string; version: string; resource?: Any }[];
  removedResources: string[];
}

/** Envoy's words for a resource of each type, in error messages. */
const KIND: Record<AdsType, string> = { CDS: 'cluster', EDS: 'cluster load assignment', LDS: 'listener', RDS: 'route configuration', ECDS: 'extension config' };

class ResourceError extends Error {
  constructor(
    readonly resource: string,
    message: string,
  ) {
    super(message);
  }
}

/** Field 1 is the name of every xDS resource type: read it off raw bytes that may not fully parse. */
function nameFromRawBytes(bytes: Uint8Array): string | undefined {
  try {
    const r = new BinaryReader(bytes);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no === 1 && wt === WireType.LengthDelimited) return r.string();
      r.skip(wt, no);
    }
  } catch {
    // broken bytes: no name found before the damage
  }
  return undefined;
}

function resourceName(type: AdsType, m: Record<string, unknown>): string {
  const n = type === 'EDS' ? m.clusterName : m.name;
  return typeof n === 'string' ? n : '';
}

interface WalkResult {
  unknownFields: string[];
  /** Route names taken from RDS, with what a listener warming on them waits for. */
  rdsNames: Map<string, Dependency>;
  /** Filter names configured through ECDS; no dependency when the default config applies without warming. */
  ecdsNames: Map<string, Dependency | undefined>;
  wasmCode: { path: string; specifier: string; value: unknown }[];
}

type ConfigSourceMsg = Parameters<typeof initialFetchTimeoutMs>[0];

/** Envoy's ECDS stats scope per filter kind (FilterConfigProviderManager statPrefix()), from where the filter sits. */
function ecdsStatKind(at: string): string {
  if (/httpFilters\[\d+\]$/.test(at)) return 'http_filter.';
  if (/listenerFilters\[\d+\]$/.test(at)) return 'tcp_listener_filter.';
  return 'network_filter.';
}

function joinPath(base: string, key: string): string {
  return base ? `${base}.${key}` : key;
}

/**
 * Walks a decoded message: unpacks every google.protobuf.Any through the registry (a type it does not
 * know, or bytes that do not parse, throw), and collects unknown fields, RDS names, ECDS names and
 * Wasm code sources.
 */
function walkMessage(m: Message, at: string, out: WalkResult, depth = 0): void {
  if (depth > 100) throw new Error(`${at}: message nesting too deep`);
  const rec = m as unknown as Record<string, unknown>;
  const typeName = m.$typeName;
  const unknown = rec.$unknown as { no: number }[] | undefined;
  if (unknown && unknown.length > 0) out.unknownFields.push(`${at || '<root>'} (${typeName}): field number(s) ${unknown.map((u) => u.no).join(', ')}`);
  if (typeName === 'google.protobuf.Any') {
    const any = m as unknown as Any;
    if (!any.typeUrl) return;
    let inner: Message | undefined;
    try {
      inner = anyUnpack(any, envoyRegistry());
    } catch (err) {
      throw new Error(`${at}: Unable to unpack as ${any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1)}: ${(err as Error).message}`, { cause: err });
    }
    if (!inner) throw new Error(`${at}: Didn't find a registered implementation for type URL '${any.typeUrl}'`);
    walkMessage(inner, `${at}<${inner.$typeName}>`, out, depth + 1);
    return;
  }
  if (typeName === HCM_TYPE) {
    const spec = rec.routeSpecifier as { case?: string; value?: { routeConfigName?: string; configSource?: ConfigSourceMsg } } | undefined;
    const route = spec?.case === 'rds' ? spec.value?.routeConfigName : undefined;
    // Envoy's RDS stats scope: http.<stat_prefix>.rds.<route_config_name>.
    if (route) out.rdsNames.set(route, { type: 'RDS', name: route, timeoutMs: initialFetchTimeoutMs(spec!.value!.configSource), statPrefix: `http.${String(rec.statPrefix ?? '')}.rds.${route}.` });
  }
  if (typeName === VM_CONFIG_TYPE) {
    const code = rec.code as { specifier?: { case?: string; value?: { specifier?: { case?: string; value?: unknown } } } } | undefined;
    const spec = code?.specifier;
    if (spec?.case === 'local' && spec.value?.specifier?.case) out.wasmCode.push({ path: joinPath(at, 'code.local'), specifier: spec.value.specifier.case, value: spec.value.specifier.value });
    else if (spec?.case === 'remote') out.wasmCode.push({ path: joinPath(at, 'code.remote'), specifier: 'remote', value: undefined });
  }
  for (const [key, value] of Object.entries(rec)) {
    if (key.startsWith('$')) continue;
    // `config_discovery` (ExtensionConfigSource) beside a `name`: usually a case of a filter's config_type oneof
    const discovery = (key === 'configDiscovery' ? value : key === 'configType' && (value as { case?: string })?.case === 'configDiscovery' ? (value as { value?: unknown }).value : undefined) as
      | { configSource?: ConfigSourceMsg; defaultConfig?: unknown; applyDefaultConfigWithoutWarming?: boolean }
      | undefined;
    if (discovery && typeof rec.name === 'string' && rec.name) {
      const name = rec.name;
      const warms = !(discovery.applyDefaultConfigWithoutWarming && discovery.defaultConfig);
      out.ecdsNames.set(name, warms ? { type: 'ECDS', name, timeoutMs: initialFetchTimeoutMs(discovery.configSource), statPrefix: `extension_config_discovery.${ecdsStatKind(at)}${name}.` } : undefined);
    }
    walkValue(value, joinPath(at, key), out, depth + 1);
  }
}

function walkValue(v: unknown, at: string, out: WalkResult, depth: number): void {
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) walkValue(v[i], `${at}[${i}]`, out, depth);
    return;
  }
  const o = v as Record<string, unknown>;
  if (typeof o.$typeName === 'string') {
    walkMessage(o as unknown as Message, at, out, depth);
    return;
  }
  const keys = Object.keys(o);
  if (keys.includes('case') && keys.every((k) => k === 'case' || k === 'value')) {
    // a oneof
    if (o.case !== undefined) walkValue(o.value, joinPath(at, String(o.case)), out, depth);
    return;
  }
  for (const [k, x] of Object.entries(o)) walkValue(x, `${at}[${JSON.stringify(k)}]`, out, depth); // a map
}

function checkWasmCode(code: WalkResult['wasmCode'][number], cwd: string): void {
  let bytes: Buffer;
  if (code.specifier === 'filename') {
    const file = path.resolve(cwd, String(code.value));
    try {
      bytes = fs.readFileSync(file);
    } catch (err) {
      throw new Error(`${code.path}: Failed to load Wasm code from ${String(code.value)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
  } else if (code.specifier === 'inlineBytes') {
    bytes = Buffer.from(code.value as Uint8Array);
  } else {
    return; // inline_string / environment_variable / remote: not checked
  }
  if (bytes.length < 8 || bytes.readUInt32BE(0) !== 0x0061736d) throw new Error(`${code.path}: Failed to load Wasm module: not a Wasm binary (bad magic number)`);
}

function listenerSummary(m: Record<string, unknown>): ListenerSummary {
  const name = String(m.name ?? '');
  const address = (m.address as { address?: { case?: string; value?: Record<string, unknown> } } | undefined)?.address;
  let display = '';
  let prefix = name;
  if (address?.case === 'socketAddress' && address.value) {
    const host = String(address.value.address ?? '');
    const port = (address.value.portSpecifier as { case?: string; value?: unknown } | undefined)?.value ?? 0;
    display = host.includes(':') ? `[${host}]:${String(port)}` : `${host}:${String(port)}`;
    prefix = display.replace(/:/g, '_');
  } else if (address?.case === 'pipe' && address.value) {
    display = String(address.value.path ?? '');
    prefix = display;
  }
  if (typeof m.statPrefix === 'string' && m.statPrefix) prefix = m.statPrefix;
  const td = m.trafficDirection;
  const direction = td === 1 ? 'INBOUND' : td === 2 ? 'OUTBOUND' : 'UNSPECIFIED';
  return { name, prefix, address: display, direction };
}

function clusterSummary(m: Record<string, unknown>): ClusterSummary {
  const name = String(m.name ?? '');
  return { name, statName: typeof m.altStatName === 'string' && m.altStatName ? m.altStatName : name };
}

/** An EDS cluster's wait for its ClusterLoadAssignment (service_name, else the cluster's name). */
function edsDependency(c: Record<string, unknown>): Dependency | undefined {
  const type = c.clusterDiscoveryType as { case?: string; value?: unknown } | undefined;
  if (type?.case !== 'type' || type.value !== CLUSTER_TYPE_EDS) return undefined;
  const eds = c.edsClusterConfig as { serviceName?: string; edsConfig?: ConfigSourceMsg } | undefined;
  const name = eds?.serviceName || String(c.name ?? '');
  // EDS subscriptions count their stats in the cluster's scope
  return { type: 'EDS', name, timeoutMs: initialFetchTimeoutMs(eds?.edsConfig), statPrefix: `cluster.${clusterSummary(c).statName}.` };
}

function capNames(names: readonly string[]): { names: string[]; truncated?: true } {
  return names.length > RECORD_NAMES_MAX ? { names: names.slice(0, RECORD_NAMES_MAX), truncated: true } : { names: [...names] };
}

export class AdsClient {
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  private closed = false;
  private stream = 0;
  private backoff: number;
  private timer: NodeJS.Timeout | undefined;
  private nodeSent = false;
  private readonly types = new Map<AdsType, TypeState>();
  /** Types in the order they were first subscribed (the order Envoy re-sends them after a reconnect). */
  private readonly order: AdsType[] = [];
  private clustersInitialized = false;
  private initialized = false;
  /** The first CDS / LDS fetch is over (a response handled, its initial fetch timed out, or the type is not taken over ADS). */
  private cdsFetched = false;
  private ldsFetched = false;
  private readonly initTimers: Partial<Record<'CDS' | 'LDS', NodeJS.Timeout>> = {};
  private readonly warming: Warming;
  /** Test control: names withheld per type ('*' = all), and the withheld resources that arrived. */
  private readonly withheld = new Map<DependencyType, Set<string>>();
  private readonly stash = new Map<DependencyType, Map<string, HeldResource>>();
  streamsOpened = 0;
  connected = false;
  acks = 0;
  nacks = 0;
  unknownFields = 0;
  lastStreamError: string | undefined;

  constructor(
    private readonly options: AdsClientOptions,
    private readonly events: AdsClientEvents = {},
  ) {
    this.backoff = options.backoffMs?.initial ?? 500;
    this.warming = new Warming({
      onTimeout: (d, released) => {
        this.events.log?.(`ADS ${d.type} ${d.name}: initial fetch timed out after ${d.timeoutMs}ms; ${released.map((r) => `${r.kind} ${r.name}`).join(', ')} no longer waiting`);
        this.events.onInitFetchTimeout?.({ type: d.type, name: d.name, statPrefix: d.statPrefix, timeoutMs: d.timeoutMs, released });
      },
      onChange: () => {
        this.events.onWarmingChanged?.();
        this.checkInit();
      },
    });
    for (const [type, names] of Object.entries(options.withhold ?? {}) as [DependencyType, readonly string[]][]) this.withhold(type, names);
  }

  get delta(): boolean {
    return this.options.apiType === 'DELTA_GRPC';
  }

  /** Whether the first CDS and LDS responses were handled and their clusters and listeners warmed. */
  get isInitialized(): boolean {
    return this.initialized;
  }

  start(): void {
    if (this.closed || this.call) return;
    if (this.types.size === 0) {
      if (this.options.cds !== false) {
        this.subscribe('CDS');
        this.startInitTimer('CDS');
      } else {
        queueMicrotask(() => this.fetchOver('CDS')); // no CDS over ADS: LDS right away (after the caller has us)
      }
    }
    this.client ??= new grpc.Client(this.options.target, grpc.credentials.createInsecure(), {
      'grpc.enable_channelz': 0,
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
    });
    const method = this.delta ? ADS_DELTA_METHOD : ADS_SOTW_METHOD;
    const call = this.client.makeBidiStreamRequest(method, (b: Buffer) => b, (b: Buffer) => b);
    this.call = call;
    this.nodeSent = false;
    const stream = ++this.streamsOpened;
    this.stream = stream;
    call.on('data', (buf: Buffer) => {
      if (this.call !== call) return;
      this.connected = true;
      this.backoff = this.options.backoffMs?.initial ?? 500;
      this.onResponse(buf);
    });
    call.on('error', (err: grpc.ServiceError) => this.onStreamEnd(call, `${grpc.status[err.code] ?? err.code}: ${err.details}`));
    call.on('end', () => this.onStreamEnd(call, 'stream ended'));
    for (const st of this.types.values()) {
      st.sentOnStream = false;
      st.nonce = '';
      st.sentNames = new Set();
    }
    this.events.onStreamOpen?.(stream);
    this.events.log?.(`ADS stream ${stream} (${this.delta ? 'delta' : 'sotw'}) to ${this.options.target}: subscribing to ${this.order.join(', ')}`);
    for (const t of this.order) this.sendSubscription(this.types.get(t)!);
  }

  private onStreamEnd(call: grpc.ClientDuplexStream<Buffer, Buffer>, why: string): void {
    if (this.call !== call) return;
    this.call = undefined;
    this.connected = false;
    this.lastStreamError = why;
    const types = this.order.filter((t) => this.types.get(t)?.sentOnStream);
    for (const st of this.types.values()) {
      st.sentOnStream = false;
      st.nonce = '';
    }
    if (this.closed) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.options.backoffMs?.max ?? 30_000);
    this.events.log?.(`ADS stream ${this.stream} closed (${why}); reconnecting in ${wait}ms`);
    this.events.onStreamClosed?.(this.stream, why, types, wait);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.start();
    }, wait);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const t of Object.values(this.initTimers)) clearTimeout(t);
    this.warming.close();
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.client?.close();
    this.client = undefined;
  }

  /** What the client holds, for GET /standin/xds. */
  snapshot(): Record<string, unknown> {
    const types: Record<string, unknown> = {};
    for (const t of ADS_TYPES) {
      const st = this.types.get(t);
      if (!st) continue;
      const held = [...st.held.values()];
      types[t] = {
        typeUrl: st.typeUrl,
        subscription: { wildcard: st.wildcard, names: [...st.names].sort() },
        version: st.version,
        nonce: st.nonce,
        resources: held.map((r) => r.name).sort(),
        responses: st.responses,
        acks: st.acks,
        nacks: st.nacks,
        ...(st.lastNack ? { lastNack: st.lastNack } : {}),
        ...(st.lastUpdateAt ? { lastUpdateAt: st.lastUpdateAt } : {}),
        ...(t === 'ECDS' ? { resourceJson: Object.fromEntries(held.map((r) => [r.name, r.json ?? null])) } : {}),
      };
    }
    const withheld: Record<string, unknown> = {};
    for (const t of WITHHOLDABLE_TYPES) {
      const rules = this.withheld.get(t);
      const pending = this.stash.get(t);
      if (rules?.size || pending?.size) withheld[t] = { names: [...(rules ?? [])].sort(), pending: [...(pending?.keys() ?? [])].sort() };
    }
    return {
      enabled: true,
      apiType: this.options.apiType,
      target: this.options.target,
      connected: this.connected,
      streamsOpened: this.streamsOpened,
      clustersInitialized: this.clustersInitialized,
      initialized: this.initialized,
      acks: this.acks,
      nacks: this.nacks,
      unknownFields: this.unknownFields,
      ...(this.lastStreamError ? { lastStreamError: this.lastStreamError } : {}),
      warming: { clusters: this.warming.summary('cluster'), listeners: this.warming.summary('listener') },
      withheld,
      types,
    };
  }

  /** Every dynamic cluster or listener: whether it is active (a version warmed) and what it waits for. */
  warmingState(kind: OwnerKind): OwnerState[] {
    return this.warming.state(kind);
  }

  // ----- test controls: withholding ---------------------------------------------------------

  /** Withholds these names of an EDS/RDS/ECDS type (`*`: all) from now on: they arrive, are ACKed, and are kept aside. */
  withhold(type: DependencyType, names: readonly string[]): void {
    if (!WITHHOLDABLE_TYPES.includes(type)) throw new Error(`cannot withhold ${String(type)}: only ${WITHHOLDABLE_TYPES.join(', ')} resources are waited on`);
    if (names.length === 0) throw new Error(`withhold ${type}: no names given (use "*" for all)`);
    let set = this.withheld.get(type);
    if (!set) this.withheld.set(type, (set = new Set()));
    for (const n of names) set.add(n);
  }

  /**
   * Stops withholding (a type's given names, a whole type, or everything when `type` is omitted) and
   * delivers the withheld resources that arrived, as if they arrived now. Returns them per type.
   */
  release(type?: DependencyType, names?: readonly string[]): Partial<Record<DependencyType, string[]>> {
    if (type !== undefined && !WITHHOLDABLE_TYPES.includes(type)) throw new Error(`cannot release ${String(type)}: only ${WITHHOLDABLE_TYPES.join(', ')} resources are withheld`);
    const out: Partial<Record<DependencyType, string[]>> = {};
    for (const t of type ? [type] : WITHHOLDABLE_TYPES) {
      const rules = this.withheld.get(t);
      if (names && names.length > 0) for (const n of names) rules?.delete(n);
      else rules?.clear();
      const pending = this.stash.get(t);
      const st = this.types.get(t);
      const delivered: string[] = [];
      for (const [name, r] of [...(pending ?? [])]) {
        if (this.isWithheld(t, name)) continue;
        pending!.delete(name);
        if (!st || (!st.wildcard && !st.names.has(name))) continue; // no longer subscribed
        st.held.set(name, r);
        delivered.push(name);
      }
      if (delivered.length === 0) continue;
      out[t] = delivered;
      this.events.onReleased?.(t, delivered);
      this.warming.fetchedNames(t, delivered);
    }
    return out;
  }

  private isWithheld(type: AdsType, name: string): boolean {
    const rules = this.withheld.get(type as DependencyType);
    return !!rules && (rules.has('*') || rules.has(name));
  }

  /** Takes the withheld resources out of an accepted update (keeping what was held before); returns their names. */
  private setAside(st: TypeState, next: Map<string, HeldResource>, names: readonly string[]): string[] {
    const type = st.type as DependencyType;
    if (!this.withheld.get(type)?.size) return [];
    const aside: string[] = [];
    for (const name of names) {
      const r = next.get(name);
      if (!r || !this.isWithheld(type, name)) continue;
      let pending = this.stash.get(type);
      if (!pending) this.stash.set(type, (pending = new Map()));
      pending.set(name, r);
      const before = st.held.get(name);
      if (before) next.set(name, before);
      else next.delete(name);
      aside.push(name);
    }
    if (aside.length > 0) this.events.onWithheld?.(type, aside);
    return aside;
  }

  /** Accepted resources of a type as proto3 JSON (proto field names). */
  resourcesJson(type: AdsType): { name: string; version: string; json: JsonValue }[] {
    const st = this.types.get(type);
    if (!st) return [];
    const schema = messageSchema(st.typeUrl);
    return [...st.held.values()].map((r) => ({ name: r.name, version: r.version, json: r.json ?? toJson(schema, r.message, { registry: envoyRegistry(), useProtoFieldName: true }) }));
  }

  // ----- subscriptions ----------------------------------------------------------------------

  private subscribe(type: AdsType): TypeState {
    let st = this.types.get(type);
    if (st) return st;
    st = {
      type,
      typeUrl: ADS_TYPE_URLS[type],
      wildcard: type === 'CDS' || type === 'LDS',
      names: new Set(),
      sentOnStream: false,
      sentNames: new Set(),
      version: '',
      nonce: '',
      held: new Map(),
      responses: 0,
      acks: 0,
      nacks: 0,
    };
    this.types.set(type, st);
    this.order.push(type);
    return st;
  }

  /** Sets the names of a named subscription (EDS, RDS, ECDS) and tells the server when they changed. */
  private setNames(type: AdsType, names: ReadonlySet<string>): void {
    const existing = this.types.get(type);
    if (!existing && names.size === 0) return;
    const st = existing ?? this.subscribe(type);
    const same = st.names.size === names.size && [...names].every((n) => st.names.has(n));
    if (same && st.sentOnStream) return;
    const dropped = [...st.names].filter((n) => !names.has(n));
    st.names = new Set(names);
    // resources no longer subscribed are dropped (SotW: the next response omits them anyway)
    for (const n of [...st.held.keys()]) if (!st.names.has(n)) st.held.delete(n);
    for (const n of dropped) this.stash.get(type as DependencyType)?.delete(n);
    this.warming.forget(type as DependencyType, dropped);
    if (!this.call) return; // sent when the stream opens
    this.sendSubscription(st);
  }

  /** The request that (re)states a subscription: initial on a new stream, a name change otherwise. */
  private sendSubscription(st: TypeState): void {
    if (!st.wildcard && st.names.size === 0 && !st.sentOnStream) return; // nothing to ask for yet
    if (this.delta) {
      if (!st.sentOnStream) {
        const initialVersions: Record<string, string> = {};
        for (const r of st.held.values()) initialVersions[r.name] = r.version;
        this.send({ typeUrl: st.typeUrl, subscribe: st.wildcard ? [] : [...st.names], initialVersions });
        st.sentNames = new Set(st.names);
      } else {
        const subscribe = [...st.names].filter((n) => !st.sentNames.has(n));
        const unsubscribe = [...st.sentNames].filter((n) => !st.names.has(n));
        if (subscribe.length === 0 && unsubscribe.length === 0) return;
        this.send({ typeUrl: st.typeUrl, subscribe, unsubscribe });
        st.sentNames = new Set(st.names);
      }
    } else {
      this.send({ typeUrl: st.typeUrl, versionInfo: st.version, resourceNames: st.wildcard ? [] : [...st.names], responseNonce: st.nonce });
    }
    st.sentOnStream = true;
  }

  private send(f: DecodedRequestFields): void {
    const call = this.call;
    if (!call) return;
    const registry = envoyRegistry();
    const init: Record<string, unknown> = { typeUrl: f.typeUrl };
    if (!this.nodeSent && this.options.node) {
      init.node = fromJson(messageSchema('envoy.config.core.v3.Node'), { ...this.options.node, user_agent_name: 'envoy' } as JsonValue, { registry, ignoreUnknownFields: true });
    }
    this.nodeSent = true;
    if (f.error !== undefined) init.errorDetail = create(messageSchema('google.rpc.Status'), { code: grpc.status.INTERNAL, message: f.error });
    let schemaName: string;
    if (this.delta) {
      schemaName = 'envoy.service.discovery.v3.DeltaDiscoveryRequest';
      init.responseNonce = f.responseNonce ?? '';
      init.resourceNamesSubscribe = [...(f.subscribe ?? [])];
      init.resourceNamesUnsubscribe = [...(f.unsubscribe ?? [])];
      init.initialResourceVersions = { ...(f.initialVersions ?? {}) };
    } else {
      schemaName = 'envoy.service.discovery.v3.DiscoveryRequest';
      init.versionInfo = f.versionInfo ?? '';
      init.resourceNames = [...(f.resourceNames ?? [])];
      init.responseNonce = f.responseNonce ?? '';
    }
    const schema = messageSchema(schemaName);
    call.write(Buffer.from(toBinary(schema, create(schema, init as never) as Message)));
  }

  // ----- responses --------------------------------------------------------------------------

  private onResponse(buf: Buffer): void {
    let typeUrl: string;
    let version: string;
    let nonce: string;
    let items: { name?: string; version?: string; any?: Any }[];
    let removed: string[] = [];
    try {
      if (this.delta) {
        const res = fromBinary(messageSchema('envoy.service.discovery.v3.DeltaDiscoveryResponse'), buf) as unknown as DeltaResponse;
        typeUrl = res.typeUrl;
        version = res.systemVersionInfo;
        nonce = res.nonce;
        items = res.resources.map((r) => ({ name: r.name, version: r.version, ...(r.resource ? { any: r.resource } : {}) }));
        removed = [...res.removedResources];
      } else {
        const res = fromBinary(messageSchema('envoy.service.discovery.v3.DiscoveryResponse'), buf) as unknown as SotwResponse;
        typeUrl = res.typeUrl;
        version = res.versionInfo;
        nonce = res.nonce;
        items = res.resources.map((any) => ({ any }));
      }
    } catch (err) {
      this.events.log?.(`ADS: a response that does not parse: ${(err as Error).message}`);
      return;
    }
    const type = ADS_TYPES.find((t) => ADS_TYPE_URLS[t] === typeUrl);
    const st = type && this.types.get(type);
    if (!type || !st) {
      this.events.log?.(`ADS: ignoring a response for ${typeUrl}: no subscription (as Envoy does)`);
      return;
    }
    st.nonce = nonce;
    st.responses++;
    const first = st.responses === 1;
    const names: string[] = [];
    let next: Map<string, HeldResource>;
    let unknownFields: string[];
    try {
      ({ next, unknownFields } = this.decode(st, version, items, removed, names));
    } catch (err) {
      const reason = err instanceof ResourceError ? `Error adding/updating ${KIND[type]}(s) ${err.resource}: ${err.message}` : (err as Error).message;
      this.nack(st, version, nonce, reason, names, removed, first);
      return;
    }
    const aside = this.setAside(st, next, names);
    st.held = next;
    st.version = version;
    st.acks++;
    this.acks++;
    st.lastUpdateAt = new Date().toISOString();
    this.unknownFields += unknownFields.length;
    for (const u of unknownFields) this.events.log?.(`ADS ${type}: unknown field accepted (strict off): ${u}`);
    // ACK first, then the subscriptions the update leads to (Envoy resumes EDS after the CDS ACK)
    if (this.delta) this.send({ typeUrl: st.typeUrl, responseNonce: nonce });
    else this.send({ typeUrl: st.typeUrl, versionInfo: version, resourceNames: st.wildcard ? [] : [...st.names], responseNonce: nonce });
    const held = [...next.values()];
    const update: AdsUpdate = {
      type,
      typeUrl,
      version,
      nonce,
      names,
      ...(this.delta ? { removed } : {}),
      held: next.size,
      ack: true,
      first,
      unknownFields: unknownFields.length,
      ...(type === 'CDS' ? { clusters: held.map((r) => clusterSummary(r.message as unknown as Record<string, unknown>)) } : {}),
      ...(type === 'LDS' ? { listeners: held.map((r) => listenerSummary(r.message as unknown as Record<string, unknown>)) } : {}),
    };
    this.events.onUpdate?.(update);
    this.afterUpdate(st, names, aside);
  }

  private nack(st: TypeState, version: string, nonce: string, reason: string, names: string[], removed: string[], first: boolean): void {
    st.nacks++;
    this.nacks++;
    st.lastNack = { version, nonce, reason, at: new Date().toISOString() };
    this.events.log?.(`ADS ${st.type}: rejecting version ${version}: ${reason}`);
    if (this.delta) this.send({ typeUrl: st.typeUrl, responseNonce: nonce, error: reason });
    else this.send({ typeUrl: st.typeUrl, versionInfo: st.version, resourceNames: st.wildcard ? [] : [...st.names], responseNonce: nonce, error: reason });
    this.events.onUpdate?.({ type: st.type, typeUrl: st.typeUrl, version, nonce, names, ...(this.delta ? { removed } : {}), held: st.held.size, ack: false, reason, first, unknownFields: 0 });
    // a rejected first update still ends the wait (Envoy's onConfigUpdateFailed: init goes on with a bad config)
    this.afterUpdate(st, names.filter((n) => !this.isWithheld(st.type, n)), [], false);
  }

  /** Envoy's follow-up subscriptions and init steps after a response of `st`'s type carrying `names`. */
  private afterUpdate(st: TypeState, names: readonly string[], aside: readonly string[], accepted = true): void {
    if (st.type === 'CDS') {
      if (accepted) {
        const eds = new Set<string>();
        for (const r of st.held.values()) for (const d of r.dependencies ?? []) eds.add(d.name);
        this.setNames('EDS', eds);
        this.warming.update('cluster', [...st.held.values()].map((r) => ({ name: r.name, fingerprint: r.fingerprint, dependencies: r.dependencies ?? [] })));
      }
      this.fetchOver('CDS');
    } else if (st.type === 'LDS') {
      if (accepted) {
        const rds = new Set<string>();
        const ecds = new Set<string>();
        for (const r of st.held.values()) {
          for (const n of r.rds ?? []) rds.add(n);
          for (const n of r.ecds ?? []) ecds.add(n);
        }
        this.setNames('RDS', rds);
        this.setNames('ECDS', ecds);
        this.warming.update('listener', [...st.held.values()].map((r) => ({ name: r.name, fingerprint: r.fingerprint, dependencies: r.dependencies ?? [] })));
      }
      this.fetchOver('LDS');
    } else {
      const skip = new Set(aside);
      this.warming.fetchedNames(st.type, names.filter((n) => !skip.has(n)));
    }
  }

  /** Envoy's initial fetch timeout of CDS / LDS (the bootstrap's cds_config / lds_config). */
  private startInitTimer(type: 'CDS' | 'LDS'): void {
    const ms = type === 'CDS' ? this.options.initialFetchTimeoutMs?.cds : this.options.initialFetchTimeoutMs?.lds;
    if (!ms || ms <= 0 || this.initTimers[type]) return;
    const t = setTimeout(() => {
      delete this.initTimers[type];
      if (type === 'CDS' ? this.cdsFetched : this.ldsFetched) return;
      const statPrefix = type === 'CDS' ? 'cluster_manager.cds.' : 'listener_manager.lds.';
      this.events.log?.(`ADS ${type}: initial fetch timed out after ${ms}ms; initialization goes on without it`);
      this.events.onInitFetchTimeout?.({ type, statPrefix, timeoutMs: ms, released: [] });
      this.fetchOver(type);
    }, ms);
    t.unref();
    this.initTimers[type] = t;
  }

  /** The first CDS / LDS fetch is over; initialization may move on. */
  private fetchOver(type: 'CDS' | 'LDS'): void {
    const timer = this.initTimers[type];
    if (timer) clearTimeout(timer);
    delete this.initTimers[type];
    if (type === 'CDS') this.cdsFetched = true;
    else this.ldsFetched = true;
    this.checkInit();
  }

  /** Envoy's init sequence: clusters (CDS, then their EDS) initialised, then LDS subscribed, then listeners (RDS, ECDS) warmed. */
  private checkInit(): void {
    if (!this.clustersInitialized && this.cdsFetched && this.warming.warmingCount('cluster') === 0) {
      this.clustersInitialized = true;
      this.events.onClustersInitialized?.();
      if (this.options.lds !== false) {
        const st = this.subscribe('LDS');
        if (this.call) this.sendSubscription(st);
        this.startInitTimer('LDS');
      } else {
        this.ldsFetched = true;
      }
    }
    if (this.clustersInitialized && !this.initialized && this.ldsFetched && this.warming.warmingCount('listener') === 0) {
      this.initialized = true;
      this.events.onInitialized?.();
    }
  }

  /** Decodes and checks every resource; returns what the client holds if the update is accepted. */
  private decode(
    st: TypeState,
    version: string,
    items: { name?: string; version?: string; any?: Any }[],
    removed: readonly string[],
    names: string[],
  ): { next: Map<string, HeldResource>; unknownFields: string[] } {
    const type = st.type;
    const schema = messageSchema(st.typeUrl);
    const strict = this.options.strict !== false;
    const cwd = this.options.cwd ?? process.cwd();
    const next = this.delta ? new Map(st.held) : new Map<string, HeldResource>();
    if (this.delta) for (const n of removed) next.delete(n);
    const seen = new Set<string>();
    const unknownFields: string[] = [];
    items.forEach((item, i) => {
      if (!item.any) {
        // Delta: a name without a resource (e.g. "does not exist" for a named subscription)
        if (item.name) next.delete(item.name);
        return;
      }
      const label = () => item.name || nameFromRawBytes(item.any!.value) || `#${i}`;
      names.push(label());
      if (item.any.typeUrl !== st.typeUrl) throw new ResourceError(label(), `type URL ${item.any.typeUrl} in a ${st.typeUrl} response`);
      let msg: Message;
      try {
        msg = fromBinary(schema, item.any.value);
      } catch (err) {
        throw new ResourceError(label(), `Unable to unpack as ${schema.typeName}: ${(err as Error).message}`);
      }
      const name = resourceName(type, msg as unknown as Record<string, unknown>);
      names[names.length - 1] = item.name || name || label();
      if (!name) throw new ResourceError(`#${i}`, `${schema.typeName} has no ${type === 'EDS' ? 'cluster_name' : 'name'}`);
      if (item.name && item.name !== name) throw new ResourceError(item.name, `the resource's name is ${JSON.stringify(name)}`);
      if (seen.has(name)) throw new ResourceError(name, `duplicate ${KIND[type]} ${name} found`);
      seen.add(name);
      const w: WalkResult = { unknownFields: [], rdsNames: new Map(), ecdsNames: new Map(), wasmCode: [] };
      try {
        walkMessage(msg, '', w);
      } catch (err) {
        throw new ResourceError(name, (err as Error).message);
      }
      if (w.unknownFields.length > 0 && strict) throw new ResourceError(name, `unknown field(s): ${w.unknownFields.join('; ')}`);
      unknownFields.push(...w.unknownFields.map((u) => `${name}: ${u}`));
      let json: JsonValue | undefined;
      if (type === 'ECDS') {
        const tc = (msg as unknown as { typedConfig?: Any }).typedConfig;
        if (!tc || !tc.typeUrl) throw new ResourceError(name, 'typed_config is required (proto validation: value is required)');
        for (const code of w.wasmCode) {
          try {
            checkWasmCode(code, cwd);
          } catch (err) {
            throw new ResourceError(name, (err as Error).message);
          }
        }
        json = toJson(schema, msg, { registry: envoyRegistry(), useProtoFieldName: true });
      }
      let dependencies: Dependency[] | undefined;
      if (type === 'CDS') {
        const eds = edsDependency(msg as unknown as Record<string, unknown>);
        dependencies = eds ? [eds] : [];
      } else if (type === 'LDS') {
        dependencies = [...w.rdsNames.values(), ...[...w.ecdsNames.values()].filter((d): d is Dependency => d !== undefined)];
      }
      next.set(name, {
        name,
        version: this.delta ? (item.version ?? '') : version,
        message: msg,
        fingerprint: createHash('sha1').update(item.any.value).digest('base64'),
        ...(json !== undefined ? { json } : {}),
        ...(type === 'LDS' ? { rds: [...w.rdsNames.keys()], ecds: [...w.ecdsNames.keys()] } : {}),
        ...(dependencies ? { dependencies } : {}),
      });
    });
    return { next, unknownFields };
  }
}

/** For record-file events: names capped at RECORD_NAMES_MAX. */
export function recordFields(u: AdsUpdate): Record<string, unknown> {
  const { names, truncated } = capNames(u.names);
  return {
    type: u.type,
    version: u.version,
    nonce: u.nonce,
    resources: names,
    count: u.names.length,
    ...(truncated ? { truncated } : {}),
    ...(u.removed && u.removed.length > 0 ? { removed: capNames(u.removed).names } : {}),
    ack: u.ack,
    ...(u.reason !== undefined ? { reason: u.reason } : {}),
  };
}
