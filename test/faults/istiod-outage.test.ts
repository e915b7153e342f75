// istiod and the CA failing under a running sidecar: the real agent with the Envoy stand-in (ADS and
// SDS clients, Envoy's reconnect behaviour), the development control plane as a child process that
// the test kills and restarts on the same port with the same CA root. Nothing is lost: after each
// fault Envoy holds the control plane's latest configuration and a valid workload certificate.

import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { httpRequest } from '../support/envoy-stand-in-harness.js';
import { injectedProxy, meshEnv, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, killRecordedStandIns, killStarted, runAgent, type RunningProcess, tempDir } from '../support/processes.js';
import { makeCaRoot, startControlPlaneProcess, startRelay, type CaRoot, type ControlPlaneProcess } from './control-plane-process.js';
import { expectRunning } from './support.js';

const TOKEN = 'outage-token';
const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';

let work: ReturnType<typeof tempDir>;
let agent: RunningProcess | undefined;
let cp: ControlPlaneProcess | undefined;
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  if (agent && agent.child.exitCode === null) {
    agent.child.kill('SIGTERM');
    await agent.exited;
  }
  agent = undefined;
  killStarted();
  killRecordedStandIns(join(work.path, 'record.jsonl'));
  await cp?.kill();
  cp = undefined;
  for (const c of cleanups.splice(0)) await c();
  work.cleanup();
});

/** Writes the control plane's resources for version `v`: `n` clusters (each padded by `padBytes`) and one listener. */
function writeMesh(dir: string, v: number, n: number, padBytes = 0): void {
  const pad = 'x'.repeat(padBytes);
  const clusters = Array.from({ length: n }, (_, i) => ({
    '@type': CDS,
    name: `c${i}-v${v}`,
    type: 'STATIC',
    connect_timeout: '1s',
    ...(padBytes ? { metadata: { filter_metadata: { pad: { value: pad } } } } : {}),
  }));
  const listeners = [{ '@type': LDS, name: `l-v${v}`, address: { socket_address: { address: '0.0.0.0', port_value: 9000 + v } } }];
  for (const [file, body] of [['clusters.json', clusters], ['listeners.json', listeners]] as const) {
    writeFileSync(join(dir, `.${file}.tmp`), JSON.stringify(body));
    renameSync(join(dir, `.${file}.tmp`), join(dir, file));
  }
}

interface Sidecar {
  readonly adminPort: number;
  readonly resources: string;
  readonly root: CaRoot;
}

async function startSidecar(discoveryPort: number, env: Record<string, string> = {}): Promise<Sidecar> {
  work = tempDir('pa-outage-');
  const resources = join(work.path, 'resources');
  mkdirSync(resources);
  const root = makeCaRoot(work.path);
  writeIstiodMounts(work.path, root.certPem, TOKEN);
  const adminPort = await freePort();
  const pod = injectedProxy('hello.yaml.injected');
  const address = `127.0.0.1:${discoveryPort}`;
  agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      ...meshEnv(address, join(work.path, 'record.jsonl')),
      PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: adminPort, statusPort: 0, discoveryAddress: address, terminationDrainDuration: '0s' }),
      ...env,
    },
  });
  return { adminPort, resources, root };
}

interface XdsView {
  types: Record<string, { version: string; resources: string[]; nacks: number }>;
  nacks: number;
}
interface SecretsView {
  secrets: { name: string; certChainPem?: string; receivedAt: string }[];
}

const standIn = async <T>(s: Sidecar, path: string): Promise<T> => JSON.parse((await httpRequest(`http://127.0.0.1:${s.adminPort}${path}`)).body) as T;

async function expectHolds(s: Sidecar, v: number, n: number, timeout = 60_000): Promise<void> {
  await vi.waitFor(
    async () => {
      expectRunning(agent!);
      const xds = await standIn<XdsView>(s, '/standin/xds');
      expect(xds.types.CDS?.resources).toEqual(Array.from({ length: n }, (_, i) => `c${i}-v${v}`).sort());
      expect(xds.types.LDS?.resources).toEqual([`l-v${v}`]);
    },
    { timeout, interval: 200 },
  );
}

async function workloadCert(s: Sidecar): Promise<string | undefined> {
  // a dead agent (and with it Envoy's admin port) is reported with its output, not as ECONNREFUSED
  expectRunning(agent!);
  const view = await standIn<SecretsView>(s, '/standin/secrets');
  return view.secrets.find((x) => x.name === 'default')?.certChainPem;
}

describe('istiod and the CA down at start', () => {
  it('the sidecar starts anyway, keeps dialling, and converges once they come up: config and certificate', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const s = await startSidecar(port);
    writeMesh(s.resources, 1, 3);
    // nothing listens yet: the agent backs off its dials, Envoy's stream waits, the CSR is retried
    await vi.waitFor(() => expect(agent!.output()).toMatch(/failed to connect to upstream/), { timeout: 30_000 });
    await vi.waitFor(() => expect(agent!.output()).toMatch(/failed to get a workload certificate from the CA/), { timeout: 30_000 });
    expectRunning(agent!);
    cp = await startControlPlaneProcess({ port, resources: s.resources, root: s.root, token: TOKEN });
    await expectHolds(s, 1, 3);
    await vi.waitFor(async () => expect(await workloadCert(s)).toMatch(/BEGIN CERTIFICATE/), { timeout: 60_000, interval: 200 });
  });
});

describe('istiod killed in the middle of a large push', () => {
  it('Envoy never takes a cut push; after the restart it converges to the latest version', { timeout: 180_000 }, async () => {
    const cpPort = await freePort();
    const relay = await startRelay(cpPort);
    cleanups.push(relay.close);
    const s = await startSidecar(relay.port);
    writeMesh(s.resources, 1, 3);
    cp = await startControlPlaneProcess({ port: cpPort, resources: s.resources, root: s.root, token: TOKEN });
    await expectHolds(s, 1, 3);
    // ~16 MB of clusters: kill istiod once 2 MB of that push have passed toward the agent
    const before = relay.bytesDown();
    writeMesh(s.resources, 2, 16, 1024 * 1024);
    await vi.waitFor(() => expect(relay.bytesDown() - before).toBeGreaterThan(2 * 1024 * 1024), { timeout: 60_000, interval: 1 });
    await cp.kill();
    const passed = relay.bytesDown() - before;
    expect(passed).toBeLessThan(16 * 1024 * 1024); // the kill did land inside the push
    // Envoy still holds version 1: a cut push is never delivered as if it were whole
    await new Promise((r) => setTimeout(r, 500));
    const during = await standIn<XdsView>(s, '/standin/xds');
    expect(during.types.CDS?.resources).toEqual(['c0-v1', 'c1-v1', 'c2-v1']);
    expect(during.nacks).toBe(0);
    // istiod comes back with a newer version
    writeMesh(s.resources, 3, 5);
    cp = await startControlPlaneProcess({ port: cpPort, resources: s.resources, root: s.root, token: TOKEN });
    await expectHolds(s, 3, 5);
    expect((await standIn<XdsView>(s, '/standin/xds')).nacks).toBe(0);
    // the certificate request may have been in flight, or waiting out its retry backoff, when
    // istiod was killed: it is issued on the CA client's next attempt, not with the xDS push
    await vi.waitFor(async () => expect(await workloadCert(s)).toMatch(/BEGIN CERTIFICATE/), { timeout: 60_000, interval: 200 });
  });
});

describe('the CA down when the certificate is due for rotation', () => {
  it('keeps serving the current certificate, retries, and rotates once the CA is back', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const s = await startSidecar(port, { SECRET_TTL: '24s', SECRET_GRACE_PERIOD_RATIO: '0.5', SECRET_GRACE_PERIOD_RATIO_JITTER: '0' });
    writeMesh(s.resources, 1, 2);
    cp = await startControlPlaneProcess({ port, resources: s.resources, root: s.root, token: TOKEN, certTtl: '24s' });
    let first: string | undefined;
    await vi.waitFor(async () => expect((first = await workloadCert(s))).toMatch(/BEGIN CERTIFICATE/), { timeout: 60_000, interval: 200 });
    await cp.kill();
    cp = undefined;
    // rotation is due ~12 s after issue: the CA is down, the CSR fails and is retried
    await vi.waitFor(() => expect(agent!.output()).toMatch(/failed to get a workload certificate from the CA: .*retrying in/), { timeout: 30_000, interval: 200 });
    expect(await workloadCert(s)).toBe(first); // still served, still valid
    cp = await startControlPlaneProcess({ port, resources: s.resources, root: s.root, token: TOKEN, certTtl: '24s' });
    await vi.waitFor(async () => expect(await workloadCert(s)).not.toBe(first), { timeout: 30_000, interval: 200 });
    expect(await workloadCert(s)).toMatch(/BEGIN CERTIFICATE/);
    expectRunning(agent!);
  });
});

describe('a CA that accepts connections and never answers', () => {
  it('is a bounded failure that is retried, not a hang: xDS keeps working meanwhile', { timeout: 120_000 }, async () => {
    const held: net.Socket[] = [];
    const hung = net.createServer((sock) => held.push(sock.on('error', () => undefined)));
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const h of held) h.destroy();
      await new Promise((r) => hung.close(r));
    });
    const cpPort = await freePort();
    const s = await startSidecar(cpPort, { CA_ADDR: `127.0.0.1:${(hung.address() as net.AddressInfo).port}` });
    writeMesh(s.resources, 1, 2);
    cp = await startControlPlaneProcess({ port: cpPort, resources: s.resources, root: s.root, token: TOKEN });
    await expectHolds(s, 1, 2);
    // each attempt is bounded by the connect deadline (grpc-go's 20 s: TCP, TLS and HTTP/2 SETTINGS),
    // then retried; a CA that is reached may take its time (Istio sets no call deadline)
    await vi.waitFor(() => expect(agent!.output()).toMatch(/ca request failed \(create certificate: UNAVAILABLE: no connection to the CA \(127\.0\.0\.1:\d+\) within 20000 ms: TCP connect, TLS handshake and HTTP\/2 settings did not complete\), starting attempt 1/), { timeout: 45_000, interval: 200 });
    expectRunning(agent!);
  });
});
