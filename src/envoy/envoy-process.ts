// The Envoy child process as an explicit state machine:
//
//   initial --start()--> running --terminate()--> draining --(drain wait over)--> stopping --> exited
//                           |  \--drainNow()--> running (drained: a later terminate() stops at once)
//                           \--(Envoy exits by itself)------------------------------------> exited
//
// Envoy runs in its own process group so that the stop signal reaches anything it spawned, and so
// that a terminal's Ctrl-C (sent to the agent's group) does not bypass the graceful drain. Being
// out of the agent's group, a SIGKILL of that group (a supervisor's, or `kill -9 -<pgid>`), or of
// the agent alone (the OOM killer), would leave Envoy serving with no xDS or SDS behind it: where
// util-linux's setpriv is installed (Debian, Ubuntu; not distroless) Envoy is started through it
// with a parent-death signal, so that the kernel kills Envoy when the agent dies, however it dies.
// Istio's Envoy shares the agent's group, and outlives a `kill -9` of the agent alone.
// Envoy is never restarted: when it exits, the agent exits (Istio's contract).

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { sleep } from '../util/backoff.js';
import { logger } from '../util/logger.js';
import { deadline } from '../util/deadline.js';
import type { EnvoyAdminClient } from './admin-client.js';
import { timerDelay } from '../util/timer-delay.js';

export type EnvoyState = 'initial' | 'running' | 'draining' | 'stopping' | 'exited';

export interface EnvoyExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when the agent asked Envoy to stop; false when Envoy exited on its own (crash, quitquitquit). */
  readonly requested: boolean;
}

export interface EnvoyProcessOptions {
  readonly binaryPath: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly admin: EnvoyAdminClient;
  /** Sidecars drain inbound listeners only; gateways drain all. */
  readonly inboundOnly: boolean;
  readonly terminationDrainMs: number;
  readonly exitOnZeroActiveConnections: boolean;
  readonly minimumDrainMs: number;
  readonly knownListeners: ReadonlySet<string>;
  /** Poll period of the active-connection check (Istio: 1s). */
  readonly activeConnectionPollMs?: number;
  /** After the stop signal, how long Envoy gets before SIGKILL. */
  readonly killGraceMs?: number;
  /** Run Envoy under this user and group instead of the agent's (see envoyRunAs). */
  readonly runAs?: EnvoyUser;
  /** Start Envoy through setpriv with a parent-death signal where setpriv is installed (default true). */
  readonly parentDeathSignal?: boolean;
}

export interface EnvoyUser {
  readonly uid: number;
  readonly gid: number;
}

/** Istio's proxy user: iptables capture lets its traffic through, so Envoy's own connections are not redirected back to it. */
export const ISTIO_PROXY_USER: EnvoyUser = { uid: 1337, gid: 1337 };

/**
 * Istio's AgentIsRoot: an agent running as root so that its DNS proxy can listen on port 53 (a
 * DNS_PROXY_ADDR ending in ":53", Istio's way to serve DNS without iptables capture) still runs
 * Envoy as the proxy user, whose traffic the capture rules exclude; as root, Envoy's outbound
 * connections would be redirected back into itself.
 */
export function envoyRunAs(agentUid: number | undefined, dnsProxyAddr: string): EnvoyUser | undefined {
  return agentUid === 0 && dnsProxyAddr.endsWith(':53') ? ISTIO_PROXY_USER : undefined;
}

export class EnvoyStartError extends Error {
  readonly code = 'ENVOY_START';
}

const log = logger('default');

/** Exit status for the agent when Envoy ended: its code, or 128+signal for a signal death. */
export function exitCodeFor(exit: EnvoyExit): number {
  if (exit.requested) return 0;
  if (exit.code !== null) return exit.code;
  if (exit.signal) return 128 + (osConstants.signals[exit.signal] ?? 0);
  return 1;
}

export class EnvoyProcess {
  private stateValue: EnvoyState = 'initial';
  private child: ChildProcess | undefined;
  private drained = false;
  private stopRequested = false;
  /** The agent has sent Envoy a stop signal (SIGTERM, or SIGKILL): an exit after it is the stop's. */
  private stopSignalSent = false;
  /** Set while the child is being spawned: a stop requested meanwhile waits for it. */
  private spawning: Promise<void> | undefined;
  private readonly stopNow = new AbortController();
  private resolveExit!: (e: EnvoyExit) => void;
  /** Settles once Envoy has exited, whatever the reason. */
  readonly exited: Promise<EnvoyExit> = new Promise((r) => (this.resolveExit = r));

  constructor(private readonly opts: EnvoyProcessOptions) {}

  get state(): EnvoyState {
    return this.stateValue;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private transition(to: EnvoyState): void {
    log.debug(`envoy state ${this.stateValue} -> ${to}`);
    this.stateValue = to;
  }

  /** Spawns Envoy. Rejects with a clear EnvoyStartError when the binary is missing or not executable. */
  async start(): Promise<void> {
    if (this.stateValue !== 'initial' || this.spawning) throw new EnvoyStartError(`envoy already started (state ${this.stateValue})`);
    const spawning = this.spawn();
    this.spawning = spawning;
    try {
      await spawning;
    } finally {
      this.spawning = undefined;
    }
  }

  private async spawn(): Promise<void> {
    const bin = this.opts.binaryPath;
    try {
      if (!statSync(bin).isFile()) throw new Error('not a regular file');
      accessSync(bin, fsConstants.X_OK);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code === 'ENOENT' ? 'does not exist' : e.code === 'EACCES' ? 'is not executable' : e.message;
      throw new EnvoyStartError(`envoy binary ${bin} (ProxyConfig binaryPath) ${why}`, { cause: err });
    }
    log.info(`Envoy command: [${this.opts.args.join(' ')}]`);
    const user = this.opts.runAs;
    if (user) log.info(`Envoy runs as uid ${user.uid}, gid ${user.gid} (the agent is root, its DNS proxy on port 53)`);
    // setpriv sets the signal after the uid change (which would clear it), then execs Envoy in its
    // place: same pid, same argv
    const setpriv = this.opts.parentDeathSignal === false ? undefined : setprivPath();
    const [file, argv] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', bin, ...this.opts.args]] : [bin, this.opts.args];
    const child = spawn(file, argv, { env: this.opts.env, cwd: this.opts.cwd, stdio: 'inherit', detached: true, ...(user ? { uid: user.uid, gid: user.gid } : {}) });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException): void => {
        // EAGAIN from fork: a limit on processes or threads, which the bare errno does not say
        const hint = err.code === 'EAGAIN' ? ' (no process could be created: the process or thread limit is reached, RLIMIT_NPROC or the pids cgroup pids.max)' : '';
        reject(new EnvoyStartError(`failed to start envoy ${bin}: ${err.message}${hint}`, { cause: err }));
      };
      child.once('error', failed);
      child.once('spawn', () => {
        child.off('error', failed);
        // after the spawn, an 'error' (a failed signal) must be logged, never thrown
        child.on('error', (err) => log.warn(`envoy process: ${err.message}`));
        resolve();
      });
    });
    this.transition('running');
    log.info(`Envoy started (pid ${child.pid})`);
    child.once('exit', (code, signal) => {
      this.transition('exited');
      this.stopNow.abort();
      // what Envoy left running in its group (it was the group's leader) goes with it
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // nothing left
      }
      // an Envoy that crashes during the drain, before the agent's stop signal, crashed: its code
      // or signal is the agent's exit status (Istio logs it and exits 0)
      const clean = code === 0 && signal === null;
      this.resolveExit({ code, signal, requested: this.stopRequested && (this.stopSignalSent || clean) });
    });
  }

  /**
   * The status port's /drain: drain listeners without exiting, and make a later terminate()
   * skip the drain wait (it has happened already).
   */
  async drainNow(): Promise<void> {
    log.info('Agent draining proxy');
    try {
      await this.opts.admin.drainListeners(this.opts.inboundOnly, true);
    } catch (err) {
      log.warn(`Error in invoking drain listeners endpoint: ${(err as Error).message}`);
    }
    this.drained = true;
  }

  /** The status port's /quitquitquit: the next terminate() stops Envoy without draining. */
  skipDrain(): void {
    this.drained = true;
  }

  /**
   * Graceful stop (SIGTERM/SIGINT): drain through the admin API, wait terminationDrainDuration (or,
   * with EXIT_ON_ZERO_ACTIVE_CONNECTIONS, MINIMUM_DRAIN_DURATION then until no inbound connection is
   * left), then stop Envoy. Called again while draining, it stops Envoy at once. `maxDrainMs` bounds
   * the drain (0: none), for stops that cannot wait the configured period (start-up failure, the
   * agent's own fatal error). Safe in every state, including while Envoy is being spawned.
   */
  async terminate(opts: { maxDrainMs?: number } = {}): Promise<EnvoyExit> {
    if (this.spawning) {
      // a stop while Envoy is being spawned: let the spawn finish (or fail), then stop what ran
      this.stopRequested = true;
      await this.spawning.catch(() => undefined);
    }
    if (this.stateValue === 'exited' || this.stateValue === 'initial') {
      if (this.stateValue === 'initial') {
        this.transition('exited');
        this.resolveExit({ code: 0, signal: null, requested: true });
      }
      return this.exited;
    }
    if (this.stateValue === 'draining' || this.stateValue === 'stopping') {
      log.warn('Second termination request while draining: stopping Envoy now');
      this.stopNow.abort();
      this.kill('SIGKILL');
      return this.exited;
    }
    this.stopRequested = true;
    this.transition('draining');
    if (this.drained) {
      log.info('Agent already drained, exiting immediately');
    } else if (opts.maxDrainMs === 0) {
      log.info('Stopping Envoy without a drain');
    } else {
      log.info('Agent draining Proxy for termination');
      // util/deadline.ts: AbortSignal.any over an AbortSignal.timeout loses the bound to a GC
      const bound = opts.maxDrainMs === undefined ? undefined : deadline(opts.maxDrainMs, this.stopNow.signal);
      const signal = bound ? bound.signal : this.stopNow.signal;
      try {
        try {
          await this.opts.admin.drainListeners(this.opts.inboundOnly, false, signal);
        } catch (err) {
          log.warn(`Error in invoking drain listeners endpoint: ${(err as Error).message}`);
        }
        await this.waitDrain(signal);
      } finally {
        bound?.clear();
      }
    }
    if ((this.state as EnvoyState) === 'exited') {
      const exit = await this.exited;
      log.info(`Envoy exited with ${exit.signal ? `signal ${exit.signal}` : `status ${exit.code}`}`);
      log.info('Graceful termination logic ended prematurely, envoy process terminated early');
      return exit;
    }
    this.transition('stopping');
    this.kill('SIGTERM');
    const grace = this.opts.killGraceMs ?? 5000;
    const timer = setTimeout(() => this.kill('SIGKILL'), timerDelay(grace));
    timer.unref();
    const exit = await this.exited;
    clearTimeout(timer);
    log.info('Envoy aborted normally');
    return exit;
  }

  /**
   * Last resort when the agent itself is going down: SIGKILL Envoy's process group, synchronously
   * (usable from a process 'exit' handler, where nothing asynchronous runs any more).
   */
  killNow(): void {
    this.kill('SIGKILL');
  }

  private async waitDrain(signal: AbortSignal): Promise<void> {
    try {
      if (!this.opts.exitOnZeroActiveConnections) {
        log.info(`Graceful termination period is ${this.opts.terminationDrainMs / 1000}s, starting...`);
        await sleep(this.opts.terminationDrainMs, signal, { keepAlive: true });
        log.info('Graceful termination period complete, terminating remaining proxies.');
        return;
      }
      log.info(`Agent draining proxy for ${this.opts.minimumDrainMs / 1000}s, then waiting for active connections to terminate...`);
      await sleep(this.opts.minimumDrainMs, signal, { keepAlive: true });
      log.info('Checking for active connections...');
      let failures = 0;
      for (;;) {
        await sleep(this.opts.activeConnectionPollMs ?? 1000, signal, { keepAlive: true });
        let active: number;
        try {
          active = await this.opts.admin.activeConnections(this.opts.knownListeners, signal);
        } catch (err) {
          if (signal.aborted) return;
          failures++;
          log.error((err as Error).message);
          if (failures > 4) {
            log.warn(`Graceful termination logic ended prematurely, error while obtaining downstream_cx_active stat (Max retry ${failures} exceeded)`);
            return;
          }
          log.warn(`Retrying (${failures} attempt) to obtain active connections...`);
          continue;
        }
        failures = 0;
        if (active === -1) {
          log.info('downstream_cx_active are not available. This either means there are no downstream connection established yet or the stats are not enabled. Skipping active connections check...');
          return;
        }
        if (active === 0) {
          log.info('There are no more active connections. terminating proxy...');
          return;
        }
        log.info(`There are still ${active} active connections`);
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
  }

  /** Signals Envoy's whole process group (it runs detached in its own). */
  kill(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined || this.stateValue === 'exited') return;
    this.stopSignalSent = true;
    try {
      process.kill(-pid, signal);
    } catch {
      try {
        process.kill(pid, signal);
      } catch {
        /* already gone */
      }
    }
  }
}

/** util-linux's setpriv, where installed (at its fixed paths, not looked up on PATH). */
function setprivPath(): string | undefined {
  for (const p of ['/usr/bin/setpriv', '/bin/setpriv']) {
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // not there
    }
  }
  return undefined;
}
