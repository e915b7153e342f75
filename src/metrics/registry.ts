// The agent's own Prometheus registry (prom-client), named as Istio's pilot-agent exports its
// metrics: Istio wraps its whole registry with the prefix `istio_agent_` (the process collector
// included) and its OpenTelemetry exporter runs WithoutCounterSuffixes and WithoutUnits, so a
// family's name is exactly the name Istio's source declares, prefixed: a counter declared
// `xds_proxy_requests` is `istio_agent_xds_proxy_requests` (no `_total` added), one declared
// `dns_requests_total` keeps its own `_total`. Every metric is made through the helpers below so
// no component can name one differently.
//
// Exposition is the classic text format (Istio's status server writes agent metrics with
// expfmt.FmtText whatever the scrape negotiated), where prom-client appends nothing to counters.
//
// Families whose labels have no value yet are listed (HELP and TYPE, no samples), where Istio's
// exporter lists a family only once it has been recorded; unlabelled counters show 0 from the start.

import { Counter, Gauge, Histogram, Registry, type LabelValues } from 'prom-client';

export const registry = new Registry();

/** The prefix Istio's status server wraps the agent's registry with. */
export const METRIC_PREFIX = 'istio_agent_';

/** An Istio Sum: a counter named exactly `name` under the prefix; `compute` sets it at scrape time. */
export function counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], compute?: (c: Counter<L>) => void): Counter<L> {
  return new Counter<L>({
    name: METRIC_PREFIX + name,
    help,
    labelNames,
    registers: [registry],
    ...(compute ? { collect(this: Counter<L>) { compute(this); } } : {}),
  });
}

/** An Istio Gauge (LastValue); `compute` sets it at scrape time (Istio's DerivedGauge). */
export function gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], compute?: (g: Gauge<L>) => void): Gauge<L> {
  return new Gauge<L>({
    name: METRIC_PREFIX + name,
    help,
    labelNames,
    registers: [registry],
    ...(compute ? { collect(this: Gauge<L>) { compute(this); } } : {}),
  });
}

/** An unlabelled gauge exported only once set (as Istio's exporter exports any family): for a value whose 0 would be false. */
class OnceSetGauge extends Gauge {
  private recorded = false;

  override set(labelsOrValue: LabelValues<string> | number, value?: number): void {
    this.recorded = true;
    if (typeof labelsOrValue === 'number') super.set(labelsOrValue);
    else super.set(labelsOrValue, value!);
  }

  override async get(): ReturnType<Gauge['get']> {
    const m = await super.get();
    return this.recorded ? m : { ...m, values: [] };
  }
}

/** A gauge without a value (not exported) until it is first set, e.g. a start-up time not measured yet. */
export function gaugeOnceSet(name: string, help: string): Gauge {
  return new OnceSetGauge({ name: METRIC_PREFIX + name, help, registers: [registry] });
}

/** An Istio Distribution: a histogram with the bounds Istio declares. */
export function histogram(name: string, help: string, buckets: readonly number[]): Histogram {
  return new Histogram({ name: METRIC_PREFIX + name, help, buckets: [...buckets], registers: [registry] });
}

/** `type` of istiod_connection_terminations and envoy_connection_terminations (Istio's Cancel and Error). */
export const TerminationType = { cancelled: 'cancelled', error: 'error' } as const;

// The xDS proxy's metrics: Istio's pkg/istio-agent/metrics/metrics.go, and pilot_xds_recv_max,
// which Istio's xDS socket server records through pkg/xds (RecordRecvSize).
export const metrics = {
  xdsProxyRequests: counter('xds_proxy_requests', 'The total number of Xds Proxy Requests'),
  xdsProxyResponses: counter('xds_proxy_responses', 'The total number of Xds Proxy Responses'),
  istiodConnectionFailures: counter('istiod_connection_failures', 'The total number of connection failures to Istiod'),
  istiodConnectionTerminations: counter('istiod_connection_terminations', 'The total number of connection errors to Istiod', ['type']),
  envoyConnectionTerminations: counter('envoy_connection_terminations', 'The total number of connection errors from envoy', ['type']),
  xdsRecvMax: gauge('pilot_xds_recv_max', 'The maximum size request we have received so far.'),
  // not in Istio: the size of what istiod pushes, the agent's main cost
  xdsLargestMessageBytes: gauge('xds_proxy_largest_message_bytes', 'Size of the largest xDS message received from the control plane'),
  // not in Istio: 1 while the last-known-good store answers (PROXY_XDS_LAST_KNOWN_GOOD, istiod unreachable at start)
  xdsServingLastKnownGood: gauge('xds_proxy_serving_last_known_good', '1 while a client is answered from the last-known-good xDS store because istiod was unreachable at start (PROXY_XDS_LAST_KNOWN_GOOD)'),
  xdsMessageBytes: histogram('xds_proxy_message_bytes', 'Sizes of xDS messages received from the control plane', [1e3, 1e4, 1e5, 1e6, 4e6, 1.6e7, 6.4e7, 2.56e8]),
};

let recvMax = 0;

/** Records the size of a request received from Envoy; the gauge keeps the largest (Istio's stats handler). */
export function recordRecvSize(bytes: number): void {
  if (bytes <= recvMax) return;
  recvMax = bytes;
  metrics.xdsRecvMax.set(bytes);
}
