// ISTIO_PROMETHEUS_ANNOTATIONS: the application metrics endpoints merged into /stats/prometheus,
// `{"scrape":"true","path":"/metrics","port":"8080","targets":[{"port":"8080","path":"/metrics"}]}`
// (Istio's PrometheusScrapeConfiguration). Legacy form: no `targets`, one endpoint from
// `port` (default "80") and `path` (default "/metrics"). Ports that belong to the Istio data plane
// are refused at start-up, as Istio does.

import { IssueList } from '../config/errors.js';

const SOURCE = 'env ISTIO_PROMETHEUS_ANNOTATIONS';

export interface ScrapeTarget {
  readonly port: number;
  readonly path: string;
}

/** Istio's istioReservedPorts: scraping these would hit Istio plumbing or scrape twice. */
export const ISTIO_RESERVED_PORTS: ReadonlyMap<number, string> = new Map([
  [15000, 'Envoy admin'],
  [15001, 'outbound traffic capture'],
  [15004, 'pilot debug'],
  [15006, 'inbound traffic capture'],
  [15008, 'HBONE tunnel'],
  [15020, 'pilot-agent status / merged Prometheus'],
  [15021, 'Envoy health'],
  [15053, 'DNS proxy'],
  [15090, 'Envoy Prometheus (already merged)'],
]);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Go's json into a string field: only strings (and null) decode. */
function str(v: unknown, field: string, add: (field: string, msg: string) => void): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') {
    add(field, 'expected a string');
    return '';
  }
  return v;
}

/**
 * Parses ISTIO_PROMETHEUS_ANNOTATIONS. Returns undefined when unset or `scrape` is "false" (nothing
 * to merge); throws a ConfigError naming every bad field.
 */
export function parseScrapeConfig(raw: string, opts: { statusPort: number }): readonly ScrapeTarget[] | undefined {
  if (raw.trim() === '') return undefined;
  const issues = new IssueList();
  const add = (field: string, msg: string): void => issues.add(SOURCE, field, raw, msg);
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    add('', `failed to unmarshal: not valid JSON: ${(err as Error).message}`);
    issues.throwIfAny();
  }
  if (!isObj(json)) {
    add('', 'expected a JSON object {"scrape","path","port","targets"}');
    issues.throwIfAny();
    return undefined;
  }
  const scrape = str(json.scrape, 'scrape', add);
  let path = str(json.path, 'path', add);
  let port = str(json.port, 'port', add);
  const rawTargets: { port: string; path: string; field: string }[] = [];
  if (json.targets !== undefined && json.targets !== null) {
    if (!Array.isArray(json.targets)) add('targets', 'expected a list of {"port","path"}');
    else {
      json.targets.forEach((t: unknown, i: number) => {
        const field = `targets[${i}]`;
        if (!isObj(t)) add(field, 'expected an object {"port","path"}');
        else rawTargets.push({ port: str(t.port, `${field}.port`, add), path: str(t.path, `${field}.path`, add), field });
      });
    }
  }
  issues.throwIfAny();
  if (scrape === 'false') return undefined;
  if (rawTargets.length === 0) {
    if (path === '') path = '/metrics';
    if (port === '') port = '80';
    rawTargets.push({ port, path, field: 'port' });
  }
  const targets: ScrapeTarget[] = [];
  for (const t of rawTargets) {
    const field = t.field === 'port' ? 'port' : `${t.field}.port`;
    // numeric validation catches "015020", which dials 15020 but is not equal to it as a string
    const n = /^[+-]?\d+$/.test(t.port) ? Number(t.port) : NaN;
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      add(field, `invalid target port ${JSON.stringify(t.port)}`);
      continue;
    }
    if (n === opts.statusPort) {
      add(
        field,
        t.field === 'port'
          ? `application port is the same as agent port, which may lead to a recursive loop. Ensure pod does not have prometheus.io/port=${opts.statusPort} label, or that injection is not happening multiple times`
          : `target port ${t.port} is the same as agent port, which may lead to a recursive loop`,
      );
      continue;
    }
    const reserved = ISTIO_RESERVED_PORTS.get(n);
    if (reserved) {
      add(field, `target port ${t.port} is reserved for Istio (${reserved}) and cannot be scraped`);
      continue;
    }
    targets.push({ port: n, path: t.path === '' ? '/metrics' : t.path });
  }
  issues.throwIfAny();
  return targets;
}
