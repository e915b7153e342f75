// Name resolution for outgoing connections, one lookup per name at a time. Node's dns.lookup runs
// getaddrinfo on libuv's thread pool, which lets at most two lookups run at once (its "slow I/O"
// share of four threads) and serves the rest in order: with istiod's name not answering, each of
// Envoy's reconnects queued one more lookup of it, and the CA's name, answerable at once from
// /etc/hosts, waited behind them all until the workload certificate expired (67 s, found by an
// exhaustion audit). Concurrent lookups of the same name now share one, as Go's resolver does
// (its singleflight lookupGroup), so one slow name holds at most one thread. Nothing is cached:
// each connection after the answer resolves again, as in Go.

import dns from 'node:dns';
import type { LookupFunction } from 'node:net';

type Callback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

interface Pending {
  readonly hostname: string;
  readonly since: number;
  readonly waiters: Callback[];
}

/** A lookup function for net/tls/http2 `connect` options that shares concurrent lookups of one name. */
export function sharedLookup(underlying: (hostname: string, options: dns.LookupOptions, callback: Callback) => void = dns.lookup as never): LookupFunction & { pendingFor(hostname: string): number | undefined } {
  const pending = new Map<string, Pending>();
  const lookup = (hostname: string, options: dns.LookupOptions, callback: Callback): void => {
    const key = JSON.stringify([hostname, options.family ?? 0, options.hints ?? 0, options.all ?? false, options.order ?? options.verbatim ?? null]);
    const shared = pending.get(key);
    if (shared) {
      shared.waiters.push(callback);
      return;
    }
    const entry: Pending = { hostname, since: performance.now(), waiters: [callback] };
    pending.set(key, entry);
    underlying(hostname, options, (err, address, family) => {
      pending.delete(key);
      // each waiter gets its own array: a connection may reorder the addresses it is given
      for (const cb of entry.waiters) cb(err, Array.isArray(address) ? address.map((a) => ({ ...a })) : address, family);
    });
  };
  return Object.assign(lookup as unknown as LookupFunction, {
    /** Milliseconds a lookup of `hostname` has been waiting for an answer; undefined when none is. */
    pendingFor(hostname: string): number | undefined {
      let oldest = Infinity;
      for (const p of pending.values()) if (p.hostname === hostname) oldest = Math.min(oldest, p.since);
      return oldest === Infinity ? undefined : performance.now() - oldest;
    },
  });
}

/** The agent's one shared lookup for its outgoing gRPC connections (istiod, the CA). */
export const connectLookup = sharedLookup();
