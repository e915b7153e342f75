// /debug/* views. Everything here is served to loopback callers only, and /debug/config never
// carries secret material: values of headers sent to istiod and the CA (XDS_HEADER_*, CA_HEADER_*)
// and of any variable or metadata entry whose name suggests a credential are replaced.

import type { AgentConfig } from '../config/load.js';
import type { TypeSyncState } from '../xds/xds-proxy.js';

export const REDACTED = '<redacted>';
const SECRET_NAME = /(token|secret|passw|credential|authorization|api[_-]?key|private[_-]?key|cookie)/i;
/** Declared env vars whose name matches SECRET_NAME but hold no secret (durations, ratios, switches). */
const NOT_SECRET = new Set(['SECRET_TTL', 'SECRET_GRACE_PERIOD_RATIO', 'SECRET_GRACE_PERIOD_RATIO_JITTER', 'CREDENTIAL_FETCHER_TYPE']);

const PROXY_URL_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'] as const;

export function isSecretName(name: string): boolean {
  return SECRET_NAME.test(name) && !NOT_SECRET.has(name);
}

function redactRecord(rec: Readonly<Record<string, unknown>>, all = false): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rec)) out[k] = all || isSecretName(k) ? REDACTED : v;
  return out;
}

/** The effective configuration for /debug/config. */
export function debugConfigView(config: AgentConfig): Record<string, unknown> {
  const pc = { ...config.proxyConfig } as Record<string, unknown>;
  if (pc.proxyMetadata && typeof pc.proxyMetadata === 'object') pc.proxyMetadata = redactRecord(pc.proxyMetadata as Record<string, unknown>);
  if (pc.runtimeValues && typeof pc.runtimeValues === 'object') pc.runtimeValues = redactRecord(pc.runtimeValues as Record<string, unknown>);
  const env = redactRecord(config.env as unknown as Record<string, unknown>);
  if (typeof env.PROXY_CONFIG === 'string' && env.PROXY_CONFIG !== '') env.PROXY_CONFIG = '<see proxyConfig>';
  // a proxy URL may carry a user and password
  for (const k of PROXY_URL_VARS) if (typeof env[k] === 'string') env[k] = (env[k] as string).replace(/\/\/[^/@]*@/, `//${REDACTED}@`);
  return {
    proxyType: config.proxyType,
    node: config.node,
    proxyConfig: pc,
    env,
    envSet: config.envSet,
    metadata: redactRecord(config.metaEnv),
    metadataJson: redactRecord(config.metaJsonEnv),
    xdsHeaders: redactRecord(config.xdsHeaders, true),
    caHeaders: redactRecord(config.caHeaders, true),
    podLabels: config.podLabels,
    podAnnotations: config.podAnnotations,
    paths: config.paths,
    envoy: config.envoy,
    flags: config.flags,
  };
}

/** XdsProxy.syncState() as JSON: one entry per type URL. */
export function syncStateView(state: ReadonlyMap<string, Readonly<TypeSyncState>> | undefined, lastKnownGood?: Record<string, unknown>): Record<string, unknown> {
  const types: Record<string, unknown> = {};
  for (const [typeUrl, s] of state ?? []) types[typeUrl] = { ...s };
  return { types, ...(lastKnownGood ? { lastKnownGood } : {}) };
}
