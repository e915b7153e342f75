// Workload health reported to istiod (Istio's pkg/istio-agent/health): when ProxyConfig has a
// readinessProbe (a VM's WorkloadGroup probe), the agent probes the application itself and tells
// istiod on the xDS stream with an `istio.io/health` request, `error_detail` set while unhealthy.
// istiod keeps an auto-registered WorkloadEntry with such a probe out of its Services until a
// report says healthy, so without this a VM with a probe never gets traffic.
//
// As Istio: Envoy's readiness is probed first (when there is an Envoy), then the application by
// httpGet, tcpSocket, exec or grpc; thresholds count consecutive results and only a change of
// state is reported (the first report once the success or failure threshold is met); defaults are
// Istio's fillInDefaults (period 10 s, timeout 1 s, thresholds 1, path "/", scheme http).

import { execFile } from 'node:child_process';
import { ConfigError, IssueList } from '../config/errors.js';
import { dialTcp } from '../status/app-probe.js';
import { joinHostPort } from '../util/ip.js';
import { localRequest } from '../util/local-http.js';
import { logger } from '../util/logger.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('healthcheck');

const SOURCE = 'ProxyConfig readinessProbe';

export type HealthMethod =
  | { readonly kind: 'httpGet'; readonly path: string; readonly port: number; readonly host: string; readonly scheme: 'http' | 'https'; readonly headers: readonly { name: string; value: string }[] }
  | { readonly kind: 'tcpSocket'; readonly port: number; readonly host: string }
  | { readonly kind: 'exec'; readonly command: readonly string[] }
  | { readonly kind: 'grpc'; readonly port: number; readonly service: string };

export interface WorkloadProbe {
  readonly method: HealthMethod;
  readonly initialDelayMs: number;
  readonly timeoutMs: number;
  readonly periodMs: number;
  readonly successThreshold: number;
  readonly failureThreshold: number;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads ProxyConfig.readinessProbe, as the config loader normalised it (proto3 JSON names, types
 * checked, one method at most: config/proxy-config.ts); undefined when absent. What the schema
 * cannot say (a method is required, a port is 1..65535, a command is not empty) throws a
 * ConfigError naming each bad field.
 */
export function parseReadinessProbe(raw: unknown): WorkloadProbe | undefined {
  if (!isObj(raw)) return undefined;
  const issues = new IssueList();
  const bad = (path: string, value: unknown, why: string): void => void issues.add(SOURCE, path, JSON.stringify(value) ?? String(value), why);
  // proto3: 0 is unset, and Istio's fillInDefaults gives thresholds and timings their defaults
  const int = (name: string, def: number): number => (typeof raw[name] === 'number' && raw[name] > 0 ? raw[name] : def);
  const port = (o: Obj, path: string): number => {
    if (typeof o.port === 'number' && o.port >= 1 && o.port <= 65535) return o.port;
    bad(`${path}.port`, o.port, 'expected a port number in 1..65535');
    return 0;
  };
  const { httpGet: http, tcpSocket: tcp, exec, grpc } = raw;
  let method: HealthMethod | undefined;
  if (isObj(http)) {
    const scheme = String(http.scheme ?? '').toLowerCase() || 'http';
    if (scheme !== 'http' && scheme !== 'https') bad('httpGet.scheme', http.scheme, 'expected HTTP or HTTPS');
    const headers: { name: string; value: string }[] = [];
    for (const h of Array.isArray(http.httpHeaders) ? (http.httpHeaders as Obj[]) : []) {
      const name = String(h.name ?? '');
      const value = String(h.value ?? '');
      // what node's client would throw on at every probe: refused once, at start-up
      if (/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) && !/[\0\r\n]/.test(value)) headers.push({ name, value });
      else bad('httpGet.httpHeaders', h, 'expected {name, value} with a valid header name and value');
    }
    const path = typeof http.path === 'string' && http.path !== '' ? http.path : '/';
    method = { kind: 'httpGet', path: path.startsWith('/') ? path : `/${path}`, port: port(http, 'httpGet'), host: typeof http.host === 'string' ? http.host : '', scheme: scheme === 'https' ? 'https' : 'http', headers };
  } else if (isObj(tcp)) method = { kind: 'tcpSocket', port: port(tcp, 'tcpSocket'), host: typeof tcp.host === 'string' ? tcp.host : '' };
  else if (isObj(exec)) {
    const command = Array.isArray(exec.command) ? (exec.command as string[]) : [];
    if (command.length === 0) bad('exec.command', exec.command, 'expected a non-empty list of strings');
    else method = { kind: 'exec', command };
  } else if (isObj(grpc)) method = { kind: 'grpc', port: port(grpc, 'grpc'), service: typeof grpc.service === 'string' ? grpc.service : '' };
  else bad('', raw, 'expected one of httpGet, tcpSocket, exec or grpc');
  issues.throwIfAny();
  return {
    method: method!,
    initialDelayMs: int('initialDelaySeconds', 0) * 1000,
    timeoutMs: int('timeoutSeconds', 1) * 1000,
    periodMs: int('periodSeconds', 10) * 1000,
    successThreshold: int('successThreshold', 1),
    failureThreshold: int('failureThreshold', 1),
  };
}

export interface HealthEvent {
  readonly healthy: boolean;
  /** Why, when unhealthy. */
  readonly message?: string;
}

export interface WorkloadHealthOptions {
  readonly probe: WorkloadProbe;
  /** Where the application is probed without a host of its own: the first proxy IP (or localhost). */
  readonly defaultHost: string;
  /** Source address of HTTP probes (Istio's upstream local address, 127.0.0.6 or ::6). */
  readonly httpSourceAddress?: string | undefined;
  /** Envoy's readiness, probed first: undefined when ready, else why not (absent without Envoy). */
  readonly envoyReady?: () => Promise<string | undefined>;
  readonly onChange: (event: HealthEvent) => void;
}

/** Probes on a period and reports changes of state, as Istio's WorkloadHealthChecker. */
export class WorkloadHealthChecker {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  private successes = 0;
  private failures = 0;
  private last: 'healthy' | 'unhealthy' | undefined;
  private readonly abort = new AbortController();

  constructor(private readonly opts: WorkloadHealthOptions) {}

  start(): void {
    const { probe } = this.opts;
    log.info(`starting health check for ${probe.method.kind} in ${probe.initialDelayMs / 1000}s`);
    this.timer = setTimeout(() => this.tick(), timerDelay(probe.initialDelayMs));
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
  }

  private tick(): void {
    if (this.stopped) return;
    // a probe still running when the period comes round is not doubled (Go's ticker drops ticks)
    this.running ??= this.check().finally(() => (this.running = undefined));
    this.timer = setTimeout(() => this.tick(), timerDelay(this.opts.probe.periodMs));
    this.timer.unref();
  }

  private async check(): Promise<void> {
    let failure: string | undefined;
    try {
      failure = (await this.opts.envoyReady?.()) ?? (await this.probeApp());
    } catch (err) {
      failure = (err as Error).message;
    }
    if (this.stopped) return;
    const { successThreshold, failureThreshold } = this.opts.probe;
    if (failure === undefined) {
      this.successes++;
      this.failures = 0;
      if (this.successes >= successThreshold && this.last !== 'healthy') {
        log.info('success threshold hit, marking as healthy');
        this.successes = 0;
        this.last = 'healthy';
        this.opts.onChange({ healthy: true });
      }
    } else {
      log.debug(`probe completed with unhealthy status: ${failure}`);
      this.failures++;
      this.successes = 0;
      if (this.failures >= failureThreshold && this.last !== 'unhealthy') {
        log.info(`failure threshold hit, marking as unhealthy: ${failure}`);
        this.failures = 0;
        this.last = 'unhealthy';
        this.opts.onChange({ healthy: false, message: failure });
      }
    }
  }

  /** One probe of the application: undefined when healthy, else why not. */
  private async probeApp(): Promise<string | undefined> {
    const { method, timeoutMs } = this.opts.probe;
    const host = (h: string): string => h || this.opts.defaultHost;
    switch (method.kind) {
      case 'httpGet': {
        const headers: Record<string, string> = {};
        for (const h of method.headers) headers[h.name.toLowerCase()] = h.value;
        headers['user-agent'] ??= 'istio-probe/1.0';
        const url = `${method.scheme}://${joinHostPort(host(method.host), method.port)}${method.path}`;
        try {
          const res = await localRequest(url, { headers, timeoutMs, signal: this.abort.signal, insecure: true, maxBytes: 10 * 1024, overLimit: 'truncate', localAddress: this.opts.httpSourceAddress });
          return res.status >= 200 && res.status < 400 ? undefined : `status code was not from [200,400), bad code ${res.status}`;
        } catch (err) {
          return (err as Error).message;
        }
      }
      case 'tcpSocket':
        return dialTcp(host(method.host), method.port, { timeoutMs, signal: this.abort.signal });
      case 'exec':
        return new Promise((resolve) => {
          execFile(method.command[0]!, method.command.slice(1), { timeout: timeoutMs, signal: this.abort.signal }, (err) => {
            if (!err) return resolve(undefined);
            resolve((err as { killed?: boolean }).killed ? `command timeout exceeded: ${err.message}` : err.message);
          });
        });
      case 'grpc': {
        const { grpcHealthCheck } = await import('../status/grpc-health.js');
        const r = await grpcHealthCheck({ host: this.opts.defaultHost, port: method.port, service: method.service, timeoutMs, userAgent: 'istio-probe/1.0', signal: this.abort.signal });
        return r.ok ? undefined : r.reason;
      }
    }
  }
}

export { ConfigError };
