// Certificate metrics, with the names Istio's agent exports (security/pkg/nodeagent/cache/monitoring.go
// and security/pkg/monitoring): Istio's sums become Prometheus counters with a `_total` suffix, as its
// OpenTelemetry exporter writes them. Registered once, in the agent's shared registry.

import { Counter, Gauge } from 'prom-client';
import { registry } from '../metrics/registry.js';

const p = (name: string): string => `istio_agent_${name}`;

/** The `request_type` label value of CSR calls. */
export const CSR = 'csr';

/** resource name -> expiry (epoch ms) of the certificate served under it; read at scrape time. */
const expiries = new Map<string, number>();

export const securityMetrics = {
  certExpirySeconds: new Gauge({
    name: p('cert_expiry_seconds'),
    help: 'The time remaining, in seconds, before the certificate chain will expire. A negative value indicates the cert is expired.',
    labelNames: ['resource_name'],
    registers: [registry],
    collect() {
      this.reset();
      const now = Date.now();
      for (const [name, expiry] of expiries) this.set({ resource_name: name }, (expiry - now) / 1000);
    },
  }),
  outgoingRequests: new Counter({
    name: p('num_outgoing_requests_total'),
    help: 'Number of total outgoing requests (e.g. to a token exchange server, CA, etc.)',
    labelNames: ['request_type'],
    registers: [registry],
  }),
  outgoingLatency: new Counter({
    name: p('outgoing_latency_total'),
    help: 'The latency of outgoing requests (e.g. to a token exchange server, CA, etc.) in milliseconds.',
    labelNames: ['request_type'],
    registers: [registry],
  }),
  failedOutgoingRequests: new Counter({
    name: p('num_failed_outgoing_requests_total'),
    help: 'Number of failed outgoing requests (e.g. to a token exchange server, CA, etc.)',
    labelNames: ['request_type'],
    registers: [registry],
  }),
  outgoingRetries: new Counter({
    name: p('num_outgoing_retries_total'),
    help: 'Number of outgoing retry requests (e.g. to a token exchange server, CA, etc.)',
    labelNames: ['request_type'],
    registers: [registry],
  }),
  fileWatcherFailures: new Counter({
    name: p('num_file_watcher_failures_total'),
    help: 'Number of times file watcher failed to add watchers',
    registers: [registry],
  }),
  fileSecretFailures: new Counter({
    name: p('num_file_secret_failures_total'),
    help: 'Number of times secret generation failed for files',
    registers: [registry],
  }),
};

/** Records (or, with undefined, forgets) the expiry of the certificate served under a resource name. */
export function setCertExpiry(resourceName: string, expiryMs: number | undefined): void {
  if (expiryMs === undefined) expiries.delete(resourceName);
  else expiries.set(resourceName, expiryMs);
}
