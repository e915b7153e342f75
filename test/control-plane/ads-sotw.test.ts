import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { decodeResource, openSotw, resourceNames, type SotwClient } from './clients.js';
import { TypeUrl } from './xds-protos.js';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const RDS = TypeUrl.RouteConfiguration;

function cluster(name: string, timeout = '1s') {
  return { json: { name, type: 'EDS', connect_timeout: timeout, eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } } } };
}

function cla(name: string, port = 8080) {
  return { json: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: port } } } }] }] } };
}

describe('ADS state of the world', () => {
  let cp: ControlPlane;
  const clients: SotwClient[] = [];
  const open = (opts: Parameters<typeof openSotw>[1] = {}) => {
    const c = openSotw(cp, opts);
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    cp = await startControlPlane({ ca: { keyAlgorithm: 'ecdsa' } });
    cp.setResources(CDS, [cluster('a'), cluster('b')]);
    cp.setResources(EDS, [cla('a'), cla('b'), cla('c')]);
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await cp.close();
  });

  it('answers a wildcard CDS request, records the ACK and stays quiet after it', async () => {
    const c = open({ metadata: { ClusterID: 'Kubernetes', 'x-test': 'yes' }, token: 'abc' });
    c.request({ type_url: CDS, node: { id: 'sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local', metadata: { ISTIO_VERSION: '1.32.0' } } });
    const res = await c.next();
    expect(res.typeUrl).toBe(CDS);
    expect(res.versionInfo).toBe(cp.version(CDS));
    expect(res.nonce).not.toBe('');
    expect(resourceNames(res).sort()).toEqual(['a', 'b']);
    expect(decodeResource(res.resources[0]!).json).toMatchObject({ name: 'a', type: 'EDS', connect_timeout: '1s' });

    c.ack(res);
    const ack = await cp.waitForAck(CDS, res.versionInfo);
    expect(ack.nonce).toBe(res.nonce);
    expect(await c.expectNone(200)).toBe(true);

    const [s] = cp.connectedStreams();
    expect(s!.kind).toBe('sotw');
    expect(s!.metadata.clusterid).toEqual(['Kubernetes']);
    expect(s!.metadata.authorization).toEqual(['Bearer abc']);
    expect(s!.metadata['x-test']).toEqual(['yes']);
    expect(s!.node).toMatchObject({ id: 'sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local' });
    expect(s!.subscriptions[CDS]).toMatchObject({ wildcard: true, ackedVersion: res.versionInfo, lastNonceSent: res.nonce });
    expect(s!.lastRequestByType[CDS]!.outcome).toBe('ack');
  });

  it('pushes changes with a new version and nonce; a NACK is recorded and not re-pushed until resources change', async () => {
    const c = open();
    c.request({ type_url: CDS });
    const first = await c.next();
    c.ack(first);
    await cp.waitForAck(CDS, first.versionInfo);

    const v2 = cp.setResources(CDS, [cluster('a', '2s')]);
    expect(v2).not.toBe(first.versionInfo);
    const push = await c.next();
    expect(push.versionInfo).toBe(v2);
    expect(push.nonce).not.toBe(first.nonce);
    expect(resourceNames(push).sort()).toEqual(['a', 'b']);

    c.nack(push, 'cluster a: bad timeout', { lastVersion: first.versionInfo });
    const nack = await cp.waitForNack(CDS);
    expect(nack).toMatchObject({ version: v2, nonce: push.nonce, clientVersion: first.versionInfo, stale: false });
    expect(nack.errorDetail).toEqual({ code: 3, message: 'cluster a: bad timeout' });
    expect(cp.nacks(CDS)).toHaveLength(1);
    expect(cp.connectedStreams()[0]!.subscriptions[CDS]!.nack).toMatchObject({ version: v2, message: 'cluster a: bad timeout' });
    expect(await c.expectNone(300)).toBe(true);

    // setting identical content is not a change
    expect(cp.setResources(CDS, [cluster('a', '2s')])).toBe(v2);
    expect(await c.expectNone(200)).toBe(true);

    const v3 = cp.setResources(CDS, [cluster('a', '3s')]);
    const again = await c.next();
    expect(again.versionInfo).toBe(v3);
    c.ack(again);
    await cp.waitForAck(CDS, v3);
    expect(cp.connectedStreams()[0]!.subscriptions[CDS]!.nack).toBeUndefined();
  });

  it('ignores requests with a stale nonce', async () => {
    const c = open();
    c.request({ type_url: EDS, resource_names: ['a'] });
    const r1 = await c.next();
    cp.setResources(EDS, [cla('a', 9090)]);
    const r2 = await c.next();
    expect(r2.nonce).not.toBe(r1.nonce);
    // an ACK of r1 that also asks for more names: stale, so neither recorded nor answered
    c.ack(r1, ['a', 'b']);
    await expect.poll(() => cp.connectedStreams()[0]!.lastRequestByType[EDS]!.outcome).toBe('stale');
    expect(await c.expectNone(300)).toBe(true);
    const s = cp.connectedStreams()[0]!;
    expect(s.subscriptions[EDS]!.names).toEqual(['a']);
    expect(cp.acks(EDS)).toHaveLength(0);
    // the current nonce works
    c.ack(r2, ['a', 'b']);
    const r3 = await c.next();
    expect(resourceNames(r3).sort()).toEqual(['a', 'b']);
  });

  it('serves named types by name: added names are answered, removals are not, other changes are not pushed', async () => {
    const c = open();
    c.request({ type_url: EDS, resource_names: ['a', 'missing'] });
    const r1 = await c.next();
    // as istiod: a cluster it has no endpoints for gets an empty ClusterLoadAssignment
    expect(resourceNames(r1)).toEqual(['a', 'missing']);
    expect(decodeResource(r1.resources[1]!).json).toEqual({ cluster_name: 'missing' });
    c.ack(r1, ['a', 'b']);
    const r2 = await c.next();
    expect(resourceNames(r2).sort()).toEqual(['a', 'b']);
    c.ack(r2, ['b']);
    await expect.poll(() => cp.connectedStreams()[0]!.subscriptions[EDS]!.names).toEqual(['b']);
    expect(await c.expectNone(200)).toBe(true);

    cp.setResources(EDS, [cla('c', 1)]); // not subscribed
    expect(await c.expectNone(300)).toBe(true);
    cp.setResources(EDS, [cla('b', 1)]);
    const r3 = await c.next();
    expect(resourceNames(r3)).toEqual(['b']);
    c.ack(r3, ['b']);
    await cp.waitForAck(EDS, r3.versionInfo);

    // an empty list unsubscribes a named type
    c.request({ type_url: EDS, resource_names: [], version_info: r3.versionInfo, response_nonce: r3.nonce });
    await expect.poll(() => cp.connectedStreams()[0]!.subscriptions[EDS]).toBeUndefined();
    cp.setResources(EDS, [cla('b', 2)]);
    expect(await c.expectNone(300)).toBe(true);
  });

  it('keeps nonces per stream and answers a reconnecting client with the current state', async () => {
    const c1 = open();
    const c2 = open();
    c1.request({ type_url: CDS });
    c2.request({ type_url: CDS });
    const [r1, r2] = [await c1.next(), await c2.next()];
    expect(r1.nonce).not.toBe(r2.nonce);
    // c2 ACKs with c1's nonce: stale on c2's stream
    c2.ack(r1);
    await expect.poll(() => cp.connectedStreams().find((s) => s.requestCount === 2)?.lastRequest?.outcome).toBe('stale');
    c1.ack(r1);
    await cp.waitForAck(CDS, r1.versionInfo);

    // reconnect: a new stream with the last version and no nonce gets everything again
    c1.close();
    const c3 = open();
    c3.request({ type_url: CDS, version_info: r1.versionInfo });
    const r3 = await c3.next();
    expect(r3.versionInfo).toBe(r1.versionInfo);
    expect(resourceNames(r3).sort()).toEqual(['a', 'b']);
    await expect.poll(() => cp.connectedStreams().length).toBe(2);
    expect(cp.streams().length).toBe(3);
    expect(cp.streams()[0]!.closedAt).toBeDefined();
  });

  it('pushNow re-sends the current state even after a NACK; push:false defers until then', async () => {
    const c = open();
    c.request({ type_url: CDS });
    const r1 = await c.next();
    c.nack(r1, 'no');
    await cp.waitForNack(CDS);
    expect(await c.expectNone(200)).toBe(true);
    expect(cp.pushNow()).toBe(1);
    const r2 = await c.next();
    expect(r2.versionInfo).toBe(r1.versionInfo);
    expect(r2.nonce).not.toBe(r1.nonce);
    c.ack(r2);
    await cp.waitForAck(CDS, r1.versionInfo);

    const v = cp.setResources(CDS, [cluster('z')], { push: false });
    expect(await c.expectNone(300)).toBe(true);
    cp.pushNow([CDS]);
    const r3 = await c.next();
    expect(r3.versionInfo).toBe(v);
    expect(resourceNames(r3)).toContain('z');
    expect(await c.expectNone(200)).toBe(true);
  });

  it('reports removals to wildcard streams and pushes types in CDS, EDS order', async () => {
    const c = open();
    c.request({ type_url: CDS });
    const r1 = await c.next();
    c.ack(r1);
    c.request({ type_url: EDS, resource_names: ['a'] });
    const r2 = await c.next();
    c.ack(r2, ['a']);
    await cp.waitForAck(EDS, r2.versionInfo);

    cp.setResources(EDS, [cla('a', 1)], { push: false });
    cp.removeResources(CDS, ['b']);
    const p1 = await c.next();
    const p2 = await c.next();
    expect([p1.typeUrl, p2.typeUrl]).toEqual([CDS, EDS]);
    expect(resourceNames(p1)).toEqual(['a']);
  });

  it('answers every RDS name as istiod does: an empty RouteConfiguration until there is one, and again once it is removed', async () => {
    const c = open();
    c.request({ type_url: RDS, resource_names: ['80'] });
    const r1 = await c.next();
    expect(r1.resources.map((a) => decodeResource(a).json)).toEqual([{ name: '80', validate_clusters: false }]); // no virtual hosts
    c.ack(r1, ['80']);
    await cp.waitForAck(RDS, r1.versionInfo);
    cp.setResources(RDS, [{ json: { name: '80', virtual_hosts: [{ name: 'vh', domains: ['*'] }] } }]);
    const r2 = await c.next();
    expect(r2.resources.map((a) => decodeResource(a).json)).toEqual([{ name: '80', virtual_hosts: [{ name: 'vh', domains: ['*'] }] }]);
    c.ack(r2, ['80']);
    cp.removeResources(RDS, ['80']);
    const r3 = await c.next();
    expect(r3.resources.map((a) => decodeResource(a).json)).toEqual([{ name: '80', validate_clusters: false }]); // no virtual hosts
  });

  it("answers the name table as istiod does: an empty one while it has none, then the one it is given", async () => {
    const c = open();
    c.request({ type_url: TypeUrl.NameTable });
    const r1 = await c.next();
    expect(r1.resources.map((a) => [a.typeUrl, a.value.length])).toEqual([[TypeUrl.NameTable, 0]]);
    c.ack(r1);
    await cp.waitForAck(TypeUrl.NameTable, r1.versionInfo);
    const table = new Uint8Array([0x0a, 0x05, 0x0a, 0x01, 0x61, 0x12, 0x00]); // { table: { a: {} } }
    cp.setResources(TypeUrl.NameTable, [{ name: 'nds', binary: table }], { replace: true });
    const r2 = await c.next();
    expect(r2.resources.map((a) => Buffer.from(a.value).toString('hex'))).toEqual([Buffer.from(table).toString('hex')]);
  });

  it('with answerEveryNameTypes: [] answers only the names it has', async () => {
    const only = await startControlPlane({ ca: { keyAlgorithm: 'ecdsa' }, answerEveryNameTypes: [] });
    try {
      only.setResources(EDS, [cla('a')]);
      const c = openSotw(only);
      clients.push(c);
      c.request({ type_url: EDS, resource_names: ['a', 'missing'] });
      expect(resourceNames(await c.next())).toEqual(['a']);
    } finally {
      await only.close();
    }
  });

  it('disconnectAll ends the streams with UNAVAILABLE', async () => {
    const c = open();
    c.request({ type_url: CDS });
    await c.next();
    expect(cp.disconnectAll()).toBe(1);
    const st = await c.status;
    expect(st.code).toBe(14);
    expect(cp.connectedStreams()).toHaveLength(0);
    expect(cp.lastStream()!.closeReason).toMatch(/UNAVAILABLE/);
  });
});
