// Helpers for tests that run the real agent executable: free ports, temp working dirs, child
// processes tracked by PID (tests stop only what they started), and the stand-in's record file.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './paths.js';

export const agentBin = join(repoRoot, 'bin', 'pilot-agent.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

export function tempDir(prefix: string): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface RunningProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop: () => void;
}

const started = new Set<ChildProcess>();

/** Runs the agent (the repository's launcher, or `opts.bin`: another install's) in `opts.cwd`. */
export function runAgent(args: string[], opts: { cwd: string; env: Record<string, string>; bin?: string }): RunningProcess {
  const child = spawn(process.execPath, [opts.bin ?? agentBin, ...args], {
    cwd: opts.cwd,
    // many agents run at once: each takes a free xDS debug port (Istio's default 15004 is fixed)
    // unless the test names one, as Istio's own agent tests turn the fixed port off
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PROXY_XDS_DEBUG_VIA_AGENT_PORT: '0', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      started.delete(child);
      resolve({ code, signal });
    }),
  );
  return {
    child,
    output: () => out,
    exited,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** Kills every process started through runAgent that is still running (afterEach safety net). */
export function killStarted(): void {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

export interface StandInEvent {
  event: string;
  argv?: string[];
  pid?: number;
  method?: string;
  path?: string;
  signal?: string;
  code?: number;
  [k: string]: unknown;
}

/** Events the Envoy stand-in appended to its ENVOY_STANDIN_RECORD file. */
export function readRecord(file: string): StandInEvent[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as StandInEvent);
}

/** Kills the Envoy stand-ins an agent started (their PIDs from the record file) that still run. */
export function killRecordedStandIns(file: string): void {
  for (const ev of readRecord(file)) if (ev.event === 'start' && typeof ev.pid === 'number' && isAlive(ev.pid)) process.kill(ev.pid, 'SIGKILL');
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops an agent the way Kubernetes does (SIGTERM), waits for it, then kills anything else a test started. */
export async function stopAgent(agent: RunningProcess | undefined): Promise<void> {
  if (agent && agent.child.exitCode === null && agent.child.signalCode === null) {
    agent.child.kill('SIGTERM');
    await agent.exited;
  }
  killStarted();
}
