// Settings of the Wasm module cache and fetchers, from the agent's configuration (WASM_* env vars).

import { resolve } from 'node:path';
import type { AgentConfig } from '../config/load.js';
import { tlsRestrictions, type TlsRestrictions } from '../security/compliance-policy.js';
import type { LookupFunction } from './net-guard.js';
import type { ProxySettings } from './proxy.js';

/** Istio's constants.IstioDataDir, relative to the agent's working directory (`/` in the container). */
export const ISTIO_DATA_DIR = './var/lib/istio/data';

export const DEFAULTS = {
  purgeIntervalMs: 60 * 60 * 1000,
  moduleExpiryMs: 24 * 60 * 60 * 1000,
  httpRequestTimeoutMs: 15_000,
  httpRequestMaxRetries: 5,
  maxBinarySizeBytes: 256 * 1024 * 1024,
  /** Timeout of one module fetch when the config's http_uri has none (Istio: 5s). */
  fetchTimeoutMs: 5_000,
  initialBackoffMs: 500,
} as const;

export interface WasmOptions {
  /** Cache directory: `<dir>/<sha256(module name)>/<checksum>.wasm`. */
  readonly dir: string;
  readonly purgeIntervalMs: number;
  /** An entry unused for this long is removed by the next purge. */
  readonly moduleExpiryMs: number;
  /** Hosts (host[:port]) fetched over plain HTTP or without TLS verification; `*` for all. */
  readonly insecureRegistries: readonly string[];
  /** Timeout of one HTTP request. */
  readonly httpRequestTimeoutMs: number;
  /**
   * Attempts of an HTTP request before giving up (Istio's WASM_HTTP_REQUEST_MAX_RETRIES counts
   * attempts, and treats 0 as the default, 5).
   */
  readonly httpRequestMaxRetries: number;
  readonly maxBinarySizeBytes: number;
  /** BLOCKED_CIDRS_IN_WASM_FETCH entries. */
  readonly blockedCidrs: readonly string[];
  /** COMPLIANCE_POLICY's TLS versions, ciphers and curves; none when absent. */
  readonly tlsRestrictions?: TlsRestrictions;
  /** First retry delay; doubles-ish (x1.5, +-50% jitter) per retry. */
  readonly initialBackoffMs?: number;
  /** HTTP(S)_PROXY and NO_PROXY (upper case, else lower case, as Go reads them); no proxy when absent. */
  readonly proxy?: ProxySettings;
  /** Resolver used for every dial (tests map names to loopback). */
  readonly lookup?: LookupFunction;
  /** Extra trusted roots on top of the system ones (tests). */
  readonly extraCaCerts?: readonly (string | Buffer)[];
  /** Clock, for purge tests. */
  readonly now?: () => number;
}

export function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Options from the agent config; `dir` defaults to Istio's data dir under the agent's cwd. */
export function wasmOptionsFromConfig(config: AgentConfig, overrides: Partial<WasmOptions> = {}): WasmOptions {
  const env = config.env;
  return sanitize({
    dir: resolve(config.paths.cwd, ISTIO_DATA_DIR),
    purgeIntervalMs: env.WASM_PURGE_INTERVAL,
    moduleExpiryMs: env.WASM_MODULE_EXPIRY,
    insecureRegistries: splitList(env.WASM_INSECURE_REGISTRIES),
    httpRequestTimeoutMs: env.WASM_HTTP_REQUEST_TIMEOUT,
    httpRequestMaxRetries: env.WASM_HTTP_REQUEST_MAX_RETRIES,
    maxBinarySizeBytes: env.ISTIO_WASM_MAX_BINARY_SIZE_BYTES,
    blockedCidrs: splitList(env.BLOCKED_CIDRS_IN_WASM_FETCH),
    proxy: {
      httpProxy: env.HTTP_PROXY || env.http_proxy,
      httpsProxy: env.HTTPS_PROXY || env.https_proxy,
      noProxy: env.NO_PROXY || env.no_proxy,
    },
    tlsRestrictions: tlsRestrictions(env.COMPLIANCE_POLICY),
    ...overrides,
  });
}

/** Zero values mean "default", as in Istio's cacheOptions.sanitize. */
export function sanitize(o: Partial<WasmOptions> & { dir: string }): WasmOptions {
  const or = (v: number | undefined, d: number): number => (v && v > 0 ? v : d);
  return {
    ...o,
    dir: o.dir,
    purgeIntervalMs: or(o.purgeIntervalMs, DEFAULTS.purgeIntervalMs),
    moduleExpiryMs: or(o.moduleExpiryMs, DEFAULTS.moduleExpiryMs),
    insecureRegistries: o.insecureRegistries ?? [],
    httpRequestTimeoutMs: or(o.httpRequestTimeoutMs, DEFAULTS.httpRequestTimeoutMs),
    httpRequestMaxRetries: or(o.httpRequestMaxRetries, DEFAULTS.httpRequestMaxRetries),
    maxBinarySizeBytes: or(o.maxBinarySizeBytes, DEFAULTS.maxBinarySizeBytes),
    blockedCidrs: o.blockedCidrs ?? [],
  };
}
