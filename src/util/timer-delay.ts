// Node's timers hold a delay of at most 2^31-1 ms (24.8 days). A longer one is replaced by 1 ms
// (with a TimeoutOverflowWarning), so a configured "very long" duration would act as "at once":
// a 30-day terminationDrainDuration skipped the drain, a 1000h GRPC_KEEPALIVE_TIMEOUT dropped
// every connection at its first ping, a 1000h GRPC_KEEPALIVE_INTERVAL pinged every millisecond.
// Go's durations hold 292 years. Every timer whose delay is not a constant goes through
// timerDelay (test/conventions/timers.test.ts checks it): past 24.8 days it waits 24.8 days, a
// difference no process lives to see, except for certificates, whose rotation re-arms instead
// (security/secret-manager.ts).

/** The longest delay a Node timer holds. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A delay as a Node timer can hold it: clamped to 0..MAX_TIMER_MS (NaN: the longest). */
export function timerDelay(ms: number): number {
  if (!(ms > 0)) return Number.isNaN(ms) ? MAX_TIMER_MS : 0;
  return Math.min(ms, MAX_TIMER_MS);
}
