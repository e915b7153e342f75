// Runs the app probes of ISTIO_KUBE_APP_PROBERS the way kubelet would have, from the agent:
// - httpGet: to the pod IP, http or https (certificate not verified and HTTP/2 offered in ALPN,
//   as kubelet; no SNI for an IP), no deadline unless timeoutSeconds is set (as Istio), the caller's
//   headers forwarded, Host rewritten from the status port to the app port, then the probe's
//   configured httpHeaders in place of the caller's of the same names (see httpGetHeaders); redirects followed
//   only to the same host (at most 10), a redirect elsewhere answered 200 (kubelet's rule); the
//   app's status code and up to 10 KiB of its body returned;
// - tcpSocket: a connection that opens is success;
// - grpc: grpc.health.v1.Health/Check must answer SERVING.
// Connections come from 127.0.0.6 for IPv4 targets (Istio's UpstreamLocalAddress, which the
// sidecar's iptables rules let through to the app without redirecting to Envoy), one per probe
// as kubelet (kept open with ENABLE_PROBE_KEEPALIVE_CONNECTIONS, Istio's older behaviour). Failures are
// answered 500, as Istio does; details go to the `probes` log scope.

import type http from 'node:http';
import type https from 'node:https';
import net from 'node:net';
import { localRequest } from '../util/local-http.js';
import { logger } from '../util/logger.js';
import type { AppProbe, GrpcProbe, HttpGetProbe, TcpSocketProbe } from './app-probers.js';
import { ipFamily, joinHostPort } from '../util/ip.js';
import { lazyBuiltin } from '../util/builtin.js';
import { deadline } from '../util/deadline.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('probes');

/** Istio's maxRespBodyLength: how much of the app's body the probe answer carries. */
export const MAX_PROBE_BODY = 10 * 1024;
/** Largest response header section of an httpGet probe: Go's client default (Transport.MaxResponseHeaderBytes, 10 MiB). */
const MAX_PROBE_HEADER_BYTES = 10 << 20;
const MAX_REDIRECTS = 10;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'host']);

export interface ProbeAnswer {
  readonly status: number;
  readonly body?: Buffer;
}

export interface ProbeContext {
  /** Where the app listens: the pod IP (INSTANCE_IP), else loopback. */
  readonly destination: string;
  /** Source address for probe connections to IPv4 destinations; undefined for the OS default. */
  readonly sourceAddress: string | undefined;
  /** The status port (the Host header's port is replaced by the app's when it is this one). */
  readonly statusPort: number;
  /** ENABLE_PROBE_KEEPALIVE_CONNECTIONS: pools that keep httpGet connections open; absent: a connection per probe. */
  readonly keepAlive?: { readonly http: http.Agent; readonly https: https.Agent };
  /**
   * ISTIO_ENABLE_HTTP2_PROBING: HTTPS probes offer h2 and http/1.1 in ALPN, as Go's transport with
   * HTTP/2 configured (Istio's and the kubelet's), so an app serving HTTPS over HTTP/2 only passes.
   * Kept connections (keepAlive) stay HTTP/1.1.
   */
  readonly http2?: boolean;
}

/** Connection pools for ENABLE_PROBE_KEEPALIVE_CONNECTIONS (Istio's older behaviour; not kubelet's). */
export function keepAliveProbeAgents(): { http: http.Agent; https: https.Agent } {
  return { http: new (lazyBuiltin.http().Agent)({ keepAlive: true }), https: new (lazyBuiltin.https().Agent)({ keepAlive: true, rejectUnauthorized: false }) };
}

const localAddressFor = (ctx: ProbeContext, host: string): string | undefined => (ipFamily(host) === 6 || host.includes(':') ? undefined : ctx.sourceAddress);

export async function runAppProbe(probe: AppProbe, req: http.IncomingMessage, ctx: ProbeContext, signal: AbortSignal): Promise<ProbeAnswer> {
  switch (probe.kind) {
    case 'httpGet':
      return httpGetProbe(probe, req, ctx, signal);
    case 'tcpSocket':
      return tcpProbe(probe, ctx, signal);
    case 'grpc':
      return grpcProbe(probe, req, ctx, signal);
  }
}

async function tcpProbe(probe: TcpSocketProbe & { timeoutMs: number | undefined }, ctx: ProbeContext, signal: AbortSignal): Promise<ProbeAnswer> {
  const failure = await dialTcp(ctx.destination, probe.port, { timeoutMs: probe.timeoutMs, localAddress: localAddressFor(ctx, ctx.destination), signal });
  if (failure !== undefined) log.debug(`tcp probe to ${joinHostPort(ctx.destination, probe.port)} failed: ${failure}`);
  return { status: failure === undefined ? 200 : 500 };
}

/**
 * A TCP connection that opens, then is closed: undefined when it opened, else why not. Bounded by
 * `timeoutMs` when given (a probe without timeoutSeconds has none, as Istio's dialer).
 */
export function dialTcp(host: string, port: number, opts: { timeoutMs?: number | undefined; localAddress?: string | undefined; signal: AbortSignal }): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => done(`dial tcp ${joinHostPort(host, port)}: i/o timeout after ${opts.timeoutMs} ms`), timerDelay(opts.timeoutMs));
    const onAbort = (): void => done('aborted');
    opts.signal.addEventListener('abort', onAbort);
    function done(failure: string | undefined): void {
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(failure);
    }
    sock.once('connect', () => done(undefined));
    sock.once('error', (err) => done(err.message));
  });
}

async function grpcProbe(probe: GrpcProbe & { timeoutMs: number }, req: http.IncomingMessage, ctx: ProbeContext, signal: AbortSignal): Promise<ProbeAnswer> {
  // the gRPC client and the health messages are loaded on the first gRPC probe only
  const { grpcHealthCheck } = await import('./grpc-health.js');
  const result = await grpcHealthCheck({
    host: ctx.destination,
    port: probe.port,
    service: probe.service,
    timeoutMs: probe.timeoutMs,
    userAgent: req.headers['user-agent'],
    localAddress: localAddressFor(ctx, ctx.destination),
    signal,
  });
  if (!result.ok) log.error(result.reason);
  return { status: result.ok ? 200 : 500 };
}

const isRedirect = (code: number): boolean => code >= 300 && code < 400;
/** The redirects Go's http.Client follows; other 3xx are returned as they are. */
const FOLLOWED = new Set([301, 302, 303, 307, 308]);

async function httpGetProbe(probe: HttpGetProbe & { timeoutMs: number | undefined }, req: http.IncomingMessage, ctx: ProbeContext, signal: AbortSignal): Promise<ProbeAnswer> {
  const scheme = probe.scheme === 'HTTPS' ? 'https' : 'http';
  let url = new URL(`${scheme}://${joinHostPort(ctx.destination, probe.port)}${probe.path}`);
  const firstHostname = url.hostname;
  const { headers, host } = httpGetHeaders(probe, req, ctx);
  let hostHeader = host;
  const timeout = deadline(probe.timeoutMs, signal);
  const all = timeout.signal;
  try {
    for (let redirects = 0; ; redirects++) {
      const res = await localRequest(url.toString(), {
        headers: { ...headers, ...(hostHeader ? { host: hostHeader } : {}) },
        timeoutMs: probe.timeoutMs,
        signal: all,
        localAddress: localAddressFor(ctx, url.hostname.replace(/^\[|\]$/g, '')),
        insecure: true,
        // no keep-alive unless asked, as kubelet: idle connections never fail a probe
        ...(ctx.keepAlive ? { agent: url.protocol === 'https:' ? ctx.keepAlive.https : ctx.keepAlive.http } : {}),
        maxBytes: MAX_PROBE_BODY,
        overLimit: 'truncate',
        // Go's default, which Istio's probe client and the kubelet keep: an app's large headers
        // (a long Content-Security-Policy) must not fail a probe the kubelet would pass
        maxHeaderBytes: MAX_PROBE_HEADER_BYTES,
        offerHttp2: ctx.http2 ?? false,
      });
      const status = res.status;
      // a final 1xx (101 Switching Protocols) is no answer to a probe: the kubelet fails below 200
      if (status < 200) throw new Error(`the app answered ${status}`);
      if (isRedirect(status)) {
        const location = res.headers.location;
        // not followable (no Location, or a 3xx Go does not follow): kubelet answers success
        if (!location || !FOLLOWED.has(status)) return { status: 200 };
        const next = new URL(location, url);
        if (next.hostname !== firstHostname) return { status: 200 }; // redirect elsewhere: success, as kubelet
        if (redirects + 1 >= MAX_REDIRECTS) throw new Error(`stopped after ${MAX_REDIRECTS} redirects`);
        // a relative Location keeps the custom Host header, an absolute one uses its own host
        if (/^[a-z][a-z0-9+.-]*:/i.test(location)) hostHeader = undefined;
        url = next;
        continue;
      }
      return { status, body: res.bytes };
    }
  } catch (err) {
    const why = timeout.expired ? `timeout after ${probe.timeoutMs} ms` : (err as Error).message;
    log.error(`Request to probe app failed: ${why}, original URL path = ${req.url}\napp URL path = ${probe.path}`);
    return { status: 500 };
  } finally {
    timeout.clear();
  }
}

/**
 * The probe request's headers and Host. Istio forwards the caller's headers and Host (the status
 * port swapped for the app's) and, since 1.18 (istio/istio#44297), leaves the configured
 * httpHeaders to the kubelet, which sends them itself, so that they are not sent twice. Before
 * that it deleted the caller's headers of the configured names, added the configured values and
 * took a configured Host (or :authority) as the request's Host; that is what is done here. For
 * the kubelet the result is the same either way; for any other caller the configured values win,
 * so what the app sees for them is what the pod spec says, and nothing is doubled.
 */
function httpGetHeaders(probe: HttpGetProbe, req: http.IncomingMessage, ctx: ProbeContext): { headers: Record<string, string | string[]>; host: string | undefined } {
  // Host: the caller's, with the status port swapped for the app port (kubelet dialled the status port)
  let host = req.headers.host;
  if (host) {
    const m = /^(.*):(\d+)$/.exec(host);
    if (m && Number(m[2]) === ctx.statusPort) host = `${m[1]}:${probe.port}`;
  }
  const configured = new Map<string, string[]>();
  for (const h of probe.headers) {
    const name = h.name.toLowerCase();
    if (name === 'host' || name === ':authority') {
      // the first one, as kubelet's headers.Get("Host")
      if (!configured.has('host')) configured.set('host', [h.value]);
    } else configured.set(name, [...(configured.get(name) ?? []), h.value]);
  }
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || configured.has(name)) continue;
    headers[name] = value;
  }
  for (const [name, values] of configured) {
    if (name === 'host') host = values[0];
    else headers[name] = values.length === 1 ? values[0]! : values;
  }
  return { headers, host };
}

