// The flags of `pilot-agent proxy` and Istio's defaults for them: apart from load.ts so that the
// CLI can declare them without loading the configuration machinery (YAML included), which the
// light commands (`wait`, `request`, `version`) never need.

/** Flags of `pilot-agent proxy`, with Istio's names and defaults. */
export interface ProxyFlags {
  readonly domain: string;
  readonly meshConfig: string;
  readonly proxyLogLevel: string;
  readonly proxyComponentLogLevel: string;
  readonly concurrency: number;
  readonly templateFile: string;
  readonly outlierLogPath: string;
  readonly stsPort: number;
  readonly tokenManagerPlugin: string;
  readonly serviceCluster: string;
  readonly profiling: boolean;
}

export const DEFAULT_PROXY_FLAGS: ProxyFlags = Object.freeze({
  domain: '',
  meshConfig: './etc/istio/config/mesh',
  proxyLogLevel: 'warning',
  proxyComponentLogLevel: '',
  concurrency: 0,
  templateFile: '',
  outlierLogPath: '',
  stsPort: 0,
  tokenManagerPlugin: '',
  serviceCluster: 'istio-proxy',
  profiling: true,
});
