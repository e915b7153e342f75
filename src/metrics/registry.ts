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

//
// prom-client is loaded and every metric built on the first use of any metric or of the registry
// (in practice the first scrape, or the first count after Envoy is running), not when a module
// declares its metrics: evaluating prom-client costs ~25 ms of CPU, which Envoy's spawn should
// not wait for. It is loaded by a literal `require('prom-client')`, as util/yaml.ts loads yaml.

import { createRequire } from 'node:module';
import type { Counter, Gauge, Histogram, LabelValues, Registry } from 'prom-client';

type PromClient = typeof import('prom-client');

/** A metric or the registry, declared now and built with prom-client when first used. */
interface Deferred {
  real: object | undefined;
  readonly build: (client: PromClient) => object;
}

const declared: Deferred[] = [];
let client: PromClient | undefined;

/** Loads prom-client and builds the registry, then every metric declared so far, in order. */
function buildAll(): PromClient {
  if (client) return client;
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy and bundleable, see above
  const loaded = (typeof require === 'function' ? require('prom-client') : createRequire(import.meta.url)('prom-client')) as PromClient;
  client = loaded;
  for (const d of declared) d.real ??= d.build(loaded);
  return loaded;
}

/**
 * Stands for the object `build` makes, building it (and everything declared) on first touch.
 * Methods are bound once per name, so a hot counter costs a map lookup, not an allocation.
 */
function deferred<T extends object>(build: (client: PromClient) => T): T {
  const d: Deferred = { real: undefined, build };
  declared.push(d);
  if (client) d.real = build(client);
  const real = (): T => {
    if (!d.real) {
      const c = buildAll();
      d.real ??= build(c); // built by buildAll, unless this runs from within buildAll
    }
    return d.real as T;
  };
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy({} as T, {
    get(_target, key) {
      const target = real();
      const value = Reflect.get(target, key, target) as unknown;
      if (typeof value !== 'function') return value;
      let fn = bound.get(key);
      if (fn === undefined) bound.set(key, (fn = (value as (...a: unknown[]) => unknown).bind(target)));
      return fn;
    },
    set: (_target, key, value) => Reflect.set(real(), key, value),
    has: (_target, key) => Reflect.has(real(), key),
    getPrototypeOf: () => Reflect.getPrototypeOf(real()),
  });
}

/** prom-client itself (for the default process metrics), loading it if needed. */
export function promClient(): PromClient {
  return buildAll();
}

export const registry: Registry = deferred((c) => new c.Registry());

/** The prefix Istio's status server wraps the agent's registry with. */
export const METRIC_PREFIX = 'istio_agent_';

/** An Istio Sum: a counter named exactly `name` under the prefix; `compute` sets it at scrape time. */
export function counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], compute?: (c: Counter<L>) => void): Counter<L> {
  return deferred(
    (c) =>
      new c.Counter<L>({
        name: METRIC_PREFIX + name,
        help,
        labelNames,
        registers: [registry],
        ...(compute ? { collect(this: Counter<L>) { compute(this); } } : {}),
      }),
  );
}

/** An Istio Gauge (LastValue); `compute` sets it at scrape time (Istio's DerivedGauge). */
export function gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[] = [], compute?: (g: Gauge<L>) => void): Gauge<L> {
  return deferred(
    (c) =>
      new c.Gauge<L>({
        name: METRIC_PREFIX + name,
        help,
        labelNames,
        registers: [registry],
        ...(compute ? { collect(this: Gauge<L>) { compute(this); } } : {}),
      }),
  );
}

/** An unlabelled gauge exported only once set (as Istio's exporter exports any family): for a value whose 0 would be false. */
function onceSetGauge(c: PromClient, name: string, help: string): Gauge {
  class OnceSetGauge extends c.Gauge {
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
  return new OnceSetGauge({ name, help, registers: [registry] });
}

/** A gauge without a value (not exported) until it is first set, e.g. a start-up time not measured yet. */
export function gaugeOnceSet(name: string, help: string): Gauge {
  return deferred((c) => onceSetGauge(c, METRIC_PREFIX + name, help));
}

/** An Istio Distribution: a histogram with the bounds Istio declares. */
export function histogram(name: string, help: string, buckets: readonly number[]): Histogram {
  return deferred((c) => new c.Histogram({ name: METRIC_PREFIX + name, help, buckets: [...buckets], registers: [registry] }));
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
