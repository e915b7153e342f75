// The agent is PID 1 of the pod: whatever fails, Envoy must not outlive it, and what it created
// (the XDS and SDS sockets, the generated bootstrap) must not outlive it either. Through the real
// `pilot-agent proxy` process with the Envoy stand-in: the agent's own fatal errors, components
// that fail after Envoy was spawned, and signals at any moment of start-up.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { readRecord, type RecordEvent } from '../envoy-stand-in/recorder.js';
import { injectedProxy } from '../support/hello-pod.js';
import { envoyStandInPath, repoRoot } from '../support/paths.js';
import { freePort, isAlive, killStarted, runAgent, tempDir, type RunningProcess } from '../support/processes.js';

const pod = injectedProxy('hello.yaml.injected');
const injector = join(repoRoot, 'dist-test/test/faults/inject-fault.js');
let work: ReturnType<typeof tempDir>;
let record: string;
const listeners: net.Server[] = [];

beforeEach(() => {
  work = tempDir('pa-lifefaults-');
  record = join(work.path, 'envoy-record.jsonl');
});
afterEach(async () => {
  killStarted();
  for (const pid of envoyPids()) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  for (const l of listeners.splice(0)) await new Promise((r) => l.close(r));
  work.cleanup();
});

const events = (name: string): RecordEvent[] => readRecord(record).filter((e) => e.event === name);
/** Envoy's PIDs, as the stand-in recorded them and as the agent logged them (it may die before recording). */
let agentOutput = (): string => '';
const envoyPids = (): number[] => [
  ...new Set([
    ...events('start').flatMap((e) => (typeof e.pid === 'number' ? [e.pid] : [])),
    ...[...agentOutput().matchAll(/Envoy started \(pid (\d+)\)/g)].map((m) => Number(m[1])),
  ]),
];
const paths = {
  xds: () => join(work.path, 'etc/istio/proxy/XDS'),
  sds: () => join(work.path, 'var/run/secrets/workload-spiffe-uds/socket'),
  bootstrap: () => join(work.path, 'etc/istio/proxy/envoy-rev.json'),
};

async function start(opts: { proxyConfig?: Record<string, unknown>; env?: Record<string, string> } = {}): Promise<RunningProcess> {
  const agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      PROXY_CONFIG: JSON.stringify({
        binaryPath: envoyStandInPath,
        proxyAdminPort: await freePort(),
        statusPort: 0,
        controlPlaneAuthPolicy: 'NONE',
        discoveryAddress: '127.0.0.1:1',
        terminationDrainDuration: '30s',
        ...opts.proxyConfig,
      }),
      ENVOY_STANDIN_RECORD: record,
      ...opts.env,
    },
  });
  agentOutput = agent.output;
  return agent;
}

async function waitLive(agent: RunningProcess): Promise<void> {
  await vi.waitFor(
    () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited early:\n${agent.output()}`);
      expect(events('live').length).toBe(1);
    },
    { timeout: 20_000, interval: 50 },
  );
}

/** Nothing of the agent is left: no Envoy process, no socket, no generated bootstrap. */
function expectNothingLeft(): void {
  for (const pid of envoyPids()) expect(isAlive(pid), `Envoy ${pid} outlived the agent`).toBe(false);
  expect(existsSync(paths.xds()), 'XDS socket left behind').toBe(false);
  expect(existsSync(paths.sds()), 'SDS socket left behind').toBe(false);
  expect(existsSync(paths.bootstrap()), 'bootstrap left behind').toBe(false);
}

async function occupiedPort(): Promise<number> {
  const server = net.createServer();
  listeners.push(server);
  await new Promise<void>((resolve) => server.listen(0, resolve));
  return (server.address() as net.AddressInfo).port;
}

describe.each(['exception', 'rejection'])('an uncaught %s in the agent', (kind) => {
  it('is logged with its stack, Envoy is drained briefly and stopped, what the agent made is removed, and it exits non-zero', { timeout: 60_000 }, async () => {
    const agent = await start({ env: { NODE_OPTIONS: `--import=${injector}`, PA_TEST_FAULT: kind } });
    await waitLive(agent);
    const t0 = Date.now();
    agent.child.kill('SIGUSR2');
    const exit = await agent.exited;
    expect(exit.code).toBe(1);
    const out = agent.output();
    expect(out).toContain(kind === 'exception' ? 'uncaught exception: Error: injected fault: an exception nobody catches' : 'unhandled promise rejection: Error: injected fault: a rejected promise nobody handles');
    expect(out).toMatch(/inject-fault\.js:\d+/); // the stack
    // drained (briefly: the configured 30 s are not waited for), then stopped
    expect(events('admin').some((e) => e.path === '/drain_listeners')).toBe(true);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expectNothingLeft();
  });
});

describe('failures after Envoy was spawned', () => {
  it('a status port that is taken stops Envoy and names the port', { timeout: 60_000 }, async () => {
    const port = await occupiedPort();
    const agent = await start({ proxyConfig: { statusPort: port } });
    const exit = await agent.exited;
    expect(exit.code).toBe(255);
    expect(agent.output()).toMatch(new RegExp(`status server: cannot listen on port ${port}: listen EADDRINUSE`));
    expect(envoyPids()).toHaveLength(1); // it was spawned, and then stopped
    expectNothingLeft();
  });
});

describe('failures before Envoy is spawned', () => {
  it('an SDS socket path that is not a socket stops start-up, naming the path; no Envoy starts', { timeout: 30_000 }, async () => {
    mkdirSync(join(work.path, 'var/run/secrets/workload-spiffe-uds'), { recursive: true });
    writeFileSync(paths.sds(), 'not a socket');
    const agent = await start();
    const exit = await agent.exited;
    expect(exit.code).toBe(255);
    expect(agent.output()).toContain(`cannot serve SDS on ${paths.sds()}: the path exists and is not a socket`);
    expect(envoyPids()).toHaveLength(0);
    expect(existsSync(paths.xds())).toBe(false);
  });

  it('a DNS proxy port that is taken stops start-up, naming the address; no Envoy starts', { timeout: 30_000 }, async () => {
    const port = await occupiedPort();
    const agent = await start({ env: { ISTIO_META_DNS_CAPTURE: 'true', DNS_PROXY_ADDR: `127.0.0.1:${port}` } });
    const exit = await agent.exited;
    expect(exit.code).toBe(255);
    expect(agent.output()).toContain(`127.0.0.1:${port}`);
    expect(agent.output()).toContain('EADDRINUSE');
    expect(envoyPids()).toHaveLength(0);
    expectNothingLeft();
  });
});

describe('signals during start-up', () => {
  // from before the CLI has loaded to after Envoy is live: each ends in a clean stop
  it.each([0, 30, 80, 150, 250, 400, 600, 900])('SIGTERM %i ms after the agent starts ends in a clean stop', { timeout: 60_000 }, async (delay) => {
    const agent = await start({ proxyConfig: { terminationDrainDuration: '0s' } });
    await new Promise((r) => setTimeout(r, delay));
    agent.child.kill('SIGTERM');
    const exit = await agent.exited;
    if (exit.signal === 'SIGTERM') {
      // only while Node itself boots, before any code of ours runs, is the signal's default action left
      expect(agent.output()).toBe('');
    } else {
      expect(exit, agent.output()).toEqual({ code: 0, signal: null });
    }
    expectNothingLeft();
  });

  it('SIGTERM while Envoy is being spawned stops the Envoy that was spawned', { timeout: 60_000 }, async () => {
    const agent = await start({ proxyConfig: { terminationDrainDuration: '0s' } });
    await vi.waitFor(() => expect(agent.output()).toContain('Envoy command:'), { timeout: 20_000, interval: 2 });
    agent.child.kill('SIGTERM');
    const exit = await agent.exited;
    expect(exit, agent.output()).toEqual({ code: 0, signal: null });
    expectNothingLeft();
  });
});

describe('other signals and a broken stdout', () => {
  it.each([
    ['SIGHUP', 129],
    ['SIGQUIT', 131],
  ] as const)('%s stops Envoy at once (no drain), removes what the agent made, and exits %i as a death by it would', { timeout: 60_000 }, async (signal, code) => {
    const agent = await start();
    await waitLive(agent);
    agent.child.kill(signal);
    const exit = await agent.exited;
    expect(exit, agent.output()).toEqual({ code, signal: null });
    expect(agent.output()).toContain(`Received ${signal}: stopping Envoy without draining and exiting`);
    expect(events('admin').some((e) => e.path === '/drain_listeners')).toBe(false);
    expectNothingLeft();
  });

  it("SIGUSR1 and SIGUSR2 change nothing (Istio's agent ignores them); in particular SIGUSR1 opens no inspector", { timeout: 60_000 }, async () => {
    const agent = await start({ proxyConfig: { terminationDrainDuration: '0s' } });
    await waitLive(agent);
    agent.child.kill('SIGUSR1');
    agent.child.kill('SIGUSR2');
    // Node would print this and listen on 127.0.0.1:9229 within milliseconds of the signal
    const inspector = (): Promise<boolean> =>
      new Promise((resolve) => {
        const s = net.connect(9229, '127.0.0.1', () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      });
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(await inspector()).toBe(false);
    }
    expect(agent.child.exitCode).toBeNull();
    agent.child.kill('SIGTERM');
    expect(await agent.exited, agent.output()).toEqual({ code: 0, signal: null });
    expect(agent.output()).not.toContain('Debugger listening');
    expectNothingLeft();
  });

  it('a stdout whose reader went away (EPIPE) costs the log lines, not the agent: it goes on, then drains and stops on SIGTERM', { timeout: 60_000 }, async () => {
    const agent = await start({ proxyConfig: { terminationDrainDuration: '1s' } });
    await waitLive(agent);
    agent.child.stdout!.destroy(); // the log reader is gone: the agent's next write to fd 1 fails with EPIPE
    agent.child.kill('SIGTERM'); // which logs: the write fails
    const exit = await agent.exited;
    expect(exit, agent.output()).toEqual({ code: 0, signal: null });
    expect(agent.output().match(/log target stdout: write EPIPE; its log lines are dropped from now on/g)).toHaveLength(1);
    // the drain happened, and Envoy was told to stop, as on any SIGTERM
    expect(events('admin').some((e) => e.path === '/drain_listeners')).toBe(true);
    expect(events('signal').map((e) => e.signal)).toContain('SIGTERM');
    expectNothingLeft();
  });

  it('a drain longer than a Node timer holds (30 days, past 2^31 ms) is waited for, not cut to 1 ms; a second SIGTERM still stops it', { timeout: 60_000 }, async () => {
    const agent = await start({ proxyConfig: { terminationDrainDuration: '2592000s' } });
    await waitLive(agent);
    agent.child.kill('SIGTERM');
    await vi.waitFor(() => expect(events('admin').some((e) => e.path === '/drain_listeners')).toBe(true), { timeout: 10_000, interval: 50 });
    // draining: Envoy has had no signal and the agent runs on (a timer of 2592000 s fired after 1 ms)
    await new Promise((r) => setTimeout(r, 1500));
    expect(agent.child.exitCode, agent.output()).toBeNull();
    expect(events('signal')).toEqual([]);
    expect(agent.output()).not.toContain('TimeoutOverflowWarning');
    agent.child.kill('SIGTERM');
    expect(await agent.exited, agent.output()).toEqual({ code: 0, signal: null });
    expectNothingLeft();
  });

  it('out of file descriptors for longer than a memory check (GOMEMLIMIT set, as the injector does): the agent lives on and serves again once connections close', { timeout: 60_000 }, async () => {
    const agent = await start({ proxyConfig: { terminationDrainDuration: '0s' }, env: { GOMEMLIMIT: String(1 << 30) } });
    await waitLive(agent);
    expect(agent.output()).toContain('Memory limit: 1024 MiB (GOMEMLIMIT)');
    const pid = agent.child.pid!;
    const fds = (): number => readdirSync(`/proc/${pid}/fd`).length;
    // a few descriptors to spare, then a flood of idle connections on the XDS socket takes them
    const [soft, hard] = execFileSync('prlimit', [`--pid=${pid}`, '--nofile', '--output=SOFT,HARD', '--noheadings'], { encoding: 'utf8' }).trim().split(/\s+/);
    execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${fds() + 8}:${hard}`]);
    const flood: net.Socket[] = [];
    for (let i = 0; i < 40; i++) {
      const c = net.connect(paths.xds());
      c.on('error', () => undefined);
      flood.push(c);
    }
    // the memory governor checks every 5 s: it read /proc/self/stat, an fd it could not get
    await new Promise((r) => setTimeout(r, 6500));
    expect(agent.child.exitCode, agent.output()).toBeNull();
    expect(agent.output()).not.toContain('uncaught exception');
    for (const c of flood) c.destroy();
    execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${soft}:${hard}`]);
    // serving again: a new client gets a connection the agent answers (an HTTP/2 SETTINGS frame)
    await vi.waitFor(
      async () => {
        const answered = await new Promise<boolean>((resolve) => {
          const c = net.connect(paths.xds(), () => c.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00'));
          c.once('data', () => (c.destroy(), resolve(true)));
          c.once('error', () => resolve(false));
          c.setTimeout(2000, () => (c.destroy(), resolve(false)));
        });
        expect(answered).toBe(true);
      },
      { timeout: 15_000, interval: 500 },
    );
    agent.child.kill('SIGTERM');
    expect(await agent.exited, agent.output()).toEqual({ code: 0, signal: null });
    expectNothingLeft();
  });

  it('a SIGKILL of the agent (the OOM killer) takes Envoy with it: no LIVE Envoy is left serving without xDS and SDS', { timeout: 60_000 }, async () => {
    const agent = await start();
    await waitLive(agent);
    const [envoy] = envoyPids();
    expect(envoy).toBeDefined();
    agent.child.kill('SIGKILL');
    expect(await agent.exited).toEqual({ code: null, signal: 'SIGKILL' });
    // the kernel sends Envoy its parent-death signal (setpriv --pdeathsig KILL)
    await vi.waitFor(() => expect(isAlive(envoy!)).toBe(false), { timeout: 5000, interval: 50 });
  });
});
