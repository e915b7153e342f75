import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { messageSchema, parseEnvoyJson } from '../support/envoy-protos.js';
import { buildResourceSet, cloneName, KIND_TYPE_URL } from './resource-set.js';
import { parseResourceFile } from './resources.js';
import { decodeMessage, messageToJson, TypeUrl } from './xds-protos.js';

describe('buildResourceSet', () => {
  it('extracts the sidecar config dump resources and renames them consistently per copy', () => {
    const set = buildResourceSet({ scale: 2 });
    expect([...set.byType.keys()].sort()).toEqual([
      TypeUrl.Cluster,
      TypeUrl.ClusterLoadAssignment,
      TypeUrl.Listener,
      TypeUrl.RouteConfiguration,
      TypeUrl.Secret,
    ].sort());
    const clusters = set.byType.get(TypeUrl.Cluster)!.map((r) => r.name);
    expect(clusters).toContain('inbound-vip|8000|http|httpbin-0001.default.svc.cluster.local');
    expect(clusters).toContain('agent-0000');
    expect(set.count(TypeUrl.Cluster)).toBe(2 * 3);
    expect(set.count(TypeUrl.Secret)).toBe(2 * 2);
    expect(set.byType.get(TypeUrl.Listener)!.map((r) => r.name)).toContain('0.0.0.0_15021-0001');

    // references follow the renamed resources of the same copy: the EDS cluster's service name
    const schema = messageSchema(TypeUrl.Cluster);
    const eds = set.byType.get(TypeUrl.Cluster)!.find((r) => r.name.startsWith('inbound-vip|8000') && r.name.includes('-0001'))!;
    const json = messageToJson(schema, decodeMessage<object>(schema, eds.binary)) as { name: string; eds_cluster_config: { service_name: string } };
    expect(json.eds_cluster_config.service_name).toBe(json.name);
    // the byte-level clone equals encoding the renamed JSON
    expect(Buffer.from(toBinary(schema, parseEnvoyJson(schema.typeName, json))).equals(Buffer.from(eds.binary))).toBe(true);
    expect(cloneName('outbound|80||a.b.svc.cluster.local', '7')).toBe('outbound|80||a-7.b.svc.cluster.local');
  });

  it('clones clusters up to a target size', () => {
    const target = 2 * 1024 * 1024;
    const set = buildResourceSet({ targetBytes: target, onlyTargeted: true });
    expect([...set.byType.keys()]).toEqual([TypeUrl.Cluster]);
    expect(set.bytes(TypeUrl.Cluster)).toBeGreaterThanOrEqual(target);
    expect(set.bytes(TypeUrl.Cluster)).toBeLessThan(target + 1024);
    const names = set.byType.get(TypeUrl.Cluster)!.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it('writes files the control plane loads back identically', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-set-'));
    try {
      const set = buildResourceSet({ kinds: ['clusters', 'routes', 'extensions'] });
      const files = set.writeTo(dir);
      expect(files.map((f) => path.basename(f)).sort()).toEqual(['clusters.json', 'extensions.json', 'routes.json']);
      for (const f of files) {
        const parsed = parseResourceFile(path.basename(f), fs.readFileSync(f, 'utf8'));
        const kind = path.basename(f, '.json') as keyof typeof KIND_TYPE_URL;
        const built = set.byType.get(KIND_TYPE_URL[kind])!;
        expect(parsed.map((r) => r.name)).toEqual(built.map((r) => r.name));
        parsed.forEach((r, i) => expect(Buffer.from(r.binary).equals(Buffer.from(built[i]!.binary))).toBe(true));
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
