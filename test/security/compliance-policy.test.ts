// COMPLIANCE_POLICY on the agent's own TLS: the agent's gRPC client (the one that dials istiod and
// the CA) against real TLS servers started here, each offering only some versions, suites or
// curves. What each policy must refuse fails the handshake, what it allows is negotiated within
// the policy, and an empty or unknown policy restricts nothing. Which clients get the policy is
// checked through the real agent process in test/agent/compliance-policy.test.ts.

import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { GrpcCallError, unaryCall } from '../../src/grpc/client.js';
import { Status } from '../../src/grpc/status.js';
import { checkCompliancePolicy, envoyGrpcCipherSuites, tlsRestrictions } from '../../src/security/compliance-policy.js';
import { CertificateAuthority } from '../control-plane/index.js';
import { AES_GCM_TLS13_SUITES, FIPS_TLS12_SUITES, logHandshakes, pqcSupported, type HandshakeLog, type TlsOffer } from '../support/tls-offer.js';

const METHOD = '/test.Echo/Call';

interface TlsServer extends HandshakeLog {
  readonly address: string;
  close(): Promise<void>;
}

let root: string;
let serving: { certChainPem: string; keyPem: string };
const servers: TlsServer[] = [];

beforeAll(async () => {
  const ca = await CertificateAuthority.create();
  root = ca.rootCertPem;
  serving = await ca.issueServingCert(['localhost', '127.0.0.1']); // ECDSA P-256 key
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A gRPC-over-TLS server offering only what `offer` allows; answers every call with "ok". */
async function startServer(offer: TlsOffer): Promise<TlsServer> {
  const server = http2.createSecureServer({ key: serving.keyPem, cert: serving.certChainPem, ...offer });
  const log = logHandshakes(server);
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    const body = Buffer.from('ok');
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    stream.end(frame);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const s: TlsServer = {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    ...log,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  servers.push(s);
  return s;
}

/** One call through the agent's gRPC client under `policy`: the negotiated handshake, or the failure. */
async function call(server: TlsServer, policy: string): Promise<{ ok: true; protocol: string | null; cipher: string } | { ok: false; error: string }> {
  const before = server.failures.length;
  try {
    const answer = await unaryCall({ address: server.address, tls: { ca: Buffer.from(root), serverName: 'localhost', restrictions: tlsRestrictions(policy) } }, METHOD, Buffer.from('hi'), { connectTimeoutMs: 10_000, timeoutMs: 10_000 });
    expect(answer.toString()).toBe('ok');
    return { ok: true, ...server.handshakes.at(-1)! };
  } catch (err) {
    expect(err).toBeInstanceOf(GrpcCallError);
    expect((err as GrpcCallError).status).toBe(Status.UNAVAILABLE);
    // the server saw the handshake fail too (not a refused or dropped connection)
    await vi.waitFor(() => expect(server.failures.length).toBeGreaterThan(before), { timeout: 5000, interval: 20 });
    return { ok: false, error: (err as GrpcCallError).details };
  }
}

describe('COMPLIANCE_POLICY on the agent gRPC client (istiod, the CA)', () => {
  it('fips-140-2 refuses a server offering only a non-FIPS suite (ChaCha20); no policy accepts it', async () => {
    const server = await startServer({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305' });
    const refused = await call(server, 'fips-140-2');
    expect(refused.ok).toBe(false);
    expect(await call(server, 'fips-140-3')).toMatchObject({ ok: false });
    expect(await call(server, '')).toEqual({ ok: true, protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-CHACHA20-POLY1305' });
  });

  it('fips-140-2 refuses a server whose only curve is X25519 (FIPS: P-256); no policy accepts it', async () => {
    const server = await startServer({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', ecdhCurve: 'X25519' });
    expect(await call(server, 'fips-140-2')).toMatchObject({ ok: false });
    expect(await call(server, 'fips-140-3')).toMatchObject({ ok: false });
    expect(await call(server, '')).toEqual({ ok: true, protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
  });

  it('P-384 only: refused under fips-140-2 (P-256 only), accepted under fips-140-3 (P-256, P-384)', async () => {
    const server = await startServer({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384', ecdhCurve: 'P-384' });
    expect(await call(server, 'fips-140-2')).toMatchObject({ ok: false });
    expect(await call(server, 'fips-140-3')).toEqual({ ok: true, protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384' });
  });

  it('a TLS 1.3-only server: refused under fips-140-2 (TLS 1.2 only), TLS 1.3 with AES-GCM under fips-140-3, TLS 1.3 without a policy', async () => {
    const server = await startServer({ minVersion: 'TLSv1.3' });
    expect(await call(server, 'fips-140-2')).toMatchObject({ ok: false });
    const fips3 = await call(server, 'fips-140-3');
    expect(fips3).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
    expect(AES_GCM_TLS13_SUITES).toContain((fips3 as { cipher: string }).cipher);
    expect(await call(server, '')).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
  });

  it('a TLS 1.3-only server offering only ChaCha20: refused under fips-140-3, accepted without a policy', async () => {
    const server = await startServer({ minVersion: 'TLSv1.3', ciphers: 'TLS_CHACHA20_POLY1305_SHA256' });
    expect(await call(server, 'fips-140-3')).toMatchObject({ ok: false });
    expect(await call(server, '')).toEqual({ ok: true, protocol: 'TLSv1.3', cipher: 'TLS_CHACHA20_POLY1305_SHA256' });
  });

  it('a server offering everything: fips-140-2 negotiates TLS 1.2 with a FIPS suite, fips-140-3 TLS 1.3 with AES-GCM', async () => {
    const server = await startServer({});
    const fips2 = await call(server, 'fips-140-2');
    expect(fips2).toMatchObject({ ok: true, protocol: 'TLSv1.2' });
    expect(FIPS_TLS12_SUITES).toContain((fips2 as { cipher: string }).cipher);
    const fips3 = await call(server, 'fips-140-3');
    expect(fips3).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
    expect(AES_GCM_TLS13_SUITES).toContain((fips3 as { cipher: string }).cipher);
  });

  it('an unknown policy restricts nothing (as in Istio) and is reported with the variable and the value', async () => {
    const server = await startServer({ minVersion: 'TLSv1.3', ciphers: 'TLS_CHACHA20_POLY1305_SHA256' });
    expect(await call(server, 'FIPS-140-2')).toEqual({ ok: true, protocol: 'TLSv1.3', cipher: 'TLS_CHACHA20_POLY1305_SHA256' });
    const check = checkCompliancePolicy('FIPS-140-2');
    expect(check.problems).toEqual([]);
    expect(check.warnings).toHaveLength(1);
    expect(check.warnings[0]).toContain('COMPLIANCE_POLICY="FIPS-140-2" is not a known compliance policy');
    expect(check.warnings[0]).toContain('not restricted');
  });

  it.runIf(pqcSupported)('pqc: TLS 1.3 with X25519MLKEM768 only; a TLS 1.2-only server is refused', async () => {
    expect(await call(await startServer({ maxVersion: 'TLSv1.2' }), 'pqc')).toMatchObject({ ok: false });
    expect(await call(await startServer({ ecdhCurve: 'X25519' }), 'pqc')).toMatchObject({ ok: false });
    const ok = await call(await startServer({ ecdhCurve: 'X25519MLKEM768' }), 'pqc');
    expect(ok).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
    expect(AES_GCM_TLS13_SUITES).toContain((ok as { cipher: string }).cipher);
    expect(checkCompliancePolicy('pqc')).toEqual({ problems: [], warnings: [] });
  });

  it.skipIf(pqcSupported)('pqc on an OpenSSL without ML-KEM is a start-up problem naming the variable, the value and the OpenSSL version', () => {
    const check = checkCompliancePolicy('pqc');
    expect(check.problems).toHaveLength(1);
    expect(check.problems[0]).toContain('COMPLIANCE_POLICY="pqc"');
    expect(check.problems[0]).toContain('X25519MLKEM768');
    expect(check.problems[0]).toContain(`OpenSSL ${process.versions.openssl}`);
  });
});

describe('policy settings', () => {
  it('fips-140-3 warns when OpenSSL has no FIPS provider enabled, as Istio warns without Go FIPS mode', () => {
    expect(checkCompliancePolicy('fips-140-3', () => false).warnings.join()).toContain('FIPS provider is not enabled');
    expect(checkCompliancePolicy('fips-140-3', () => true)).toEqual({ problems: [], warnings: [] });
    expect(checkCompliancePolicy('fips-140-2')).toEqual({ problems: [], warnings: [] });
    expect(checkCompliancePolicy('')).toEqual({ problems: [], warnings: [] });
  });

  it("Envoy's google_grpc ciphers: the FIPS TLS 1.2 suites under both FIPS policies only", () => {
    expect(envoyGrpcCipherSuites('fips-140-2')).toBe(FIPS_TLS12_SUITES.join(':'));
    expect(envoyGrpcCipherSuites('fips-140-3')).toBe(FIPS_TLS12_SUITES.join(':'));
    expect(envoyGrpcCipherSuites('pqc')).toBeUndefined();
    expect(envoyGrpcCipherSuites('')).toBeUndefined();
  });
});

afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
