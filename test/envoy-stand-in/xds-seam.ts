// The seam where the stand-in's xDS clients will connect, like Envoy does, to the agent's xDS proxy
// and SDS server. Istio's bootstrap names them as static clusters with unix-socket endpoints:
//   xds-grpc: load_assignment...endpoint.address.pipe.path = ./etc/istio/proxy/XDS
//   sds-grpc: load_assignment...endpoint.address.pipe.path = ./var/run/secrets/workload-spiffe-uds/socket
// and dynamic_resources.ads_config (api_type GRPC or DELTA_GRPC) points at xds-grpc.
//
// For ADS, connectXdsClients() only resolves the target and reports it; the server goes live on its
// own timer. To make the stand-in a real ADS client later, implement it in connectXdsClients():
//   - dial `unix:<path>` with @grpc/grpc-js (insecure credentials), one channel per target;
//   - ADS: open envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources
//     (or DeltaAggregatedResources when api_type is DELTA_GRPC); serialize with @bufbuild/protobuf
//     using the registry from test/support/envoy-protos.ts (envoyRegistry()), send the bootstrap
//     node on the first request, subscribe to CDS then LDS, ACK/NACK by parsing each resource with
//     parseEnvoyJson semantics;
//   - report progress through the hooks: onCdsUpdate/onLdsUpdate(success | rejected) drive
//     cluster_manager.cds.* and listener_manager.lds.* stats and the PRE_INIT -> LIVE transition.
// Keep every stream's 'error' listener and unref() timers so the process can exit promptly.
//
// SDS is implemented (sds-client.ts), behind ENVOY_STANDIN_SDS=1 so that tests without an SDS server
// are unaffected: the client dials the sds-grpc pipe, subscribes to ENVOY_STANDIN_SDS_RESOURCES
// (default `default,ROOTCA`, what Istio's listeners and clusters reference), ACKs/NACKs, appends
// {"event":"sds",...} / {"event":"sds_nack",...} lines to ENVOY_STANDIN_RECORD and serves what it
// holds at GET /standin/secrets.

import { resolve } from 'node:path';
import { Recorder } from './recorder.js';
import { SdsClient } from './sds-client.js';

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

export interface XdsHooks {
  onCdsUpdate(result: 'success' | 'rejected'): void;
  onLdsUpdate(result: 'success' | 'rejected'): void;
  log(msg: string): void;
}

export interface XdsConnections {
  /** Whether real clients are running (false until the seam is implemented). */
  readonly active: boolean;
  /** What the SDS client holds, for GET /standin/secrets (absent when SDS is off). */
  secrets?(): unknown;
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
        }),
      onNack: (version, nonce, reason) => recorder.record({ event: 'sds_nack', version, nonce, reason }),
      log: (m) => hooks.log(m),
    },
  );
  hooks.log(`SDS target ${sds.cluster} at ${socket}: subscribing to ${names.join(', ')}`);
  client.start();
  return client;
}

/**
 * Connects the stand-in's ADS and SDS clients. ADS is not implemented yet: its target is logged and
 * the caller simulates xDS progress. SDS connects when ENVOY_STANDIN_SDS=1 (see the header comment).
 */
export function connectXdsClients(targets: XdsTargets, hooks: XdsHooks, env: NodeJS.ProcessEnv = process.env): XdsConnections {
  if (targets.ads) hooks.log(`ADS target ${targets.ads.cluster} (${targets.ads.apiType}) at ${targets.ads.pipePath ?? targets.ads.socketAddress ?? '?'}: not connecting (stand-in)`);
  const sds = connectSds(targets, hooks, env);
  if (targets.sds && !sds) hooks.log(`SDS target ${targets.sds.cluster} at ${targets.sds.pipePath ?? targets.sds.socketAddress ?? '?'}: not connecting (ENVOY_STANDIN_SDS is not 1)`);
  return {
    active: false,
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
      sds?.close();
    },
  };
}
