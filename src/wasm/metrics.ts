// Istio's Wasm metrics (pkg/wasm/monitoring.go), in the agent's shared registry. Counters carry the
// `_total` suffix Istio's OpenTelemetry exporter gives them; label values are Istio's.

import { Counter, Gauge, Histogram } from 'prom-client';
import { registry } from '../metrics/registry.js';

/** `result` of istio_agent_wasm_remote_fetch_count. */
export const FetchResult = {
  success: 'success',
  downloadFailure: 'download_failure',
  manifestFailure: 'manifest_failure',
  checksumMismatch: 'checksum_mismatched',
  /** The fetched bytes are not a Wasm module (Istio reuses the conversion label here). */
  invalidModule: 'fetch_failure',
} as const;

/** `result` of istio_agent_wasm_config_conversion_count. */
export const ConversionResult = {
  success: 'success',
  noRemoteLoad: 'no_remote_load',
  marshalFailure: 'marshal_failure',
  unmarshalFailure: 'unmarshal_failure',
  fetchFailure: 'fetch_failure',
  missRemoteFetchHint: 'miss_remote_fetch_hint',
} as const;

export const wasmMetrics = {
  cacheEntries: new Gauge({ name: 'istio_agent_wasm_cache_entries', help: 'number of Wasm remote fetch cache entries.', registers: [registry] }),
  cacheLookups: new Counter({
    name: 'istio_agent_wasm_cache_lookup_count_total',
    help: 'number of Wasm remote fetch cache lookups.',
    labelNames: ['hit'],
    registers: [registry],
  }),
  remoteFetches: new Counter({
    name: 'istio_agent_wasm_remote_fetch_count_total',
    help: 'number of Wasm remote fetches and results, including success, download failure, and checksum mismatch.',
    labelNames: ['result'],
    registers: [registry],
  }),
  conversions: new Counter({
    name: 'istio_agent_wasm_config_conversion_count_total',
    help: 'number of Wasm config conversions and results, including success, no remote load, marshal failure, remote fetch failure, miss remote fetch hint.',
    labelNames: ['result'],
    registers: [registry],
  }),
  conversionDuration: new Histogram({
    name: 'istio_agent_wasm_config_conversion_duration',
    help: 'Total time in milliseconds istio-agent spends on converting remote load in Wasm config.',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
    registers: [registry],
  }),
};
