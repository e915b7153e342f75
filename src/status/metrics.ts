// The status server's own metrics, with Istio's names (pilot/cmd/pilot-agent/metrics/metrics.go),
// in the agent registry (src/metrics/registry.ts).

import { counter, gaugeOnceSet } from '../metrics/registry.js';

/** `type` label values of scrape_failures_total, as Istio spells them. */
export type ScrapeType = 'envoy' | 'application' | 'agent';

export const statusMetrics = {
  startupDuration: gaugeOnceSet('startup_duration_seconds', 'The time from the process starting to being marked ready.'),
  scrapes: counter('scrapes_total', 'The total number of scrapes.'),
  scrapeFailures: counter<'type'>('scrape_failures_total', 'The total number of failed scrapes.', ['type']),
};
