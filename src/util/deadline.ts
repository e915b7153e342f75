import { timerDelay } from './timer-delay.js';
// A deadline as an AbortSignal, which also ends with any of its parents.
//
// Why not AbortSignal.any([parent, AbortSignal.timeout(ms)]): on Node 20 the combined signal
// holds its sources weakly, and a timeout signal that nothing else references (no listener, no
// variable still in use) is collected together with its timer. After a garbage collection such a
// deadline never fires: a Wasm fetch waited past its 1 s deadline until the per-attempt timeouts
// of every retry ran out, and the drain bound was built the same way. Here the timer holds the
// controller, and `clear()` releases both the timer and the listeners on the parents.

/** The reason AbortSignal.timeout gives, so that callers and libraries recognize a timeout. */
function timeoutReason(): DOMException {
  return new DOMException('The operation was aborted due to timeout', 'TimeoutError');
}

export interface Deadline {
  readonly signal: AbortSignal;
  /** Whether it was the deadline (not a parent) that ended the signal. */
  readonly expired: boolean;
  /** Stops the timer and forgets the parents; the signal stays as it is. Idempotent. */
  clear(): void;
}

/** A signal that aborts after `ms` milliseconds (never when undefined), or as soon as any of `parents` aborts. */
export function deadline(ms: number | undefined, ...parents: readonly (AbortSignal | undefined)[]): Deadline {
  const controller = new AbortController();
  let expired = false;
  const live = parents.filter((p): p is AbortSignal => p !== undefined);
  const onParent = function (this: AbortSignal): void {
    end(this.reason);
  };
  const timer =
    ms === undefined
      ? undefined
      : setTimeout(() => {
          expired = true;
          end(timeoutReason());
        }, timerDelay(ms));
  const clear = (): void => {
    clearTimeout(timer);
    for (const p of live) p.removeEventListener('abort', onParent);
  };
  const end = (reason: unknown): void => {
    clear();
    controller.abort(reason);
  };
  for (const p of live) {
    if (p.aborted) {
      end(p.reason);
      break;
    }
    p.addEventListener('abort', onParent, { once: true });
  }
  return {
    signal: controller.signal,
    get expired() {
      return expired;
    },
    clear,
  };
}
