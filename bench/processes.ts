// Child processes of the benchmarks: each is tracked by PID from spawn to exit, its output is read
// as it comes (so a chatty child never blocks on a full pipe) and its last lines are kept for
// reports, and every bench can stop exactly what it started, on any exit path. Also the two
// children several benches start: the agent in proxyless mode and the development control plane.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { writeIstiodMounts } from '../test/support/hello-pod.js';
import { agentBin } from '../test/support/processes.js';

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface BenchChild {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly name: string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  alive(): boolean;
  /** The last lines of its output (stdout and stderr, interleaved as read). */
  tail(n?: number): string[];
  /** Calls `fn` for every complete output line from now on; returns an unsubscribe function. */
  onLine(fn: (line: string) => void): () => void;
  /** SIGTERM (or `signal`), SIGKILL after `graceMs`; resolves once it has exited. Idempotent. */
  stop(opts?: { signal?: NodeJS.Signals; graceMs?: number }): Promise<Exit>;
}

const TAIL_LINES = 400;
const started = new Set<BenchChild>();

/**
 * Spawns a child that is tracked until it exits (stdin ignored, stdout and stderr read; with `ipc`
 * an IPC channel too, as fork() gives).
 */
export function spawnTracked(name: string, command: string, args: readonly string[], opts: Omit<SpawnOptions, 'stdio'> & { echoStderr?: boolean; ipc?: boolean } = {}): BenchChild {
  const { echoStderr, ipc, ...spawnOpts } = opts;
  const child = spawn(command, [...args], { ...spawnOpts, stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`cannot start ${name} (${command})`);
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  const reader = (echo: boolean) => {
    let partial = '';
    return (d: Buffer) => {
      if (echo) process.stderr.write(d);
      const parts = (partial + d.toString()).split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (lines.length > TAIL_LINES) lines.splice(0, lines.length - TAIL_LINES);
        for (const fn of listeners) fn(line);
      }
    };
  };
  child.stdout!.on('data', reader(false));
  child.stderr!.on('data', reader(echoStderr ?? false));
  let exit: Exit | undefined;
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      started.delete(tracked);
      resolve(exit);
    }),
  );
  const tracked: BenchChild = {
    child,
    pid: child.pid,
    name,
    exited,
    alive: () => exit === undefined,
    tail: (n = 40) => lines.slice(-n),
    onLine(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async stop({ signal = 'SIGTERM', graceMs = 5000 } = {}) {
      if (exit) return exit;
      const kill = (s: NodeJS.Signals): void => {
        try {
          process.kill(tracked.pid, s);
        } catch {
          // exited; the 'exit' event is on its way
        }
      };
      kill(signal);
      const timer = setTimeout(() => {
        if (!exit) kill('SIGKILL');
      }, graceMs);
      const e = await exited;
      clearTimeout(timer);
      return e;
    },
  };
  started.add(tracked);
  return tracked;
}

/** SIGKILLs every tracked child still running, by PID (synchronous: usable in an `exit` handler). */
export function killStartedChildren(): void {
  for (const c of started) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Resolves with the first output line (already read or to come) matching `re`. */
export function waitForLine(c: BenchChild, re: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  for (const line of c.tail(TAIL_LINES)) {
    const m = re.exec(line);
    if (m) return Promise.resolve(m);
  }
  return new Promise((resolve, reject) => {
    const done = (): void => {
      off();
      clearTimeout(timer);
    };
    const off = c.onLine((line) => {
      const m = re.exec(line);
      if (!m) return;
      done();
      resolve(m);
    });
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${c.name}: no line matching ${re} within ${timeoutMs} ms:\n${c.tail().join('\n')}`));
    }, timeoutMs);
    void c.exited.then((e) => {
      done();
      reject(new Error(`${c.name} exited (code ${e.code}, signal ${e.signal}) before printing ${re}:\n${c.tail().join('\n')}`));
    });
  });
}

export interface ProxylessAgentOptions {
  /** The pod's root (the agent's cwd): the XDS socket is ./etc/istio/proxy/XDS under it. */
  readonly dir: string;
  readonly discoveryAddress: string;
  /** `--log_output_level` (default `default:warn`). */
  readonly logLevels?: string;
  /** TLS to the control plane: istiod's root and the pod's token are written under `dir`. Plaintext when absent. */
  readonly tls?: { readonly rootCertPem: string; readonly token: string };
  /** Options for node itself, before the agent's script (e.g. `--import <probe>`). */
  readonly nodeArgs?: readonly string[];
  /** Extra environment variables. */
  readonly env?: Readonly<Record<string, string>>;
}

export interface ProxylessAgent extends BenchChild {
  readonly socketPath: string;
}

/**
 * `pilot-agent proxy sidecar` with DISABLE_ENVOY (proxyless, as Istio's grpc-agent pods run it):
 * the xDS proxy on its unix socket, pointed at `discoveryAddress`. Resolves once the socket exists.
 */
export async function startProxylessAgent(o: ProxylessAgentOptions): Promise<ProxylessAgent> {
  if (o.tls) writeIstiodMounts(o.dir, o.tls.rootCertPem, o.tls.token);
  const agent = spawnTracked('agent', process.execPath, [...(o.nodeArgs ?? []), agentBin, 'proxy', 'sidecar', `--log_output_level=${o.logLevels ?? 'default:warn'}`], {
    cwd: o.dir,
    env: {
      PATH: process.env.PATH ?? '',
      POD_NAME: 'bench',
      POD_NAMESPACE: 'default',
      INSTANCE_IP: '10.0.0.1',
      DISABLE_ENVOY: 'true',
      // a free xDS debug port: 15004 may be taken by another agent on the machine
      PROXY_XDS_DEBUG_VIA_AGENT_PORT: '0',
      PROXY_CONFIG: JSON.stringify({ ...(o.tls ? {} : { controlPlaneAuthPolicy: 'NONE' }), discoveryAddress: o.discoveryAddress, statusPort: 0 }),
      ...o.env,
    },
  });
  const socketPath = join(o.dir, 'etc/istio/proxy/XDS');
  for (let i = 0; i < 400 && !existsSync(socketPath); i++) {
    if (!agent.alive()) throw new Error(`the agent exited during start-up:\n${agent.tail().join('\n')}`);
    await sleep(25);
  }
  if (!existsSync(socketPath)) {
    await agent.stop({ signal: 'SIGKILL' });
    throw new Error(`the agent did not open ${socketPath} within 10 s:\n${agent.tail().join('\n')}`);
  }
  return Object.assign(agent, { socketPath });
}

export const controlPlaneMain = fileURLToPath(new URL('../test/control-plane/main.js', import.meta.url));

/**
 * The development control plane as a child process (`test/control-plane/main.js` with `args`).
 * Resolves once it listens (and has written its root with --root-cert-out).
 */
export async function startControlPlaneProcess(args: readonly string[], opts: { echoStderr?: boolean } = {}): Promise<{ proc: BenchChild; address: string }> {
  const proc = spawnTracked('control plane', process.execPath, [controlPlaneMain, ...args], opts);
  try {
    const m = await waitForLine(proc, /^listening on (\S+)/);
    if (args.includes('--root-cert-out')) await waitForLine(proc, /^root certificate written/);
    return { proc, address: m[1]! };
  } catch (err) {
    await proc.stop({ signal: 'SIGKILL' });
    throw err;
  }
}
