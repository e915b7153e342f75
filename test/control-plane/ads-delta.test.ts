import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { decodeResource, openDelta, type DeltaClient } from './clients.js';
import { TypeUrl, type DeltaDiscoveryResponse } from './xds-protos.js';

const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const SDS = TypeUrl.Secret;

function cluster(name: string, timeout = '1s') {
  return { json: { name, type: 'STATIC', connect_timeout: timeout } };
}

function cla(name: string, port = 8080) {
  return { json: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: port } } } }] }] } };
}

const names = (r: DeltaDiscoveryResponse) => r.resources.map((x) => x.name).sort();

describe('ADS delta', () => {
  let cp: ControlPlane;
  const clients: DeltaClient[] = [];
  const open = () => {
    const c = openDelta(cp);
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    cp = await startControlPlane({ plaintext: true, ca: { keyAlgorithm: 'ecdsa' } });
    cp.setResources(CDS, [cluster('a'), cluster('b'), cluster('c')]);
    cp.setResources(EDS, [cla('x'), cla('y')]);
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await cp.close();
  });

  it('honours initial_resource_versions: sends only what differs and removes what is gone', async () => {
    const a = cp.resources(CDS).find((r) => r.name === 'a')!;
    const c = open();
    c.request({ type_url: CDS, initial_resource_versions: { a: a.version, b: 'old', gone: 'v0' } });
    const r = await c.next();
    expect(r.systemVersionInfo).toBe(cp.version(CDS));
    expect(names(r)).toEqual(['b', 'c']);
    expect(r.removedResources).toEqual(['gone']);
    const b = r.resources.find((x) => x.name === 'b')!;
    expect(b.version).toBe(cp.resources(CDS).find((x) => x.name === 'b')!.version);
    expect(decodeResource(b.resource!).json).toMatchObject({ name: 'b', type: 'STATIC' });
    c.ack(r);
    const ack = await cp.waitForAck(CDS, r.systemVersionInfo);
    expect(ack.kind).toBe('delta');
    expect(await c.expectNone(200)).toBe(true);
    expect(cp.connectedStreams()[0]!.subscriptions[CDS]).toMatchObject({ wildcard: true, clientVersions: { a: a.version, b: b.version } });
  });

  it('pushes only changed resources and lists removals', async () => {
    const c = open();
    c.request({ type_url: CDS });
    const r1 = await c.next();
    expect(names(r1)).toEqual(['a', 'b', 'c']);
    c.ack(r1);

    const v2 = cp.setResources(CDS, [cluster('a', '5s'), cluster('b')]); // b unchanged
    const r2 = await c.next();
    expect(r2.systemVersionInfo).toBe(v2);
    expect(names(r2)).toEqual(['a']);
    expect(r2.removedResources).toEqual([]);
    c.ack(r2);

    cp.removeResources(CDS, ['b', 'c']);
    const r3 = await c.next();
    expect(r3.resources).toEqual([]);
    expect([...r3.removedResources].sort()).toEqual(['b', 'c']);
    c.ack(r3);
    await cp.waitForAck(CDS, r3.systemVersionInfo);
    expect(await c.expectNone(200)).toBe(true);
  });

  it('subscribes and unsubscribes named resources', async () => {
    const c = open();
    c.request({ type_url: EDS, resource_names_subscribe: ['x', 'nope'] });
    const r1 = await c.next();
    // as istiod: a cluster it has no endpoints for gets an empty ClusterLoadAssignment
    expect(names(r1)).toEqual(['nope', 'x']);
    expect(decodeResource(r1.resources.find((r) => r.name === 'nope')!.resource!).json).toEqual({ cluster_name: 'nope' });
    c.ack(r1);
    c.request({ type_url: EDS, resource_names_subscribe: ['y'] });
    const r2 = await c.next();
    expect(names(r2)).toEqual(['y']);
    c.ack(r2);

    c.request({ type_url: EDS, resource_names_unsubscribe: ['y'] });
    await expect.poll(() => cp.connectedStreams()[0]!.subscriptions[EDS]!.names).toEqual(['x', 'nope']);
    expect(await c.expectNone(200)).toBe(true);

    cp.setResources(EDS, [cla('y', 1)]); // unsubscribed: nothing
    expect(await c.expectNone(300)).toBe(true);
    cp.setResources(EDS, [cla('x', 1), cla('nope')]);
    const r3 = await c.next();
    expect(names(r3)).toEqual(['nope', 'x']);
    c.ack(r3);

    // re-subscribing sends the resource again (the server forgot the client's copy)
    c.request({ type_url: EDS, resource_names_subscribe: ['y'] });
    const r4 = await c.next();
    expect(names(r4)).toEqual(['y']);
  });

  it('records a NACK and does not re-push until the resources change', async () => {
    const c = open();
    c.request({ type_url: CDS });
    const r1 = await c.next();
    c.nack(r1, 'bad cluster');
    const nack = await cp.waitForNack(CDS);
    expect(nack).toMatchObject({ kind: 'delta', version: r1.systemVersionInfo, nonce: r1.nonce, errorDetail: { code: 3, message: 'bad cluster' } });
    expect(await c.expectNone(300)).toBe(true);
    cp.setResources(CDS, [cluster('c', '9s')]);
    const r2 = await c.next();
    expect(names(r2)).toEqual(['c']);
  });

  it('supports explicit wildcard on a named type, an empty first response for wildcard types, and pushNow', async () => {
    const c = open();
    c.request({ type_url: TypeUrl.Listener });
    const empty = await c.next();
    expect(empty.resources).toEqual([]);
    expect(empty.systemVersionInfo).toBe('0');

    cp.setResources(SDS, [{ json: { name: 'default' } }, { json: { name: 'ROOTCA' } }]);
    c.request({ type_url: SDS, resource_names_subscribe: ['*'] });
    const r = await c.next();
    expect(names(r)).toEqual(['ROOTCA', 'default']);
    c.ack(r);
    await cp.waitForAck(SDS, r.systemVersionInfo);

    expect(cp.pushNow([SDS])).toBe(1);
    const again = await c.next();
    expect(names(again)).toEqual(['ROOTCA', 'default']);
  });

  it("answers the name table as istiod does: an empty unnamed one while it has none, removed when one is given", async () => {
    const c = open();
    c.request({ type_url: TypeUrl.NameTable });
    const r1 = await c.next();
    expect(r1.resources.map((x) => [x.name, x.resource!.typeUrl, x.resource!.value.length])).toEqual([['', TypeUrl.NameTable, 0]]);
    c.ack(r1);
    await cp.waitForAck(TypeUrl.NameTable, r1.systemVersionInfo);
    expect(await c.expectNone(200)).toBe(true);
    cp.setResources(TypeUrl.NameTable, [{ name: 'nds', binary: new Uint8Array([0x0a, 0x05, 0x0a, 0x01, 0x61, 0x12, 0x00]) }], { replace: true });
    const r2 = await c.next();
    expect(names(r2)).toEqual(['nds']);
    expect(r2.removedResources).toEqual(['']);
  });

  it('serves a reconnecting client only what changed while it was away', async () => {
    const c1 = open();
    c1.request({ type_url: CDS });
    const r1 = await c1.next();
    c1.ack(r1);
    await cp.waitForAck(CDS, r1.systemVersionInfo);
    const have = Object.fromEntries(r1.resources.map((x) => [x.name, x.version]));
    c1.close();

    cp.setResources(CDS, [cluster('b', '7s')]);
    cp.removeResources(CDS, ['c']);
    const c2 = open();
    c2.request({ type_url: CDS, initial_resource_versions: have });
    const r2 = await c2.next();
    expect(names(r2)).toEqual(['b']);
    expect(r2.removedResources).toEqual(['c']);
  });
});
