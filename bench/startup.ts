// Bench `startup`: from spawning `pilot-agent proxy sidecar` (hello pod env) to the moment the
// Envoy binary it launches is running, as a ratio to `node -e 0` measured in the same run; and
// the agent's RSS once idle with the Envoy stand-in attached. Also the cost of a light command
// (`pilot-agent version`, which loads what `wait` and `request` load): `pilot-agent wait` is the
// postStart hook that holds the application container's start, so its start-up is pod latency.

import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { injectedProxy } from '../test/support/hello-pod.js';
import { envoyStandInPath } from '../test/support/paths.js';
import { agentBin, freePort } from '../test/support/processes.js';
import { median, round, rssMiB, timeCommand, type Bench } from './harness.js';

function helloEnv(overrides: Record<string, string>): Record<string, string> {
  const pod = injectedProxy('hello.yaml.injected');
  // a free xDS debug port: 15004 may be taken by another agent on the machine
  return { PATH: process.env.PATH ?? '', ...pod.env, PROXY_XDS_DEBUG_VIA_AGENT_PORT: '0', ...overrides };
}

/** One agent start: ms from spawn until the fake Envoy created its marker file. */
async function timeAgentToEnvoy(dir: string): Promise<number> {
  const marker = join(dir, 'envoy-started');
  rmSync(marker, { force: true });
  const fakeEnvoy = join(dir, 'fake-envoy.sh');
  // writes its PID (which `exec` keeps) atomically, so the marker appears complete
  writeFileSync(fakeEnvoy, `#!/bin/sh\necho $$ > "${marker}.tmp" && mv "${marker}.tmp" "${marker}"\nexec sleep 600\n`);
  chmodSync(fakeEnvoy, 0o755);
  const port = await freePort();
  const env = helloEnv({ PROXY_CONFIG: JSON.stringify({ binaryPath: fakeEnvoy, proxyAdminPort: port, statusPort: 0, controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1' }) });
  const seen = new Promise<void>((resolve) => {
    const w = watch(dir, () => {
      if (existsSync(marker)) {
        w.close();
        resolve();
      }
    });
  });
  const t0 = process.hrtime.bigint();
  const agent = spawn(process.execPath, [agentBin, 'proxy', 'sidecar', '--domain', 'default.svc.cluster.local'], { cwd: dir, env, stdio: 'ignore' });
  await seen;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  agent.kill('SIGKILL');
  await new Promise((r) => agent.once('exit', r));
  // the fake Envoy runs detached in its own process group, so the agent's SIGKILL does not reach it
  const pid = Number(readFileSync(marker, 'utf8').trim());
  if (pid > 0) process.kill(-pid, 'SIGKILL');
  return ms;
}

async function idleRss(dir: string): Promise<number> {
  const port = await freePort();
  const env = helloEnv({ PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: port, statusPort: 0, controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1', terminationDrainDuration: '0s' }) });
  const agent = spawn(process.execPath, [agentBin, 'proxy', 'sidecar', '--domain', 'default.svc.cluster.local'], { cwd: dir, env, stdio: 'ignore' });
  await sleep(3000);
  const rss = rssMiB(agent.pid!);
  agent.kill('SIGTERM');
  await new Promise((r) => agent.once('exit', r));
  return rss;
}

export const startupBench: Bench = async ({ runs }) => {
  const dir = mkdtempSync(join(tmpdir(), 'pa-bench-startup-'));
  mkdirSync(join(dir, 'etc/istio/proxy'), { recursive: true });
  try {
    const baseline: number[] = [];
    const agent: number[] = [];
    const light: number[] = [];
    for (let i = 0; i < runs; i++) {
      // interleave so machine noise hits both series alike
      baseline.push(await timeCommand(process.execPath, ['-e', '0']));
      agent.push(await timeAgentToEnvoy(dir));
      light.push(await timeCommand(process.execPath, [agentBin, 'version']));
    }
    const rss = await idleRss(dir);
    const b = median(baseline);
    const a = median(agent);
    const l = median(light);
    return {
      rows: [
        ['node -e 0 (median ms)', b.toFixed(1)],
        ['agent start -> envoy spawned (median ms)', a.toFixed(1)],
        ['startup ratio', (a / b).toFixed(2)],
        ['pilot-agent version, whole run (median ms)', l.toFixed(1)],
        ['light command ratio (version/wait/request)', (l / b).toFixed(2)],
        ['idle RSS with stand-in attached (MiB)', rss.toFixed(1)],
        ['runs', String(runs)],
      ],
      figures: { startup_ratio: round(a / b), light_command_ratio: round(l / b), idle_rss_mb: round(rss, 1), node_e0_ms: round(b, 1), agent_to_envoy_ms: round(a, 1), light_command_ms: round(l, 1) },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};
