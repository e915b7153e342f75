// Helpers for tests that run the real agent executable: free ports, temp working dirs, child
// processes tracked by PID (tests stop only what they started), and the stand-in's record file.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './paths.js';

export const agentBin = join(repoRoot, 'bin', 'pilot-agent.js');

/**
 * Where freePort() looks: from 20000 (clear of Istio's 150xx ports, which some tests leave at their
 * defaults) up to the kernel's ephemeral range. A port from `listen(0)` is ephemeral, and once it is
 * released any outgoing connection on the machine may take it as its local port before the server
 * meant for it binds (the likely cause of a CI failure: the Envoy stand-in's admin port, from
 * freePort(), refused connections for the whole minute a test waited). Below the ephemeral range
 * only another freePort() can pick the same number, and this process never hands one out twice.
 */
const PORTS_FROM = 20000;
const handedOut = new Set<number>();

function ephemeralRangeStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return 32768; // Linux's default
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** The kernel's choice, for a machine whose ephemeral range leaves no room below it. */
function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** A loopback port that is free now, for a server a test configures by number before it starts. */
export async function freePort(): Promise<number> {
  const to = ephemeralRangeStart();
  if (!(to - PORTS_FROM >= 1000)) return kernelPort();
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = PORTS_FROM + Math.floor(Math.random() * (to - PORTS_FROM));
    if (handedOut.has(port) || !(await canListen(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free loopback port found in ${PORTS_FROM}-${to - 1} after 100 tries`);
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

/**
 * The end of a test that ran the agent with the Envoy stand-in recording into <work>/record.jsonl:
 * SIGTERM (10 s to stop), then SIGKILL for whatever is left, the stand-ins included; the
 * directory is removed.
 */
export async function stopAgentAndStandIns(agent: RunningProcess | undefined, work: { path: string; cleanup(): void } | undefined): Promise<void> {
  if (agent && agent.child.exitCode === null) {
    agent.child.kill('SIGTERM');
    await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
  }
  killStarted();
  if (work) {
    killRecordedStandIns(join(work.path, 'record.jsonl'));
    work.cleanup();
  }
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
