// Wasm support for the agent: the module cache (with its purge timer) and the ECDS interceptor the
// xDS proxy runs on TypedExtensionConfig responses.
//
//   const wasm = createWasmRuntime(config);
//   xds.registerInterceptor(TypeUrl.ExtensionConfig, wasm.interceptor);   // before xds.start()
//   ...                                                                 // /debug/wasm: wasm.debugView()
//   await wasm.close();                                                 // on stop

import type { AgentConfig } from '../config/load.js';
import { WasmModuleCache, type WasmModuleSummary } from './cache.js';
import { WasmEcdsInterceptor } from './convert.js';
import { wasmOptionsFromConfig, type WasmOptions } from './options.js';

export { WasmModuleCache, moduleNameFromUrl, PULL_POLICY_VALUES, type GetOptions, type PullPolicy, type WasmModuleSummary } from './cache.js';
export { WasmEcdsInterceptor, convertResource, convertResources, defaultFilterConfig, displayUrl, TypeUrls, WasmEnv, type ModuleSource, type ResourceOutcome } from './convert.js';
export { ISTIO_DATA_DIR, wasmOptionsFromConfig, type WasmOptions } from './options.js';

export interface WasmRuntime {
  readonly cache: WasmModuleCache;
  readonly interceptor: WasmEcdsInterceptor;
  /** The cached modules. */
  summaries(): WasmModuleSummary[];
  /** /debug/wasm: `{ modules, downloadsInFlight }` (the status server's empty view is `{ modules: [] }`). */
  debugView(): { modules: WasmModuleSummary[]; downloadsInFlight: number };
  /** Stops the purge timer, aborts downloads in flight. */
  close(): Promise<void>;
}

/** The cache (purging every WASM_PURGE_INTERVAL) and the ECDS interceptor, from the agent config. */
export function createWasmRuntime(config: AgentConfig, overrides: Partial<WasmOptions> = {}): WasmRuntime {
  const cache = new WasmModuleCache(wasmOptionsFromConfig(config, overrides));
  cache.startPurging();
  const interceptor = new WasmEcdsInterceptor(cache);
  return {
    cache,
    interceptor,
    summaries: () => cache.summaries(),
    debugView: () => ({ modules: cache.summaries(), downloadsInFlight: cache.pending }),
    close: () => cache.close(),
  };
}
