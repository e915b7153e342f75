// The status server's own metrics, in the agent registry (src/metrics/registry.ts) under Istio's
// names: startup_duration_seconds, scrapes_total, scrape_failures_total{type}.

import { Counter, Gauge } from 'prom-client';
import { registry } from '../metrics/registry.js';

/** `type` label values of scrape_failures_total, as Istio spells them. */
export type ScrapeType = 'envoy' | 'application' | 'agent';

export const statusMetrics = {
  startupDuration: new Gauge({
    name: 'istio_agent_startup_duration_seconds',
    help: 'The time from the process starting to being marked ready.',
    registers: [registry],
  }),
  scrapes: new Counter({
    name: 'istio_agent_scrapes_total',
    help: 'The total number of scrapes.',
    registers: [registry],
  }),
  scrapeFailures: new Counter({
    name: 'istio_agent_scrape_failures_total',
    help: 'The total number of failed scrapes.',
    labelNames: ['type'],
    registers: [registry],
  }),
};
