// The real `pilot-agent proxy` (built CLI, Envoy stand-in) for the status-port tests: a temp working
// dir, free admin and status ports, and clean-up of what the test started (the agent by PID through
// runAgent, the stand-in by the PID it recorded).

import { join } from 'node:path';
import { afterEach, beforeEach, expect, vi } from 'vitest';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { injectedProxy } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, isAlive, killStarted, runAgent, tempDir, type RunningProcess } from '../support/processes.js';
import { call } from './support.js';

export interface StatusAgentHarness {
  /** The stand-in's record file (argv, admin calls) of the current test. */
  readonly record: () => string;
  readonly adminPort: () => number;
  /** http://127.0.0.1:<status port> */
  readonly base: () => string;
  /** `args` are appended to the fixture's (e.g. `--profiling=false`). */
  start(opts?: { proxyConfig?: Record<string, unknown>; env?: Record<string, string>; args?: readonly string[] }): RunningProcess;
  /** Waits for /healthz/ready to answer 200; fails at once if the agent exits. */
  waitReady(agent: RunningProcess): Promise<void>;
}

/** Registers beforeEach/afterEach hooks; `cleanup` runs after each test, before the directory goes. */
export function useStatusAgent(fixture: string, cleanup: () => Promise<void> | void = () => undefined): StatusAgentHarness {
  const pod = injectedProxy(fixture);
  let work: ReturnType<typeof tempDir>;
  let record = '';
  let adminPort = 0;
  let statusPort = 0;
  beforeEach(async () => {
    work = tempDir('pa-status-agent-');
    record = join(work.path, 'envoy-record.jsonl');
    adminPort = await freePort();
    statusPort = await freePort();
  });
  afterEach(async () => {
    killStarted();
    for (const ev of readRecord(record)) if (ev.event === 'start' && typeof ev.pid === 'number' && isAlive(ev.pid)) process.kill(ev.pid, 'SIGKILL');
    await cleanup();
    work.cleanup();
  });
  const base = (): string => `http://127.0.0.1:${statusPort}`;
  return {
    record: () => record,
    adminPort: () => adminPort,
    base,
    start(opts = {}) {
      const proxyConfig = { binaryPath: envoyStandInPath, proxyAdminPort: adminPort, statusPort, controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1', ...opts.proxyConfig };
      return runAgent([...pod.args, ...(opts.args ?? [])], {
        cwd: work.path,
        // probes go to the pod IP: make it loopback, where the test's app listens
        env: { ...pod.env, INSTANCE_IP: '127.0.0.1', PROXY_CONFIG: JSON.stringify(proxyConfig), ENVOY_STANDIN_RECORD: record, ...opts.env },
      });
    },
    async waitReady(agent) {
      await vi.waitFor(
        async () => {
          if (agent.child.exitCode !== null) throw new Error(`agent exited early:\n${agent.output()}`);
          expect((await call(`${base()}/healthz/ready`)).status).toBe(200);
        },
        { timeout: 20_000, interval: 100 },
      );
    },
  };
}
