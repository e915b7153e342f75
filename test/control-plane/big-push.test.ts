import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { openDelta, openSotw } from './clients.js';
import { buildResourceSet, type ResourceSet } from './resource-set.js';
import { TypeUrl } from './xds-protos.js';

const CDS = TypeUrl.Cluster;
const MiB = 1024 * 1024;

describe('big pushes', () => {
  let cp: ControlPlane;
  let set: ResourceSet;

  beforeAll(async () => {
    cp = await startControlPlane({ ca: { keyAlgorithm: 'ecdsa' } });
    set = buildResourceSet({ targetBytes: 65 * MiB, onlyTargeted: true });
    set.applyTo(cp);
  }, 60_000);

  afterAll(async () => {
    await cp.close();
  });

  it('delivers a SotW CDS response larger than 64 MiB over TLS and gets it ACKed', async () => {
    const c = openSotw(cp);
    try {
      c.request({ type_url: CDS });
      const res = await c.next(60_000);
      const bytes = res.resources.reduce((n, r) => n + r.value.length, 0);
      expect(res.resources).toHaveLength(set.count(CDS));
      expect(bytes).toBe(set.bytes(CDS));
      expect(bytes).toBeGreaterThan(64 * MiB);
      const first = set.byType.get(CDS)![0]!;
      expect(Buffer.from(res.resources[0]!.value).equals(Buffer.from(first.binary))).toBe(true);
      c.ack(res);
      await cp.waitForAck(CDS, res.versionInfo);
      expect(cp.connectedStreams()[0]!.responses.at(-1)!.bytes).toBe(bytes);
    } finally {
      c.close();
    }
  }, 90_000);

  it('delivers the same set over Delta', async () => {
    const c = openDelta(cp);
    try {
      c.request({ type_url: CDS });
      const res = await c.next(60_000);
      expect(res.resources).toHaveLength(set.count(CDS));
      c.ack(res);
      await cp.waitForAck(CDS, res.systemVersionInfo);
    } finally {
      c.close();
    }
  }, 90_000);
});
