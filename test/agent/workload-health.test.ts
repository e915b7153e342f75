// ProxyConfig readinessProbe (a VM's WorkloadGroup probe): parsed with Istio's defaults, the
// application probed by httpGet, tcpSocket and exec against real servers and commands, Envoy's
// readiness first, and only changes of state reported, after the thresholds; then end to end, the
// real agent with the Envoy stand-in reporting to the development control plane.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { loadAgentConfig } from '../../src/config/load.js';
import { parseReadinessProbe, WorkloadHealthChecker, type HealthEvent, type WorkloadProbe } from '../../src/agent/workload-health.js';
import { buildResourceSet, startControlPlane } from '../control-plane/index.js';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { injectedProxy, meshEnv, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, isAlive, killStarted, runAgent, tempDir } from '../support/processes.js';

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

async function app(status: () => number): Promise<{ port: number; agents: string[] }> {
  const agents: string[] = [];
  const server = http.createServer((req, res) => {
    agents.push(String(req.headers['user-agent']));
    res.writeHead(status()).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, agents };
}

function run(probe: WorkloadProbe, envoyReady?: () => Promise<string | undefined>): HealthEvent[] {
  const events: HealthEvent[] = [];
  const checker = new WorkloadHealthChecker({ probe, defaultHost: '127.0.0.1', ...(envoyReady ? { envoyReady } : {}), onChange: (e) => events.push(e) });
  checker.start();
  closers.push(() => checker.stop());
  return events;
}

/** ProxyConfig.readinessProbe as the agent gets it: PROXY_CONFIG through the config loader. */
function loadedProbe(proxyConfig: string): unknown {
  return loadAgentConfig({ env: { POD_NAME: 'p', POD_NAMESPACE: 'ns', PROXY_CONFIG: proxyConfig }, cwd: tmpdir(), hostAddresses: ['127.0.0.1'] }).proxyConfig.readinessProbe;
}

describe('readinessProbe from ProxyConfig', () => {
  it("fills in Istio's defaults; the config loader takes proto names and numbers in strings", () => {
    expect(parseReadinessProbe(undefined)).toBeUndefined();
    expect(parseReadinessProbe(loadedProbe('{"readinessProbe":{"httpGet":{"port":8080}}}'))).toEqual({
      method: { kind: 'httpGet', path: '/', port: 8080, host: '', scheme: 'http', headers: [] },
      initialDelayMs: 0,
      timeoutMs: 1000,
      periodMs: 10_000,
      successThreshold: 1,
      failureThreshold: 1,
    });
    const yaml = 'readiness_probe:\n  tcp_socket: { port: "9000" }\n  period_seconds: 3\n  failureThreshold: 2\n';
    expect(parseReadinessProbe(loadedProbe(yaml))).toMatchObject({ method: { kind: 'tcpSocket', port: 9000 }, periodMs: 3000, failureThreshold: 2 });
    expect(parseReadinessProbe(loadedProbe('{"readinessProbe":{"httpGet":{"port":80,"httpHeaders":[{"name":"X-A","value":"1"}],"scheme":"HTTPS"}}}'))).toMatchObject({
      method: { kind: 'httpGet', scheme: 'https', headers: [{ name: 'X-A', value: '1' }] },
    });
  });

  it('refuses a probe with no method, two methods, a bad port or an empty command, naming the field', () => {
    expect(() => parseReadinessProbe(loadedProbe('{"readinessProbe":{"periodSeconds":5}}'))).toThrow(ConfigError);
    expect(() => loadedProbe('{"readinessProbe":{"grpc":{"port":1},"exec":{"command":["true"]}}}')).toThrow(ConfigError);
    expect(() => parseReadinessProbe(loadedProbe('{"readinessProbe":{"periodSeconds":5}}'))).toThrow(/ProxyConfig readinessProbe.*expected one of httpGet, tcpSocket, exec or grpc/);
    expect(() => loadedProbe('{"readinessProbe":{"httpGet":{"port":1},"exec":{"command":["true"]}}}')).toThrow(/only one of httpGet, tcpSocket, exec, grpc may be set/);
    expect(() => parseReadinessProbe(loadedProbe('{"readinessProbe":{"httpGet":{"port":70000}}}'))).toThrow(/httpGet\.port: expected a port number in 1\.\.65535 \(value: "70000"\)/);
    expect(() => parseReadinessProbe(loadedProbe('{"readinessProbe":{"exec":{"command":[]}}}'))).toThrow(/exec\.command/);
    expect(() => loadedProbe('{"readinessProbe":{"tcpSocket":{"port":"eighty"}}}')).toThrow(/readinessProbe\.tcpSocket\.port.*expected an integer/);
  });
});

describe('WorkloadHealthChecker', () => {
  it('reports healthy once, then unhealthy after failureThreshold failures in a row, then healthy again', { timeout: 20_000 }, async () => {
    let code = 200;
    const target = await app(() => code);
    const events = run({ ...parseReadinessProbe({ httpGet: { port: target.port, path: '/ready' } })!, periodMs: 100, failureThreshold: 3 });
    await vi.waitFor(() => expect(events).toEqual([{ healthy: true }]));
    const probes = target.agents.length;
    await new Promise((r) => setTimeout(r, 350));
    expect(events).toHaveLength(1); // no report without a change
    expect(target.agents.length).toBeGreaterThan(probes);
    expect(target.agents[0]).toBe('istio-probe/1.0');
    code = 503;
    await vi.waitFor(() => expect(events).toEqual([{ healthy: true }, { healthy: false, message: 'status code was not from [200,400), bad code 503' }]));
    code = 200;
    await vi.waitFor(() => expect(events.at(-1)).toEqual({ healthy: true }));
    expect(events).toHaveLength(3);
  });

  it("probes Envoy's readiness first: an Envoy not ready is the workload unhealthy", async () => {
    const target = await app(() => 200);
    let envoy: string | undefined = 'config not received from XDS server (is Istiod running?)';
    const events = run({ ...parseReadinessProbe({ httpGet: { port: target.port } })!, periodMs: 100 }, async () => envoy);
    await vi.waitFor(() => expect(events).toEqual([{ healthy: false, message: 'config not received from XDS server (is Istiod running?)' }]));
    expect(target.agents).toEqual([]); // the application is not asked while Envoy is not ready
    envoy = undefined;
    await vi.waitFor(() => expect(events.at(-1)).toEqual({ healthy: true }));
  });

  it('tcpSocket: a port that accepts is healthy, a closed one is not; exec: the exit status decides', async () => {
    const server = net.createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => server.close());
    const open = (server.address() as net.AddressInfo).port;
    const gone = net.createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const closed = (gone.address() as net.AddressInfo).port;
    await new Promise((r) => gone.close(r));
    const up = run({ ...parseReadinessProbe({ tcpSocket: { port: open } })!, periodMs: 100 });
    const down = run({ ...parseReadinessProbe({ tcpSocket: { port: closed } })!, periodMs: 100 });
    await vi.waitFor(() => expect(up).toEqual([{ healthy: true }]));
    await vi.waitFor(() => expect(down).toEqual([{ healthy: false, message: expect.stringMatching(/ECONNREFUSED/) }]));
    const ok = run({ ...parseReadinessProbe({ exec: { command: ['sh', '-c', 'exit 0'] } })!, periodMs: 100 });
    const failing = run({ ...parseReadinessProbe({ exec: { command: ['sh', '-c', 'exit 3'] } })!, periodMs: 100 });
    await vi.waitFor(() => expect(ok).toEqual([{ healthy: true }]));
    await vi.waitFor(() => expect(failing).toEqual([{ healthy: false, message: expect.stringMatching(/exit 3|code 3/) }]));
  });
});

describe('through the agent: a VM-style readinessProbe reported to the control plane', () => {
  it("sends istio.io/health after Envoy's first LDS request once Envoy is ready and the app answers, and the failure when it stops", { timeout: 90_000 }, async () => {
    let code = 200;
    const target = await app(() => code);
    const work = tempDir('pa-workload-health-');
    const record = join(work.path, 'record.jsonl');
    const key = join(work.path, 'ca-key.pem');
    const cert = join(work.path, 'ca-cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/O=cluster.local', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'pipe' });
    const rootCertPem = readFileSync(cert, 'utf8');
    writeIstiodMounts(work.path, rootCertPem, 'health-token');
    const cpPort = await freePort();
    const address = `127.0.0.1:${cpPort}`;
    const cp = await startControlPlane({ listen: address, token: 'health-token', ca: { rootCertPem, rootKeyPem: readFileSync(key, 'utf8') } });
    buildResourceSet().applyTo(cp);
    const pod = injectedProxy('hello.yaml.injected');
    const agent = runAgent(pod.args, {
      cwd: work.path,
      env: {
        ...pod.env,
        ...meshEnv(address, record),
        PROXY_CONFIG: JSON.stringify({
          binaryPath: envoyStandInPath,
          proxyAdminPort: await freePort(),
          statusPort: await freePort(),
          discoveryAddress: address,
          terminationDrainDuration: '0s',
          readinessProbe: { httpGet: { host: '127.0.0.1', port: target.port, path: '/healthz' }, periodSeconds: 1 },
        }),
      },
    });
    const HEALTH = 'type.googleapis.com/istio.v1.HealthInformation';
    const reports = (): (string | null)[] => cp.connectedStreams().flatMap((s) => s.requests.filter((r) => r.typeUrl === HEALTH).map((r) => r.errorDetail?.message ?? null));
    try {
      await vi.waitFor(
        () => {
          if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
          // until Envoy is LIVE the workload is unhealthy (Envoy is probed first), then healthy
          expect(reports().at(-1)).toBeNull();
        },
        { timeout: 60_000, interval: 200 },
      );
      for (const r of reports().slice(0, -1)) expect(r).toMatch(/envoy admin|config not received|not live|workers|server.state|readiness stats/);
      const before = reports().length;
      code = 503;
      await vi.waitFor(() => expect(reports().slice(before)).toEqual(['status code was not from [200,400), bad code 503']), { timeout: 15_000, interval: 200 });
    } finally {
      agent.child.kill('SIGTERM');
      await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
      killStarted();
      for (const ev of readRecord(record)) if (ev.event === 'start' && typeof ev.pid === 'number' && isAlive(ev.pid)) process.kill(ev.pid, 'SIGKILL');
      await cp.close();
      work.cleanup();
    }
  });
});
