// Envoy's spawn waits only for what it needs: the configuration, the bootstrap and the sockets
// Envoy connects to, bound (grpc/held-listener.ts). The servers behind those sockets start after
// the spawn, while Envoy starts, and the Node built-ins they need (node:http2, node:http,
// node:https, node:tls, node:zlib, node:crypto) load then: they cost tens of milliseconds in
// every pod start (bench
// `startup`). Checked on the real agent, launched as in a pod, in a fresh working directory and
// in one where a killed agent left its sockets behind (a container restart), where the check of
// the old SDS socket must not load node:http2 either. A preload records which built-ins are
// loaded at the moment Envoy is spawned; the agent must then serve on the sockets it bound.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { dialUnixSocket } from '../../src/grpc/dial.js';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { injectedProxy } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, killStarted, runAgent, tempDir } from '../support/processes.js';

const pod = injectedProxy('hello.yaml.injected');
/** Loaded by the servers and the certificate code; none of them is needed to spawn Envoy. */
const AFTER_SPAWN = ['http2', 'http', 'https', 'tls', 'zlib', 'crypto', '_http_server', 'internal/http2/core'];

let work: ReturnType<typeof tempDir>;
beforeEach(() => {
  work = tempDir('pa-spawn-first-');
});
afterEach(() => {
  killStarted();
  for (const e of readRecord(join(work.path, 'record.jsonl')).filter((r) => r.event === 'start')) {
    try {
      process.kill(e.pid as number, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  work.cleanup();
});

/** Records, in the agent only, the built-ins loaded when it first spawns a process (Envoy). */
function writePreload(out: string): string {
  const path = join(work.path, 'spawn-probe.cjs');
  writeFileSync(
    path,
    `
const cp = require('node:child_process');
const { writeFileSync } = require('node:fs');
if (/pilot-agent\\.js$/.test(process.argv[1] ?? '')) {
  const spawn = cp.spawn;
  let seen = false;
  cp.spawn = function (...args) {
    if (!seen) {
      seen = true;
      const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
      writeFileSync(${JSON.stringify(out)}, JSON.stringify({ file: String(args[0]), args: Array.isArray(args[1]) ? args[1].map(String) : [], builtins }));
    }
    return spawn.apply(this, args);
  };
}
`,
  );
  return path;
}

async function startAgent(): Promise<{ builtins: string[]; file: string; args: string[]; output: () => string }> {
  const out = join(work.path, 'at-spawn.json');
  const agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      NODE_OPTIONS: `--require=${writePreload(out)}`,
      ENVOY_STANDIN_RECORD: join(work.path, 'record.jsonl'),
      PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: await freePort(), statusPort: 0, controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1', terminationDrainDuration: '0s' }),
    },
  });
  await vi.waitFor(
    () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
      expect(existsSync(out)).toBe(true);
      expect(agent.output()).toContain('xDS proxy listening on');
    },
    { timeout: 20_000, interval: 20 },
  );
  return { ...(JSON.parse(readFileSync(out, 'utf8')) as { builtins: string[]; file: string; args: string[] }), output: agent.output };
}

const xdsSocket = (): string => join(work.path, 'etc/istio/proxy/XDS');
const sdsSocket = (): string => join(work.path, 'var/run/secrets/workload-spiffe-uds/socket');

describe('what Envoy waits for', () => {
  it('in a fresh pod: Envoy is spawned before the servers and their built-ins load, and the sockets it was given are served', { timeout: 30_000 }, async () => {
    const agent = await startAgent();
    // Envoy itself, or Envoy through setpriv (its parent-death signal) where util-linux has it
    const program = agent.file.endsWith('/setpriv') ? agent.args[agent.args.indexOf('--') + 1] : agent.file;
    expect(program).toBe(envoyStandInPath);
    expect(agent.builtins).toContain('child_process');
    expect(agent.builtins.filter((m) => AFTER_SPAWN.includes(m))).toEqual([]);
    await dialUnixSocket(xdsSocket(), 5000);
    await dialUnixSocket(sdsSocket(), 5000);
  });

  it('after a crash left the sockets behind: they are taken over, still without loading node:http2 before the spawn', { timeout: 30_000 }, async () => {
    for (const path of [xdsSocket(), sdsSocket()]) {
      mkdirSync(join(path, '..'), { recursive: true });
      // bound and never closed: the file stays and nobody listens, as after a SIGKILL
      execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path)})`]);
    }
    const agent = await startAgent();
    expect(agent.builtins.filter((m) => AFTER_SPAWN.includes(m))).toEqual([]);
    expect(agent.output()).toContain(`removing stale xDS socket ${xdsSocket()}`);
    await dialUnixSocket(xdsSocket(), 5000);
    await dialUnixSocket(sdsSocket(), 5000);
  });
});
