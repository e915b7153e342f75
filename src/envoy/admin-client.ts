// The few Envoy admin calls the agent makes: drain, active-connection count, stats.

import { lazy } from '../util/lazy.js';

// undici is imported on first use: loading it costs ~100 ms, and the agent must reach "Envoy
// spawned" first (bench `startup`); admin calls only start after that.
const loadUndici = lazy(() => import('undici'));

export class EnvoyAdminError extends Error {
  readonly code = 'ENVOY_ADMIN';
}

/** Listeners that are Istio's own plumbing, not application traffic (Istio's knownIstioListeners). */
export function knownIstioListeners(ports: { status: number; prometheus: number; secureMetrics?: number; secureMergedMetrics?: number }): Set<string> {
  const set = new Set([
    `listener.0.0.0.0_${ports.status}.downstream_cx_active`,
    `listener.0.0.0.0_${ports.prometheus}.downstream_cx_active`,
    'listener.admin.downstream_cx_active',
    'listener.admin.main_thread.downstream_cx_active',
  ]);
  if (ports.secureMetrics) set.add(`listener.0.0.0.0_${ports.secureMetrics}.downstream_cx_active`);
  if (ports.secureMergedMetrics) set.add(`listener.0.0.0.0_${ports.secureMergedMetrics}.downstream_cx_active`);
  return set;
}

/**
 * Sums downstream_cx_active over application listeners from `stats?usedonly&filter=downstream_cx_active$`
 * output. Returns -1 when Envoy reports no such stat at all (nothing to wait for).
 */
export function sumActiveConnections(statsText: string, known: ReadonlySet<string>): number {
  if (statsText.length === 0) return -1;
  let total = 0;
  for (const line of statsText.split('\n')) {
    if (line.trim() === '') continue;
    const parts = line.split(':');
    if (parts.length !== 2) continue;
    const name = parts[0]!;
    // per-worker and http.* duplicates would double count; internal listeners are in-process pipes
    if (!name.startsWith('listener.') || name.includes('worker_')) continue;
    if (name.startsWith('listener.envoy_internal_')) continue;
    if (known.has(name)) continue;
    const n = Number(parts[1]!.trim());
    if (Number.isInteger(n) && n >= 0) total += n;
  }
  return total;
}

export class EnvoyAdminClient {
  private readonly base: string;

  constructor(readonly port: number, host = '127.0.0.1') {
    this.base = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  private async call(method: 'GET' | 'POST', path: string, timeoutMs: number, signal?: AbortSignal): Promise<string> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const { request } = await loadUndici();
    const res = await request(`${this.base}${path}`, {
      method,
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    }).catch((err: unknown) => {
      throw new EnvoyAdminError(`envoy admin ${method} ${path}: ${(err as Error).message}`, { cause: err });
    });
    const body = await res.body.text();
    if (res.statusCode >= 400) throw new EnvoyAdminError(`envoy admin ${method} ${path}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`);
    return body;
  }

  /** POST /drain_listeners: inbound only for sidecars, graceful, and without exiting when `skipExit`. */
  drainListeners(inboundOnly: boolean, skipExit: boolean, signal?: AbortSignal): Promise<string> {
    let path = inboundOnly ? '/drain_listeners?inboundonly&graceful' : '/drain_listeners?graceful';
    if (skipExit) path += '&skip_exit';
    return this.call('POST', path, 5000, signal);
  }

  stats(query: string, timeoutMs = 2000, signal?: AbortSignal): Promise<string> {
    return this.call('GET', `/stats?${query}`, timeoutMs, signal);
  }

  async activeConnections(known: ReadonlySet<string>, signal?: AbortSignal): Promise<number> {
    return sumActiveConnections(await this.stats('usedonly&filter=downstream_cx_active$', 2000, signal), known);
  }

  quit(signal?: AbortSignal): Promise<string> {
    return this.call('POST', '/quitquitquit', 2000, signal);
  }
}
