import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { decodeResource, openSotw, resourceNames, type SotwClient } from './clients.js';
import { parseResourceFile, ResourceError, toStoredResource } from './resources.js';
import { TypeUrl } from './xds-protos.js';

const CDS = TypeUrl.Cluster;
const LDS = TypeUrl.Listener;

const clusterJson = (name: string, timeout = '1s') => ({ '@type': CDS, name, type: 'STATIC', connect_timeout: timeout });
const listenerJson = (name: string, port: number) => ({ '@type': LDS, name, address: { socket_address: { address: '0.0.0.0', port_value: port } } });

describe('resource files', () => {
  it('parses a single resource or a list, strictly, naming file, entry and field on errors', () => {
    expect(parseResourceFile('one.json', JSON.stringify(clusterJson('a'))).map((r) => r.name)).toEqual(['a']);
    const list = parseResourceFile('list.json', JSON.stringify([clusterJson('a'), listenerJson('l', 80), { '@type': TypeUrl.ClusterLoadAssignment, cluster_name: 'a' }]));
    expect(list.map((r) => `${r.typeUrl.split('.').pop()}/${r.name}`)).toEqual(['Cluster/a', 'Listener/l', 'ClusterLoadAssignment/a']);
    expect(parseResourceFile('c.yaml', `"@type": ${CDS}\nname: y\nconnect_timeout: 2s\n`)[0]!.name).toBe('y');

    expect(() => parseResourceFile('bad.json', JSON.stringify([clusterJson('a'), { ...clusterJson('b'), bogus_field: 1 }]))).toThrow(
      /bad\.json\[1\]: .*unknown field "bogus_field" in envoy\.config\.cluster\.v3\.Cluster/,
    );
    expect(() => parseResourceFile('deep.json', JSON.stringify({ ...clusterJson('a'), load_assignment: { cluster_name: 'a', endpoints: [{ lb_endpoints: [{ endpont: {} }] }] } }))).toThrow(
      /deep\.json: .*at load_assignment\.endpoints\[0\]\.lb_endpoints\[0\]\.endpont/,
    );
    expect(() => parseResourceFile('t.json', JSON.stringify({ ...clusterJson('a'), connect_timeout: 'soon' }))).toThrow(/connect_timeout/);
    expect(() => parseResourceFile('n.json', JSON.stringify({ name: 'x' }))).toThrow(/n\.json: missing "@type"/);
    expect(() => parseResourceFile('u.json', JSON.stringify({ '@type': 'type.googleapis.com/no.such.Type', name: 'x' }))).toThrow(/u\.json: cannot serve/);
    expect(() => parseResourceFile('nameless.json', JSON.stringify({ '@type': CDS, type: 'STATIC' }))).toThrow(/has no name/);
    expect(() => parseResourceFile('dup.json', JSON.stringify([clusterJson('a'), clusterJson('a')]))).toThrow(/dup\.json\[1\]: duplicate envoy\.config\.cluster\.v3\.Cluster "a"/);
    expect(() => parseResourceFile('j.json', '{"@type": ')).toThrow(/j\.json: not valid JSON/);
  });

  it('builds resources from JSON or binary for the programmatic API', () => {
    const fromJson = toStoredResource(CDS, { json: clusterJson('a') });
    const fromBinary = toStoredResource(CDS, { binary: fromJson.binary });
    expect(fromBinary).toEqual(fromJson);
    expect(toStoredResource('type.googleapis.com/istio.networking.nds.v1.NameTable', { name: 'nds', binary: new Uint8Array([1, 2]) }).name).toBe('nds');
    expect(() => toStoredResource(CDS, { json: { ...clusterJson('a'), '@type': LDS } })).toThrow(ResourceError);
  });
});

describe('resource directory', () => {
  let dir: string;
  let cp: ControlPlane;
  let client: SotwClient | undefined;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-resources-'));
  });

  afterEach(async () => {
    client?.close();
    client = undefined;
    await cp?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const write = (file: string, value: unknown) => {
    const p = path.join(dir, file);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    // write-then-rename, as editors and ConfigMap updates do
    fs.writeFileSync(`${p}.tmp~`, typeof value === 'string' ? value : JSON.stringify(value));
    fs.renameSync(`${p}.tmp~`, p);
  };

  it('loads the directory, pushes changed files again and keeps the last good resources of a bad file', async () => {
    write('clusters.json', [clusterJson('a'), clusterJson('b')]);
    write('sub/listener.yaml', `"@type": ${LDS}\nname: l\naddress: { socket_address: { address: 0.0.0.0, port_value: 8080 } }\n`);
    write('README.txt', 'ignored');
    write('.hidden.json', 'not even JSON');
    cp = await startControlPlane({ plaintext: true, resourcesDir: dir, ca: { keyAlgorithm: 'ecdsa' }, watch: { pollIntervalMs: 0 } });
    expect(cp.resources(CDS).map((r) => r.name)).toEqual(['a', 'b']);
    expect(cp.resources(LDS).map((r) => r.name)).toEqual(['l']);
    expect(cp.resourceErrors()).toEqual([]);

    client = openSotw(cp);
    client.request({ type_url: CDS });
    const r1 = await client.next();
    client.ack(r1);
    await cp.waitForAck(CDS, r1.versionInfo);

    // a change to the file is pushed again
    let reload = cp.waitForReload();
    write('clusters.json', [clusterJson('a', '3s'), clusterJson('b')]);
    expect((await reload).events.map((e) => [e.changed, e.removed])).toEqual([[['a'], []]]);
    const r2 = await client.next();
    expect(r2.versionInfo).not.toBe(r1.versionInfo);
    expect(decodeResource(r2.resources.find((x) => decodeResource(x).name === 'a')!).json).toMatchObject({ connect_timeout: '3s' });
    client.ack(r2);

    // a bad file is reported and does not replace the previous good resources
    reload = cp.waitForReload();
    write('clusters.json', [clusterJson('a', '4s'), { ...clusterJson('b'), not_a_field: true }]);
    const bad = await reload;
    expect(bad.events).toEqual([]);
    expect(bad.errors).toHaveLength(1);
    expect(bad.errors[0]!.file).toBe('clusters.json');
    expect(bad.errors[0]!.message).toMatch(/clusters\.json\[1\]: invalid envoy\.config\.cluster\.v3\.Cluster at not_a_field: unknown field "not_a_field"/);
    expect(cp.resourceErrors()).toEqual(bad.errors);
    expect(cp.version(CDS)).toBe(r2.versionInfo);
    expect(cp.resources(CDS).map((r) => r.name)).toEqual(['a', 'b']);
    expect(await client.expectNone(300)).toBe(true);

    // fixing it clears the error; deleting a file removes its resources
    reload = cp.waitForReload();
    write('clusters.json', [clusterJson('a', '4s')]);
    await reload;
    expect(cp.resourceErrors()).toEqual([]);
    const r3 = await client.next();
    expect(resourceNames(r3)).toEqual(['a']);
    client.ack(r3);

    reload = cp.waitForReload();
    fs.rmSync(path.join(dir, 'sub', 'listener.yaml'));
    expect((await reload).events).toEqual([expect.objectContaining({ typeUrl: LDS, removed: ['l'] })]);
    expect(cp.resources(LDS)).toEqual([]);
  });

  it('reports a bad file at start-up and serves the good ones', async () => {
    write('a.json', clusterJson('a'));
    write('b.json', '{ "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "b", "connect_timeout": 5 }');
    const logs: string[] = [];
    cp = await startControlPlane({ plaintext: true, resourcesDir: dir, ca: { keyAlgorithm: 'ecdsa' }, log: (m) => logs.push(m), watch: { pollIntervalMs: 0 } });
    expect(cp.resources(CDS).map((r) => r.name)).toEqual(['a']);
    expect(cp.resourceErrors()).toEqual([{ file: 'b.json', message: expect.stringMatching(/^b\.json: invalid envoy\.config\.cluster\.v3\.Cluster at connect_timeout/) }]);
    expect(logs.some((l) => l.includes('rejected resource file b.json'))).toBe(true);
  });
});
