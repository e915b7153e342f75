import { timerDelay } from './timer-delay.js';
// Exponential backoff with Istio's defaults (pkg/backoff over cenkalti/backoff: 500 ms initial
// interval, x1.5 per attempt, +/-50 % randomisation, 60 s cap, never giving up), and the one
// sleep: abortable, and by default without keeping the process alive.

export interface BackoffOptions {
  readonly initialMs?: number;
  readonly maxMs?: number;
  readonly multiplier?: number;
  readonly randomization?: number;
}

export class Backoff {
  private current: number;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly multiplier: number;
  private readonly randomization: number;

  constructor(opts: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.initialMs = opts.initialMs ?? 500;
    this.maxMs = opts.maxMs ?? 60_000;
    this.multiplier = opts.multiplier ?? 1.5;
    this.randomization = opts.randomization ?? 0.5;
    this.current = this.initialMs;
  }

  /** The next wait, in milliseconds. */
  next(): number {
    const base = this.current;
    this.current = Math.min(this.current * this.multiplier, this.maxMs);
    const delta = this.randomization * base;
    return Math.min(this.maxMs, Math.round(base - delta + this.random() * 2 * delta));
  }

  reset(): void {
    this.current = this.initialMs;
  }
}

export class AbortedError extends Error {
  override readonly name = 'AbortedError';
  readonly code = 'ABORTED';
}

export interface SleepOptions {
  /**
   * Keep the process alive while sleeping (a command-line wait, a drain). Off by default: a retry
   * wait inside the agent must not hold a process that is otherwise done.
   */
  readonly keepAlive?: boolean;
}

/** Resolves after `ms`, or rejects with AbortedError (its cause: the signal's reason) when the signal aborts first. */
export function sleep(ms: number, signal?: AbortSignal, opts: SleepOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = (): AbortedError => new AbortedError('aborted', { cause: signal?.reason });
    if (signal?.aborted) return reject(aborted());
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, timerDelay(ms));
    if (!opts.keepAlive) timer.unref();
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(aborted());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
