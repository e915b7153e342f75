// Connection management of a real gRPC server nobody here wrote (gRPC C-core, Debian's
// python3-grpcio), as istiod's grpc-go applies it: GOAWAY after a maximum connection age (istiod
// recycles every connection after 30 minutes) and keepalive ping-policy enforcement
// (GOAWAY ENHANCE_YOUR_CALM "too_many_pings"). An Envoy-like client (the stand-in's ADS client:
// reconnects with backoff, re-subscribes with what it holds) goes through the agent; after every
// fault it converges to the control plane's latest configuration.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AdsClient } from '../envoy-stand-in/ads-client.js';
import { httpRequest } from '../support/envoy-stand-in-harness.js';
import { freePort, killStarted, tempDir, type RunningProcess } from '../support/processes.js';
import { XdsProxy } from '../../src/xds/xds-proxy.js';
import { startGrpcioIstiod, writeGrpcioResources, type GrpcioIstiod } from './grpcio-istiod.js';
import { expectRunning, startProxylessAgent, xdsSocketOf } from './support.js';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';

let dir: string;
let istiod: GrpcioIstiod | undefined;
let client: AdsClient | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pa-grpcio-'));
});
afterEach(async () => {
  client?.close();
  client = undefined;
  await istiod?.stop();
  istiod = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** Version `v` of the mesh: `n` clusters and one listener, named after the version. */
function mesh(v: number, n = 3): Parameters<typeof writeGrpcioResources>[1] {
  return {
    [CDS]: { version: `v${v}`, resources: Array.from({ length: n }, (_, i) => ({ name: `c${i}-v${v}`, type: 'STATIC', connect_timeout: '1s' })) },
    [LDS]: {
      version: `v${v}`,
      resources: [{ name: `l-v${v}`, address: { socket_address: { address: '0.0.0.0', port_value: 9000 + v } } }],
    },
  };
}

interface TypeView {
  version: string;
  resources: string[];
  nacks: number;
}

function held(c: AdsClient): Record<string, TypeView> {
  return (c.snapshot() as { types: Record<string, TypeView> }).types;
}

async function expectConverged(c: AdsClient, v: number, timeout = 30_000): Promise<void> {
  await vi.waitFor(
    () => {
      const t = held(c);
      expect(t.CDS?.version).toBe(`v${v}`);
      expect(t.CDS?.resources).toEqual(mesh(v)[CDS]!.resources.map((r) => r.name).sort());
      expect(t.LDS?.version).toBe(`v${v}`);
      expect(t.LDS?.resources).toEqual([`l-v${v}`]);
    },
    { timeout, interval: 100 },
  );
}

describe('istiod on gRPC C-core: GOAWAY after the maximum connection age', () => {
  let work: ReturnType<typeof tempDir>;
  let agent: RunningProcess | undefined;
  afterEach(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.exited;
    agent = undefined;
    killStarted();
    work.cleanup();
  });

  it('the agent follows each recycled connection; the client converges to every new version, nothing NACKed', { timeout: 90_000 }, async () => {
    const resources = join(dir, 'resources.json');
    writeGrpcioResources(resources, mesh(1));
    istiod = await startGrpcioIstiod({ resourcesFile: resources, maxConnectionAgeMs: 1500, maxConnectionAgeGraceMs: 300 });
    work = tempDir('pa-grpcio-agent-');
    const statusPort = await freePort();
    agent = await startProxylessAgent({ root: work.path, discoveryAddress: istiod.address, proxyConfig: { statusPort }, env: { ISTIO_DELTA_XDS: 'false' } });
    client = new AdsClient({ target: `unix:${xdsSocketOf(work.path)}`, apiType: 'GRPC', backoffMs: { initial: 100, max: 1000 } });
    client.start();
    await expectConverged(client, 1);
    // new versions while connections keep being recycled under the client
    for (let v = 2; v <= 5; v++) {
      writeGrpcioResources(resources, mesh(v));
      await expectConverged(client, v);
      await new Promise((r) => setTimeout(r, 700));
    }
    await vi.waitFor(() => expect(istiod!.streamsOpened().length).toBeGreaterThanOrEqual(3), { timeout: 20_000 });
    const peers = istiod.streamsOpened();
    expect(new Set(peers).size).toBe(peers.length); // each stream on a connection of its own
    writeGrpcioResources(resources, mesh(6));
    await expectConverged(client, 6);
    expect(held(client).CDS!.nacks + held(client).LDS!.nacks).toBe(0);
    expectRunning(agent);
    // istiod recycling its connections is an expected end (Istio's GRPCErrorType), not an error
    const metrics = (await httpRequest(`http://127.0.0.1:${statusPort}/stats/prometheus`)).body;
    const terminations = (type: string): number => Number(new RegExp(`^istio_agent_istiod_connection_terminations\\{type="${type}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? 0);
    expect(terminations('cancelled')).toBeGreaterThanOrEqual(2);
    expect(terminations('error')).toBe(0);
  });
});

describe('istiod on gRPC C-core: keepalive ping policy', () => {
  let proxy: XdsProxy | undefined;
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
  });

  it('pings half as often after GOAWAY "too_many_pings", until the server accepts them; the client converges', { timeout: 90_000 }, async () => {
    const resources = join(dir, 'resources.json');
    writeGrpcioResources(resources, mesh(1));
    // pings closer than 1.5 s without data are strikes; the third is answered with GOAWAY
    istiod = await startGrpcioIstiod({ resourcesFile: resources, minPingIntervalMs: 1500, maxPingStrikes: 2 });
    const socketPath = join(dir, 'XDS');
    proxy = new XdsProxy({
      socketPath,
      upstream: { address: istiod.address, clusterId: 'Kubernetes', headers: {}, keepalive: { intervalMs: 250, timeoutMs: 2000 } },
    });
    await proxy.start();
    client = new AdsClient({ target: `unix:${socketPath}`, apiType: 'GRPC', backoffMs: { initial: 100, max: 1000 } });
    client.start();
    await expectConverged(client, 1);
    // 250 ms -> 500 -> 1000 -> 2000 ms: from there on the server has no reason to complain
    await vi.waitFor(() => expect(proxy!.keepalive.intervalMs).toBeGreaterThan(1500), { timeout: 60_000, interval: 100 });
    writeGrpcioResources(resources, mesh(2));
    await expectConverged(client, 2); // on the connection opened with the longer interval
    const streams = istiod.streamsOpened().length;
    expect(streams).toBeGreaterThanOrEqual(2);
    expect(istiod.lines.filter((l) => l.startsWith('stream closed')).length).toBe(streams - 1);
    // settled: several ping intervals later the same connection is still up
    await new Promise((r) => setTimeout(r, 5000));
    expect(istiod.streamsOpened().length).toBe(streams);
    writeGrpcioResources(resources, mesh(3));
    await expectConverged(client, 3);
    expect(held(client).CDS!.nacks + held(client).LDS!.nacks).toBe(0);
  });
});
