// The agent's own Prometheus registry (prom-client, the maintained Node client: exposition in
// text and OpenMetrics formats). Every metric carries Istio's `istio_agent_` prefix; counters end
// in `_total` as Istio's OpenTelemetry exporter writes them.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();

const p = (name: string): string => `istio_agent_${name}`;

export const metrics = {
  xdsProxyRequests: new Counter({ name: p('xds_proxy_requests_total'), help: 'The total number of Xds Proxy Requests', registers: [registry] }),
  xdsProxyResponses: new Counter({ name: p('xds_proxy_responses_total'), help: 'The total number of Xds Proxy Responses', registers: [registry] }),
  istiodConnectionFailures: new Counter({ name: p('istiod_connection_failures_total'), help: 'The total number of connection failures to Istiod', registers: [registry] }),
  istiodConnectionTerminations: new Counter({
    name: p('istiod_connection_terminations_total'),
    help: 'The total number of connection errors to Istiod',
    labelNames: ['type'],
    registers: [registry],
  }),
  envoyConnectionTerminations: new Counter({
    name: p('envoy_connection_terminations_total'),
    help: 'The total number of connection errors from envoy',
    labelNames: ['type'],
    registers: [registry],
  }),
  xdsLargestMessageBytes: new Gauge({
    name: p('xds_proxy_largest_message_bytes'),
    help: 'Size of the largest xDS message received from the control plane',
    registers: [registry],
  }),
  xdsServingLastKnownGood: new Gauge({
    name: p('xds_proxy_serving_last_known_good'),
    help: '1 while a client is answered from the last-known-good xDS store because istiod was unreachable at start (PROXY_XDS_LAST_KNOWN_GOOD)',
    registers: [registry],
  }),
  xdsMessageBytes: new Histogram({
    name: p('xds_proxy_message_bytes'),
    help: 'Sizes of xDS messages received from the control plane',
    buckets: [1e3, 1e4, 1e5, 1e6, 4e6, 1.6e7, 6.4e7, 2.56e8],
    registers: [registry],
  }),
};
