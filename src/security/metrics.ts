// Certificate metrics, with the names and labels Istio's agent exports
// (security/pkg/nodeagent/cache/monitoring.go, security/pkg/monitoring/monitoring.go), in the
// agent's shared registry (src/metrics/registry.ts says how names are formed). outgoing_latency
// is, as in Istio, a sum of milliseconds.

import { counter, gauge } from '../metrics/registry.js';

/** The `request_type` label value of CSR calls. */
export const CSR = 'csr';

/** resource name -> expiry (epoch ms) of the certificate served under it; read at scrape time. */
const expiries = new Map<string, number>();

export const securityMetrics = {
  certExpirySeconds: gauge(
    'cert_expiry_seconds',
    'The time remaining, in seconds, before the certificate chain will expire. A negative value indicates the cert is expired.',
    ['resource_name'],
    (g) => {
      g.reset();
      const now = Date.now();
      for (const [name, expiry] of expiries) g.set({ resource_name: name }, (expiry - now) / 1000);
    },
  ),
  outgoingRequests: counter('num_outgoing_requests', 'Number of total outgoing requests (e.g. to a token exchange server, CA, etc.)', ['request_type']),
  outgoingLatency: counter('outgoing_latency', 'The latency of outgoing requests (e.g. to a token exchange server, CA, etc.) in milliseconds.', ['request_type']),
  failedOutgoingRequests: counter('num_failed_outgoing_requests', 'Number of failed outgoing requests (e.g. to a token exchange server, CA, etc.)', ['request_type']),
  outgoingRetries: counter('num_outgoing_retries', 'Number of outgoing retry requests (e.g. to a token exchange server, CA, etc.)', ['request_type']),
  fileWatcherFailures: counter('num_file_watcher_failures_total', 'Number of times file watcher failed to add watchers'),
  fileSecretFailures: counter('num_file_secret_failures_total', 'Number of times secret generation failed for files'),
};

/** Records (or, with undefined, forgets) the expiry of the certificate served under a resource name. */
export function setCertExpiry(resourceName: string, expiryMs: number | undefined): void {
  if (expiryMs === undefined) expiries.delete(resourceName);
  else expiries.set(resourceName, expiryMs);
}
