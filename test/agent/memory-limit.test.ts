// The agent's memory limit through the real process: GOMEMLIMIT (as Istio's injector sets it from
// the container's limit) and a cgroup limit (where the machine lets the test make a cgroup) change
// the heap limit the agent keeps to, shown in /debug/config; a malformed GOMEMLIMIT stops start-up
// naming it.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { httpRequest } from '../support/envoy-stand-in-harness.js';
import { injectedProxy } from '../support/hello-pod.js';
import { agentBin, freePort, killStarted, runAgent, tempDir, type RunningProcess } from '../support/processes.js';

const pod = injectedProxy('grpc-agent.yaml.injected');
let work: ReturnType<typeof tempDir>;
const agents: RunningProcess[] = [];

afterEach(async () => {
  for (const a of agents.splice(0)) {
    if (a.child.exitCode === null) {
      a.child.kill('SIGTERM');
      await a.exited;
    }
  }
  killStarted();
  work?.cleanup();
});

interface MemoryView {
  limitBytes: number | null;
  source: string;
  heapLimitBytes: number;
  v8HeapSizeLimitBytes: number;
}

async function memoryOf(statusPort: number, agent: { output: () => string; child: { exitCode: number | null } }): Promise<MemoryView> {
  let view: MemoryView | undefined;
  await vi.waitFor(
    async () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
      const res = await httpRequest(`http://127.0.0.1:${statusPort}/debug/config`);
      expect(res.status).toBe(200);
      view = (JSON.parse(res.body) as { memory: MemoryView }).memory;
    },
    { timeout: 20_000, interval: 100 },
  );
  return view!;
}

function env(statusPort: number, extra: Record<string, string> = {}): Record<string, string> {
  return { ...pod.env, OUTPUT_CERTS: '', PROXY_CONFIG: JSON.stringify({ discoveryAddress: '127.0.0.1:1', controlPlaneAuthPolicy: 'NONE', statusPort }), ...extra };
}

describe('memory limit', () => {
  it('GOMEMLIMIT sets the limit and the heap the agent keeps to; without it, none', { timeout: 60_000 }, async () => {
    work = tempDir('pa-mem-');
    const statusPort = await freePort();
    const limited = runAgent(pod.args, { cwd: work.path, env: env(statusPort, { GOMEMLIMIT: '200MiB' }) });
    agents.push(limited);
    const m = await memoryOf(statusPort, limited);
    expect(m).toMatchObject({ limitBytes: 200 * 2 ** 20, source: 'GOMEMLIMIT', heapLimitBytes: 150 * 2 ** 20 });
    expect(limited.output()).toContain('Memory limit: 200 MiB (GOMEMLIMIT); heap kept under 150 MiB');
    limited.child.kill('SIGTERM');
    await limited.exited;

    const port2 = await freePort();
    const unlimited = runAgent(pod.args, { cwd: work.path, env: env(port2) });
    agents.push(unlimited);
    const u = await memoryOf(port2, unlimited);
    // this machine's cgroup sets no memory limit
    expect(u.limitBytes).toBeNull();
    expect(u.source).toBe('none');
    expect(u.heapLimitBytes).toBe(u.v8HeapSizeLimitBytes);
  });

  it('a malformed GOMEMLIMIT stops start-up, naming the variable and the value', { timeout: 30_000 }, async () => {
    work = tempDir('pa-mem-bad-');
    const agent = runAgent(pod.args, { cwd: work.path, env: env(await freePort(), { GOMEMLIMIT: '200MB' }) });
    agents.push(agent);
    const exit = await agent.exited;
    expect(exit.code).toBe(255);
    expect(agent.output()).toMatch(/env GOMEMLIMIT: expected a byte count with an optional B, KiB, MiB, GiB or TiB suffix .*\(value: "200MB"\)/);
  });

  // cgroup v1 (this machine) or v2, where the test may create a cgroup
  const v1 = '/sys/fs/cgroup/memory';
  const v2 = '/sys/fs/cgroup/unified';
  const cgroupRoot = existsSync(join(v1, 'cgroup.procs')) ? { dir: v1, limitFile: 'memory.limit_in_bytes' } : existsSync(join(v2, 'cgroup.procs')) ? { dir: v2, limitFile: 'memory.max' } : undefined;
  let canMakeCgroup = false;
  if (cgroupRoot) {
    try {
      const probe = join(cgroupRoot.dir, `pa-probe-${process.pid}`);
      mkdirSync(probe);
      canMakeCgroup = existsSync(join(probe, cgroupRoot.limitFile));
      rmdirSync(probe);
    } catch {
      canMakeCgroup = false;
    }
  }

  it.skipIf(!canMakeCgroup)('a cgroup memory limit is the limit when GOMEMLIMIT is unset; V8 is sized from it', { timeout: 60_000 }, async () => {
    work = tempDir('pa-mem-cg-');
    const cg = join(cgroupRoot!.dir, `pa-test-${process.pid}-${Date.now()}`);
    mkdirSync(cg);
    try {
      writeFileSync(join(cg, cgroupRoot!.limitFile), String(300 * 2 ** 20));
      const statusPort = await freePort();
      // the agent joins the cgroup before Node starts, as a container's process does
      const child = spawn('/bin/sh', ['-c', `echo $$ > ${join(cg, 'cgroup.procs')} && exec "$0" "$@"`, process.execPath, agentBin, ...pod.args], {
        cwd: work.path,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PROXY_XDS_DEBUG_VIA_AGENT_PORT: '0', ...env(statusPort) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise((r) => child.once('exit', r));
      try {
        const m = await memoryOf(statusPort, { output: () => out, child });
        expect(m).toMatchObject({ limitBytes: 300 * 2 ** 20, source: 'cgroup', heapLimitBytes: Math.min(m.v8HeapSizeLimitBytes, Math.floor(300 * 2 ** 20 * 0.75)) });
        expect(m.v8HeapSizeLimitBytes).toBeLessThan(300 * 2 ** 20);
      } finally {
        child.kill('SIGTERM');
        await exited;
      }
    } finally {
      rmdirSync(cg);
    }
  });
});
