// Envoy's command line exactly as Istio's pkg/envoy builds it (TestEnvoyArgs is the reference).

import { readFileSync } from 'node:fs';
import { parseYaml } from '../util/yaml.js';
import type { EnvoyLaunch } from '../config/load.js';

export interface EnvoyArgsInput {
  readonly launch: EnvoyLaunch;
  readonly bootstrapPath: string;
  /** All node IPs are IPv6: Envoy binds its local addresses as v6. */
  readonly ipv6: boolean;
  /** `--config-yaml` payload (JSON text), or empty. */
  readonly configOverrideJson: string;
}

/**
 * Splits Istio's --proxyLogLevel: bare items set the level (the last one wins), `comp:level` items
 * form --component-log-level. Malformed items (`a:b:c`) are dropped, as Istio does.
 */
export function splitComponentLog(level: string): { level: string; components: string[]; dropped: string[] } {
  let out = '';
  const components: string[] = [];
  const dropped: string[] = [];
  for (const item of level.split(',')) {
    const parts = item.split(':');
    if (parts.length === 1) out = parts[0]!;
    else if (parts.length === 2) components.push(item);
    else dropped.push(item);
  }
  return { level: out, components, dropped };
}

export function buildEnvoyArgs(input: EnvoyArgsInput): string[] {
  const { launch } = input;
  const args = [
    '-c', input.bootstrapPath,
    '--drain-time-s', String(launch.drainDurationSeconds),
    '--drain-strategy', 'immediate',
    '--local-address-ip-version', input.ipv6 ? 'v6' : 'v4',
    '--file-flush-interval-msec', String(Math.trunc(launch.fileFlushIntervalMs)),
    '--disable-hot-restart',
    '--allow-unknown-static-fields',
  ];
  if (launch.fileFlushMinSizeKb > 0) args.push('--file-flush-min-size-kb', String(launch.fileFlushMinSizeKb));
  const { level, components } = splitComponentLog(launch.logLevel);
  if (level !== '') args.push('-l', level);
  if (components.length > 0) args.push('--component-log-level', components.join(','));
  else if (launch.componentLogLevel !== '') args.push('--component-log-level', launch.componentLogLevel);
  if (launch.skipDeprecatedLogs) args.push('--skip-deprecated-logs');
  if (launch.enableCoreDump) args.push('--enable-core-dump');
  if (input.configOverrideJson !== '') args.push('--config-yaml', input.configOverrideJson);
  if (launch.concurrency > 0) args.push('--concurrency', String(launch.concurrency));
  return args;
}

/**
 * Reads ISTIO_BOOTSTRAP_OVERRIDE (YAML or JSON) as compact JSON, substituting `$(HOST_IP)` (in
 * brackets for an IPv6 host, without doubling brackets the user wrote), as Istio does for tracer
 * addresses. Throws with the file name on a read or parse failure.
 */
export function readBootstrapOverride(path: string, hostIp: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`ISTIO_BOOTSTRAP_OVERRIDE: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  let host = hostIp;
  if (host.includes(':')) {
    host = `[${host}]`;
    text = text.split('[$(HOST_IP)]').join(host);
  }
  text = text.split('$(HOST_IP)').join(host);
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new Error(`ISTIO_BOOTSTRAP_OVERRIDE: ${path} is not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  return JSON.stringify(sortKeys(doc));
}

// sigs.k8s.io/yaml's YAMLToJSON emits object keys sorted; match it so the argv is deterministic.
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
  }
  return v;
}
