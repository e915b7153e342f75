// The seam where the stand-in's xDS clients will connect, like Envoy does, to the agent's xDS proxy
// and SDS server. Istio's bootstrap names them as static clusters with unix-socket endpoints:
//   xds-grpc: load_assignment...endpoint.address.pipe.path = ./etc/istio/proxy/XDS
//   sds-grpc: load_assignment...endpoint.address.pipe.path = ./var/run/secrets/workload-spiffe-uds/socket
// and dynamic_resources.ads_config (api_type GRPC or DELTA_GRPC) points at xds-grpc.
//
// ADS is implemented (ads-client.ts), behind ENVOY_STANDIN_ADS=1 so that tests without a control
// plane behind the agent are unaffected: the client dials the ADS cluster's pipe (relative paths
// against the stand-in's cwd, like Envoy) or socket address with @grpc/grpc-js (insecure, no message
// size limits), opens StreamAggregatedResources (api_type GRPC) or DeltaAggregatedResources
// (DELTA_GRPC), sends the bootstrap node on the first request, subscribes CDS, then EDS for EDS
// clusters, LDS after the first CDS response, then RDS and ECDS for what the listeners reference;
// parses every resource strictly with the Envoy protos and ACKs or NACKs; reconnects with backoff.
// Progress reaches the server through the hooks: onCdsUpdate/onLdsUpdate(success | rejected) drive
// cluster_manager.cds.* and listener_manager.lds.* stats, onClustersInitialized/onInitialized the
// PRE_INITIALIZING -> INITIALIZING -> LIVE transitions (the server's own init timer is then off),
// onWarmingChanged the active and warming clusters and listeners, onInitFetchTimeout the
// init_fetch_timeout counters. ENVOY_STANDIN_WITHHOLD (and POST /standin/xds/withhold|release) hold
// EDS/RDS/ECDS resources back from warming.
// Events go to ENVOY_STANDIN_RECORD ({"event":"ads",...}, {"event":"ads_stream",...}); what the
// client holds is served at GET /standin/xds.
// Without ENVOY_STANDIN_ADS=1, the ADS target is only logged and the server simulates xDS progress.
// Every stream keeps its 'error' listener and timers are unref()'d so the process can exit promptly.
//
// SDS is implemented (sds-client.ts), behind ENVOY_STANDIN_SDS=1 so that tests without an SDS server
// are unaffected: the client dials the sds-grpc pipe, subscribes to ENVOY_STANDIN_SDS_RESOURCES
// (default `default,ROOTCA`, what Istio's listeners and clusters reference), ACKs/NACKs, appends
// {"event":"sds",...} / {"event":"sds_nack",...} lines to ENVOY_STANDIN_RECORD and serves what it
// holds at GET /standin/secrets.

import { resolve } from 'node:path';
import { AdsClient, recordFields, type AdsUpdate, type ClusterSummary, type InitFetchTimeout, type ListenerSummary } from './ads-client.js';
import { Recorder } from './recorder.js';
import { SdsClient } from './sds-client.js';
import { DEFAULT_INITIAL_FETCH_TIMEOUT_MS, type DependencyType, type OwnerKind, type OwnerState } from './warming.js';

export interface GrpcTarget {
  /** The static cluster's name (xds-grpc, sds-grpc). */
  readonly cluster: string;
  /** Unix socket path from the cluster's pipe address (relative paths are relative to Envoy's cwd). */
  readonly pipePath?: string;
  /** host:port when the cluster uses a socket address instead. */
  readonly socketAddress?: string;
}

export interface XdsTargets {
  /** The ADS server (dynamic_resources.ads_config's cluster), normally xds-grpc. */
  readonly ads?: GrpcTarget & { readonly apiType: string };
  /** The SDS server (cluster sds-grpc), when the bootstrap defines it. */
  readonly sds?: GrpcTarget;
}

/** What an accepted CDS/LDS update leaves in place, for the server's stats and admin views. */
export interface XdsUpdateInfo {
  readonly version: string;
  /** Resources in the response. */
  readonly resources: number;
  /** CDS: every dynamic cluster now held. */
  readonly clusters?: readonly ClusterSummary[];
  /** LDS: every dynamic listener now held. */
  readonly listeners?: readonly ListenerSummary[];
}

export interface XdsHooks {
  onCdsUpdate(result: 'success' | 'rejected', info?: XdsUpdateInfo): void;
  onLdsUpdate(result: 'success' | 'rejected', info?: XdsUpdateInfo): void;
  /** The ADS stream failed while CDS / LDS were subscribed (Envoy counts update_failure). */
  onXdsStreamFailure?(types: readonly ('cds' | 'lds')[]): void;
  /** The first CDS response was handled: Envoy's cluster manager is initialised (INITIALIZING). */
  onClustersInitialized?(): void;
  /** The first CDS and LDS responses were handled and their clusters and listeners warmed: workers start (LIVE). */
  onInitialized?(): void;
  /** A dynamic cluster or listener started or finished warming (read XdsConnections.warmingState). */
  onWarmingChanged?(): void;
  onInitFetchTimeout?(timeout: InitFetchTimeout): void;
  log(msg: string): void;
}

export interface XdsConnections {
  /** Whether the ADS client runs (ENVOY_STANDIN_ADS=1 and an ADS target): xDS progress is real, not simulated. */
  readonly active: boolean;
  /** What the SDS client holds, for GET /standin/secrets (absent when SDS is off). */
  secrets?(): unknown;
  /** What the ADS client holds, for GET /standin/xds (absent when ADS is off). */
  xds?(): unknown;
  /** Dynamic clusters / listeners and their warming (absent when ADS is off). */
  warmingState?(kind: OwnerKind): OwnerState[];
  /** Test controls (absent when ADS is off): see AdsClient.withhold / release. */
  withhold?(type: DependencyType, names: readonly string[]): void;
  release?(type?: DependencyType, names?: readonly string[]): Partial<Record<DependencyType, string[]>>;
  close(): void;
}

type Json = Record<string, unknown>;

function obj(v: unknown): Json | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}

function firstEndpointAddress(cluster: Json): Json | undefined {
  const endpoints = obj(cluster.load_assignment)?.endpoints;
  if (!Array.isArray(endpoints)) return undefined;
  for (const e of endpoints) {
    const lbs = obj(e)?.lb_endpoints;
    if (!Array.isArray(lbs)) continue;
    for (const lb of lbs) {
      const address = obj(obj(obj(lb)?.endpoint)?.address);
      if (address) return address;
    }
  }
  return undefined;
}

function targetFor(clusters: Json[], name: string): GrpcTarget | undefined {
  const cluster = clusters.find((c) => c.name === name);
  if (!cluster) return undefined;
  const address = firstEndpointAddress(cluster);
  const pipe = obj(address?.pipe);
  if (pipe && typeof pipe.path === 'string') return { cluster: name, pipePath: pipe.path };
  const sock = obj(address?.socket_address);
  if (sock) return { cluster: name, socketAddress: `${String(sock.address)}:${String(sock.port_value ?? 0)}` };
  return { cluster: name };
}

/** The bootstrap's node (sent on each stream's first request), kept beside the targets found in it. */
const bootstrapNodes = new WeakMap<XdsTargets, Json>();
/** Whether the bootstrap takes CDS / LDS over ADS, and their initial_fetch_timeout (ms), kept beside the targets. */
const adsResources = new WeakMap<XdsTargets, { cds: boolean; lds: boolean; cdsTimeoutMs: number; ldsTimeoutMs: number }>();

/** A ConfigSource's initial_fetch_timeout in canonical JSON (`"0s"`, `"1.500s"`), in ms; Envoy's 15 s when absent. */
function jsonFetchTimeoutMs(configSource: Json | undefined): number {
  const raw = configSource?.initial_fetch_timeout;
  const m = typeof raw === 'string' ? /^(\d+(?:\.\d+)?)s$/.exec(raw) : null;
  return m ? Math.round(Number(m[1]) * 1000) : DEFAULT_INITIAL_FETCH_TIMEOUT_MS;
}

/** Finds the ADS and SDS servers named by a bootstrap (canonical proto-name JSON). */
export function findXdsTargets(bootstrap: Json): XdsTargets {
  const clusters = (obj(bootstrap.static_resources)?.clusters as Json[] | undefined) ?? [];
  const ads = obj(obj(bootstrap.dynamic_resources)?.ads_config);
  let adsTarget: XdsTargets['ads'];
  const services = ads?.grpc_services;
  if (Array.isArray(services)) {
    const clusterName = obj(obj(services[0])?.envoy_grpc)?.cluster_name;
    if (typeof clusterName === 'string') {
      const t = targetFor(clusters, clusterName);
      if (t) adsTarget = { ...t, apiType: String(ads?.api_type ?? 'GRPC') };
    }
  }
  const sds = targetFor(clusters, 'sds-grpc');
  const targets: XdsTargets = { ...(adsTarget ? { ads: adsTarget } : {}), ...(sds ? { sds } : {}) };
  const node = obj(bootstrap.node);
  if (node) bootstrapNodes.set(targets, node);
  const dynamic = obj(bootstrap.dynamic_resources);
  const cds = obj(dynamic?.cds_config);
  const lds = obj(dynamic?.lds_config);
  adsResources.set(targets, { cds: !!obj(cds?.ads), lds: !!obj(lds?.ads), cdsTimeoutMs: jsonFetchTimeoutMs(cds), ldsTimeoutMs: jsonFetchTimeoutMs(lds) });
  return targets;
}

/** Starts the SDS client when ENVOY_STANDIN_SDS=1 and the bootstrap has an sds-grpc pipe. */
function connectSds(targets: XdsTargets, hooks: XdsHooks, env: NodeJS.ProcessEnv): SdsClient | undefined {
  const sds = targets.sds;
  if (!sds || env.ENVOY_STANDIN_SDS !== '1') return undefined;
  if (!sds.pipePath) {
    hooks.log(`SDS target ${sds.cluster} at ${sds.socketAddress ?? '?'}: only pipe addresses are supported by the stand-in`);
    return undefined;
  }
  const names = (env.ENVOY_STANDIN_SDS_RESOURCES || 'default,ROOTCA').split(',').map((n) => n.trim()).filter(Boolean);
  const recorder = new Recorder(env.ENVOY_STANDIN_RECORD);
  const socket = resolve(process.cwd(), sds.pipePath); // Envoy resolves pipe paths against its cwd
  const node = bootstrapNodes.get(targets);
  const client = new SdsClient(
    { target: `unix:${socket}`, resourceNames: names, ...(node ? { node } : {}) },
    {
      onSecret: (s) =>
        recorder.record({
          event: 'sds',
          name: s.name,
          version: s.version,
          kind: s.kind,
          ...(s.certChainPem !== undefined ? { certChainPem: s.certChainPem, privateKeySha256: s.privateKeySha256 } : {}),
          ...(s.trustedCaPem !== undefined ? { trustedCaPem: s.trustedCaPem } : {}),
          ...(s.crlPem !== undefined ? { crlPem: s.crlPem } : {}),
        }),
      onNack: (version, nonce, reason) => recorder.record({ event: 'sds_nack', version, nonce, reason }),
      log: (m) => hooks.log(m),
    },
  );
  hooks.log(`SDS target ${sds.cluster} at ${socket}: subscribing to ${names.join(', ')}`);
  client.start();
  return client;
}

/** Starts the ADS client when ENVOY_STANDIN_ADS=1 and the bootstrap has an ADS target. */
function connectAds(targets: XdsTargets, hooks: XdsHooks, env: NodeJS.ProcessEnv, withhold: Partial<Record<DependencyType, readonly string[]>>): AdsClient | undefined {
  const ads = targets.ads;
  if (!ads || env.ENVOY_STANDIN_ADS !== '1') return undefined;
  let target: string;
  if (ads.pipePath) target = `unix:${resolve(process.cwd(), ads.pipePath)}`; // Envoy resolves pipe paths against its cwd
  else if (ads.socketAddress) target = ads.socketAddress;
  else {
    hooks.log(`ADS target ${ads.cluster}: the cluster has no endpoint address; not connecting`);
    return undefined;
  }
  if (ads.apiType !== 'GRPC' && ads.apiType !== 'DELTA_GRPC') {
    hooks.log(`ADS target ${ads.cluster}: api_type ${ads.apiType} is not supported by the stand-in (GRPC, DELTA_GRPC); not connecting`);
    return undefined;
  }
  const recorder = new Recorder(env.ENVOY_STANDIN_RECORD);
  const node = bootstrapNodes.get(targets);
  const uses = adsResources.get(targets) ?? { cds: true, lds: true, cdsTimeoutMs: 0, ldsTimeoutMs: 0 };
  const info = (u: AdsUpdate): XdsUpdateInfo => ({
    version: u.version,
    resources: u.names.length,
    ...(u.clusters ? { clusters: u.clusters } : {}),
    ...(u.listeners ? { listeners: u.listeners } : {}),
  });
  const client = new AdsClient(
    {
      target,
      apiType: ads.apiType,
      ...(node ? { node } : {}),
      cds: uses.cds,
      lds: uses.lds,
      initialFetchTimeoutMs: { cds: uses.cdsTimeoutMs, lds: uses.ldsTimeoutMs },
      withhold,
      strict: env.ENVOY_STANDIN_STRICT !== '0' && env.ENVOY_STANDIN_STRICT !== 'false' && env.ENVOY_STANDIN_STRICT !== 'no',
    },
    {
      onUpdate: (u) => {
        recorder.record({ event: 'ads', ...recordFields(u) });
        if (u.type === 'CDS') hooks.onCdsUpdate(u.ack ? 'success' : 'rejected', info(u));
        else if (u.type === 'LDS') hooks.onLdsUpdate(u.ack ? 'success' : 'rejected', info(u));
      },
      onClustersInitialized: () => hooks.onClustersInitialized?.(),
      onInitialized: () => hooks.onInitialized?.(),
      onWarmingChanged: () => hooks.onWarmingChanged?.(),
      onInitFetchTimeout: (t) => hooks.onInitFetchTimeout?.(t),
      onWithheld: (type, names) => recorder.record({ event: 'ads_withheld', type, resources: names }),
      onReleased: (type, names) => recorder.record({ event: 'ads_released', type, resources: names }),
      onStreamOpen: (stream) => recorder.record({ event: 'ads_stream', stream, state: 'open' }),
      onStreamClosed: (stream, reason, types, retryInMs) => {
        recorder.record({ event: 'ads_stream', stream, state: 'closed', reason, retryInMs });
        const failed = types.flatMap((t) => (t === 'CDS' ? ['cds' as const] : t === 'LDS' ? ['lds' as const] : []));
        if (failed.length > 0) hooks.onXdsStreamFailure?.(failed);
      },
      log: (m) => hooks.log(m),
    },
  );
  hooks.log(`ADS target ${ads.cluster} (${ads.apiType}) at ${target}: connecting`);
  client.start();
  return client;
}

/**
 * Connects the stand-in's ADS and SDS clients: ADS when ENVOY_STANDIN_ADS=1 (otherwise its target is
 * logged and the caller simulates xDS progress), SDS when ENVOY_STANDIN_SDS=1 (see the header comment).
 */
export function connectXdsClients(
  targets: XdsTargets,
  hooks: XdsHooks,
  env: NodeJS.ProcessEnv = process.env,
  options: { readonly withhold?: Partial<Record<DependencyType, readonly string[]>> } = {},
): XdsConnections {
  const ads = connectAds(targets, hooks, env, options.withhold ?? {});
  if (targets.ads && !ads) hooks.log(`ADS target ${targets.ads.cluster} (${targets.ads.apiType}) at ${targets.ads.pipePath ?? targets.ads.socketAddress ?? '?'}: not connecting (ENVOY_STANDIN_ADS is not 1)`);
  const sds = connectSds(targets, hooks, env);
  if (targets.sds && !sds) hooks.log(`SDS target ${targets.sds.cluster} at ${targets.sds.pipePath ?? targets.sds.socketAddress ?? '?'}: not connecting (ENVOY_STANDIN_SDS is not 1)`);
  return {
    active: !!ads,
    ...(ads
      ? {
          xds: () => ads.snapshot(),
          warmingState: (kind: OwnerKind) => ads.warmingState(kind),
          withhold: (type: DependencyType, names: readonly string[]) => ads.withhold(type, names),
          release: (type?: DependencyType, names?: readonly string[]) => ads.release(type, names),
        }
      : {}),
    ...(sds
      ? {
          secrets: () => ({
            connected: sds.connected,
            streamsOpened: sds.streamsOpened,
            acks: sds.acks,
            nacks: sds.nacks,
            // keys stay in the process: only their digest is exposed
            secrets: sds.secrets().map(({ privateKeyPem: _key, ...rest }) => rest),
          }),
        }
      : {}),
    close() {
      ads?.close();
      sds?.close();
    },
  };
}
