// The real `pilot-agent proxy` executable with the Envoy stand-in as its binaryPath: argv, the
// bootstrap file, drain sequences on SIGTERM, exit propagation, start-up errors.

import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { readRecord, type RecordEvent } from '../envoy-stand-in/recorder.js';
import { injectedProxy } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, isAlive, killStarted, runAgent, tempDir, type RunningProcess } from '../support/processes.js';

const pod = injectedProxy('hello.yaml.injected');
let work: ReturnType<typeof tempDir>;
let record: string;
let adminPort: number;

beforeEach(async () => {
  work = tempDir('pa-lifecycle-');
  record = join(work.path, 'envoy-record.jsonl');
  adminPort = await freePort();
});
afterEach(() => {
  killStarted();
  for (const ev of readRecord(record)) if (ev.event === 'start' && typeof ev.pid === 'number' && isAlive(ev.pid)) process.kill(ev.pid, 'SIGKILL');
  work.cleanup();
});

function start(opts: { proxyConfig?: Record<string, unknown>; env?: Record<string, string>; args?: string[] } = {}): RunningProcess {
  // no istiod here: plaintext to an address nothing listens on (the stand-in does not dial ADS)
  const proxyConfig = {
    binaryPath: envoyStandInPath,
    proxyAdminPort: adminPort,
    statusPort: 0,
    controlPlaneAuthPolicy: 'NONE',
    discoveryAddress: '127.0.0.1:1',
    ...opts.proxyConfig,
  };
  return runAgent(opts.args ?? pod.args, {
    cwd: work.path,
    env: { ...pod.env, PROXY_CONFIG: JSON.stringify(proxyConfig), ENVOY_STANDIN_RECORD: record, ...opts.env },
  });
}

const events = (name: string): RecordEvent[] => readRecord(record).filter((e) => e.event === name);
const drainCalls = (): RecordEvent[] => events('admin').filter((e) => e.path === '/drain_listeners');

async function waitLive(agent: RunningProcess): Promise<void> {
  await vi.waitFor(() => {
    if (agent.child.exitCode !== null) throw new Error(`agent exited early:\n${agent.output()}`);
    expect(events('live').length).toBe(1);
  }, { timeout: 20_000, interval: 50 });
}

describe('pilot-agent proxy with the Envoy stand-in', () => {
  it("starts from the hello pod's exact argv and env, spawns Envoy with Istio's argv, and drains on SIGTERM", async () => {
    const agent = start({ proxyConfig: { terminationDrainDuration: '1s' } });
    await waitLive(agent);
    const bootstrap = join(work.path, 'etc/istio/proxy/envoy-rev.json');
    expect(existsSync(bootstrap)).toBe(true);
    const xdsSocket = join(work.path, 'etc/istio/proxy/XDS');
    expect(statSync(xdsSocket).isSocket()).toBe(true);
    expect(statSync(xdsSocket).mode & 0o777).toBe(0o666);
    expect(JSON.parse(readFileSync(join(work.path, 'etc/istio/proxy/grpc-bootstrap.json'), 'utf8')).xds_servers[0].server_uri).toBe(`unix:///${xdsSocket.replace(/^\//, '')}`);
    expect(events('start')[0]!.argv).toEqual([
      '-c', bootstrap,
      '--drain-time-s', '45',
      '--drain-strategy', 'immediate',
      '--local-address-ip-version', 'v4',
      '--file-flush-interval-msec', '1000',
      '--disable-hot-restart',
      '--allow-unknown-static-fields',
      '-l', 'warning',
      '--component-log-level', 'misc:error',
      '--skip-deprecated-logs',
      '--concurrency', '2',
    ]);

    const t0 = Date.now();
    agent.child.kill('SIGTERM');
    const exit = await agent.exited;
    const elapsed = Date.now() - t0;
    expect(exit.code, agent.output()).toBe(0);
    expect(drainCalls().map((c) => c.query)).toEqual([{ inboundonly: '', graceful: '' }]);
    expect(elapsed).toBeGreaterThanOrEqual(1000); // terminationDrainDuration was honoured
    expect(events('signal').map((e) => e.signal)).toEqual(['SIGTERM']);
    expect(existsSync(bootstrap)).toBe(false); // removed on exit
    expect(existsSync(xdsSocket)).toBe(false);
    expect(agent.output()).toContain('Graceful termination period is 1s');
  });

  it('drains all listeners (not inbound only) for a router', async () => {
    const agent = start({ args: ['proxy', 'router', '--log_output_level=default:info'], proxyConfig: { terminationDrainDuration: '0s' } });
    await waitLive(agent);
    agent.child.kill('SIGTERM');
    expect((await agent.exited).code, agent.output()).toBe(0);
    expect(drainCalls().map((c) => c.query)).toEqual([{ graceful: '' }]);
  });

  it('with EXIT_ON_ZERO_ACTIVE_CONNECTIONS waits MINIMUM_DRAIN_DURATION, then until inbound connections reach zero', async () => {
    const agent = start({
      proxyConfig: { terminationDrainDuration: '60s' },
      env: { EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'true', MINIMUM_DRAIN_DURATION: '200ms' },
    });
    await waitLive(agent);
    const setStats = (stats: Record<string, number>): Promise<Response> =>
      fetch(`http://127.0.0.1:${adminPort}/standin/stats`, { method: 'POST', body: JSON.stringify(stats) });
    await setStats({ 'listener.0.0.0.0_15006.downstream_cx_active': 3, 'listener.0.0.0.0_15090.downstream_cx_active': 5 });
    agent.child.kill('SIGTERM');
    await vi.waitFor(() => expect(events('admin').filter((e) => e.path === '/stats').length).toBeGreaterThanOrEqual(2), { timeout: 10_000 });
    expect(agent.child.exitCode).toBeNull(); // 3 inbound connections still open
    const statQuery = events('admin').find((e) => e.path === '/stats')!.query;
    expect(statQuery).toEqual({ usedonly: '', filter: 'downstream_cx_active$' });
    // the Prometheus listener (Istio's own) does not hold the drain; inbound going to 0 ends it
    await setStats({ 'listener.0.0.0.0_15006.downstream_cx_active': 0 });
    const exit = await agent.exited;
    expect(exit.code, agent.output()).toBe(0);
    expect(agent.output()).toContain('There are no more active connections');
  });

  it('a second SIGTERM during the drain stops Envoy at once', async () => {
    const agent = start({ proxyConfig: { terminationDrainDuration: '60s' } });
    await waitLive(agent);
    agent.child.kill('SIGTERM');
    await vi.waitFor(() => expect(drainCalls().length).toBe(1), { timeout: 10_000 });
    const t0 = Date.now();
    agent.child.kill('SIGTERM');
    const exit = await agent.exited;
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(exit.code, agent.output()).toBe(0);
  });

  it.each([
    ['signal=SIGSEGV', 139, 'signal SIGSEGV'],
    ['code=3', 3, 'status 3'],
  ])('an Envoy that crashes during the drain (%s), before the stop signal, is logged and its status is the exit code', async (crash, code, says) => {
    const agent = start({ proxyConfig: { terminationDrainDuration: '30s' } });
    await waitLive(agent);
    agent.child.kill('SIGTERM');
    await vi.waitFor(() => expect(drainCalls().length).toBe(1), { timeout: 10_000 });
    await fetch(`http://127.0.0.1:${adminPort}/standin/exit?${crash}`, { method: 'POST' }).catch(() => undefined);
    const exit = await agent.exited;
    expect(exit.code, agent.output()).toBe(code);
    expect(agent.output()).toContain(`Envoy exited with ${says}`);
    expect(agent.output()).toContain('Envoy exited with error');
  });

  it('a process Envoy started does not outlive it when Envoy crashes', async () => {
    const childPidFile = join(work.path, 'child.pid');
    const envoy = join(work.path, 'forking-envoy');
    writeFileSync(envoy, `#!/bin/sh\nsleep 300 &\necho $! > ${childPidFile}\nsleep 0.3\nexit 1\n`);
    chmodSync(envoy, 0o755);
    const agent = start({ proxyConfig: { binaryPath: envoy } });
    expect((await agent.exited).code, agent.output()).toBe(1);
    const child = Number(readFileSync(childPidFile, 'utf8'));
    try {
      await vi.waitFor(() => expect(isAlive(child)).toBe(false), { timeout: 5000 });
    } finally {
      if (isAlive(child)) process.kill(child, 'SIGKILL');
    }
  });

  it("propagates Envoy's crash as the agent's exit code with a clear log line", async () => {
    const agent = start({ env: { ENVOY_STANDIN_EXIT_AFTER_MS: '300', ENVOY_STANDIN_EXIT_CODE: '7' } });
    const exit = await agent.exited;
    expect(exit.code).toBe(7);
    expect(agent.output()).toContain('Envoy exited with error: exit status 7');
    expect(existsSync(join(work.path, 'etc/istio/proxy/envoy-rev.json'))).toBe(false);
  });

  it('ends with exit 0 when Envoy exits normally through /quitquitquit', async () => {
    const agent = start();
    await waitLive(agent);
    await fetch(`http://127.0.0.1:${adminPort}/quitquitquit`, { method: 'POST' });
    expect((await agent.exited).code).toBe(0);
    expect(agent.output()).toContain('Envoy exited normally');
  });

  it('fails start-up clearly when the Envoy binary is missing or not executable', async () => {
    const missing = start({ proxyConfig: { binaryPath: join(work.path, 'no-such-envoy') } });
    expect((await missing.exited).code).toBe(255);
    expect(missing.output()).toMatch(/envoy binary .*no-such-envoy \(ProxyConfig binaryPath\) does not exist/);

    const notExec = join(work.path, 'not-executable');
    writeFileSync(notExec, '#!/bin/sh\n');
    chmodSync(notExec, 0o644);
    const agent = start({ proxyConfig: { binaryPath: notExec } });
    expect((await agent.exited).code).toBe(255);
    // root may execute any file with an x bit; with none set, access(X_OK) fails for root too
    expect(agent.output()).toMatch(/not-executable \(ProxyConfig binaryPath\) is not executable/);
  });

  it('fails start-up naming the missing root CA of the xDS connection, leaving nothing behind', async () => {
    const agent = start({ proxyConfig: { controlPlaneAuthPolicy: 'MUTUAL_TLS', discoveryAddress: 'istiod.istio-system.svc:15012' } });
    expect((await agent.exited).code).toBe(255);
    expect(agent.output()).toMatch(/root CA for the xDS connection .*var\/run\/secrets\/istio\/root-cert.pem cannot be read/);
    expect(existsSync(join(work.path, 'etc/istio/proxy/XDS'))).toBe(false);
    expect(events('start')).toHaveLength(0);
  });

  it('stops start-up with every configuration error listed', async () => {
    const agent = start({ proxyConfig: { drainDuration: 'soon', proxyAdminPort: 0 }, env: { ISTIO_META_DNS_CAPTURE: 'x', SECRET_TTL: 'x' } });
    expect((await agent.exited).code).toBe(255);
    const out = agent.output();
    expect(out).toContain('invalid configuration (');
    expect(out).toContain('env PROXY_CONFIG: drainDuration');
    expect(out).toContain('env ISTIO_META_DNS_CAPTURE');
    expect(out).toContain('proxyAdminPort');
    // a bad value Istio's agent would warn about is a warning here too, also when start-up stops for another
    expect(out).toMatch(/\twarn\tinvalid environment variable value: env SECRET_TTL: .*using the default, 24h0m0s/);
    expect(events('start')).toHaveLength(0);
  });

  it('accepts unknown flags with one warning naming them', async () => {
    const agent = start({ args: [...pod.args, '--futureFlag=1', '--otherNew', 'value'], proxyConfig: { terminationDrainDuration: '0s' } });
    await waitLive(agent);
    const warnings = agent.output().split('\n').filter((l) => l.includes('unknown flags'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('--futureFlag, --otherNew');
    agent.child.kill('SIGTERM');
    expect((await agent.exited).code).toBe(0);
  });

  it('with DISABLE_ENVOY runs without Envoy and exits 0 on SIGTERM', async () => {
    const agent = start({ env: { DISABLE_ENVOY: 'true' } });
    await vi.waitFor(() => expect(agent.output()).toContain('DISABLE_ENVOY is set'), { timeout: 10_000 });
    agent.child.kill('SIGTERM');
    expect((await agent.exited).code).toBe(0);
    expect(events('start')).toHaveLength(0);
  });

  it('uses customConfigFile as the bootstrap as it is, generating nothing', async () => {
    const custom = join(work.path, 'custom.json');
    mkdirSync(work.path, { recursive: true });
    writeFileSync(custom, JSON.stringify({ admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } } }));
    const agent = start({ proxyConfig: { customConfigFile: custom, terminationDrainDuration: '0s' } });
    await waitLive(agent);
    expect((events('start')[0]!.argv as string[]).slice(0, 2)).toEqual(['-c', custom]);
    expect(existsSync(join(work.path, 'etc/istio/proxy/envoy-rev.json'))).toBe(false);
    agent.child.kill('SIGTERM');
    expect((await agent.exited).code).toBe(0);
    expect(existsSync(custom)).toBe(true);
  });
});
