// The status port (15020): readiness, merged Prometheus metrics, application probes, quit/drain
// and debug views (Istio's pilot/cmd/pilot-agent/status). Started last by the agent, closed first.
//
//   /healthz/ready                        readiness (readiness.ts)
//   /stats/prometheus, /metrics           merged metrics (metrics-merge.ts)
//   /app-health/<c>/{livez,readyz,startupz}, /app-lifecycle/<c>/{prestopz,poststartz}
//                                         app probes from ISTIO_KUBE_APP_PROBERS (app-probe.ts)
//   /quitquitquit, /drain                 POST, loopback callers only
//   /debug/{config,syncz,xds,certs,wasm,ndsz}   loopback callers only
//   /debug/pprof/{,profile,heap,cmdline}  with --profiling (Istio's default): V8 profiles (pprof.ts), loopback only
//
// Configuration problems (ISTIO_KUBE_APP_PROBERS, ISTIO_PROMETHEUS_ANNOTATIONS) are found by
// parseStatusInputs (inputs.ts) and thrown as a ConfigError; the agent calls it before Envoy's
// spawn, so it can refuse to start before Envoy runs, and loads this server after the spawn.

import { setMaxListeners } from 'node:events';
import type http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { ProxyType } from '../config/load.js';
import { enableProcessMetrics } from '../metrics/process.js';
import { registry as agentRegistry } from '../metrics/registry.js';
import { logger } from '../util/logger.js';
import { keepAliveProbeAgents, runAppProbe, type ProbeContext } from './app-probe.js';
import type { AppProbe } from './app-probers.js';
import { ConnectionGuard } from './connections.js';
import { MetricsMerger } from './metrics-merge.js';
import { isLoopbackAddress } from './net-util.js';
import { joinHostPort } from '../util/ip.js';
import { dateOwnHttp1 } from '../util/time.js';
import { Readiness, type ReadinessResult } from './readiness.js';
import { Pprof } from './pprof.js';
import { parseStatusInputs, type StatusInputs } from './inputs.js';
import { lazyBuiltin } from '../util/builtin.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('default');

/** A /debug view: JSON-able value, or undefined for "nothing to show" (404). */
export type DebugProvider = () => unknown;

export interface StatusServerOptions {
  /** The status port; 0 turns the server off (start() does nothing). */
  readonly port: number;
  /** Listen address; all interfaces by default (kubelet probes reach it on the pod IP). */
  readonly host?: string;
  /** Sidecars merge app metrics; routers and waypoints do not (Istio serves them only for sidecars). */
  readonly proxyType: ProxyType;
  /** Envoy admin port, reached on `localhost`. */
  readonly adminPort: number;
  /** Loopback address to reach Envoy and app metrics on: 127.0.0.1, or ::1 on IPv6-only pods. */
  readonly localhost?: string;
  /** Pod IP (INSTANCE_IP) the app probes go to; loopback when empty. */
  readonly podIp?: string;
  /** REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION: probe loopback instead of the pod IP. */
  readonly probeLocalhost?: boolean;
  /** Source address of probe connections to IPv4 targets; Istio's 127.0.0.6 by default, null for none. */
  readonly probeSourceAddress?: string | null;
  /** ENABLE_PROBE_KEEPALIVE_CONNECTIONS: keep probe connections to the app open between probes (default: one per probe, as kubelet). */
  readonly probeKeepalive?: boolean;
  /** ISTIO_ENABLE_HTTP2_PROBING: HTTPS probes offer HTTP/2 (default true, as Istio and the kubelet). */
  readonly probeHttp2?: boolean;
  /** ISTIO_KUBE_APP_PROBERS (raw JSON; '' for none). */
  readonly kubeAppProbers?: string;
  /** ISTIO_PROMETHEUS_ANNOTATIONS (raw JSON; '' when unset). */
  readonly prometheusAnnotations?: string;
  /** ENVOY_PROMETHEUS_PORT (15090). */
  readonly envoyPrometheusPort?: number;
  /** Envoy's Prometheus URL; default http://<localhost>:<envoyPrometheusPort>/stats/prometheus. */
  readonly envoyMetricsUrl?: string;
  /** PILOT_AGENT_MERGE_ENVOY_STATS (default true). */
  readonly mergeEnvoyStats?: boolean;
  /** METRICS_LOCALHOST_ACCESS_ONLY: metrics for loopback callers only. */
  readonly metricsLocalhostOnly?: boolean;
  /** DISABLE_ENVOY: readiness without the Envoy checks, no Envoy metrics. */
  readonly noEnvoy?: boolean;
  /** gRPC xDS bootstrap file, checked by readiness when set. */
  readonly grpcBootstrapPath?: string;
  /** When DNS is on: whether the DNS proxy has its table. */
  readonly dnsReady?: () => boolean;
  /** When the agent started, on the performance.now() clock; process start (0) by default. */
  readonly startedAt?: number;
  /** --profiling: serve /debug/pprof/* (Istio's default true; off by default here so embedders opt in). */
  readonly profiling?: boolean;
  /** POST /quitquitquit (after the answer is sent): exit at once. */
  readonly onQuit?: () => void | Promise<void>;
  /** POST /drain (after the answer is sent): drain Envoy now (Agent.drainNow). */
  readonly onDrain?: () => void | Promise<void>;
  readonly debug?: {
    /** /debug/config: effective configuration, secrets removed (see debugConfigView). */
    readonly config?: DebugProvider;
    /** /debug/syncz and /debug/xds: xDS sync state per type (see syncStateView). */
    readonly syncz?: DebugProvider;
    /** /debug/certs: certificate summaries. */
    readonly certs?: DebugProvider;
    /** /debug/wasm: Wasm module cache. */
    readonly wasm?: DebugProvider;
    /** /debug/ndsz: the DNS name table (404 when there is none, as Istio). */
    readonly ndsz?: DebugProvider;
  };
  /** Agent metrics registry; the shared one by default. */
  readonly registry?: Registry;
  /** Per-application-target metrics cap; Istio's 10 MiB by default. */
  readonly maxAppBodyBytes?: number;
  /** Scrape deadline when the client sends no usable X-Prometheus-Scrape-Timeout-Seconds (default 60 s, must be positive). */
  readonly defaultScrapeTimeoutMs?: number;
  /** How long a scrape's answer may take to reach the client after the deadline (default 5 s). */
  readonly scrapeGraceMs?: number;
  /** Request line + headers of one request (default 16 KiB); more is answered 431. */
  readonly maxHeaderBytes?: number;
  /** Time for a request's headers to arrive, from its first byte or the connection (default 10 s); then 408. */
  readonly headersTimeoutMs?: number;
  /** Time for a whole request (headers and any body) to arrive (default 30 s). */
  readonly requestTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this (default 5 s). */
  readonly keepAliveTimeoutMs?: number;
  /** Connections open at once (default 256); beyond, the oldest idle one is closed, or the new one refused. */
  readonly maxConnections?: number;
  /** Metrics scrapes served at once (default 4); more wait for one to finish, within their deadline. */
  readonly maxConcurrentScrapes?: number;
  /** Scrapes waiting for one in progress (default 16); more are answered 503 at once. */
  readonly maxWaitingScrapes?: number;
}

/**
 * The status port's limits (src/status/README.md explains each value). Go's net/http, which
 * Istio's status server uses with no limits set, allows 1 MiB of headers and waits for them
 * forever; the kubelet's probes and Prometheus' scrapes are a few hundred bytes sent at once.
 */
export const STATUS_PORT_LIMITS = {
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
  maxConcurrentScrapes: 4,
  // a waiting scrape holds its connection: bounded well under maxConnections, so that a scrape
  // flood never takes the connections the kubelet's probes need
  maxWaitingScrapes: 16,
} as const;

const FORBIDDEN = 'Only requests from localhost are allowed\n';

export class StatusServer {
  private readonly probes: ReadonlyMap<string, AppProbe>;
  private readonly readiness: Readiness;
  private readonly merger: MetricsMerger;
  private readonly probeContext: ProbeContext;
  private readonly closing = new AbortController();
  private readonly connections: ConnectionGuard;
  private readonly limits: { -readonly [K in keyof typeof STATUS_PORT_LIMITS]: number };
  private readonly pprof: Pprof | undefined;
  private scrapesInProgress = 0;
  /** Scrapes waiting for one in progress to finish, first come first served. */
  private readonly scrapeWaiters: (() => void)[] = [];
  private warnedScrapes = false;
  private server: http.Server | undefined;
  private closed: Promise<void> | undefined;
  private boundPort = 0;

  /** Validates the probe and metrics configuration; throws a ConfigError naming every problem. */
  /** `inputs`: parsed from `opts` unless the caller parsed them already (before Envoy's spawn). */
  constructor(private readonly opts: StatusServerOptions, inputs: StatusInputs = parseStatusInputs(opts)) {
    const statusPort = opts.port;
    this.probes = inputs.probes;
    const localhost = opts.localhost ?? '127.0.0.1';
    const { appTargets } = inputs;
    if (appTargets) log.info(`Prometheus scraping configuration: ${appTargets.map((t) => `${t.port}${t.path}`).join(', ')}`);
    const envoyUrl =
      opts.noEnvoy || opts.mergeEnvoyStats === false
        ? undefined
        : (opts.envoyMetricsUrl ?? `http://${joinHostPort(localhost, opts.envoyPrometheusPort ?? 15090)}/stats/prometheus`);
    this.merger = new MetricsMerger({
      envoyUrl,
      // Istio's appMetricsURL: the app sees Host localhost:<port> (an app that checks Host, as
      // Django's ALLOWED_HOSTS, refused 127.0.0.1), reached on 127.0.0.1 or ::1 (scrape-client.ts)
      appUrls: (appTargets ?? []).map((t) => `http://localhost:${t.port}${t.path.startsWith('/') ? t.path : `/${t.path}`}`),
      registry: opts.registry ?? agentRegistry,
      maxAppBodyBytes: opts.maxAppBodyBytes,
      defaultTimeoutMs: opts.defaultScrapeTimeoutMs,
      graceMs: opts.scrapeGraceMs,
    });
    this.readiness = new Readiness({
      adminHost: localhost,
      adminPort: opts.adminPort,
      noEnvoy: opts.noEnvoy ?? false,
      grpcBootstrapPath: opts.grpcBootstrapPath,
      dnsReady: opts.dnsReady,
      startedAt: opts.startedAt ?? 0,
    });
    this.pprof = opts.profiling ? new Pprof() : undefined;
    this.limits = { ...STATUS_PORT_LIMITS };
    for (const k of Object.keys(STATUS_PORT_LIMITS) as (keyof typeof STATUS_PORT_LIMITS)[]) {
      const v = opts[k];
      if (v === undefined) continue;
      if (!(Number.isInteger(v) && v > 0)) throw new RangeError(`status server: ${k} must be a positive integer, got ${v}`);
      this.limits[k] = v;
    }
    // node refuses a request timeout shorter than the headers timeout
    if (this.limits.requestTimeoutMs < this.limits.headersTimeoutMs) this.limits.requestTimeoutMs = this.limits.headersTimeoutMs;
    this.connections = new ConnectionGuard(this.limits.maxConnections, (m) => log.warn(m));
    // each request in progress (at most one per connection) listens for the server closing: that
    // many is expected, not the leak node warns about past 10
    setMaxListeners(this.limits.maxConnections + 1, this.closing.signal);
    const destination = opts.probeLocalhost ? localhost : opts.podIp || localhost;
    this.probeContext = {
      destination,
      sourceAddress: opts.probeSourceAddress === null ? undefined : (opts.probeSourceAddress ?? '127.0.0.6'),
      statusPort,
      ...(opts.probeKeepalive ? { keepAlive: keepAliveProbeAgents() } : {}),
      http2: opts.probeHttp2 ?? true,
    };
  }

  /** The port listened on (the configured one), 0 when off or not started. */
  get port(): number {
    return this.boundPort;
  }

  /** Connections open on the status port now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Paths of the configured app probes. */
  get appProbePaths(): string[] {
    return [...this.probes.keys()];
  }

  /** Runs the readiness checks (what /healthz/ready answers). */
  checkReadiness(): Promise<ReadinessResult> {
    return this.readiness.check();
  }

  async start(): Promise<void> {
    if (this.opts.port === 0) {
      log.info('Status server disabled (status port 0)');
      return;
    }
    if (this.server) return;
    // as Istio's status server sets up the agent registry's process collector
    if (!this.opts.registry) enableProcessMetrics();
    const l = this.limits;
    const server = lazyBuiltin.http().createServer(
      {
        maxHeaderSize: l.maxHeaderBytes,
        // node checks the header and request timeouts on this interval (30 s by default, which
        // would let a slow client stay three times longer than the timeout says)
        connectionsCheckingInterval: Math.max(10, Math.min(1000, l.headersTimeoutMs / 4)),
      },
      (req, res) => {
        dateOwnHttp1(res);
        this.connections.request(req.socket, res, () => this.dispatch(req, res));
      },
    );
    server.headersTimeout = l.headersTimeoutMs;
    server.requestTimeout = l.requestTimeoutMs;
    server.keepAliveTimeout = l.keepAliveTimeoutMs;
    server.on('connection', (s: Socket) => this.connections.accept(s));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(err, socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(`status server: cannot listen on ${this.opts.host ? joinHostPort(this.opts.host, this.opts.port) : `port ${this.opts.port}`}: ${err.message}`, { cause: err })),
      );
      server.listen({ port: this.opts.port, ...(this.opts.host ? { host: this.opts.host } : {}) }, () => resolve());
    });
    server.on('error', (err) => log.error(`status server: ${err.message}`));
    this.server = server;
    this.boundPort = (server.address() as AddressInfo).port;
    log.info(`Opening status port ${this.boundPort}`);
  }

  /** Stops listening, aborts in-flight scrapes and probes, closes connections. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.readiness.terminate('agent is shutting down');
      this.closing.abort();
      const server = this.server;
      this.merger.close();
      this.probeContext.keepAlive?.http.destroy();
      this.probeContext.keepAlive?.https.destroy();
      if (!server) return;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // give answers being written a moment, then cut whatever is left
        const t = setTimeout(() => this.connections.destroyAll(), 200);
        t.unref();
      });
      log.info('Status server has successfully terminated');
    })();
    return this.closed;
  }

  private dispatch(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    let handled: Promise<void> | void;
    try {
      handled = this.route(path, req, res);
    } catch (err) {
      handled = Promise.reject(err);
    }
    void Promise.resolve(handled).catch((err: unknown) => {
      log.error(`status server: ${req.method} ${path}: ${(err as Error).message}`);
      if (!res.headersSent) send(res, 500, `${(err as Error).message}\n`);
      else res.destroy();
    });
  }

  private route(path: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> | void {
    const local = isLoopbackAddress(req.socket.remoteAddress);
    if (path === '/healthz/ready') return this.handleReady(res);
    if (path === '/stats/prometheus' || path === '/metrics') {
      if (this.opts.metricsLocalhostOnly && !local) return send(res, 403, FORBIDDEN);
      return this.serveMetrics(req, res);
    }
    if (path === '/quitquitquit' || path === '/drain') return this.handleLifecycle(path, req, res, local);
    if (path.startsWith('/app-health/') || path.startsWith('/app-lifecycle/')) return this.handleAppProbe(path, req, res);
    if (path === '/debug' || path.startsWith('/debug/')) return this.handleDebug(path, req, res, local);
    send(res, 404, '404 page not found\n');
  }

  /**
   * A scrape holds a few MiB while it streams (pooled read buffers, the answer's unflushed bytes),
   * so their number is capped; Prometheus scrapes a pod once per interval, an HA pair twice. More
   * wait their turn rather than fail: Istio serves every scrape at once, and a scraper answered
   * 503 records the target as down for that interval. A waiting scrape holds only its connection
   * (itself capped), and gives up at its own deadline.
   */
  private async serveMetrics(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const max = this.limits.maxConcurrentScrapes;
    if (this.scrapesInProgress >= max) {
      if (!this.warnedScrapes) log.warn(`status port: ${max} metrics scrapes in progress (the limit); more wait for one to finish (warned once)`);
      this.warnedScrapes = true;
      const waiting = this.limits.maxWaitingScrapes;
      if (this.scrapeWaiters.length >= waiting) return send(res, 503, `too many metrics scrapes: ${max} in progress and ${waiting} waiting; try again later\n`);
      const timeoutMs = this.merger.deadlineMs(req);
      const waited = await this.waitForScrapeSlot(res, timeoutMs);
      if (waited === 'timeout') return send(res, 503, `timed out after ${timeoutMs / 1000}s waiting for one of ${max} metrics scrapes in progress to finish\n`);
      if (waited === 'gone') return;
    } else {
      this.scrapesInProgress++;
    }
    try {
      await this.merger.serve(req, res, this.closing.signal);
    } finally {
      // the slot passes straight to the first waiter, so that a scrape arriving meanwhile cannot take it
      const next = this.scrapeWaiters.shift();
      if (next) next();
      else this.scrapesInProgress--;
    }
  }

  /** Resolves 'slot' once a finishing scrape hands over its slot, or why not: deadline, client gone, server closing. */
  private waitForScrapeSlot(res: http.ServerResponse, timeoutMs: number): Promise<'slot' | 'timeout' | 'gone'> {
    return new Promise((resolve) => {
      const settle = (how: 'slot' | 'timeout' | 'gone'): void => {
        clearTimeout(timer);
        res.off('close', onGone);
        this.closing.signal.removeEventListener('abort', onGone);
        if (how !== 'slot') {
          const i = this.scrapeWaiters.indexOf(granted);
          if (i >= 0) this.scrapeWaiters.splice(i, 1);
        }
        resolve(how);
      };
      const granted = (): void => settle('slot');
      const onGone = (): void => settle('gone');
      const timer = setTimeout(() => settle('timeout'), timerDelay(timeoutMs));
      res.once('close', onGone);
      this.closing.signal.addEventListener('abort', onGone, { once: true });
      this.scrapeWaiters.push(granted);
    });
  }

  private async handleReady(res: http.ServerResponse): Promise<void> {
    const r = await this.readiness.check();
    if (r.ready) send(res, 200, '');
    else send(res, 503, `${r.reason}\n`);
  }

  private handleLifecycle(path: string, req: http.IncomingMessage, res: http.ServerResponse, local: boolean): void {
    if (!local) return send(res, 403, FORBIDDEN);
    if (req.method !== 'POST') return send(res, 405, 'Method Not Allowed\n');
    const quit = path === '/quitquitquit';
    const action = quit ? this.opts.onQuit : this.opts.onDrain;
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('OK', () => {
      if (quit) log.info(`handling ${path}, notifying pilot-agent to exit`);
      else log.info(`handling ${path}, starting drain`);
      if (!action) {
        log.warn(`${path}: nothing is wired to handle it`);
        return;
      }
      void Promise.resolve()
        .then(action)
        .catch((err: unknown) => log.error(`${path} failed: ${(err as Error).message}`));
    });
  }

  private async handleAppProbe(path: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const probe = this.probes.get(path);
    if (!probe) {
      log.error(`Prober does not exists url ${path}`);
      return send(res, 400, `app prober config does not exists for ${path}`);
    }
    // aborted when the caller leaves or the server closes; the listener on the server-wide signal
    // is removed after every probe (AbortSignal.any would tie each probe's signal to it)
    const abort = new AbortController();
    const onClose = (): void => abort.abort();
    res.once('close', onClose);
    this.closing.signal.addEventListener('abort', onClose);
    let answer: Awaited<ReturnType<typeof runAppProbe>>;
    try {
      answer = await runAppProbe(probe, req, this.probeContext, abort.signal);
    } finally {
      res.off('close', onClose);
      this.closing.signal.removeEventListener('abort', onClose);
    }
    if (res.destroyed) return;
    res.writeHead(answer.status);
    res.end(answer.body ?? '');
  }

  private handleDebug(path: string, req: http.IncomingMessage, res: http.ServerResponse, local: boolean): Promise<void> | void {
    if (!local) return send(res, 403, FORBIDDEN);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'Method Not Allowed\n');
    if (path === '/debug/pprof' || path.startsWith('/debug/pprof/')) {
      if (!this.pprof) return send(res, 404, 'profiling is off (pilot-agent proxy --profiling=false)\n');
      return this.pprof.handle(path, req, res, this.closing.signal);
    }
    const d = this.opts.debug ?? {};
    const views: Record<string, { provider: DebugProvider | undefined; empty: unknown }> = {
      '/debug/config': { provider: d.config, empty: undefined },
      '/debug/syncz': { provider: d.syncz, empty: { types: {} } },
      '/debug/xds': { provider: d.syncz, empty: { types: {} } },
      '/debug/certs': { provider: d.certs, empty: { certificates: [] } },
      '/debug/wasm': { provider: d.wasm, empty: { modules: [] } },
      '/debug/ndsz': { provider: d.ndsz, empty: undefined },
    };
    if (path === '/debug' || path === '/debug/') {
      return sendJson(res, 200, { endpoints: [...Object.keys(views), ...(this.pprof ? ['/debug/pprof/'] : [])] });
    }
    const view = views[path];
    if (!view) return send(res, 404, '404 page not found\n');
    const value = view.provider ? view.provider() : view.empty;
    if (value === undefined) return sendJson(res, 404, {});
    sendJson(res, 200, value);
  }
}

const CLIENT_ERROR_ANSWERS: Record<string, string> = {
  HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large',
  ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
};

/**
 * A request node could not take (headers too large or too slow, malformed, or the peer reset):
 * as node does by default, answered when nothing was sent on the connection yet, then closed.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  log.debug(`status server: client error from ${socket.remoteAddress}: ${err.code ?? ''} ${err.message}`);
  if (socket.writable && socket.bytesWritten === 0 && err.code !== 'ECONNRESET') {
    const status = CLIENT_ERROR_ANSWERS[err.code ?? ''] ?? '400 Bad Request';
    socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
  }
  socket.destroy();
}

function send(res: http.ServerResponse, status: number, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(value, null, 2) + '\n');
}
