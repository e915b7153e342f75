// Defect 0 of the reliability issue: Envoy-side ADS streams that replace each other in quick
// succession (a flapping or restarting client) must never take the agent down. Istio's rule is
// kept: a new downstream stream replaces the previous one, whose upstream stream is cancelled,
// whatever state its connection to istiod is in (dialling, handshaking, streaming).

import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDelta, openSotw, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { tempDir, type RunningProcess } from '../support/processes.js';
import { expectRunning, expectSotwPush, startProxylessAgent, stopSuite, xdsSocketOf } from './support.js';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const ADS_SOTW = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const TOKEN = 'flapping-token';

/** Opens `n` ADS streams at once on one HTTP/2 connection (they reach the agent in one read). */
function burstOnOneConnection(socketPath: string, n: number): http2.ClientHttp2Session {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  session.on('error', () => undefined);
  for (let i = 0; i < n; i++) {
    const stream = session.request({ ':method': 'POST', ':path': ADS_SOTW, 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => undefined);
    stream.resume();
    stream.write(Buffer.from([0, 0, 0, 0, 0])); // an empty DiscoveryRequest
  }
  return session;
}

describe.each([
  { upstream: 'plaintext', plaintext: true },
  { upstream: 'TLS', plaintext: false },
])('flapping Envoy-side clients, $upstream upstream', ({ plaintext }) => {
  let cp: ControlPlane;
  let work: ReturnType<typeof tempDir>;
  let agent: RunningProcess;

  beforeAll(async () => {
    work = tempDir('pa-flap-');
    cp = await startControlPlane(plaintext ? { plaintext: true } : { token: TOKEN });
    cp.setResources(CDS, [{ json: { '@type': CDS, name: 'c1', type: 'STATIC', connect_timeout: '1s' } }], { replace: true });
    agent = await startProxylessAgent({ root: work.path, discoveryAddress: cp.address, ...(plaintext ? {} : { rootCertPem: cp.rootCertPem, token: TOKEN }) });
  });
  afterAll(() => stopSuite(agent, cp, work));

  /** The agent is alive and serves a fresh client (which replaces whatever was left). */
  async function expectServing(): Promise<void> {
    expectRunning(agent);
    await expectSotwPush(work.path, CDS, 1);
    await vi.waitFor(() => expect(cp.connectedStreams()).toHaveLength(0), { timeout: 10_000 });
    expectRunning(agent);
  }

  it('survives bursts of 20 streams on one connection replacing each other while their upstreams dial', { timeout: 120_000 }, async () => {
    for (let round = 0; round < 30; round++) {
      const session = burstOnOneConnection(xdsSocketOf(work.path), 20);
      await new Promise((r) => setTimeout(r, round % 7)); // replaced and cut at every stage of the dial
      session.destroy();
      expectRunning(agent);
    }
    await expectServing();
  });

  it('survives rounds of 20 clients (SotW and Delta) opening ADS streams at once', { timeout: 120_000 }, async () => {
    const target = { address: `unix:${xdsSocketOf(work.path)}`, tls: false as const };
    for (let round = 0; round < 5; round++) {
      const clients = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? openSotw(target) : openDelta(target)));
      for (const c of clients) c.request({ type_url: CDS });
      await new Promise((r) => setTimeout(r, round * 20));
      for (const c of clients) c.close();
      expectRunning(agent);
    }
    await expectServing();
  });
});
