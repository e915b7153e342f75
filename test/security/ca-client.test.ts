// The Istio CA client against the development control plane's CA (TLS, bearer token) and a
// plaintext wrapper of it that captures decoded requests: metadata, token handling, retries on
// transient codes only, chain checks.

import { X509Certificate } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CaClient, CaClientError, validateSignedChain } from '../../src/security/ca-client.js';
import { generateKeyAndCsr } from '../../src/security/keys.js';
import type { CaClientOptions } from '../../src/security/options.js';
import { registry } from '../../src/metrics/registry.js';
import { CertificateAuthority, type ControlPlane } from '../control-plane/index.js';
import { caServiceDefinition, type IstioCertificateRequest } from '../control-plane/ca.js';
import { captureLogs, podFiles, SPIFFE_ID, startCa, TOKEN, workDir, type Work } from './support.js';

let cp: ControlPlane;
let work: Work;
let logs: ReturnType<typeof captureLogs>;

beforeAll(async () => {
  cp = await startCa();
});
afterAll(async () => {
  await cp.close();
});
beforeEach(() => {
  work = workDir();
  podFiles(work, cp);
  cp.ca.setFailure('none');
  logs = captureLogs();
});
afterEach(() => {
  logs.restore();
  work.cleanup();
});

function tlsOptions(over: Partial<CaClientOptions> = {}): CaClientOptions {
  return {
    address: cp.address,
    tls: { rootCaPath: work.rootCertPath, osRootBundle: '', serverName: 'istiod.istio-system.svc' },
    tokenPath: work.tokenPath,
    clusterId: 'Kubernetes',
    headers: { 'X-Team': 'payments' },
    certSigner: '',
    retryBaseMs: 5,
    ...over,
  };
}

async function metricValue(name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values ?? []).filter((v) => v.labels.request_type === 'csr').reduce((a, v) => a + v.value, 0);
}

describe('CaClient against the dev CA over TLS', () => {
  it('signs a CSR: token, ClusterID and CA_HEADER_* metadata, the requested lifetime, a chain that validates', async () => {
    const before = await metricValue('istio_agent_num_outgoing_requests');
    const client = new CaClient(tlsOptions());
    const { csrPem, key } = await generateKeyAndCsr({ type: 'rsa', bits: 2048, pkcs8: false }, SPIFFE_ID);
    const calls = cp.ca.calls;
    const chain = await client.csrSign(csrPem, 7200);
    expect(chain.length).toBeGreaterThanOrEqual(2);
    const v = validateSignedChain(chain, key, SPIFFE_ID);
    expect(v.rootPem.trim()).toBe(cp.rootCertPem.trim());
    expect(v.expireTime - Date.now()).toBeGreaterThan(7100_000);
    expect(v.expireTime - Date.now()).toBeLessThanOrEqual(7200_000);
    const rec = cp.ca.requests().at(-1)!;
    expect(cp.ca.calls).toBe(calls + 1);
    expect(rec.metadata.authorization).toEqual([`Bearer ${TOKEN}`]);
    expect(rec.metadata.clusterid).toEqual(['Kubernetes']);
    expect(rec.metadata['x-team']).toEqual(['payments']);
    expect(rec.validityDuration).toBe(7200);
    expect(await metricValue('istio_agent_num_outgoing_requests')).toBe(before + 1);
  });

  it('reads the token for every call: missing = no header (refused, not retried), rotated = new value', async () => {
    const client = new CaClient(tlsOptions());
    const { csrPem } = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, SPIFFE_ID);
    rmSync(work.tokenPath);
    let calls = cp.ca.calls;
    await expect(client.csrSign(csrPem, 3600)).rejects.toThrow(/UNAUTHENTICATED/);
    expect(cp.ca.calls).toBe(calls + 1); // UNAUTHENTICATED is not transient
    expect(cp.ca.requests().at(-1)!.metadata.authorization).toBeUndefined();
    work.write('var/run/secrets/tokens/istio-token', 'stale-token\n');
    await expect(client.csrSign(csrPem, 3600)).rejects.toThrow(/bearer token rejected/);
    work.write('var/run/secrets/tokens/istio-token', `${TOKEN}\n`);
    calls = cp.ca.calls;
    await expect(client.csrSign(csrPem, 3600)).resolves.toHaveLength(2);
    expect(cp.ca.calls).toBe(calls + 1);
  });

  it('retries UNAVAILABLE with backoff, up to 5 attempts', async () => {
    const client = new CaClient(tlsOptions());
    const { csrPem } = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, SPIFFE_ID);
    const retries = await metricValue('istio_agent_num_outgoing_retries');
    cp.ca.setFailure('unavailable', { times: 2 });
    let calls = cp.ca.calls;
    await expect(client.csrSign(csrPem, 3600)).resolves.toHaveLength(2);
    expect(cp.ca.calls).toBe(calls + 3);
    expect(await metricValue('istio_agent_num_outgoing_retries')).toBe(retries + 2);
    const failed = await metricValue('istio_agent_num_failed_outgoing_requests');
    cp.ca.setFailure('unavailable');
    calls = cp.ca.calls;
    const err = await client.csrSign(csrPem, 3600).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CaClientError);
    expect((err as CaClientError).grpcStatus).toBe(grpc.status.UNAVAILABLE);
    expect((err as CaClientError).code).toBe('CA_CLIENT');
    expect(cp.ca.calls).toBe(calls + 5);
    expect(await metricValue('istio_agent_num_failed_outgoing_requests')).toBe(failed + 1);
    expect(logs.text()).toMatch(/ca request failed \(create certificate: UNAVAILABLE: CA unavailable \(test failure mode\)\), starting attempt 4 in/);
  });

  it('rejects a one-certificate chain, garbage and a chain for another key', async () => {
    const client = new CaClient(tlsOptions());
    const { csrPem, key } = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, SPIFFE_ID);
    cp.ca.setFailure('short-chain', { times: 1 });
    await expect(client.csrSign(csrPem, 3600)).rejects.toThrow(/invalid empty CertChain/);
    cp.ca.setFailure('garbage', { times: 1 });
    const garbage = await client.csrSign(csrPem, 3600);
    expect(() => validateSignedChain(garbage, key, SPIFFE_ID)).toThrow(/no PEM certificate found/);
    cp.ca.setFailure('wrong-key', { times: 1 });
    const wrong = await client.csrSign(csrPem, 3600);
    expect(() => validateSignedChain(wrong, key, SPIFFE_ID)).toThrow(/does not certify our private key/);
    const good = await client.csrSign(csrPem, 3600);
    expect(() => validateSignedChain(good, key, 'spiffe://cluster.local/ns/other/sa/x')).toThrow(/not spiffe:\/\/cluster.local\/ns\/other/);
    expect(() => validateSignedChain([good[0]!, cp.servingCertPem!], key, SPIFFE_ID)).toThrow(/not signed by any later certificate/);
    // an indented BEGIN is no PEM block for OpenSSL or Go: Envoy would read the intermediate as the
    // leaf, so it is none here either (it passed before, and replaced a good certificate)
    expect(() => validateSignedChain([`  ${good[0]!}`, ...good.slice(1)], key, SPIFFE_ID)).toThrow(/CA response entry 0: no PEM certificate found/);
    const joined = good.map((p) => p.trim()).join('\n');
    expect(() => validateSignedChain([`  ${joined}`, good.at(-1)!], key, SPIFFE_ID)).toThrow(/does not certify our private key|not signed by/);
  });

  it('verifies the CA against the configured root and server name', async () => {
    const other = await CertificateAuthority.create({ keyAlgorithm: 'ecdsa' });
    work.write('var/run/secrets/istio/root-cert.pem', other.rootCertPem);
    const { csrPem } = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: false }, SPIFFE_ID);
    const calls = cp.ca.calls;
    await expect(new CaClient(tlsOptions({ maxAttempts: 2 })).csrSign(csrPem, 3600)).rejects.toThrow(/UNAVAILABLE/);
    expect(cp.ca.calls).toBe(calls); // never reached the service
    podFiles(work, cp);
    await expect(new CaClient(tlsOptions({ maxAttempts: 1, tls: { rootCaPath: work.rootCertPath, osRootBundle: '', serverName: 'wrong.example.com' } })).csrSign(csrPem, 3600)).rejects.toThrow(/UNAVAILABLE/);
    rmSync(work.rootCertPath);
    await expect(new CaClient(tlsOptions()).csrSign(csrPem, 3600)).rejects.toThrow(/root CA file for CA does not exist/);
    // a file there that cannot be read is not called missing: the error says why (EMFILE, EACCES, EISDIR)
    mkdirSync(work.rootCertPath);
    await expect(new CaClient(tlsOptions({ maxAttempts: 1 })).csrSign(csrPem, 3600)).rejects.toThrow(`cannot read the root CA file for the CA ${work.rootCertPath}: EISDIR`);
    rmSync(work.rootCertPath, { recursive: true });
  });
});

describe('a slow CA', () => {
  it('is waited for: a CA answering after 11 s issues the certificate on the first attempt (Istio sets no deadline)', { timeout: 40_000 }, async () => {
    const ca = await CertificateAuthority.create({ keyAlgorithm: 'ecdsa' });
    const inner = ca.handler(() => undefined, () => undefined);
    let calls = 0;
    const server = new grpc.Server();
    server.addService(caServiceDefinition(), {
      CreateCertificate: (call: grpc.ServerUnaryCall<IstioCertificateRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        calls++;
        setTimeout(() => (inner.CreateCertificate as grpc.handleUnaryCall<IstioCertificateRequest, unknown>)(call, cb), 11_000);
      },
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    try {
      const client = new CaClient({ address: `127.0.0.1:${port}`, tokenPath: work.tokenPath, clusterId: 'c1', headers: {}, certSigner: '' });
      const { csrPem, key } = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P256', pkcs8: true }, SPIFFE_ID);
      validateSignedChain(await client.csrSign(csrPem, 600), key, SPIFFE_ID);
      expect(calls).toBe(1);
    } finally {
      server.forceShutdown();
    }
  });
});

describe('CaClient request encoding (plaintext CA wrapper)', () => {
  it('sends CertSigner in the request metadata struct and CA headers as gRPC metadata', async () => {
    const ca = await CertificateAuthority.create({ keyAlgorithm: 'ecdsa' });
    const captured: { request: IstioCertificateRequest; md: grpc.Metadata }[] = [];
    const inner = ca.handler(() => undefined, () => undefined);
    const server = new grpc.Server();
    server.addService(caServiceDefinition(), {
      CreateCertificate: (call: grpc.ServerUnaryCall<IstioCertificateRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        captured.push({ request: call.request, md: call.metadata });
        (inner.CreateCertificate as grpc.handleUnaryCall<IstioCertificateRequest, unknown>)(call, cb);
      },
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    try {
      const client = new CaClient({ address: `127.0.0.1:${port}`, tokenPath: work.tokenPath, clusterId: 'c1', headers: { 'Tenant-ID': 't-42' }, certSigner: 'example.com/signer' });
      const { csrPem, key } = await generateKeyAndCsr({ type: 'ecdsa', curve: 'P384', pkcs8: true }, SPIFFE_ID);
      const chain = await client.csrSign(csrPem, 600);
      validateSignedChain(chain, key, SPIFFE_ID);
      const { request, md } = captured[0]!;
      expect(request.csr).toBe(csrPem);
      expect(Number(request.validity_duration)).toBe(600);
      // proto-loader decodes the bundled Struct with camelCase names
      expect(request.metadata).toEqual({ fields: { CertSigner: { stringValue: 'example.com/signer', kind: 'stringValue' } } });
      expect(md.get('tenant-id')).toEqual(['t-42']);
      expect(md.get('clusterid')).toEqual(['c1']);
      expect(md.get('authorization')).toEqual([`Bearer ${TOKEN}`]);
      const leaf = new X509Certificate(chain[0]!);
      expect(leaf.subjectAltName).toBe(`URI:${SPIFFE_ID}`);
    } finally {
      server.forceShutdown();
    }
  });
});
