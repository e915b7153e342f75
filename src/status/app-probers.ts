// ISTIO_KUBE_APP_PROBERS: the app probes the injector rewrote to point at the status port, as
// `{"/app-health/<container>/livez": {"httpGet": {...}}, ...}` (Istio's KubeAppProbers). Parsed and
// validated once at start-up; every bad entry is reported at once in a ConfigError naming the
// variable and the entry.

import { ConfigError, IssueList } from '../config/errors.js';

export const APP_PROBER_PATTERN = /^\/(app-health|app-lifecycle)\/[^/]+\/(livez|readyz|startupz|prestopz|poststartz)$/;

const SOURCE = 'env ISTIO_KUBE_APP_PROBERS';

export interface HttpGetProbe {
  readonly kind: 'httpGet';
  readonly path: string;
  readonly port: number;
  readonly scheme: 'HTTP' | 'HTTPS';
  readonly headers: readonly { name: string; value: string }[];
}

export interface TcpSocketProbe {
  readonly kind: 'tcpSocket';
  readonly port: number;
}

export interface GrpcProbe {
  readonly kind: 'grpc';
  readonly port: number;
  readonly service: string;
}

export type AppProbe = ((HttpGetProbe | TcpSocketProbe) & {
  /**
   * timeoutSeconds in ms; undefined when it is absent or 0: no deadline of the agent's, as Istio's
   * client with a zero Timeout. The injector writes none for lifecycle hooks (a handler has no
   * timeout: the kubelet waits for it, bounded by the grace period), and the call still ends when
   * the caller hangs up.
   */
  readonly timeoutMs: number | undefined;
}) | (GrpcProbe & {
  /** timeoutSeconds in ms; Kubernetes' default (1 s) when absent (Istio's zero deadline would fail every call). */
  readonly timeoutMs: number;
});

/** An HTTP token (RFC 9110), as Kubernetes validates httpHeaders names. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Kubernetes' default probe timeoutSeconds (the API server fills it in for probes before injection). */
const DEFAULT_GRPC_TIMEOUT_SECONDS = 1;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** IntOrString as Kubernetes/Istio see it; named (string) ports are refused, as Istio does. */
function intPort(v: unknown, what: string, add: (msg: string) => void): number | undefined {
  if (typeof v === 'string') {
    add(`${what}: the port must be int type (named port ${JSON.stringify(v)} was not resolved by the injector)`);
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    add(`${what}: expected a port number in 1..65535`);
    return undefined;
  }
  return v;
}

export interface ParseProbersOptions {
  /** The agent's status port: a probe pointing back at it would loop through the agent. */
  readonly statusPort?: number;
}

/** Parses and validates ISTIO_KUBE_APP_PROBERS; '' means no probes. Throws a ConfigError. */
export function parseAppProbers(raw: string, opts: ParseProbersOptions = {}): ReadonlyMap<string, AppProbe> {
  const out = new Map<string, AppProbe>();
  if (raw.trim() === '') return out;
  const issues = new IssueList();
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    issues.add(SOURCE, '', raw, `failed to decode app prober: not valid JSON: ${(err as Error).message}`);
    issues.throwIfAny();
  }
  if (!isObj(json)) {
    issues.add(SOURCE, '', raw, 'expected a JSON object of probe path -> prober');
    issues.throwIfAny();
    return out;
  }
  for (const [path, entry] of Object.entries(json)) {
    let bad = false;
    const add = (msg: string): void => {
      bad = true;
      issues.add(SOURCE, path, JSON.stringify(entry) ?? String(entry), msg);
    };
    if (!APP_PROBER_PATTERN.test(path)) add(`invalid path, must be in form of regex pattern ${APP_PROBER_PATTERN.source}`);
    if (entry === null) {
      // Istio decodes null as a nil prober and then cannot serve it
      add('prober is null');
      continue;
    }
    if (!isObj(entry)) {
      add('expected a prober object (httpGet, tcpSocket or grpc)');
      continue;
    }
    const kinds = (['httpGet', 'tcpSocket', 'grpc'] as const).filter((k) => entry[k] !== undefined && entry[k] !== null);
    if (kinds.length !== 1) {
      add('invalid prober type, must be one of type httpGet, tcpSocket or gRPC');
      continue;
    }
    let timeoutMs: number | undefined;
    if (entry.timeoutSeconds !== undefined) {
      const t = entry.timeoutSeconds;
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0) add('timeoutSeconds: expected a non-negative integer');
      else if (t > 0) timeoutMs = t * 1000;
    }
    const kind = kinds[0]!;
    const spec = entry[kind];
    if (!isObj(spec)) {
      add(`${kind}: expected an object`);
      continue;
    }
    let probe: AppProbe | undefined;
    if (kind === 'httpGet') {
      const port = intPort(spec.port, 'httpGet.port', add);
      if (spec.path !== undefined && typeof spec.path !== 'string') add('httpGet.path: expected a string');
      const scheme = spec.scheme === undefined || spec.scheme === '' ? 'HTTP' : String(spec.scheme).toUpperCase();
      if (scheme !== 'HTTP' && scheme !== 'HTTPS') add('httpGet.scheme: expected HTTP or HTTPS');
      const headers: { name: string; value: string }[] = [];
      if (spec.httpHeaders !== undefined && spec.httpHeaders !== null) {
        if (!Array.isArray(spec.httpHeaders)) add('httpGet.httpHeaders: expected a list of {name, value}');
        else {
          for (const [i, h] of (spec.httpHeaders as unknown[]).entries()) {
            if (!(isObj(h) && typeof h.name === 'string' && h.name !== '' && typeof (h.value ?? '') === 'string')) add('httpGet.httpHeaders: expected a list of {name, value}');
            // what node's client would throw on at every probe: refused once, at start-up
            else if (h.name !== ':authority' && !HEADER_NAME.test(h.name)) add(`httpGet.httpHeaders[${i}]: invalid header name ${JSON.stringify(h.name)}`);
            else if (/[\0\r\n]/.test(String(h.value ?? ''))) add(`httpGet.httpHeaders[${i}]: invalid value for header ${JSON.stringify(h.name)} (control characters)`);
            else headers.push({ name: h.name, value: String(h.value ?? '') });
          }
        }
      }
      let p = typeof spec.path === 'string' ? spec.path : '';
      if (!p.startsWith('/')) p = `/${p}`;
      if (port !== undefined) probe = { kind, port, path: p, scheme: scheme === 'HTTPS' ? 'HTTPS' : 'HTTP', headers, timeoutMs };
    } else if (kind === 'tcpSocket') {
      const port = intPort(spec.port, 'tcpSocket.port', add);
      if (port !== undefined) probe = { kind, port, timeoutMs };
    } else {
      const port = intPort(spec.port, 'grpc.port', add);
      if (spec.service !== undefined && spec.service !== null && typeof spec.service !== 'string') add('grpc.service: expected a string');
      if (port !== undefined) probe = { kind, port, service: typeof spec.service === 'string' ? spec.service : '', timeoutMs: timeoutMs ?? DEFAULT_GRPC_TIMEOUT_SECONDS * 1000 };
    }
    if (probe && opts.statusPort && probe.port === opts.statusPort) {
      add(`${kind}.port ${probe.port} is the agent's status port: the probe would loop through the agent`);
    }
    if (probe && !bad) out.set(path, probe);
  }
  issues.throwIfAny();
  return out;
}

export { ConfigError };
