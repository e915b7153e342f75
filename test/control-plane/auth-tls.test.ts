import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from './control-plane.js';
import { openDelta, openSotw } from './clients.js';
import { TypeUrl } from './xds-protos.js';

const CDS = TypeUrl.Cluster;

describe('TLS and bearer token', () => {
  let cp: ControlPlane;
  let dir: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-auth-'));
    cp = await startControlPlane({ token: 'tok', rootCertOut: path.join(dir, 'root-cert.pem'), ca: { keyAlgorithm: 'ecdsa' } });
    cp.setResources(CDS, [{ json: { name: 'a', connect_timeout: '1s' } }]);
  });

  afterAll(async () => {
    await cp.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves TLS with a certificate for istiod.istio-system.svc, localhost and 127.0.0.1 signed by the root it writes out', () => {
    expect(cp.tls).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'root-cert.pem'), 'utf8')).toBe(cp.rootCertPem);
    const serving = new X509Certificate(cp.servingCertPem!);
    expect(serving.subjectAltName).toBe('DNS:istiod.istio-system.svc, DNS:localhost, IP Address:127.0.0.1');
    expect(serving.checkIssued(new X509Certificate(cp.rootCertPem))).toBe(true);
    expect(serving.verify(new X509Certificate(cp.rootCertPem).publicKey)).toBe(true);
  });

  it.each(['istiod.istio-system.svc', 'localhost'])('accepts a stream with the right token (server name %s)', async (serverName) => {
    const c = openSotw(cp, { token: 'tok', serverName });
    try {
      c.request({ type_url: CDS });
      const res = await c.next();
      expect(res.resources).toHaveLength(1);
    } finally {
      c.close();
    }
  });

  it('refuses streams without or with a wrong token (UNAUTHENTICATED)', async () => {
    const before = cp.rejectedStreams().length;
    const none = openSotw(cp);
    none.request({ type_url: CDS });
    const wrong = openDelta(cp, { token: 'nope' });
    wrong.request({ type_url: CDS });
    try {
      const [s1, s2] = await Promise.all([none.status, wrong.status]);
      expect(s1.code).toBe(16);
      expect(s1.details).toMatch(/no authorization metadata/);
      expect(s2.code).toBe(16);
      expect(s2.details).toMatch(/bearer token rejected/);
      const rejected = cp.rejectedStreams().slice(before);
      expect(rejected.map((r) => r.kind).sort()).toEqual(['delta', 'sotw']);
      expect(rejected.find((r) => r.kind === 'delta')!.metadata.authorization).toEqual(['Bearer nope']);
    } finally {
      none.close();
      wrong.close();
    }
  });

  it('rejects a client that does not trust the root', async () => {
    const other = await startControlPlane({ ca: { keyAlgorithm: 'ecdsa' } });
    const c = openSotw({ address: cp.address, tls: true, rootCertPem: other.rootCertPem }, { token: 'tok' });
    try {
      c.request({ type_url: CDS });
      expect((await c.status).code).toBe(14);
    } finally {
      c.close();
      await other.close();
    }
  });
});
