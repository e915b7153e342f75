// COMPLIANCE_POLICY through the real agent: its xDS stream to istiod and its CSR to the CA each go
// through a TLS front started here (one for the discovery address, one for CA_ADDR) that records
// every handshake and forwards the bytes to the development control plane (plaintext behind it).
// The fronts show what each of the agent's clients negotiated: under fips-140-2 only TLS 1.2 with
// a FIPS suite, and a TLS 1.3-only front is refused by both clients; an unknown policy restricts
// nothing and is logged; a policy the runtime cannot honour stops start-up.

import { connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEFAULT_SERVING_SANS, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, runAgent, stopAgentAndStandIns, type RunningProcess, tempDir } from '../support/processes.js';
import { FIPS_TLS12_SUITES, logHandshakes, pqcSupported, type HandshakeLog, type TlsOffer } from '../support/tls-offer.js';

const TOKEN = 'compliance-token';
interface Front extends HandshakeLog {
  readonly address: string;
  close(): Promise<void>;
}

let cp: ControlPlane;
let serving: { certChainPem: string; keyPem: string };
let work: ReturnType<typeof tempDir> | undefined;
let agent: RunningProcess | undefined;
const fronts: Front[] = [];

beforeAll(async () => {
  cp = await startControlPlane({ plaintext: true, token: TOKEN, log: () => undefined });
  serving = await cp.ca.issueServingCert(DEFAULT_SERVING_SANS);
});
afterAll(async () => {
  await cp.close();
});
afterEach(async () => {
  await stopAgentAndStandIns(agent, work);
  await Promise.all(fronts.splice(0).map((f) => f.close()));
});

/** A TLS front for the control plane offering only what `offer` allows (HTTP/2 by ALPN, as istiod). */
async function startFront(offer: TlsOffer): Promise<Front> {
  const server = tls.createServer({ key: serving.keyPem, cert: serving.certChainPem, ALPNProtocols: ['h2'], ...offer }, (socket) => {
    const upstream = connect(cp.port, cp.host);
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
  });
  const log = logHandshakes(server);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const front: Front = {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    ...log,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  fronts.push(front);
  return front;
}

/** The hello pod's agent with istiod at `xds` and the CA at `ca`, the Envoy stand-in as a real ADS and SDS client. */
async function startAgent(xds: Front, ca: Front, env: Record<string, string>): Promise<{ agent: RunningProcess; sdsNames: () => Set<string> }> {
  work = tempDir('pa-compliance-');
  writeIstiodMounts(work.path, cp.rootCertPem, TOKEN);
  const record = join(work.path, 'record.jsonl');
  const pod = injectedProxy('hello.yaml.injected');
  agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      ...env,
      CA_ADDR: ca.address,
      ENVOY_STANDIN_ADS: '1',
      ENVOY_STANDIN_SDS: '1',
      ENVOY_STANDIN_RECORD: record,
      PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: await freePort(), statusPort: 0, discoveryAddress: xds.address, terminationDrainDuration: '0s' }),
    },
  });
  return { agent, sdsNames: () => new Set(readRecord(record).filter((e) => e.event === 'sds').map((e) => String(e.name))) };
}

/** The CA issued the workload certificate (Envoy has it over SDS) and an ADS stream reached the control plane. */
async function waitForCertificateAndAds(a: RunningProcess, sdsNames: () => Set<string>, streamsBefore: number): Promise<void> {
  await vi.waitFor(
    () => {
      if (a.child.exitCode !== null) throw new Error(`agent exited:\n${a.output()}`);
      expect(sdsNames().has('default')).toBe(true);
      expect(cp.streams().length).toBeGreaterThan(streamsBefore);
    },
    { timeout: 40_000, interval: 100 },
  );
}

describe('COMPLIANCE_POLICY through the agent', () => {
  it('fips-140-2: the xDS and CA clients negotiate TLS 1.2 with a FIPS suite', { timeout: 60_000 }, async () => {
    const xds = await startFront({});
    const ca = await startFront({});
    const { agent: a, sdsNames } = await startAgent(xds, ca, { COMPLIANCE_POLICY: 'fips-140-2' });
    await waitForCertificateAndAds(a, sdsNames, cp.streams().length);
    for (const front of [xds, ca]) {
      expect(front.handshakes.length).toBeGreaterThan(0);
      for (const h of front.handshakes) {
        expect(h.protocol).toBe('TLSv1.2');
        expect(FIPS_TLS12_SUITES).toContain(h.cipher);
      }
    }
  });

  it('fips-140-2: a TLS 1.3-only istiod and CA are refused by both clients', { timeout: 60_000 }, async () => {
    const xds = await startFront({ minVersion: 'TLSv1.3' });
    const ca = await startFront({ minVersion: 'TLSv1.3' });
    const { agent: a } = await startAgent(xds, ca, { COMPLIANCE_POLICY: 'fips-140-2' });
    await vi.waitFor(
      () => {
        if (a.child.exitCode !== null) throw new Error(`agent exited:\n${a.output()}`);
        expect(xds.failures.length).toBeGreaterThan(0);
        expect(ca.failures.length).toBeGreaterThan(0);
      },
      { timeout: 40_000, interval: 100 },
    );
    expect(xds.handshakes).toEqual([]);
    expect(ca.handshakes).toEqual([]);
  });

  it('an unknown value restricts nothing (TLS 1.3-only fronts work) and is logged with the variable and the value', { timeout: 60_000 }, async () => {
    const xds = await startFront({ minVersion: 'TLSv1.3' });
    const ca = await startFront({ minVersion: 'TLSv1.3' });
    const { agent: a, sdsNames } = await startAgent(xds, ca, { COMPLIANCE_POLICY: 'fips140-2' });
    await waitForCertificateAndAds(a, sdsNames, cp.streams().length);
    for (const front of [xds, ca]) expect(front.handshakes.map((h) => h.protocol)).toContain('TLSv1.3');
    expect(a.output()).toContain('COMPLIANCE_POLICY="fips140-2" is not a known compliance policy');
  });

  it.skipIf(pqcSupported)('pqc on an OpenSSL without ML-KEM stops start-up, naming the variable, the value and the OpenSSL version', { timeout: 60_000 }, async () => {
    const xds = await startFront({});
    const ca = await startFront({});
    const { agent: a } = await startAgent(xds, ca, { COMPLIANCE_POLICY: 'pqc' });
    const exit = await a.exited;
    expect(exit.code).not.toBe(0);
    expect(a.output()).toContain('COMPLIANCE_POLICY="pqc" needs key exchange X25519MLKEM768');
    expect(a.output()).toContain(`OpenSSL ${process.versions.openssl}`);
    expect(xds.handshakes.length + xds.failures.length + ca.handshakes.length + ca.failures.length).toBe(0);
  });
});
