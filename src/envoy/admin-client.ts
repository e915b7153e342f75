// The agent's one client of Envoy's admin API: readiness stats, drain, active-connection count,
// quit; and the one reader of its /stats text output.

import { joinHostPort } from '../util/ip.js';
import { localRequest } from '../util/local-http.js';

export class EnvoyAdminError extends Error {
  override readonly name = 'EnvoyAdminError';
  readonly code = 'ENVOY_ADMIN';
}

/** `name: value` lines of Envoy's /stats text output; values that are not integers are skipped. */
export function parseEnvoyStats(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const idx = line.indexOf(':');
    if (idx <= 0) continue;
    const name = line.slice(0, idx).trim();
    const raw = line.slice(idx + 1).trim();
    if (!/^\d+$/.test(raw) || out.has(name)) continue;
    out.set(name, Number(raw));
  }
  return out;
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
  for (const [name, n] of parseEnvoyStats(statsText)) {
    // per-worker and http.* duplicates would double count; internal listeners are in-process pipes
    if (!name.startsWith('listener.') || name.includes('worker_')) continue;
    if (name.startsWith('listener.envoy_internal_')) continue;
    if (known.has(name)) continue;
    total += n;
  }
  return total;
}

export class EnvoyAdminClient {
  private readonly base: string;

  constructor(readonly port: number, host = '127.0.0.1') {
    this.base = `http://${joinHostPort(host, port)}`;
  }

  private async call(method: 'GET' | 'POST', path: string, timeoutMs: number, signal?: AbortSignal): Promise<string> {
    const res = await localRequest(`${this.base}${path}`, { method, timeoutMs, ...(signal ? { signal } : {}) }).catch((err: unknown) => {
      throw new EnvoyAdminError(`envoy admin ${method} ${path}: ${(err as Error).message}`, { cause: err });
    });
    if (res.status >= 400) throw new EnvoyAdminError(`envoy admin ${method} ${path}: HTTP ${res.status}: ${res.body.slice(0, 200)}`);
    return res.body;
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
