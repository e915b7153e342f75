// The DNS proxy's metrics, with Istio's names (pkg/dns/client/monitoring.go; their `_total` is part
// of the declared names), in the agent's shared registry.

import { counter, histogram } from '../metrics/registry.js';

export const dnsMetrics = {
  requests: counter('dns_requests_total', 'Total number of DNS requests.'),
  upstreamRequests: counter('dns_upstream_requests_total', 'Total number of DNS requests forwarded to upstream.'),
  upstreamFailures: counter('dns_upstream_failures_total', 'Total number of DNS failures.'),
  upstreamDuration: histogram('dns_upstream_request_duration_seconds', 'Total time in seconds Istio takes to get DNS response from upstream.', [0.001, 0.005, 0.01, 0.1, 1, 5]),
};
