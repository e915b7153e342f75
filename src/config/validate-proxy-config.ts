// Semantic checks of the effective ProxyConfig, after Istio's ValidateMeshConfigProxyConfig:
// the same rules, but every failure names the field and value, and all are reported together.

import { parseAnyDuration } from './duration.js';
import type { IssueList } from './errors.js';
import type { Json, ProxyConfigJson } from './proxy-config.js';
import { ipFamily, splitHostPort } from '../util/ip.js';

const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

function isFqdn(host: string): boolean {
  if (host.length === 0 || host.length > 255) return false;
  const labels = host.replace(/\.$/, '').split('.');
  if (/^\d+$/.test(labels[labels.length - 1]!)) return false;
  return labels.every((l) => DNS_LABEL.test(l));
}

/** Istio's ValidateProxyAddress: host:port with a valid hostname or IP and a port in 1..65535. */
export function proxyAddressProblem(addr: string): string | undefined {
  const hp = splitHostPort(addr);
  if ('error' in hp) return `expected host:port (${hp.error})`;
  if (!/^\d+$/.test(hp.port)) return `port ${JSON.stringify(hp.port)} is not a number`;
  const port = Number(hp.port);
  if (port < 1 || port > 65535) return `port ${port} must be in the range 1..65535`;
  if (!isFqdn(hp.host) && ipFamily(hp.host) === 0) return `${JSON.stringify(hp.host)} is not a valid hostname or IP address`;
  return undefined;
}

function get(pc: ProxyConfigJson, path: string): Json | undefined {
  let cur: Json | undefined = pc as Json;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

/**
 * Istio's ValidateMeshConfigProxyConfig: what it refuses is an issue here; values it does not check
 * but that cannot mean anything are warned about (`warn`) and left to have no effect, as in Istio.
 */
export function validateProxyConfig(pc: ProxyConfigJson, source: string, issues: IssueList, warn: (message: string) => void): void {
  const fail = (field: string, message: string): void => issues.add(source, field, get(pc, field) ?? '', message);
  const unused = (field: string, message: string): void => warn(`${source}: ${field}: ${message} (value: ${JSON.stringify(get(pc, field))}); Istio does not check it either`);

  if (!pc.configPath) fail('configPath', 'config path must be set');
  if (!pc.binaryPath) fail('binaryPath', 'binary path must be set');
  if (!('tracingServiceName' in pc) && !pc.serviceCluster) fail('serviceCluster', 'service cluster must be specified');

  const drain = typeof pc.drainDuration === 'string' ? parseAnyDuration(pc.drainDuration) : undefined;
  if (drain === undefined || drain < 1) fail('drainDuration', 'drain duration must be at least 1ms');
  else if (drain % 1000 !== 0) fail('drainDuration', 'drain time only supports durations to seconds precision');

  if (typeof pc.discoveryAddress !== 'string' || pc.discoveryAddress === '') fail('discoveryAddress', 'discovery address must be set');
  else {
    const p = proxyAddressProblem(pc.discoveryAddress);
    if (p) fail('discoveryAddress', `invalid discovery address: ${p}`);
  }

  for (const field of ['tracing.zipkin.address', 'tracing.datadog.address', 'tracing.lightstep.address']) {
    const tracer = get(pc, field.slice(0, field.lastIndexOf('.')));
    if (tracer === undefined) continue;
    const addr = get(pc, field);
    if (typeof addr !== 'string' || addr === '') fail(field, 'address is required');
    else {
      // tracer agents often run on the node: Istio validates $(HOST_IP) as if it were an IP
      const p = proxyAddressProblem(addr.replace('$(HOST_IP)', '127.0.0.1'));
      if (p) fail(field, p);
    }
  }
  if (get(pc, 'tracing.lightstep') !== undefined && !get(pc, 'tracing.lightstep.accessToken')) {
    fail('tracing.lightstep.accessToken', 'access token is required');
  }
  const sampling = get(pc, 'tracing.sampling');
  // the agent does not use it (istiod applies sampling to its listeners)
  if (typeof sampling === 'number' && (sampling < 0 || sampling > 100)) unused('tracing.sampling', 'outside 0.0..100.0');

  for (const field of ['statsdUdpAddress', 'envoyMetricsServiceAddress', 'envoyMetricsService.address', 'envoyAccessLogService.address']) {
    const addr = get(pc, field);
    if (typeof addr === 'string' && addr !== '') {
      const p = proxyAddressProblem(addr);
      if (p) fail(field, p);
    }
  }

  const admin = pc.proxyAdminPort;
  if (typeof admin !== 'number' || admin < 1 || admin > 65535) fail('proxyAdminPort', 'port number must be in the range 1..65535');
  // statusPort 0 turns the status server off (what a Kubernetes user gets by setting it to 0)
  const status = pc.statusPort;
  if (status !== undefined && (typeof status !== 'number' || status < 0 || status > 65535)) fail('statusPort', 'port number must be in the range 0..65535');
  if (pc.controlPlaneAuthPolicy !== 'NONE' && pc.controlPlaneAuthPolicy !== 'MUTUAL_TLS') {
    fail('controlPlaneAuthPolicy', 'unrecognized control plane auth policy (want NONE or MUTUAL_TLS)');
  }
  const conc = pc.concurrency;
  // Envoy is given --concurrency only for a positive value (Envoy's default otherwise), as Istio does
  if (typeof conc === 'number' && conc < 0) unused('concurrency', 'negative: Envoy gets no --concurrency and picks its own');
  const statLen = pc.statNameLength;
  if (typeof statLen === 'number' && statLen < 0) unused('statNameLength', 'negative: has no effect');
}
