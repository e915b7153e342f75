// What the status server probes and scrapes for the application (ISTIO_KUBE_APP_PROBERS,
// ISTIO_PROMETHEUS_ANNOTATIONS), parsed apart from the server: the agent parses them before
// Envoy's spawn, so that a bad value stops start-up before anything runs, and loads the server
// itself (node:http, the metrics merger) after the spawn.

import type { ProxyType } from '../config/load.js';
import { parseAppProbers, type AppProbe } from './app-probers.js';
import { parseScrapeConfig, type ScrapeTarget } from './scrape-config.js';

export interface StatusInputs {
  readonly probes: ReadonlyMap<string, AppProbe>;
  /** The application's metrics to merge (sidecars only); undefined: none. */
  readonly appTargets: readonly ScrapeTarget[] | undefined;
}

/** Throws a ConfigError naming the variable and the bad value. */
export function parseStatusInputs(opts: { readonly port: number; readonly proxyType: ProxyType; readonly kubeAppProbers?: string; readonly prometheusAnnotations?: string }): StatusInputs {
  const statusPort = opts.port;
  return {
    probes: parseAppProbers(opts.kubeAppProbers ?? '', { statusPort }),
    appTargets: opts.proxyType === 'sidecar' ? parseScrapeConfig(opts.prometheusAnnotations ?? '', { statusPort }) : undefined,
  };
}
