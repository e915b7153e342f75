// PROXY_XDS_LAST_KNOWN_GOOD through the real `pilot-agent` process: a client ACKs config (and the
// sidecar gets its certificate); agent and control plane stop; the agent restarts with the control
// plane still down and the client gets the same config from the store (and the still-valid
// certificate over SDS); the control plane returns with a new version and the client converges to
// it. With the Envoy stand-in (SotW and Delta) and with a real proxyless client (@grpc/grpc-js-xds).

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { httpRequest } from '../support/envoy-stand-in-harness.js';
import { helloXdsResources, HELLO_SERVICE, startHelloServer } from '../support/hello-mesh.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath, repoRoot } from '../support/paths.js';
import { freePort, killRecordedStandIns, killStarted, runAgent, type RunningProcess, tempDir } from '../support/processes.js';

const TOKEN = 'lkg-token';
const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';

let work: ReturnType<typeof tempDir> | undefined;
let cp: ControlPlane | undefined;
const agents: RunningProcess[] = [];
const servers: grpc.Server[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) {
    if (a.child.exitCode === null) {
      a.child.kill('SIGTERM');
      await a.exited;
    }
  }
  killStarted();
  if (work) killRecordedStandIns(join(work.path, 'record.jsonl'));
  await cp?.close();
  cp = undefined;
  for (const s of servers.splice(0)) s.forceShutdown();
  work?.cleanup();
  work = undefined;
});

function caRoot(dir: string): { rootCertPem: string; rootKeyPem: string } {
  const key = join(dir, 'ca-key.pem');
  const cert = join(dir, 'ca-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/O=cluster.local', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'pipe' });
  return { rootCertPem: readFileSync(cert, 'utf8'), rootKeyPem: readFileSync(key, 'utf8') };
}

function mesh(c: ControlPlane, v: number): void {
  c.setResources(CDS, Array.from({ length: 3 }, (_, i) => ({ json: { '@type': CDS, name: `c${i}-v${v}`, type: 'STATIC', connect_timeout: '1s' } })), { replace: true });
  c.setResources(LDS, [{ json: { '@type': LDS, name: `l-v${v}`, address: { socket_address: { address: '0.0.0.0', port_value: 9000 + v } } } }], { replace: true });
}

const files = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String) : []);

describe.each([
  { api: 'DELTA_GRPC', env: {} as Record<string, string> },
  { api: 'GRPC', env: { ISTIO_DELTA_XDS: 'false' } as Record<string, string> },
])('last-known-good with the Envoy stand-in ($api)', ({ env }) => {
  it('restarts into the saved config and certificate while istiod is down, then converges to istiod', { timeout: 180_000 }, async () => {
    work = tempDir('pa-lkg-');
    const root = work.path;
    const ca = caRoot(root);
    writeIstiodMounts(root, ca.rootCertPem, TOKEN);
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const adminPort = await freePort();
    const statusPort = await freePort();
    const record = join(root, 'record.jsonl');
    const pod = injectedProxy('hello.yaml.injected');
    const start = (): RunningProcess => {
      const a = runAgent(pod.args, {
        cwd: root,
        env: {
          ...pod.env,
          ...env,
          PROXY_XDS_LAST_KNOWN_GOOD: 'true',
          CA_ADDR: address,
          ISTIOD_SAN: 'istiod.istio-system.svc',
          ENVOY_STANDIN_ADS: '1',
          ENVOY_STANDIN_SDS: '1',
          ENVOY_STANDIN_RECORD: record,
          PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: adminPort, statusPort, discoveryAddress: address, terminationDrainDuration: '0s' }),
        },
      });
      agents.push(a);
      return a;
    };
    const standIn = async <T>(path: string): Promise<T> => JSON.parse((await httpRequest(`http://127.0.0.1:${adminPort}${path}`)).body) as T;
    const holds = async (v: number): Promise<void> => {
      const xds = await standIn<{ types: Record<string, { resources: string[] }> }>('/standin/xds');
      expect(xds.types.CDS?.resources).toEqual([`c0-v${v}`, `c1-v${v}`, `c2-v${v}`]);
      expect(xds.types.LDS?.resources).toEqual([`l-v${v}`]);
    };
    const cert = async (): Promise<string | undefined> => (await standIn<{ secrets: { name: string; certChainPem?: string }[] }>('/standin/secrets')).secrets.find((s) => s.name === 'default')?.certChainPem;
    const syncz = async (): Promise<{ lastKnownGood: { serving: boolean; enabled: boolean } }> => JSON.parse((await httpRequest(`http://127.0.0.1:${statusPort}/debug/syncz`)).body) as { lastKnownGood: { serving: boolean; enabled: boolean } };

    // 1. istiod up: config and certificate arrive and are ACKed, so they are saved
    cp = await startControlPlane({ listen: address, token: TOKEN, ca: { ...ca } });
    mesh(cp, 1);
    let agent = start();
    await vi.waitFor(() => holds(1), { timeout: 60_000, interval: 200 });
    let issued: string | undefined;
    await vi.waitFor(async () => expect((issued = await cert())).toMatch(/BEGIN CERTIFICATE/), { timeout: 60_000, interval: 200 });
    const store = join(root, 'var/lib/istio/data');
    await vi.waitFor(() => expect(files(join(store, 'xds')).filter((f) => f.endsWith('.xds')).length).toBeGreaterThanOrEqual(2), { timeout: 20_000 });
    for (const f of files(store)) {
      const p = join(store, f);
      if (statSync(p).isFile() && (f.endsWith('.xds') || f.includes('workload-'))) expect(statSync(p).mode & 0o777, f).toBe(0o600);
    }
    expect(files(join(store, 'workload')).some((f) => f.startsWith('workload-'))).toBe(true);

    // 2. both stop; the agent comes back while istiod is still down
    agent.child.kill('SIGTERM');
    expect((await agent.exited).code).toBe(0);
    await cp.close();
    cp = undefined;
    agent = start();
    await vi.waitFor(() => holds(1), { timeout: 60_000, interval: 200 });
    await vi.waitFor(async () => expect(await cert()).toBe(issued), { timeout: 60_000, interval: 200 });
    expect(agent.output()).toMatch(/istiod is unreachable at start .*serving the last-known-good configuration/);
    expect(agent.output()).toMatch(/serving the last-known-good workload certificate/);
    expect((await syncz()).lastKnownGood).toMatchObject({ enabled: true, serving: true });
    const metrics = (await httpRequest(`http://127.0.0.1:${statusPort}/stats/prometheus`)).body;
    expect(metrics).toMatch(/^istio_agent_xds_proxy_serving_last_known_good 1$/m);
    // Envoy went live on it: the pod can serve through the outage
    await vi.waitFor(async () => expect((await httpRequest(`http://127.0.0.1:${statusPort}/healthz/ready`)).status).toBe(200), { timeout: 30_000, interval: 200 });

    // 3. istiod returns with a newer version (same CA root): the client converges to it
    cp = await startControlPlane({ listen: address, token: TOKEN, ca: { ...ca } });
    mesh(cp, 2);
    await vi.waitFor(() => holds(2), { timeout: 60_000, interval: 200 });
    await vi.waitFor(async () => expect((await syncz()).lastKnownGood.serving).toBe(false), { timeout: 30_000, interval: 200 });
    // istiod's answer replaces the store
    await vi.waitFor(() => expect(readdirSync(join(store, 'xds'), { recursive: true }).map(String).some((f) => f.endsWith('.xds') && readFileSync(join(store, 'xds', f)).includes('c0-v2'))).toBe(true), { timeout: 20_000 });
  });
});

describe('last-known-good with a real proxyless client (@grpc/grpc-js-xds)', () => {
  it('resolves and calls through the saved config after a restart with istiod down', { timeout: 180_000 }, async () => {
    work = tempDir('pa-lkg-proxyless-');
    const root = work.path;
    const hello = await startHelloServer();
    servers.push(hello.server);
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    cp = await startControlPlane({ listen: address, token: TOKEN });
    for (const [typeUrl, resources] of Object.entries(helloXdsResources(hello.port))) cp.setResources(typeUrl, resources, { replace: true });
    writeIstiodMounts(root, cp.rootCertPem, TOKEN);
    const pod = injectedProxy('grpc-agent.yaml.injected');
    const start = async (): Promise<RunningProcess> => {
      const a = runAgent(pod.args, {
        cwd: root,
        env: {
          ...pod.env,
          PROXY_XDS_LAST_KNOWN_GOOD: 'true',
          GRPC_XDS_BOOTSTRAP: './etc/istio/proxy/grpc-bootstrap.json',
          OUTPUT_CERTS: '',
          ISTIOD_SAN: 'istiod.istio-system.svc',
          PROXY_CONFIG: JSON.stringify({ discoveryAddress: address, statusPort: 0 }),
        },
      });
      agents.push(a);
      await vi.waitFor(() => expect(existsSync(join(root, 'etc/istio/proxy/XDS'))).toBe(true), { timeout: 20_000 });
      return a;
    };
    const callHello = (): Promise<{ code: number | null; out: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [join(repoRoot, 'dist-test/test/proxyless/grpc-js-xds-client.js'), `xds:///${HELLO_SERVICE}`, '2'], {
          env: { PATH: process.env.PATH ?? '', GRPC_XDS_BOOTSTRAP: join(root, 'etc/istio/proxy/grpc-bootstrap.json') },
          stdio: ['ignore', 'pipe', 'pipe'],
          timeout: 60_000,
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.once('exit', (code) => resolve({ code, out }));
      });

    let agent = await start();
    const first = await callHello();
    expect(first.code, first.out).toBe(0);
    await vi.waitFor(() => expect(files(join(root, 'var/lib/istio/data/xds')).filter((f) => f.endsWith('.xds')).length).toBe(4), { timeout: 20_000 });

    agent.child.kill('SIGTERM');
    await agent.exited;
    await cp.close();
    cp = undefined;
    agent = await start();
    const second = await callHello();
    expect(second.code, `${second.out}\n--- agent ---\n${agent.output()}`).toBe(0);
    expect(second.out).toContain('greetings from the test server: hello 1');
    expect(agent.output()).toMatch(/serving the last-known-good configuration/);
  });
});

describe('last-known-good: what is never served or written', () => {
  it('with the switch off nothing is written; with it on, a first start without a store fails the stream as before', { timeout: 120_000 }, async () => {
    work = tempDir('pa-lkg-off-');
    const root = work.path;
    const hello = await startHelloServer();
    servers.push(hello.server);
    const port = await freePort();
    cp = await startControlPlane({ listen: `127.0.0.1:${port}`, token: TOKEN });
    for (const [typeUrl, resources] of Object.entries(helloXdsResources(hello.port))) cp.setResources(typeUrl, resources, { replace: true });
    writeIstiodMounts(root, cp.rootCertPem, TOKEN);
    const pod = injectedProxy('grpc-agent.yaml.injected');
    const run = (extra: Record<string, string>, discovery: string): RunningProcess => {
      const a = runAgent(pod.args, {
        cwd: root,
        env: { ...pod.env, ...extra, GRPC_XDS_BOOTSTRAP: './etc/istio/proxy/grpc-bootstrap.json', OUTPUT_CERTS: '', ISTIOD_SAN: 'istiod.istio-system.svc', PROXY_CONFIG: JSON.stringify({ discoveryAddress: discovery, statusPort: 0 }) },
      });
      agents.push(a);
      return a;
    };
    // off (the default): a full exchange writes nothing
    const off = run({}, `127.0.0.1:${port}`);
    await vi.waitFor(() => expect(existsSync(join(root, 'etc/istio/proxy/XDS'))).toBe(true), { timeout: 20_000 });
    const { openSotw } = await import('../control-plane/index.js');
    const c = openSotw({ address: `unix:${join(root, 'etc/istio/proxy/XDS')}`, tls: false });
    c.request({ type_url: CDS });
    const res = await c.next(20_000);
    c.ack(res);
    await cp.waitForAck(CDS, cp.version(CDS));
    c.close();
    expect(existsSync(join(root, 'var/lib/istio/data/xds'))).toBe(false);
    expect(existsSync(join(root, 'var/lib/istio/data/workload'))).toBe(false);
    off.child.kill('SIGTERM');
    await off.exited;

    // on, first start, istiod unreachable: no store, so the stream fails UNAVAILABLE, as without it
    const on = run({ PROXY_XDS_LAST_KNOWN_GOOD: 'true' }, '127.0.0.1:1');
    await vi.waitFor(() => expect(existsSync(join(root, 'etc/istio/proxy/XDS'))).toBe(true), { timeout: 20_000 });
    const d = openSotw({ address: `unix:${join(root, 'etc/istio/proxy/XDS')}`, tls: false });
    d.request({ type_url: CDS });
    const st = await d.status;
    expect(st.code).toBe(grpc.status.UNAVAILABLE);
    d.close();
    expect(on.output()).not.toMatch(/serving the last-known-good/);
  });
});
