// End to end: the dev control plane's CA -> CA client -> secret manager -> SDS server on a unix
// socket -> real gRPC SDS clients (a raw test client, and the Envoy stand-in's SDS client both
// in-process and as the spawned stand-in reading an Istio-shaped bootstrap).

import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadAgentConfig, type AgentConfig } from '../../src/config/load.js';
import { secretManagerOptionsFrom, validateSecurityConfig } from '../../src/security/options.js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SecretManager } from '../../src/security/secret-manager.js';
import { SdsServer } from '../../src/sds/server.js';
import type { ControlPlane } from '../control-plane/index.js';
import { SdsClient, type ReceivedSecret } from '../envoy-stand-in/sds-client.js';
import { ensureStandInBuilt, minimalBootstrap, startEnvoyStandIn, type StandInProcess } from '../support/envoy-stand-in-harness.js';
import { freePort } from '../support/processes.js';
import { captureLogs, leafOf, managerOptions, openssl, opensslStatus, podFiles, startCa, until, workDir, type Work } from '../security/support.js';
import type { SecretManagerOptions } from '../../src/security/options.js';
import { RawSdsClient, type DecodedSecret } from './raw-client.js';

let cp: ControlPlane;
let work: Work;
let logs: ReturnType<typeof captureLogs>;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  cp = await startCa();
});
afterAll(async () => {
  await cp.close();
});
beforeEach(() => {
  work = workDir('pa-sdse-');
  podFiles(work, cp);
  cp.ca.setFailure('none');
  logs = captureLogs();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  logs.restore();
  work.cleanup();
});

const socketOf = (w: Work): string => join(w.dir, 'var/run/secrets/workload-spiffe-uds/socket');

async function startAgentSecurity(over: Partial<SecretManagerOptions> = {}, target: ControlPlane | { address: string } = cp): Promise<{ manager: SecretManager; sds: SdsServer }> {
  const manager = new SecretManager(managerOptions(work, target, over));
  manager.start();
  const sds = new SdsServer({ socketPath: socketOf(work), secrets: manager });
  await sds.start();
  cleanups.push(() => manager.close(), () => sds.close());
  return { manager, sds };
}

function rawClient(): RawSdsClient {
  const c = new RawSdsClient(socketOf(work));
  cleanups.push(() => c.close());
  return c;
}

/** The checks the issue asks for, on what an SDS client received. */
function checkWorkloadSecret(def: { certificateChain: string; privateKey: string }, rootPem: string, ttlSeconds: number): void {
  const rootFile = work.write(`check/${Math.random()}/root.pem`, rootPem);
  const chainFile = work.write(`check/${Math.random()}/chain.pem`, def.certificateChain);
  const v = opensslStatus(['verify', '-CAfile', rootFile, chainFile]);
  expect(v.status, v.output).toBe(0);
  const text = openssl(['x509', '-noout', '-text', '-in', chainFile]);
  expect(text).toMatch(/X509v3 Subject Alternative Name: critical\s*\n\s*URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/hello\s*\n/);
  const leaf = new X509Certificate(leafOf(def.certificateChain));
  const lifetime = (Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 1000 - 120; // notBefore is back-dated 2 min
  expect(Math.abs(lifetime - ttlSeconds)).toBeLessThanOrEqual(5);
  expect(leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(createPublicKey(createPrivateKey(def.privateKey)).export({ type: 'spki', format: 'der' }))).toBe(true);
}

function byName(secrets: readonly DecodedSecret[], name: string): DecodedSecret {
  const s = secrets.find((x) => x.name === name);
  if (!s) throw new Error(`no ${name} in ${JSON.stringify(secrets.map((x) => x.name))}`);
  return s;
}

describe('SDS end to end with the Istio CA', () => {
  for (const keySpec of [{ type: 'rsa', bits: 2048, pkcs8: false }, { type: 'ecdsa', curve: 'P256', pkcs8: true }] as const) {
    it(`${keySpec.type.toUpperCase()}: default and ROOTCA over the socket; chain verifies; critical SPIFFE SAN; lifetime; key matches`, async () => {
      await startAgentSecurity({ keySpec, secretTtlMs: 7200_000 });
      const c = rawClient();
      c.send({ names: ['default', 'ROOTCA'], nodeId: 'sidecar~10.0.0.1~hello.default~default.svc.cluster.local' });
      const got: DecodedSecret[] = [];
      while (!got.some((s) => s.name === 'default') || !got.some((s) => s.name === 'ROOTCA')) {
        const r = await c.next();
        got.push(...r.secrets);
        c.ack(r, ['default', 'ROOTCA']);
      }
      const def = byName(got, 'default');
      const root = byName(got, 'ROOTCA');
      expect(root.trustedCa!.trim()).toBe(cp.rootCertPem.trim());
      checkWorkloadSecret({ certificateChain: def.certificateChain!, privateKey: def.privateKey! }, root.trustedCa!, 7200);
      expect(def.privateKey).toMatch(keySpec.pkcs8 ? /BEGIN PRIVATE KEY/ : /BEGIN RSA PRIVATE KEY/);
    });
  }

  it("the stand-in's SDS client (in process): ACKs default and ROOTCA, which validate", async () => {
    await startAgentSecurity({ keySpec: { type: 'ecdsa', curve: 'P256', pkcs8: false } });
    const received: ReceivedSecret[] = [];
    const client = new SdsClient({ target: `unix:${socketOf(work)}`, resourceNames: ['default', 'ROOTCA'], node: { id: 'sidecar~1~a.b~b.svc', cluster: 'a.b' } }, { onSecret: (s) => received.push(s) });
    client.start();
    cleanups.push(() => client.close());
    await until('both secrets', () => (client.secret('default') && client.secret('ROOTCA') ? true : undefined));
    expect(client.nacks).toBe(0);
    const def = client.secret('default')!;
    checkWorkloadSecret({ certificateChain: def.certChainPem!, privateKey: def.privateKeyPem! }, client.secret('ROOTCA')!.trustedCaPem!, 3600);
  });

  it('rotation with a short TTL: the new certificate arrives on the same stream before expiry, never followed by the old one', async () => {
    const { sds } = await startAgentSecurity({ secretTtlMs: 3000, graceRatio: 0.5 });
    const c = rawClient();
    c.send({ names: ['default'] });
    const serials: { serial: string; at: number; notAfter: number; version: string }[] = [];
    while (serials.length < 3) {
      const r = await c.next(10_000);
      c.ack(r, ['default']);
      for (const s of r.secrets) {
        const leaf = new X509Certificate(leafOf(s.certificateChain!));
        serials.push({ serial: leaf.serialNumber, at: Date.now(), notAfter: Date.parse(leaf.validTo), version: r.versionInfo });
      }
    }
    expect(new Set(serials.map((s) => s.serial)).size).toBe(3); // every push is a new certificate, no old one comes back
    for (let i = 1; i < serials.length; i++) {
      expect(serials[i]!.at).toBeLessThan(serials[i - 1]!.notAfter); // before the previous one expired
      expect(serials[i]!.version).not.toBe(serials[i - 1]!.version);
    }
    expect(c.ended).toBeUndefined();
    expect(sds.streamInfo()).toHaveLength(1); // one stream all along
  });

  it('CA down at start: the SDS stream waits, then gets the certificate when the CA returns', async () => {
    cp.ca.setFailure('unavailable');
    await startAgentSecurity();
    const c = rawClient();
    c.send({ names: ['default', 'ROOTCA'] });
    await until('failed attempts', () => ((logs.text().match(/failed to get a workload certificate/g)?.length ?? 0) >= 2 ? true : undefined));
    await c.none(100);
    cp.ca.setFailure('none');
    const r = await c.next();
    expect(r.secrets.map((s) => s.name).sort()).toEqual(['ROOTCA', 'default']);
  });

  it('CA returning garbage then a chain for another key: both rejected and logged, the stream gets a valid certificate', async () => {
    cp.ca.setFailure('garbage', { times: 1 });
    await startAgentSecurity();
    const c = rawClient();
    c.send({ names: ['default'] });
    await until('the garbage to be rejected', () => (/rejected the CA response/.test(logs.text()) ? true : undefined));
    cp.ca.setFailure('wrong-key', { times: 1 });
    const r = await c.next();
    const def = byName(r.secrets, 'default');
    checkWorkloadSecret({ certificateChain: def.certificateChain!, privateKey: def.privateKey! }, cp.rootCertPem, 3600);
  });

  it('a mounted file-cert replaced by an invalid file is not pushed; a valid replacement is', async () => {
    const { generateCsr } = await import('../control-plane/index.js');
    const issue = async (): Promise<{ chain: string; key: string }> => {
      const { csrPem, keyPem } = await generateCsr({ spiffeId: 'spiffe://cluster.local/ns/default/sa/gw', keyAlgorithm: 'ecdsa' });
      return { chain: (await cp.ca.sign(csrPem, 3600)).certChain.join(''), key: keyPem };
    };
    const a = await issue();
    const cert = work.write('creds/tls.crt', a.chain);
    const key = work.write('creds/tls.key', a.key);
    await startAgentSecurity();
    const name = `file-cert:${cert}~${key}`;
    const c = rawClient();
    c.send({ names: [name] });
    const r1 = await c.next();
    expect(byName(r1.secrets, name).certificateChain).toBe(a.chain);
    c.ack(r1, [name]);
    work.write('creds/tls.crt', '-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n');
    await until('the rejection', () => (/keeping the previous valid secret/.test(logs.text()) ? true : undefined));
    await c.none(200);
    const b = await issue();
    work.write('creds/tls.key', b.key);
    work.write('creds/tls.crt', b.chain);
    const r2 = await c.next();
    expect(byName(r2.secrets, name)).toMatchObject({ certificateChain: b.chain, privateKey: b.key });
  });

  it('an SDS client asking for an unknown name still gets the others', async () => {
    await startAgentSecurity();
    const c = rawClient();
    c.send({ names: ['default', 'kubernetes://my-secret'] });
    const r = await c.next();
    expect(r.secrets.map((s) => s.name)).toEqual(['default']);
    expect(logs.text()).toMatch(/not serving "kubernetes:\/\/my-secret": unknown resource name/);
  });
});

describe('wired from the AgentConfig, as the Agent does', () => {
  function agentConfig(env: Record<string, string>): AgentConfig {
    return loadAgentConfig({
      env: {
        POD_NAME: 'hello-1',
        POD_NAMESPACE: 'default',
        SERVICE_ACCOUNT: 'hello',
        ISTIOD_SAN: 'istiod.istio-system.svc',
        PROXY_CONFIG: JSON.stringify({ discoveryAddress: cp.address }),
        ...env,
      },
      cwd: work.dir,
      hostAddresses: ['10.0.0.1'],
    });
  }

  it('secret manager -> SDS server on config.paths.sdsSocket; ECC env; CA_HEADER_* and ClusterID reach the CA', async () => {
    const config = agentConfig({ ECC_SIGNATURE_ALGORITHM: 'ECDSA', ISTIO_META_CLUSTER_ID: 'cluster-7', CA_HEADER_X_TENANT: 'shop', WORKLOAD_IDENTITY_SOCKET_FILE: 'sds.sock' });
    validateSecurityConfig(config);
    const manager = new SecretManager(secretManagerOptionsFrom(config));
    manager.start();
    const sds = new SdsServer({ socketPath: config.paths.sdsSocket, secrets: manager });
    await sds.start();
    cleanups.push(() => manager.close(), () => sds.close());
    expect(config.paths.sdsSocket).toBe(join(work.dir, 'var/run/secrets/workload-spiffe-uds/sds.sock'));
    const c = new RawSdsClient(config.paths.sdsSocket);
    cleanups.push(() => c.close());
    c.send({ names: ['default'] });
    const def = byName((await c.next()).secrets, 'default');
    expect(def.privateKey).toMatch(/BEGIN EC PRIVATE KEY/);
    checkWorkloadSecret({ certificateChain: def.certificateChain!, privateKey: def.privateKey! }, cp.rootCertPem, 24 * 3600);
    const rec = cp.ca.requests().at(-1)!;
    expect(rec.metadata).toMatchObject({ clusterid: ['cluster-7'], x_tenant: ['shop'], authorization: ['Bearer test-token-1'] });
  });

  it('DISABLE_ENVOY: no SDS server; the certificate is fetched, rotated and written to OUTPUT_CERTS', async () => {
    const config = agentConfig({ DISABLE_ENVOY: 'true', OUTPUT_CERTS: './var/run/secrets/istio-proxyless', SECRET_TTL: '3s' });
    validateSecurityConfig(config);
    const manager = new SecretManager(secretManagerOptionsFrom(config));
    manager.start();
    cleanups.push(() => manager.close());
    const out = join(work.dir, 'var/run/secrets/istio-proxyless');
    const read = (f: string): string | undefined => {
      try {
        return readFileSync(join(out, f), 'utf8');
      } catch {
        return undefined;
      }
    };
    const first = await until('the first certificate on disk', () => read('cert-chain.pem'));
    expect(statSync(join(out, 'key.pem')).mode & 0o777).toBe(0o600);
    checkWorkloadSecret({ certificateChain: first, privateKey: read('key.pem')! }, read('root-cert.pem')!, 3);
    const second = await until('the rotated certificate on disk', () => (read('cert-chain.pem') !== first ? read('cert-chain.pem') : undefined), 10_000);
    await until('the matching key', () => {
      const key = read('key.pem')!;
      const leaf = new X509Certificate(leafOf(second));
      return leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(createPublicKey(createPrivateKey(key)).export({ type: 'spki', format: 'der' })) ? true : undefined;
    });
    expect(existsSync(config.paths.sdsSocket)).toBe(false);
  });
});

describe('the Envoy stand-in as an SDS client (ENVOY_STANDIN_SDS=1)', () => {
  // the launcher recompiles dist-test/ when the stand-in's sources are newer: slow on a busy machine
  beforeAll(() => ensureStandInBuilt(), 180_000);

  it("reads the sds-grpc pipe from its bootstrap, records the secrets and serves them at /standin/secrets", async () => {
    const { sds } = await startAgentSecurity({ keySpec: { type: 'rsa', bits: 2048, pkcs8: false } });
    const sdsServerOf = (): SdsServer => sds;
    const bootstrap = minimalBootstrap({ adminPort: await freePort() }) as { static_resources: { clusters: unknown[] } };
    bootstrap.static_resources.clusters.push({
      name: 'sds-grpc',
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: { cluster_name: 'sds-grpc', endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: socketOf(work) } } } }] }] },
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          explicit_http_config: { http2_protocol_options: {} },
        },
      },
    });
    const standIn: StandInProcess = await startEnvoyStandIn({ bootstrap, env: { ENVOY_STANDIN_SDS: '1' } });
    cleanups.push(() => standIn.stop());
    const events = await until('sds record events', () => {
      const ev = standIn.record().filter((e) => e.event === 'sds');
      return ev.some((e) => e.name === 'default') && ev.some((e) => e.name === 'ROOTCA') ? ev : undefined;
    });
    const def = events.find((e) => e.name === 'default')!;
    expect(def).toMatchObject({ kind: 'tls_certificate', version: expect.stringMatching(/Z\/\d+$/) });
    expect(def.certChainPem).toMatch(/BEGIN CERTIFICATE/);
    expect(JSON.stringify(events)).not.toMatch(/PRIVATE KEY/);
    expect(sdsServerOf().streamInfo()[0]!.nodeId).toBe('sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local'); // the bootstrap's node
    const res = await standIn.get('/standin/secrets');
    const body = JSON.parse(res.body) as { connected: boolean; acks: number; nacks: number; secrets: { name: string; certChainPem?: string; trustedCaPem?: string }[] };
    expect(body).toMatchObject({ connected: true, nacks: 0 });
    expect(body.secrets.map((s) => s.name).sort()).toEqual(['ROOTCA', 'default']);
    expect(body.secrets.find((s) => s.name === 'ROOTCA')!.trustedCaPem!.trim()).toBe(cp.rootCertPem.trim());
    expect(res.body).not.toMatch(/PRIVATE KEY/);
    const verify = opensslStatus(['verify', '-CAfile', work.write('check/r.pem', cp.rootCertPem), work.write('check/c.pem', String(def.certChainPem))]);
    expect(verify.status, verify.output).toBe(0);
  });
});
