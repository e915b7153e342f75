// Istio's Wasm metrics (pkg/wasm/monitoring.go), in the agent's shared registry under Istio's names
// and label values (src/metrics/registry.ts says how names are formed).

import { counter, gauge, histogram } from '../metrics/registry.js';

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
  cacheEntries: gauge('wasm_cache_entries', 'number of Wasm remote fetch cache entries.'),
  /** `hit`: "true" or "false". */
  cacheLookups: counter('wasm_cache_lookup_count', 'number of Wasm remote fetch cache lookups.', ['hit']),
  remoteFetches: counter('wasm_remote_fetch_count', 'number of Wasm remote fetches and results, including success, download failure, and checksum mismatch.', ['result']),
  conversions: counter(
    'wasm_config_conversion_count',
    'number of Wasm config conversions and results, including success, no remote load, marshal failure, remote fetch failure, miss remote fetch hint.',
    ['result'],
  ),
  /** Milliseconds, in Istio's bounds. */
  conversionDuration: histogram(
    'wasm_config_conversion_duration',
    'Total time in milliseconds istio-agent spends on converting remote load in Wasm config.',
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
  ),
};
