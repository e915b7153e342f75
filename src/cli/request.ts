// `pilot-agent request <method> <path> [body]`: a local HTTP call to Envoy's admin API or the
// agent's status port, restricted to Istio's allow-list of ports. The injector's preStop hook is
// `pilot-agent request --debug-port=15020 POST drain`.

import { localRequest } from '../util/local-http.js';

export const ALLOWED_DEBUG_PORTS: readonly number[] = [15000, 15004, 15020, 15021];

export function checkDebugPort(port: number): void {
  if (!ALLOWED_DEBUG_PORTS.includes(port)) {
    throw new Error(`debug port ${port} is not in allowed list [${ALLOWED_DEBUG_PORTS.join(' ')}]`);
  }
}

/** Performs the call and returns the body; errors on a status above 399 other than 404, as Istio does. */
export async function debugRequest(opts: { port: number; method: string; path: string; body: string; host?: string }): Promise<string> {
  checkDebugPort(opts.port);
  const url = `http://${opts.host ?? 'localhost'}:${opts.port}/${opts.path.replace(/^\//, '')}`;
  const res = await localRequest(url, { method: opts.method, body: opts.body, timeoutMs: 60_000 });
  if (res.status > 399 && res.status !== 404) {
    throw new Error(`received unsuccessful status code ${res.status}: ${res.body}`);
  }
  return res.body;
}
