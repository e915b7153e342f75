// The DNS proxy's metrics, with Istio's names (pkg/dns/client/monitoring.go) under the agent's
// `istio_agent_` prefix, in the agent's shared registry.

import { Counter, Histogram } from 'prom-client';
import { registry } from '../metrics/registry.js';

export const dnsMetrics = {
  requests: new Counter({ name: 'istio_agent_dns_requests_total', help: 'Total number of DNS requests.', registers: [registry] }),
  upstreamRequests: new Counter({
    name: 'istio_agent_dns_upstream_requests_total',
    help: 'Total number of DNS requests forwarded to upstream.',
    registers: [registry],
  }),
  upstreamFailures: new Counter({ name: 'istio_agent_dns_upstream_failures_total', help: 'Total number of DNS failures.', registers: [registry] }),
  upstreamDuration: new Histogram({
    name: 'istio_agent_dns_upstream_request_duration_seconds',
    help: 'Total time in seconds Istio takes to get DNS response from upstream.',
    buckets: [0.001, 0.005, 0.01, 0.1, 1, 5],
    registers: [registry],
  }),
};
