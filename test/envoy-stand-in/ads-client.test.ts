// The stand-in's ADS client (ads-client.ts) in-process against the development control plane
// (plaintext TCP): Envoy's subscription order, strict parsing, ACK/NACK, reconnects. The full path
// through the agent is test/agent/sidecar-ads.test.ts.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildResourceSet, NON_WILDCARD_TYPES, startControlPlane, TypeUrl, type ControlPlane } from '../control-plane/index.js';
import { messageSchema, parseEnvoyJson } from '../support/envoy-protos.js';
import { minimalBootstrap, startEnvoyStandIn } from '../support/envoy-stand-in-harness.js';
import { AdsClient, type AdsUpdate } from './ads-client.js';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const LDS = TypeUrl.Listener;
const RDS = TypeUrl.RouteConfiguration;
const ECDS = TypeUrl.TypedExtensionConfig;

const NODE = { id: 'sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local', cluster: 'pod.ns', metadata: { ISTIO_VERSION: '1.28.0' } };

/** A sidecar-like outbound listener: an HttpConnectionManager with RDS and a Wasm filter through ECDS. */
function httpListener(name: string, port: number, route: string, ecdsFilter: string) {
  return {
    json: {
      name,
      address: { socket_address: { address: '0.0.0.0', port_value: port } },
      traffic_direction: 'OUTBOUND',
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: name,
                rds: { route_config_name: route, config_source: { ads: {}, resource_api_version: 'V3' } },
                http_filters: [
                  { name: ecdsFilter, config_discovery: { config_source: { ads: {}, resource_api_version: 'V3' }, type_urls: ['type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm'] } },
                  { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
                ],
              },
            },
          ],
        },
      ],
    },
  };
}

function wasmFilter(name: string, filename: string) {
  return {
    json: {
      name,
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm',
        config: { name, vm_config: { runtime: 'envoy.wasm.runtime.v8', code: { local: { filename } } } },
      },
    },
  };
}

function edsCluster(name: string, serviceName?: string) {
  return { json: { name, type: 'EDS', connect_timeout: '1s', eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, ...(serviceName ? { service_name: serviceName } : {}) } } };
}

/** Bytes that start like a Listener named `name` and then break (a length running past the end). */
function brokenListener(name: string): Uint8Array {
  const n = Buffer.from(name);
  return Buffer.concat([Buffer.from([0x0a, n.length]), n, Buffer.from([0x12, 0x7f, 0x01])]);
}

let cp: ControlPlane;
let client: AdsClient | undefined;
let tmp: string;
let updates: AdsUpdate[];
let initialized: boolean;

function startClient(apiType: 'GRPC' | 'DELTA_GRPC', extra: { strict?: boolean } = {}): AdsClient {
  updates = [];
  initialized = false;
  client = new AdsClient(
    { target: cp.address, apiType, node: NODE, backoffMs: { initial: 50, max: 200 }, cwd: tmp, ...extra },
    { onUpdate: (u) => updates.push(u), onInitialized: () => (initialized = true) },
  );
  client.start();
  return client;
}

const subs = (typeUrl: string) => cp.connectedStreams()[0]?.subscriptions[typeUrl];
const snapshotType = (c: AdsClient, t: string) => (c.snapshot().types as Record<string, { version: string; resources: string[]; resourceJson?: Record<string, unknown> }>)[t];

beforeEach(async () => {
  cp = await startControlPlane({ plaintext: true, ca: { keyAlgorithm: 'ecdsa' } });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ads-client-'));
});
afterEach(async () => {
  client?.close();
  client = undefined;
  await cp.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe.each(['GRPC', 'DELTA_GRPC'] as const)('ADS client (%s)', (apiType) => {
  it("follows Envoy's order: CDS, EDS for EDS clusters, LDS, then RDS and ECDS for what listeners reference", async () => {
    fs.writeFileSync(path.join(tmp, 'plugin.wasm'), Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    const set = buildResourceSet();
    set.applyTo(cp);
    cp.setResources(CDS, [edsCluster('outbound|8080||svc.ns.svc.cluster.local')]);
    cp.setResources(LDS, [httpListener('0.0.0.0_8080', 8080, '8080', 'ns.my-plugin')]);
    cp.setResources(RDS, [{ json: { name: '8080', virtual_hosts: [{ name: 'svc', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'outbound|8080||svc.ns.svc.cluster.local' } }] }] } }]);
    cp.setResources(ECDS, [wasmFilter('ns.my-plugin', path.join(tmp, 'plugin.wasm'))]);
    const c = startClient(apiType);
    await cp.waitForAck(LDS, cp.version(LDS));
    await vi.waitFor(() => expect(initialized).toBe(true));
    await cp.waitForAck(CDS, cp.version(CDS));
    await cp.waitForAck(RDS, cp.version(RDS));
    await cp.waitForAck(ECDS, cp.version(ECDS));
    const stream = cp.connectedStreams()[0]!;
    expect(stream.kind).toBe(apiType === 'GRPC' ? 'sotw' : 'delta');
    expect((stream.node as { id: string }).id).toBe(NODE.id);
    // CDS first, LDS only after the CDS response was handled
    const firstOf = (t: string) => stream.requests.findIndex((r) => r.typeUrl === t);
    expect(firstOf(CDS)).toBe(0);
    expect(stream.requests[0]!.responseNonce).toBe('');
    expect(firstOf(LDS)).toBeGreaterThan(stream.requests.findIndex((r) => r.typeUrl === CDS && r.responseNonce !== ''));
    expect(firstOf(EDS)).toBeGreaterThan(0);
    expect(firstOf(RDS)).toBeGreaterThan(firstOf(LDS));
    expect(firstOf(ECDS)).toBeGreaterThan(firstOf(LDS));
    const edsNames = subs(EDS)!.names;
    // service_name when set, else the cluster's name
    expect([...edsNames].sort()).toEqual(['inbound-vip|8000|http|httpbin-0000.default.svc.cluster.local', 'outbound|8080||svc.ns.svc.cluster.local'].sort());
    expect(subs(RDS)!.names).toEqual(['8080']);
    expect(subs(ECDS)!.names).toEqual(['ns.my-plugin']);
    expect(snapshotType(c, 'CDS')!.resources).toEqual(cp.resources(CDS).map((r) => r.name).sort());
    expect(snapshotType(c, 'LDS')!.version).toBe(cp.version(LDS));
    expect(snapshotType(c, 'ECDS')!.resourceJson!['ns.my-plugin']).toMatchObject({ typed_config: { config: { vm_config: { code: { local: { filename: path.join(tmp, 'plugin.wasm') } } } } } });
    const lds = updates.filter((u) => u.type === 'LDS' && u.ack).at(-1)!;
    expect(lds.listeners!.find((l) => l.name === '0.0.0.0_8080')).toEqual({ name: '0.0.0.0_8080', prefix: '0.0.0.0_8080', address: '0.0.0.0:8080', direction: 'OUTBOUND' });
    expect(cp.nacks()).toEqual([]);
  });

  it('NACKs a Listener that does not parse, naming it, and keeps the last good listeners', async () => {
    cp.setResources(CDS, [{ json: { name: 'a', type: 'STATIC', connect_timeout: '1s' } }]);
    cp.setResources(LDS, [httpListener('good', 8080, 'r', 'f')]);
    const c = startClient(apiType);
    const good = cp.version(LDS);
    await cp.waitForAck(LDS, good);
    const bad = cp.setResources(LDS, [{ name: 'bad-listener', binary: brokenListener('bad-listener') }]);
    const nack = await cp.waitForNack(LDS, { version: bad });
    expect(nack.errorDetail.code).toBe(13);
    expect(nack.errorDetail.message).toMatch(/^Error adding\/updating listener\(s\) bad-listener: Unable to unpack as envoy\.config\.listener\.v3\.Listener/);
    if (apiType === 'GRPC') expect(nack.clientVersion).toBe(good);
    expect(snapshotType(c, 'LDS')).toMatchObject({ version: good, resources: ['good'] });
    expect(updates.at(-1)).toMatchObject({ type: 'LDS', ack: false, names: apiType === 'GRPC' ? ['good', 'bad-listener'] : ['bad-listener'] });
    // a later good push is taken again
    cp.removeResources(LDS, ['bad-listener']);
    await cp.waitForAck(LDS, cp.version(LDS));
  });

  it('refuses unknown fields, unknown Any types and missing Wasm files; accepts unknown fields with strict off', async () => {
    const valid = toBinary(messageSchema(CDS), parseEnvoyJson('envoy.config.cluster.v3.Cluster', { name: 'x', type: 'STATIC', connect_timeout: '1s' }));
    const withUnknown = Buffer.concat([valid, Buffer.from([0xb8, 0x3e, 0x01])]); // field 999 varint
    cp.setResources(CDS, [{ name: 'x', binary: withUnknown }]);
    cp.setResources(LDS, [httpListener('l', 8080, 'r', 'ns.missing')]);
    cp.setResources(ECDS, [wasmFilter('ns.missing', path.join(tmp, 'nope.wasm'))]);
    startClient(apiType);
    const cds = await cp.waitForNack(CDS);
    expect(cds.errorDetail.message).toMatch(/^Error adding\/updating cluster\(s\) x: unknown field\(s\): <root> \(envoy\.config\.cluster\.v3\.Cluster\): field number\(s\) 999/);
    // a rejected first CDS still lets init go on (Envoy's cluster manager initialises either way)
    await cp.waitForAck(LDS);
    await vi.waitFor(() => expect(initialized).toBe(true));
    const ecds = await cp.waitForNack(ECDS);
    expect(ecds.errorDetail.message).toContain('Failed to load Wasm code from');
    expect(ecds.errorDetail.message).toContain('nope.wasm');

    const anyTypes = toBinary(messageSchema(CDS), parseEnvoyJson('envoy.config.cluster.v3.Cluster', { name: 'y', type: 'STATIC', connect_timeout: '1s', transport_socket: { name: 'ts', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer' } } }));
    // rewrite the Any's type URL in the bytes to one nobody knows (same length)
    const raw = Buffer.from(anyTypes);
    const at = raw.indexOf('raw_buffer.v3.RawBuffer');
    raw.write('raw_buffer.v3.RawBuffeX', at);
    const v2 = cp.setResources(CDS, [{ name: 'y', binary: raw }], { replace: true });
    const n2 = await cp.waitForNack(CDS, { version: v2 });
    expect(n2.errorDetail.message).toContain("Didn't find a registered implementation for type URL 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffeX'");

    client!.close();
    startClient(apiType, { strict: false });
    cp.setResources(CDS, [{ name: 'x', binary: withUnknown }], { replace: true });
    await cp.waitForAck(CDS, cp.version(CDS));
    expect(client!.unknownFields).toBe(1);
  });

  it('reconnects with backoff after the stream is killed and re-subscribes with what it holds', async () => {
    cp.setResources(CDS, [edsCluster('c1')]);
    cp.setResources(EDS, [{ json: { cluster_name: 'c1', endpoints: [] } }]);
    cp.setResources(LDS, [httpListener('l', 8080, 'r', 'f')]);
    const c = startClient(apiType);
    await cp.waitForAck(LDS, cp.version(LDS));
    await cp.waitForAck(EDS, cp.version(EDS));
    const first = cp.connectedStreams()[0]!;
    expect(cp.disconnect(first.id)).toBe(true);
    const second = await cp.waitForStream({ match: (s) => s.id !== first.id });
    await vi.waitFor(() => expect(Object.keys(cp.stream(second.id)!.subscriptions).sort()).toEqual([CDS, EDS, LDS, RDS, ECDS].sort()));
    const again = cp.stream(second.id)!;
    expect((again.node as { id: string }).id).toBe(NODE.id);
    const cdsReq = again.requests.find((r) => r.typeUrl === CDS)!;
    expect(cdsReq.responseNonce).toBe('');
    if (apiType === 'GRPC') expect(cdsReq.versionInfo).toBe(cp.version(CDS));
    else expect(Object.keys(cdsReq.initialResourceVersions!)).toEqual(['c1']);
    expect(again.requests.find((r) => r.typeUrl === EDS)!).toMatchObject(apiType === 'GRPC' ? { resourceNames: ['c1'] } : { subscribe: ['c1'] });
    expect(c.streamsOpened).toBe(2);
    // pushes reach the new stream
    const v = cp.setResources(CDS, [edsCluster('c2')]);
    await cp.waitForAck(CDS, v, { streamId: second.id });
    await vi.waitFor(() => expect(snapshotType(c, 'CDS')!.resources).toEqual(['c1', 'c2']));
  });
});

describe('the stand-in process with ENVOY_STANDIN_ADS=1', () => {
  it('goes INITIALIZING with the first CDS response and stays there (503) until the first LDS one', async () => {
    // a control plane that never answers LDS (Listener treated as a named type: a wildcard request unsubscribes)
    const quiet = await startControlPlane({ plaintext: true, ca: { keyAlgorithm: 'ecdsa' }, nonWildcardTypes: [...NON_WILDCARD_TYPES, LDS] });
    quiet.setResources(CDS, [edsCluster('c1'), { json: { name: 'c2', type: 'STATIC', connect_timeout: '1s' } }]);
    const bootstrap = minimalBootstrap() as { static_resources: { clusters: { load_assignment: unknown }[] } };
    bootstrap.static_resources.clusters[0]!.load_assignment = { cluster_name: 'xds-grpc', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: quiet.port } } } }] }] };
    const proc = await startEnvoyStandIn({ bootstrap, env: { ENVOY_STANDIN_ADS: '1' }, waitForLive: false });
    try {
      await quiet.waitForAck(CDS, quiet.version(CDS));
      await vi.waitFor(async () => expect(JSON.parse((await proc.get('/standin/state')).body).state).toBe('INITIALIZING'));
      expect((await proc.get('/ready')).status).toBe(503);
      const stats = await proc.statsText('usedonly&filter=^(cluster_manager|listener_manager\\.lds|server\\.state)');
      expect(Object.fromEntries(stats)).toMatchObject({ 'cluster_manager.cds.update_success': 1, 'cluster_manager.cluster_added': 3, 'cluster_manager.active_clusters': 3, 'server.state': 3 });
      expect(stats.has('listener_manager.lds.update_success')).toBe(false);
      const xds = JSON.parse((await proc.get('/standin/xds')).body) as { apiType: string; types: Record<string, { resources: string[]; subscription: { names: string[] } }> };
      expect(xds.apiType).toBe('DELTA_GRPC');
      expect(xds.types.CDS!.resources).toEqual(['c1', 'c2']);
      expect(xds.types.EDS!.subscription.names).toEqual(['c1']);
      expect(xds.types.LDS!.resources).toEqual([]);
      expect((await proc.get('/clusters')).body).toContain('c1::added_via_api::true');
      expect(proc.record().filter((e) => e.event === 'ads')).toEqual([expect.objectContaining({ type: 'CDS', ack: true, resources: ['c1', 'c2'], version: quiet.version(CDS) })]);
      expect(proc.record().some((e) => e.event === 'live')).toBe(false);
    } finally {
      await proc.stop();
      await quiet.close();
    }
  });
});
