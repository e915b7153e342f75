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
import { outboundHttpListener } from '../support/sidecar-resources.js';
import { AdsClient, type AdsClientOptions, type AdsUpdate, type InitFetchTimeout } from './ads-client.js';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const LDS = TypeUrl.Listener;
const RDS = TypeUrl.RouteConfiguration;
const ECDS = TypeUrl.TypedExtensionConfig;

const NODE = { id: 'sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local', cluster: 'pod.ns', metadata: { ISTIO_VERSION: '1.28.0' } };

/** A sidecar-like outbound listener: an HttpConnectionManager with RDS and a Wasm filter through ECDS (no initial_fetch_timeouts: Envoy's 15 s). */
function httpListener(name: string, port: number, route: string, ecdsFilter: string) {
  const ecds = { name: ecdsFilter, config_discovery: { config_source: { ads: {}, resource_api_version: 'V3' }, type_urls: ['type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm'] } };
  return outboundHttpListener({ name, port, route, statPrefix: name, initialFetchTimeout: null, httpFilters: [ecds] });
}

/** The HttpConnectionManager config of a listener made by httpListener(). */
function hcmOf(l: { json: Record<string, unknown> }): unknown {
  return (l.json.filter_chains as { filters: { typed_config: unknown }[] }[])[0]!.filters[0]!.typed_config;
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

/** A cluster of type EDS; `initialFetchTimeout` of its eds_config when given (Envoy's default 15 s otherwise; Istio sets 0s). */
function edsCluster(name: string, serviceName?: string, initialFetchTimeout?: string) {
  const edsConfig = { ads: {}, resource_api_version: 'V3', ...(initialFetchTimeout ? { initial_fetch_timeout: initialFetchTimeout } : {}) };
  return { json: { name, type: 'EDS', connect_timeout: '1s', eds_cluster_config: { eds_config: edsConfig, ...(serviceName ? { service_name: serviceName } : {}) } } };
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

let timeouts: InitFetchTimeout[];

function startClient(apiType: 'GRPC' | 'DELTA_GRPC', extra: Partial<Pick<AdsClientOptions, 'strict' | 'withhold' | 'initialFetchTimeoutMs'>> = {}): AdsClient {
  updates = [];
  timeouts = [];
  initialized = false;
  client = new AdsClient(
    { target: cp.address, apiType, node: NODE, backoffMs: { initial: 50, max: 200 }, cwd: tmp, ...extra },
    { onUpdate: (u) => updates.push(u), onInitialized: () => (initialized = true), onInitFetchTimeout: (t) => timeouts.push(t) },
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
    // ... and after the EDS clusters warmed: their endpoints were ACKed first
    expect(firstOf(LDS)).toBeGreaterThan(stream.requests.findIndex((r) => r.typeUrl === EDS && r.responseNonce !== ''));
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

describe.each(['GRPC', 'DELTA_GRPC'] as const)("warming, as Envoy's init managers (%s)", (apiType) => {
  const warmingOf = (c: AdsClient) => c.snapshot().warming as { clusters: { active: number; warming: { name: string; waitingFor: string[] }[] }; listeners: { active: number; warming: { name: string; waitingFor: string[] }[] } };
  const rdsOnly = (name: string, route: string, timeout?: string) => {
    const l = httpListener(name, 8080, route, 'unused');
    const hcm = hcmOf(l) as { rds: { config_source: Record<string, unknown> }; http_filters: unknown[] };
    hcm.http_filters = hcm.http_filters.slice(1); // the router only
    if (timeout) hcm.rds.config_source.initial_fetch_timeout = timeout;
    return l;
  };

  it('a listener warms until its RouteConfiguration arrives; init waits for it', async () => {
    cp.setResources(CDS, [{ json: { name: 'static', type: 'STATIC', connect_timeout: '1s' } }]);
    cp.setResources(LDS, [rdsOnly('l', 'r1', '0s')]);
    const c = startClient(apiType, { withhold: { RDS: ['r1'] } });
    await cp.waitForAck(RDS);
    await vi.waitFor(() => expect(warmingOf(c).listeners.warming).toEqual([{ name: 'l', active: false, waitingFor: ['RDS r1'] }]));
    expect(initialized).toBe(false);
    expect(c.release('RDS', ['r1'])).toEqual({ RDS: ['r1'] });
    expect(initialized).toBe(true);
    expect(warmingOf(c).listeners).toEqual({ active: 1, warming: [] });
    // a new listener on a route the client already has is active at once (RDS subscriptions are shared by name)
    const v = cp.setResources(LDS, [rdsOnly('l2', 'r1', '0s')]);
    await cp.waitForAck(LDS, v);
    expect(warmingOf(c).listeners).toEqual({ active: 2, warming: [] });
  });

  it('a filter configured through ECDS holds its listener until the TypedExtensionConfig arrives, unless its default applies without warming', async () => {
    fs.writeFileSync(path.join(tmp, 'plugin.wasm'), Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    cp.setResources(CDS, [{ json: { name: 'static', type: 'STATIC', connect_timeout: '1s' } }]);
    cp.setResources(RDS, [{ json: { name: 'r', virtual_hosts: [] } }]);
    cp.setResources(ECDS, [wasmFilter('ns.plugin', path.join(tmp, 'plugin.wasm'))]);
    const relaxed = httpListener('relaxed', 9090, 'r', 'ns.plugin');
    const filter = (hcmOf(relaxed) as { http_filters: { config_discovery?: Record<string, unknown> }[] }).http_filters[0]!;
    Object.assign(filter.config_discovery!, { apply_default_config_without_warming: true, default_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm', config: { vm_config: { runtime: 'envoy.wasm.runtime.null', code: { local: { inline_string: 'envoy.wasm.null' } } } } } });
    cp.setResources(LDS, [httpListener('strict', 8080, 'r', 'ns.plugin'), relaxed]);
    const c = startClient(apiType, { withhold: { ECDS: ['*'] } });
    await cp.waitForAck(ECDS);
    await vi.waitFor(() => expect(warmingOf(c).listeners.warming).toEqual([{ name: 'strict', active: false, waitingFor: ['ECDS ns.plugin'] }]));
    expect(warmingOf(c).listeners.active).toBe(1); // 'relaxed' serves its default config
    expect(initialized).toBe(false);
    c.release();
    expect(initialized).toBe(true);
    expect(warmingOf(c).listeners).toEqual({ active: 2, warming: [] });
  });

  it("ends a wait at the ConfigSource's initial_fetch_timeout, counted in the subscription's scope", async () => {
    cp.setResources(CDS, [edsCluster('slow', undefined, '0.3s'), edsCluster('fast', undefined, '0s')]);
    cp.setResources(LDS, [rdsOnly('l', 'r1', '0.3s')]);
    const c = startClient(apiType, { withhold: { EDS: ['slow'], RDS: ['r1'] } });
    await vi.waitFor(() => expect(timeouts.map((t) => t.type)).toEqual(['EDS', 'RDS']), { timeout: 10_000 });
    expect(timeouts[0]).toMatchObject({ type: 'EDS', name: 'slow', statPrefix: 'cluster.slow.', timeoutMs: 300, released: [{ kind: 'cluster', name: 'slow' }] });
    expect(timeouts[1]).toMatchObject({ type: 'RDS', name: 'r1', statPrefix: 'http.l.rds.r1.', timeoutMs: 300, released: [{ kind: 'listener', name: 'l' }] });
    await vi.waitFor(() => expect(initialized).toBe(true));
    expect(warmingOf(c)).toEqual({ clusters: { active: 2, warming: [] }, listeners: { active: 1, warming: [] } });
    // what arrived is still withheld: released now, it is held
    expect(c.release()).toEqual({ EDS: ['slow'], RDS: ['r1'] });
    expect(snapshotType(c, 'EDS')!.resources).toEqual(['fast', 'slow']);
  });

  it('after init, an added cluster warms while the others serve; a changed one keeps serving while its new version warms', async () => {
    cp.setResources(CDS, [edsCluster('a', undefined, '0s')]);
    cp.setResources(EDS, [{ json: { cluster_name: 'a', endpoints: [] } }]);
    const c = startClient(apiType, { withhold: { EDS: ['b'] } });
    await vi.waitFor(() => expect(initialized).toBe(true));
    const v = cp.setResources(CDS, [edsCluster('b', undefined, '0s'), edsCluster('a', 'a', '0s')]); // b added, a changed (service_name set)
    await cp.waitForAck(CDS, v);
    await vi.waitFor(() => expect(warmingOf(c).clusters.warming).toEqual([{ name: 'b', active: false, waitingFor: ['EDS b'] }]));
    // a's endpoints are held already (Envoy keeps them for updated clusters): its new version is warm at once
    expect(c.warmingState('cluster')).toEqual([
      { name: 'a', active: true, waitingFor: [] },
      { name: 'b', active: false, waitingFor: ['EDS b'] },
    ]);
    // b's (empty) endpoints arrive and are kept aside; released, b is active
    await vi.waitFor(() => expect(c.snapshot().withheld).toEqual({ EDS: { names: ['b'], pending: ['b'] } }));
    expect(c.release('EDS')).toEqual({ EDS: ['b'] });
    expect(warmingOf(c).clusters).toEqual({ active: 2, warming: [] });
    expect(c.snapshot().withheld).toEqual({});
    // withholding other types than the ones clusters and listeners wait on is refused, naming it
    expect(() => c.withhold('LDS' as never, ['x'])).toThrow('cannot withhold LDS: only EDS, RDS, ECDS resources are waited on');
  });
});

describe('the stand-in process with ENVOY_STANDIN_ADS=1', () => {
  it('stays PRE_INITIALIZING while an EDS cluster warms, goes INITIALIZING when its endpoints arrive, and stays there (503) until LDS', async () => {
    // a control plane that never answers LDS (Listener treated as a named type: a wildcard request unsubscribes)
    const quiet = await startControlPlane({ plaintext: true, ca: { keyAlgorithm: 'ecdsa' }, nonWildcardTypes: [...NON_WILDCARD_TYPES, LDS] });
    quiet.setResources(CDS, [edsCluster('c1', undefined, '0s'), { json: { name: 'c2', type: 'STATIC', connect_timeout: '1s' } }]);
    const bootstrap = minimalBootstrap() as { static_resources: { clusters: { load_assignment: unknown }[] } };
    bootstrap.static_resources.clusters[0]!.load_assignment = { cluster_name: 'xds-grpc', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: quiet.port } } } }] }] };
    // c1's endpoints arrive but are kept aside until released; its eds_config waits for them for ever (0s)
    const proc = await startEnvoyStandIn({ bootstrap, env: { ENVOY_STANDIN_ADS: '1', ENVOY_STANDIN_WITHHOLD: 'EDS:c1' }, waitForLive: false });
    const state = async () => JSON.parse((await proc.get('/standin/state')).body).state as string;
    try {
      await quiet.waitForAck(CDS, quiet.version(CDS));
      await vi.waitFor(() => expect(proc.record().filter((e) => e.event === 'ads_withheld')).toEqual([expect.objectContaining({ type: 'EDS', resources: ['c1'] })]));
      // c1 warms: the cluster manager is not initialised, LDS is not asked for
      expect(await state()).toBe('PRE_INITIALIZING');
      expect((await proc.get('/ready')).status).toBe(503);
      let stats = Object.fromEntries(await proc.statsText('usedonly&filter=^(cluster_manager|listener_manager\\.lds|server\\.state)'));
      expect(stats).toMatchObject({ 'cluster_manager.cds.update_success': 1, 'cluster_manager.cluster_added': 3, 'cluster_manager.active_clusters': 2, 'cluster_manager.warming_clusters': 1, 'server.state': 2 });
      expect((await proc.get('/clusters')).body).not.toContain('c1::');
      expect((await proc.get('/clusters')).body).toContain('c2::added_via_api::true');
      let xds = JSON.parse((await proc.get('/standin/xds')).body) as { apiType: string; warming: { clusters: { active: number; warming: { name: string; waitingFor: string[] }[] } }; withheld: unknown; types: Record<string, { resources: string[]; subscription: { names: string[] } }> };
      expect(xds.apiType).toBe('DELTA_GRPC');
      expect(xds.warming.clusters).toEqual({ active: 1, warming: [{ name: 'c1', active: false, waitingFor: ['EDS c1'] }] });
      expect(xds.withheld).toEqual({ EDS: { names: ['c1'], pending: ['c1'] } });
      expect(xds.types.LDS).toBeUndefined();
      expect(quiet.connectedStreams()[0]!.subscriptions[LDS]).toBeUndefined();

      // released: c1 is active, the cluster manager initialised, LDS asked for (and never answered)
      const released = JSON.parse((await proc.post('/standin/xds/release?type=EDS&name=c1')).body) as unknown;
      expect(released).toEqual({ released: { EDS: ['c1'] } });
      await vi.waitFor(async () => expect(await state()).toBe('INITIALIZING'));
      expect((await proc.get('/ready')).status).toBe(503);
      stats = Object.fromEntries(await proc.statsText('usedonly&filter=^(cluster_manager|listener_manager\\.lds|server\\.state)'));
      expect(stats).toMatchObject({ 'cluster_manager.cds.update_success': 1, 'cluster_manager.active_clusters': 3, 'cluster_manager.warming_clusters': 0, 'server.state': 3 });
      expect('listener_manager.lds.update_success' in stats).toBe(false);
      xds = JSON.parse((await proc.get('/standin/xds')).body) as typeof xds;
      expect(xds.types.CDS!.resources).toEqual(['c1', 'c2']);
      expect(xds.types.EDS!.subscription.names).toEqual(['c1']);
      expect(xds.types.EDS!.resources).toEqual(['c1']);
      expect(xds.types.LDS!.resources).toEqual([]);
      await vi.waitFor(() => expect(quiet.connectedStreams()[0]!.subscriptions[LDS]).toBeDefined());
      expect((await proc.get('/clusters')).body).toContain('c1::added_via_api::true');
      // the development control plane answers c1, which has no endpoints, as istiod does: empty
      expect(proc.record().filter((e) => e.event === 'ads')).toEqual([
        expect.objectContaining({ type: 'CDS', ack: true, resources: ['c1', 'c2'], version: quiet.version(CDS) }),
        expect.objectContaining({ type: 'EDS', ack: true, resources: ['c1'] }),
      ]);
      expect(proc.record().filter((e) => e.event === 'ads_released')).toEqual([expect.objectContaining({ type: 'EDS', resources: ['c1'] })]);
      expect(proc.record().some((e) => e.event === 'live')).toBe(false);
    } finally {
      await proc.stop();
      await quiet.close();
    }
  });
});
