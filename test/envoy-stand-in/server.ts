// The stand-in's server: Envoy's init state machine, listeners as the stats and drain see them,
// and the admin API. Envoy behaviour only; the test controls live under /standin/ (see
// handleStandIn) and are never recorded as admin calls.

import fs from 'node:fs';
import http from 'node:http';
import { toJson } from '@bufbuild/protobuf';
import { envoyRegistry, messageSchema, parseEnvoyJson } from '../support/envoy-protos.js';
import type { LoadedBootstrap } from './bootstrap.js';
import type { StandInConfig, SimulatedListener } from './config.js';
import { EnvoyLog } from './log.js';
import { commandLineOptionsJson, normalizeLogLevel, type EnvoyOptions } from './options.js';
import type { Recorder } from './recorder.js';
import { StatsStore, TagExtractor, statsMatcher, toJsRegexSource, type RenderQuery, type StatKind } from './stats.js';
import type { ClusterSummary, ListenerSummary } from './ads-client.js';
import { connectXdsClients, findXdsTargets, type XdsConnections, type XdsUpdateInfo } from './xds-seam.js';

type Json = Record<string, unknown>;

/** envoy.admin.v3.ServerInfo.State values, which are also server.state's gauge values. */
export const SERVER_STATE = { LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3 } as const;
const STATE_NAMES = ['LIVE', 'DRAINING', 'PRE_INITIALIZING', 'INITIALIZING'] as const;

interface ListenerInfo {
  readonly name: string;
  readonly prefix: string;
  readonly address: string;
  readonly direction: SimulatedListener['direction'];
  readonly dynamic: boolean;
  /** Serving: warmed, and the workers have started. */
  active: boolean;
  /** Dynamic listeners: a version has warmed (its RDS and ECDS arrived or timed out). */
  warmed: boolean;
  stopped: boolean;
}

/** A cluster CDS delivered; `active` once it has warmed (its EDS arrived or timed out). */
type DynamicCluster = ClusterSummary & { active: boolean };

interface Reply {
  status: number;
  body: string;
  contentType?: string;
  after?: () => void;
}

interface Handler {
  readonly path: string;
  readonly help: string;
  readonly mutates: boolean;
  readonly run: (q: Record<string, string>, req: http.IncomingMessage) => Reply | Promise<Reply>;
}

function obj(v: unknown): Json | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}

/** Envoy's query parsing: `a&b=c`, percent-decoded, `+` left alone. */
export function parseQuery(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of raw.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const dec = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    };
    const key = dec(eq < 0 ? part : part.slice(0, eq));
    if (!(key in out)) out[key] = dec(eq < 0 ? '' : part.slice(eq + 1));
  }
  return out;
}

function addressString(address: Json | undefined): { prefix: string; display: string } | undefined {
  const sock = obj(address?.socket_address);
  if (sock) {
    const host = String(sock.address ?? '');
    const port = Number(sock.port_value ?? 0);
    const display = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    return { prefix: display.replace(/:/g, '_'), display };
  }
  const pipe = obj(address?.pipe);
  if (pipe) return { prefix: String(pipe.path), display: String(pipe.path) };
  return undefined;
}

export interface ServerDeps {
  readonly options: EnvoyOptions;
  readonly bootstrap: LoadedBootstrap;
  readonly config: StandInConfig;
  readonly log: EnvoyLog;
  readonly recorder: Recorder;
  /** Ends the process (records the exit first). */
  readonly exit: (code: number, signal?: NodeJS.Signals) => never;
}

export class StandInServer {
  readonly stats: StatsStore;
  private readonly started = Date.now();
  private stateValue: number = SERVER_STATE.PRE_INITIALIZING;
  private healthCheckFailed = false;
  private drainDirection: 'none' | 'inbound' | 'all' = 'none';
  private totalConnectionsOverridden = false;
  private readonly listeners: ListenerInfo[] = [];
  private readonly clusters: Json[];
  /** Clusters delivered by CDS (ADS client only). */
  private readonly dynamicClusters = new Map<string, DynamicCluster>();
  private readonly handlers: Handler[];
  private server: http.Server | undefined;
  private adminConnections = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private xds: XdsConnections | undefined;
  adminAddress = '';

  constructor(private readonly deps: ServerDeps) {
    const b = deps.bootstrap.json;
    const statsConfig = obj(b.stats_config);
    const accept = deps.config.applyStatsMatcher ? statsMatcher(obj(statsConfig?.stats_matcher)) : () => true;
    this.stats = new StatsStore(accept, new TagExtractor(statsConfig, deps.options.statsTags));
    this.clusters = ((obj(b.static_resources)?.clusters as Json[] | undefined) ?? []).filter((c) => obj(c));
    for (const l of (obj(b.static_resources)?.listeners as Json[] | undefined) ?? []) {
      const addr = addressString(obj(l.address));
      if (!addr) continue;
      const prefix = typeof l.stat_prefix === 'string' && l.stat_prefix ? l.stat_prefix : addr.prefix;
      const direction = l.traffic_direction === 'INBOUND' || l.traffic_direction === 'OUTBOUND' ? l.traffic_direction : 'UNSPECIFIED';
      this.listeners.push({ name: String(l.name ?? addr.prefix), prefix, address: addr.display, direction, dynamic: false, active: true, warmed: true, stopped: false });
    }
    this.handlers = this.buildHandlers();
    this.initStats();
  }

  /** Without a real ADS client: the listeners LDS is pretended to deliver (ENVOY_STANDIN_LDS_LISTENERS). */
  private addSimulatedLdsListeners(): void {
    if (!this.hasDynamic('lds_config')) return;
    for (const l of this.deps.config.ldsListeners) {
      const name = l.direction === 'INBOUND' ? 'virtualInbound' : l.direction === 'OUTBOUND' ? 'virtualOutbound' : l.prefix;
      const info: ListenerInfo = { name, prefix: l.prefix, address: l.prefix.replace(/_(\d+)$/, ':$1'), direction: l.direction, dynamic: true, active: false, warmed: true, stopped: false };
      this.listeners.push(info);
      this.declareListener(info);
    }
  }

  /** Envoy's hash of a version string for the `<api>.version` gauge (FNV-1a, 32 bits here). */
  private static versionHash(version: string): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < version.length; i++) h = Math.imul(h ^ version.charCodeAt(i), 0x01000193) >>> 0;
    return h;
  }

  /** A CDS/LDS response handled by the ADS client: Envoy's subscription stats. */
  private onXdsUpdate(api: 'cds' | 'lds', result: 'success' | 'rejected', info: XdsUpdateInfo | undefined): void {
    const prefix = api === 'cds' ? 'cluster_manager.cds' : 'listener_manager.lds';
    const s = this.stats;
    s.add(`${prefix}.update_attempt`, 1);
    if (result === 'rejected') {
      s.add(`${prefix}.update_rejected`, 1);
      return;
    }
    s.add(`${prefix}.update_success`, 1);
    if (info) {
      if (info.resources === 0) s.add(`${prefix}.update_empty`, 1);
      s.set(`${prefix}.version`, StandInServer.versionHash(info.version));
    }
    s.set(`${prefix}.update_time`, Date.now());
    if (info?.clusters) this.applyClusters(info.clusters);
    if (info?.listeners) this.applyListeners(info.listeners);
  }

  private applyClusters(clusters: readonly ClusterSummary[]): void {
    const s = this.stats;
    const next = new Map(clusters.map((c) => [c.name, c]));
    let removed = 0;
    for (const name of this.dynamicClusters.keys()) {
      if (!next.has(name)) {
        this.dynamicClusters.delete(name);
        removed++;
      }
    }
    let added = 0;
    for (const c of clusters) {
      if (this.dynamicClusters.has(c.name)) continue;
      this.dynamicClusters.set(c.name, { ...c, active: false }); // until the ADS client says it warmed
      s.declare(`cluster.${c.statName}.upstream_cx_active`, 'gauge');
      s.declare(`cluster.${c.statName}.upstream_cx_total`, 'counter');
      added++;
    }
    if (added) s.add('cluster_manager.cluster_added', added);
    if (removed) s.add('cluster_manager.cluster_removed', removed);
    this.applyWarming();
  }

  /**
   * What the ADS client's warming says: dynamic clusters and listeners are active once a version of
   * them warmed (listeners also need the workers started), the rest count as warming.
   */
  private applyWarming(): void {
    const s = this.stats;
    let activeClusters = 0;
    let warmingClusters = 0;
    for (const c of this.xds?.warmingState?.('cluster') ?? []) {
      const dc = this.dynamicClusters.get(c.name);
      if (dc) dc.active = c.active;
      if (c.waitingFor.length > 0) warmingClusters++;
    }
    for (const c of this.dynamicClusters.values()) if (c.active) activeClusters++;
    s.set('cluster_manager.active_clusters', this.clusters.length + activeClusters);
    s.set('cluster_manager.warming_clusters', warmingClusters);
    const workers = this.stateValue === SERVER_STATE.LIVE || this.stateValue === SERVER_STATE.DRAINING;
    let warmingListeners = 0;
    for (const l of this.xds?.warmingState?.('listener') ?? []) {
      const info = this.listeners.find((x) => x.dynamic && x.name === l.name);
      if (info) {
        info.warmed = l.active;
        if (workers) info.active = l.active;
      }
      if (l.waitingFor.length > 0) warmingListeners++;
    }
    s.set('listener_manager.total_listeners_warming', warmingListeners);
    this.refreshDerived();
  }

  private applyListeners(listeners: readonly ListenerSummary[]): void {
    const s = this.stats;
    const next = new Map(listeners.map((l) => [l.name, l]));
    const current = new Map<string, ListenerInfo>();
    let removed = 0;
    for (let i = this.listeners.length - 1; i >= 0; i--) {
      const l = this.listeners[i]!;
      if (!l.dynamic) continue;
      if (next.has(l.name)) current.set(l.name, l);
      else {
        this.listeners.splice(i, 1);
        removed++;
      }
    }
    let added = 0;
    for (const l of listeners) {
      const existing = current.get(l.name);
      if (existing) {
        if (existing.address !== l.address || existing.prefix !== l.prefix) s.add('listener_manager.listener_modified', 1);
        Object.assign(existing, { prefix: l.prefix, address: l.address, direction: l.direction });
        this.declareListener(existing);
        continue;
      }
      // active once warmed and the workers have started (applyWarming, goLive)
      const info: ListenerInfo = { name: l.name, prefix: l.prefix, address: l.address, direction: l.direction, dynamic: true, active: false, warmed: false, stopped: false };
      this.listeners.push(info);
      this.declareListener(info);
      added++;
    }
    if (added) s.add('listener_manager.listener_added', added);
    if (removed) s.add('listener_manager.listener_removed', removed);
    this.applyWarming();
  }

  // ----- state ----------------------------------------------------------------------------

  get state(): number {
    return this.stateValue;
  }

  private setState(value: number): void {
    this.stateValue = value;
    this.stats.set('server.state', value);
    this.stats.set('server.live', value === SERVER_STATE.LIVE ? 1 : 0);
  }

  private hasDynamic(key: 'cds_config' | 'lds_config'): boolean {
    return !!obj(obj(this.deps.bootstrap.json.dynamic_resources)?.[key]);
  }

  private initStats(): void {
    const s = this.stats;
    const o = this.deps.options;
    this.setState(SERVER_STATE.PRE_INITIALIZING);
    s.set('server.concurrency', o.concurrency);
    s.set('server.hot_restart_epoch', o.restartEpoch);
    s.set('server.parent_connections', 0);
    s.set('server.total_connections', 0);
    s.set('server.uptime', 0);
    s.set('server.days_until_first_cert_expiring', 2147483647);
    s.set('server.seconds_until_first_ocsp_response_expiring', 0);
    s.set('server.version', 0);
    s.add('server.static_unknown_fields', this.deps.bootstrap.unknownFieldWarnings.length);
    s.declare('server.dynamic_unknown_fields', 'counter');
    s.declare('server.debug_assertion_failures', 'counter');
    s.declare('server.envoy_bug_failures', 'counter');
    s.declare('listener_manager.workers_started', 'gauge');
    s.declare('listener_manager.listener_stopped', 'counter');
    s.set('listener_manager.total_listeners_active', 0);
    s.set('listener_manager.total_listeners_draining', 0);
    s.set('listener_manager.total_listeners_warming', 0);
    s.set('cluster_manager.active_clusters', this.clusters.length);
    s.set('cluster_manager.warming_clusters', 0);
    s.add('cluster_manager.cluster_added', this.clusters.length);
    for (const key of ['cds', 'lds'] as const) {
      const prefix = key === 'cds' ? 'cluster_manager.cds' : 'listener_manager.lds';
      if (!this.hasDynamic(key === 'cds' ? 'cds_config' : 'lds_config')) continue;
      for (const c of ['update_success', 'update_rejected', 'update_attempt', 'update_failure', 'init_fetch_timeout', 'update_empty']) s.declare(`${prefix}.${c}`, 'counter');
      for (const g of ['version', 'update_time', 'version_text']) s.declare(`${prefix}.${g}`, 'gauge');
    }
    for (const c of this.clusters) {
      // Envoy names cluster stats after alt_stat_name when set (Istio sets `<name>;` for its tag regexes)
      const name = typeof c.alt_stat_name === 'string' && c.alt_stat_name ? c.alt_stat_name : String(c.name);
      s.declare(`cluster.${name}.upstream_cx_active`, 'gauge');
      s.declare(`cluster.${name}.upstream_cx_total`, 'counter');
      s.set(`cluster.${name}.membership_total`, 1);
      s.set(`cluster.${name}.membership_healthy`, 1);
    }
    for (const l of this.listeners) this.declareListener(l);
    s.declare('listener.admin.downstream_cx_active', 'gauge');
    s.declare('listener.admin.downstream_cx_total', 'counter');
    s.declare('http.admin.downstream_rq_total', 'counter');
    this.refreshDerived();
  }

  private declareListener(l: ListenerInfo): void {
    this.stats.declare(`listener.${l.prefix}.downstream_cx_active`, 'gauge');
    this.stats.declare(`listener.${l.prefix}.downstream_cx_total`, 'counter');
    this.stats.declare(`listener.${l.prefix}.downstream_cx_destroy`, 'counter');
  }

  /** Stats Envoy computes itself: uptime, total connections (unless a test set it), admin connections. */
  private refreshDerived(): void {
    const s = this.stats;
    s.set('server.uptime', Math.floor((Date.now() - this.started) / 1000));
    s.set('server.memory_allocated', process.memoryUsage().heapUsed);
    s.set('server.memory_heap_size', process.memoryUsage().heapTotal);
    s.set('listener.admin.downstream_cx_active', this.adminConnections);
    if (!this.totalConnectionsOverridden) {
      let total = 0;
      for (const l of this.listeners) total += s.value(`listener.${l.prefix}.downstream_cx_active`) ?? 0;
      s.set('server.total_connections', total);
    }
    const active = this.listeners.filter((l) => l.active && !l.stopped).length;
    s.set('listener_manager.total_listeners_active', active);
  }

  /**
   * What a successful first CDS + LDS exchange does, then workers start and the server is LIVE. With
   * the ADS client, the exchanges were real (their stats are already counted): only the rest runs.
   */
  goLive(): void {
    if (this.stateValue === SERVER_STATE.LIVE) return;
    const s = this.stats;
    const real = this.xds?.active === true;
    this.setState(SERVER_STATE.INITIALIZING);
    if (real) {
      for (const l of this.listeners) l.active = l.warmed;
      s.add('listener_manager.listener_added', this.listeners.filter((l) => !l.dynamic).length);
      this.deps.log.info('main', 'all dependencies initialized. starting workers');
      s.set('listener_manager.workers_started', 1);
      this.setState(this.healthCheckFailed ? SERVER_STATE.DRAINING : SERVER_STATE.LIVE);
      this.refreshDerived();
      this.deps.recorder.record({ event: 'live' });
      return;
    }
    if (this.hasDynamic('cds_config')) {
      s.add('cluster_manager.cds.update_attempt', 1);
      s.add('cluster_manager.cds.update_success', 1);
      s.set('cluster_manager.cds.update_time', Date.now());
    }
    this.deps.log.info('upstream', 'cm init: all clusters initialized');
    if (this.hasDynamic('lds_config')) {
      s.add('listener_manager.lds.update_attempt', 1);
      s.add('listener_manager.lds.update_success', 1);
      s.set('listener_manager.lds.update_time', Date.now());
    }
    let added = 0;
    for (const l of this.listeners) {
      if (!l.active) {
        l.active = true;
        added++;
      }
    }
    s.add('listener_manager.listener_added', this.listeners.filter((l) => !l.dynamic).length + added);
    this.deps.log.info('main', 'all dependencies initialized. starting workers');
    s.set('listener_manager.workers_started', 1);
    this.setState(this.healthCheckFailed ? SERVER_STATE.DRAINING : SERVER_STATE.LIVE);
    this.refreshDerived();
    this.deps.recorder.record({ event: 'live' });
  }

  private timer(ms: number, fn: () => void, unref = true): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    if (unref) t.unref();
    this.timers.add(t);
  }

  // ----- lifecycle ------------------------------------------------------------------------

  async start(): Promise<void> {
    const { log, options, config } = this.deps;
    log.info('main', `initializing epoch ${options.restartEpoch} (base id=${options.baseId}, hot restart version=${options.disableHotRestart ? 'disabled' : '11.104'})`);
    log.info('main', `envoy stand-in version: ${config.version}`);
    for (const w of this.deps.bootstrap.unknownFieldWarnings) log.warn('misc', w);
    const admin = obj(obj(this.deps.bootstrap.json.admin)?.address);
    if (admin) await this.listenAdmin(admin);
    log.info('config', `loading ${this.clusters.length} cluster(s)`);
    log.info('config', `loading ${this.listeners.filter((l) => !l.dynamic).length} listener(s)`);
    this.xds = connectXdsClients(findXdsTargets(this.deps.bootstrap.json), {
      onCdsUpdate: (r, info) => this.onXdsUpdate('cds', r, info),
      onLdsUpdate: (r, info) => this.onXdsUpdate('lds', r, info),
      onXdsStreamFailure: (apis) => {
        for (const api of apis) {
          const prefix = api === 'cds' ? 'cluster_manager.cds' : 'listener_manager.lds';
          this.stats.add(`${prefix}.update_attempt`, 1);
          this.stats.add(`${prefix}.update_failure`, 1);
        }
      },
      onClustersInitialized: () => {
        this.deps.log.info('upstream', 'cm init: all clusters initialized');
        if (this.stateValue === SERVER_STATE.PRE_INITIALIZING) this.setState(SERVER_STATE.INITIALIZING);
      },
      onInitialized: () => this.goLive(),
      onWarmingChanged: () => this.applyWarming(),
      onInitFetchTimeout: (t) => {
        this.stats.add(`${t.statPrefix}init_fetch_timeout`, 1);
        this.deps.recorder.record({ event: 'init_fetch_timeout', type: t.type, ...(t.name !== undefined ? { name: t.name } : {}), timeoutMs: t.timeoutMs });
      },
      log: (m) => log.log('debug', 'config', m),
    }, process.env, { withhold: config.withhold });
    if (!this.xds.active) this.addSimulatedLdsListeners();
    log.info('main', 'starting main dispatch loop');
    if (options.mode === 'init_only') {
      this.goLive();
      this.deps.exit(0);
    }
    // with the ADS client, real Envoy's init: PRE_INITIALIZING until the first CDS response,
    // INITIALIZING until the first LDS one (see the hooks above), no timer
    if (!this.xds.active) {
      if (config.startState === 'live') this.timer(config.initDelayMs, () => this.goLive());
      else if (config.startState === 'initializing') this.setState(SERVER_STATE.INITIALIZING);
    }
    if (config.exitAfterMs !== undefined) {
      const code = config.exitCode;
      this.timer(config.exitAfterMs, () => this.crash(code), false);
    }
  }

  /** Simulated crash: exit with a code, or die by a signal. */
  crash(code: number | NodeJS.Signals): never {
    this.deps.log.critical('main', `envoy stand-in: simulated crash (${typeof code === 'number' ? `exit code ${code}` : code})`);
    if (typeof code === 'number') return this.deps.exit(code);
    return this.deps.exit(0, code);
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.xds?.close();
    this.server?.close();
    this.server?.closeAllConnections();
  }

  private async listenAdmin(address: Json): Promise<void> {
    const server = http.createServer((req, res) => {
      void this.handle(req, res);
    });
    server.on('connection', (sock) => {
      this.adminConnections++;
      this.stats.add('listener.admin.downstream_cx_total', 1);
      sock.on('close', () => {
        this.adminConnections--;
      });
    });
    this.server = server;
    const sock = obj(address.socket_address);
    const pipe = obj(address.pipe);
    const desc = addressString(address)?.display ?? JSON.stringify(address);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (pipe) {
        const path = String(pipe.path ?? '');
        server.listen(path.startsWith('@') ? `\0${path.slice(1)}` : path, () => resolve());
      } else if (sock) {
        server.listen({ host: String(sock.address ?? '127.0.0.1'), port: Number(sock.port_value ?? 0), exclusive: true }, () => resolve());
      } else reject(new Error(`unsupported admin address ${desc}`));
    }).catch((err: NodeJS.ErrnoException) => {
      const reason = err.code === 'EADDRINUSE' ? 'Address already in use' : err.message;
      throw new Error(`cannot bind '${desc}': ${reason}`, { cause: err });
    });
    const bound = server.address();
    if (bound && typeof bound === 'object') {
      this.adminAddress = bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
    } else this.adminAddress = String(bound ?? desc);
    this.deps.log.info('admin', `admin address: ${this.adminAddress}`);
    if (this.deps.options.adminAddressPath) fs.writeFileSync(this.deps.options.adminAddressPath, this.adminAddress);
  }

  // ----- admin API --------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const qIdx = url.indexOf('?');
    const path = qIdx < 0 ? url : url.slice(0, qIdx);
    const query = parseQuery(qIdx < 0 ? '' : url.slice(qIdx + 1));
    const method = req.method ?? 'GET';
    let reply: Reply;
    if (path.startsWith('/standin/')) {
      try {
        reply = await this.handleStandIn(path, method, query, req);
      } catch (err) {
        reply = { status: 400, body: `${(err as Error).message}\n` };
      }
      this.send(res, reply);
      return;
    }
    this.stats.add('http.admin.downstream_rq_total', 1);
    const handler = this.handlers.find((h) => h.path === path);
    if (!handler) {
      reply = { status: 404, body: `invalid path. admin commands are:\n${this.helpText()}` };
    } else if (handler.mutates && method !== 'POST') {
      this.deps.log.error('admin', `admin path "${handler.path}" mutates state, method=${method} rather than POST`);
      reply = { status: 405, body: `Method ${method} not allowed, POST required.\n` };
    } else {
      try {
        reply = await handler.run(query, req);
      } catch (err) {
        reply = { status: 500, body: `${(err as Error).message}\n` };
      }
    }
    this.stats.add(`http.admin.downstream_rq_${Math.floor(reply.status / 100)}xx`, 1);
    this.deps.recorder.adminCall({ method, path, query, status: reply.status });
    this.send(res, reply);
  }

  private send(res: http.ServerResponse, reply: Reply): void {
    res.writeHead(reply.status, {
      'content-type': reply.contentType ?? 'text/plain; charset=UTF-8',
      'cache-control': 'no-cache, max-age=0',
      'x-content-type-options': 'nosniff',
      server: 'envoy',
    });
    res.end(reply.body, () => reply.after?.());
  }

  private helpText(): string {
    return this.handlers.map((h) => `  ${h.path}: ${h.help}\n`).join('');
  }

  private statsQuery(q: Record<string, string>): RenderQuery | Reply {
    let filter: RegExp | undefined;
    if (q.filter !== undefined && q.filter !== '') {
      try {
        filter = new RegExp(toJsRegexSource(q.filter));
      } catch (err) {
        return { status: 400, body: `Invalid re2 regex: ${(err as Error).message}\n` };
      }
    }
    const type = q.type ?? 'All';
    if (!['All', 'Counters', 'Gauges', 'Histograms', 'TextReadouts'].includes(type)) {
      return { status: 400, body: `invalid &type= param: '${type}'\n` };
    }
    return { usedOnly: 'usedonly' in q, type: type as RenderQuery['type'], ...(filter ? { filter } : {}) };
  }

  private buildHandlers(): Handler[] {
    const json = (body: unknown, status = 200): Reply => ({ status, body: JSON.stringify(body, null, 1) + '\n', contentType: 'application/json' });
    return [
      { path: '/', help: 'Admin home page', mutates: false, run: () => ({ status: 200, body: `<html><body><pre>${this.helpText()}</pre></body></html>\n`, contentType: 'text/html; charset=UTF-8' }) },
      { path: '/certs', help: 'print certs on machine', mutates: false, run: () => json({ certificates: [] }) },
      {
        path: '/clusters', help: 'upstream cluster status', mutates: false,
        run: (q) => {
          // warming clusters are not listed (Envoy shows them in /config_dump only)
          const all = [...this.clusters.map((c) => ({ name: String(c.name), api: false })), ...[...this.dynamicClusters.values()].filter((c) => c.active).map((c) => ({ name: c.name, api: true }))];
          return q.format === 'json'
            ? json({ cluster_statuses: all.map((c) => ({ name: c.name, added_via_api: c.api })) })
            : { status: 200, body: all.map((c) => `${c.name}::observability_name::${c.name}\n${c.name}::added_via_api::${c.api}\n`).join('') };
        },
      },
      { path: '/config_dump', help: 'dump current Envoy configs (experimental)', mutates: false, run: () => json(this.configDump()) },
      { path: '/drain_listeners', help: 'drain listeners', mutates: true, run: (q) => this.drainListeners(q) },
      { path: '/healthcheck/fail', help: 'cause the server to fail health checks', mutates: true, run: () => this.setHealthCheck(true) },
      { path: '/healthcheck/ok', help: 'cause the server to pass health checks', mutates: true, run: () => this.setHealthCheck(false) },
      { path: '/help', help: 'print out list of admin commands', mutates: false, run: () => ({ status: 200, body: `admin commands are:\n${this.helpText()}` }) },
      { path: '/hot_restart_version', help: 'print the hot restart compatibility version', mutates: false, run: () => ({ status: 200, body: this.deps.options.disableHotRestart ? 'disabled' : '11.104' }) },
      {
        path: '/listeners', help: 'print listener info', mutates: false,
        run: (q) => {
          const live = this.listeners.filter((l) => l.active && !l.stopped);
          return q.format === 'json'
            ? json({ listener_statuses: live.map((l) => ({ name: l.name, local_address: { socket_address: { address: l.address.replace(/:\d+$/, ''), port_value: Number(/:(\d+)$/.exec(l.address)?.[1] ?? 0) } } })) })
            : { status: 200, body: live.map((l) => `${l.name}::${l.address}\n`).join('') };
        },
      },
      { path: '/logging', help: 'query/change logging levels', mutates: true, run: (q) => this.logging(q) },
      {
        path: '/memory', help: 'print current allocation/heap usage', mutates: false,
        run: () => {
          const m = process.memoryUsage();
          return json({ allocated: String(m.heapUsed), heap_size: String(m.heapTotal), pageheap_unmapped: '0', pageheap_free: '0', total_thread_cache: '0', total_physical_bytes: String(m.rss) });
        },
      },
      {
        path: '/quitquitquit', help: 'exit the server', mutates: true,
        run: () => ({
          status: 200,
          body: 'OK\n',
          after: () => {
            this.deps.log.info('main', 'shutting down server instance');
            this.deps.log.info('main', 'main dispatch loop exited');
            this.deps.log.info('main', 'exiting');
            this.deps.exit(0);
          },
        }),
      },
      { path: '/ready', help: 'print server state, return 200 if LIVE, otherwise return 503', mutates: false, run: () => ({ status: this.stateValue === SERVER_STATE.LIVE ? 200 : 503, body: `${STATE_NAMES[this.stateValue] ?? 'PRE_INITIALIZING'}\n` }) },
      {
        path: '/reset_counters', help: 'reset all counters to zero', mutates: true,
        run: () => {
          for (const s of this.stats.all()) if (s.kind === 'counter') s.value = 0;
          return { status: 200, body: 'OK\n' };
        },
      },
      { path: '/runtime', help: 'print runtime values', mutates: false, run: () => json({ entries: {}, layers: [] }) },
      { path: '/server_info', help: 'print server version/status information', mutates: false, run: () => json(this.serverInfo()) },
      {
        path: '/stats', help: 'print server stats', mutates: false,
        run: (q) => {
          const sq = this.statsQuery(q);
          if ('status' in sq) return sq;
          this.refreshDerived();
          if (q.format === 'json') return { status: 200, body: this.stats.renderJson(sq), contentType: 'application/json' };
          if (q.format === 'prometheus') return { status: 200, body: this.stats.renderPrometheus(sq) };
          if (q.format !== undefined && q.format !== 'text') return { status: 400, body: `usage: /stats?format=(html|active-html|json|prometheus|text)\n` };
          return { status: 200, body: this.stats.renderText(sq) };
        },
      },
      {
        path: '/stats/prometheus', help: 'print server stats in prometheus format', mutates: false,
        run: (q) => {
          const sq = this.statsQuery(q);
          if ('status' in sq) return sq;
          this.refreshDerived();
          return { status: 200, body: this.stats.renderPrometheus(sq) };
        },
      },
    ];
  }

  private setHealthCheck(fail: boolean): Reply {
    this.healthCheckFailed = fail;
    if (this.stateValue === SERVER_STATE.LIVE || this.stateValue === SERVER_STATE.DRAINING) {
      this.setState(fail || (this.deps.config.drainSetsDraining && this.drainDirection !== 'none') ? SERVER_STATE.DRAINING : SERVER_STATE.LIVE);
    }
    return { status: 200, body: 'OK\n' };
  }

  private drainListeners(q: Record<string, string>): Reply {
    const inboundOnly = 'inboundonly' in q;
    const graceful = 'graceful' in q;
    const skipExit = 'skip_exit' in q;
    if (skipExit && !graceful) return { status: 400, body: 'skip_exit requires graceful\n' };
    const direction = inboundOnly ? 'inbound' : 'all';
    if (graceful) {
      const covered = this.drainDirection === 'all' || this.drainDirection === direction;
      if (covered) return { status: 200, body: 'OK\n' };
      this.drainDirection = direction;
      const draining = this.listeners.filter((l) => l.active && !l.stopped && (!inboundOnly || l.direction === 'INBOUND')).length;
      this.stats.set('listener_manager.total_listeners_draining', draining);
      this.deps.log.info('main', `draining listeners (${inboundOnly ? 'inbound only' : 'all'}), drain time ${this.deps.options.drainTimeS}s, strategy ${this.deps.options.drainStrategy}`);
      this.deps.recorder.record({ event: 'drain', inboundOnly, graceful, skipExit });
      if (this.deps.config.drainSetsDraining && this.stateValue === SERVER_STATE.LIVE) this.setState(SERVER_STATE.DRAINING);
      this.timer(this.deps.options.drainTimeS * 1000, () => {
        this.stats.set('listener_manager.total_listeners_draining', 0);
        if (!skipExit) this.stopListeners(inboundOnly);
      });
    } else {
      this.deps.recorder.record({ event: 'drain', inboundOnly, graceful, skipExit });
      this.stopListeners(inboundOnly);
    }
    return { status: 200, body: 'OK\n' };
  }

  private stopListeners(inboundOnly: boolean): void {
    const stopped: string[] = [];
    for (const l of this.listeners) {
      if (!l.active || l.stopped || (inboundOnly && l.direction !== 'INBOUND')) continue;
      l.stopped = true;
      stopped.push(l.name);
      this.stats.add('listener_manager.listener_stopped', 1);
    }
    this.refreshDerived();
    if (stopped.length) this.deps.recorder.record({ event: 'listeners_stopped', listeners: stopped });
  }

  private logging(q: Record<string, string>): Reply {
    const usage =
      'usage: /logging?<name>=<level> (change single level)\n' +
      'usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n' +
      'usage: /logging?level=<level> (change all levels)\n' +
      'levels: trace debug info warning error critical off\n';
    const keys = Object.keys(q);
    const list = () => 'active loggers:\n' + this.deps.log.entries().map(([n, l]) => `  ${n}: ${l}\n`).join('');
    if (keys.length === 0) return { status: 200, body: list() };
    if (keys.length !== 1) return { status: 404, body: usage };
    const key = keys[0]!;
    if (key === 'paths') {
      for (const item of q.paths!.split(',')) {
        const [name, lvl] = item.split(':');
        const level = normalizeLogLevel(lvl ?? '');
        if (!name || !level || !this.deps.log.set(name, level)) return { status: 404, body: usage };
      }
      return { status: 200, body: list() };
    }
    const level = normalizeLogLevel(q[key]!);
    if (!level) return { status: 404, body: usage };
    if (key === 'level') this.deps.log.setAll(level);
    else if (!this.deps.log.set(key, level)) return { status: 404, body: usage };
    return { status: 200, body: list() };
  }

  private protoJson(typeName: string, value: unknown): unknown {
    const schema = messageSchema(typeName);
    return toJson(schema, parseEnvoyJson(typeName, value), { registry: envoyRegistry(), useProtoFieldName: true, alwaysEmitImplicit: true });
  }

  private serverInfo(): unknown {
    const uptime = `${Math.floor((Date.now() - this.started) / 1000)}s`;
    const node = { ...(obj(this.deps.bootstrap.json.node) ?? {}), user_agent_name: 'envoy' };
    return this.protoJson('envoy.admin.v3.ServerInfo', {
      version: this.deps.config.version,
      state: STATE_NAMES[this.stateValue] ?? 'PRE_INITIALIZING',
      uptime_current_epoch: uptime,
      uptime_all_epochs: uptime,
      hot_restart_version: this.deps.options.disableHotRestart ? 'disabled' : '11.104',
      command_line_options: commandLineOptionsJson(this.deps.options),
      node,
    });
  }

  private configDump(): unknown {
    const now = new Date(this.started).toISOString();
    const b = this.deps.bootstrap.json;
    const staticListeners = ((obj(b.static_resources)?.listeners as Json[] | undefined) ?? []).map((listener) => ({ listener: { '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener', ...listener }, last_updated: now }));
    const staticClusters = this.clusters.map((cluster) => ({ cluster: { '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', ...cluster }, last_updated: now }));
    return this.protoJson('envoy.admin.v3.ConfigDump', {
      configs: [
        { '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump', bootstrap: b, last_updated: now },
        { '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump', static_clusters: staticClusters },
        { '@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump', static_listeners: staticListeners },
      ],
    });
  }

  // ----- test control -----------------------------------------------------------------------

  private async readBody(req: http.IncomingMessage): Promise<string> {
    let body = '';
    for await (const chunk of req) {
      body += String(chunk);
      if (body.length > 1 << 20) throw new Error('request body too large');
    }
    return body;
  }

  /**
   * Test controls, not Envoy behaviour:
   *   POST /standin/stats  {"name": value | {"value": n, "type": "counter"|"gauge"}} -> {"set": [...], "rejected": [...]}
   *        (server.state also drives /ready; setting server.total_connections stops deriving it)
   *   GET  /standin/calls  admin calls received so far [{method, path, query, status, time}]
   *   GET  /standin/secrets  secrets held by the SDS client (ENVOY_STANDIN_SDS=1), keys as digests only
   *   GET  /standin/xds  what the ADS client holds per type (ENVOY_STANDIN_ADS=1)
   *   POST /standin/xds/withhold?type=EDS|RDS|ECDS[&name=N]  keep that resource (default every one of the type) aside as if it had not arrived
   *   POST /standin/xds/release[?type=...[&name=N]]  stop withholding and deliver what was kept aside -> {"released": {type: [names]}}
   *   POST /standin/live   run the LIVE transition now (for ENVOY_STANDIN_START_STATE=pre_init)
   *   POST /standin/exit?code=N | ?signal=SIGABRT   simulate a crash now
   *   GET  /standin/state  {"state", "listeners", "drain"}
   */
  private async handleStandIn(path: string, method: string, q: Record<string, string>, req: http.IncomingMessage): Promise<Reply> {
    const json = (body: unknown): Reply => ({ status: 200, body: JSON.stringify(body) + '\n', contentType: 'application/json' });
    if (path === '/standin/calls' && method === 'GET') return json(this.deps.recorder.calls);
    if (path === '/standin/secrets' && method === 'GET') return json(this.xds?.secrets?.() ?? { enabled: false, secrets: [] });
    if (path === '/standin/xds' && method === 'GET') return json(this.xds?.xds?.() ?? { enabled: false, types: {} });
    if ((path === '/standin/xds/withhold' || path === '/standin/xds/release') && method === 'POST') {
      const xds = this.xds;
      if (!xds?.withhold || !xds.release) return { status: 409, body: 'the ADS client is not running (ENVOY_STANDIN_ADS=1 and an ADS target in the bootstrap)\n' };
      const type = q.type?.toUpperCase();
      if (type !== undefined && type !== 'EDS' && type !== 'RDS' && type !== 'ECDS') throw new Error(`type must be EDS, RDS or ECDS, got "${q.type}"`);
      if (path === '/standin/xds/withhold') {
        if (!type) throw new Error('withhold needs type=EDS|RDS|ECDS');
        xds.withhold(type, [q.name || '*']);
        return json({ withheld: { [type]: [q.name || '*'] } });
      }
      if (q.name !== undefined && !type) throw new Error('release with a name needs its type');
      return json({ released: xds.release(type, q.name ? [q.name] : undefined) });
    }
    if (path === '/standin/state' && method === 'GET') {
      return json({ state: STATE_NAMES[this.stateValue], drain: this.drainDirection, healthCheckFailed: this.healthCheckFailed, listeners: this.listeners });
    }
    if (path === '/standin/live' && method === 'POST') {
      this.goLive();
      return json({ state: STATE_NAMES[this.stateValue] });
    }
    if (path === '/standin/exit' && method === 'POST') {
      const code: number | NodeJS.Signals = q.signal ? (q.signal as NodeJS.Signals) : Number(q.code ?? '1');
      return { status: 200, body: 'OK\n', after: () => this.crash(code) };
    }
    if (path === '/standin/stats' && method === 'POST') {
      const parsed = JSON.parse(await this.readBody(req)) as unknown;
      const body = obj(parsed);
      if (!body) throw new Error('expected a JSON object of stat name -> value');
      const set: string[] = [];
      const rejected: string[] = [];
      for (const [name, raw] of Object.entries(body)) {
        const spec = obj(raw);
        const value = spec ? spec.value : raw;
        const kind: StatKind = spec?.type === 'counter' ? 'counter' : 'gauge';
        if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`stat ${name}: value must be a number`);
        if (name === 'server.state') {
          if (!(value in STATE_NAMES)) throw new Error(`server.state must be 0..3, got ${value}`);
          this.setState(value);
          set.push(name);
          continue;
        }
        if (name === 'server.total_connections') this.totalConnectionsOverridden = true;
        (this.stats.set(name, value, kind) ? set : rejected).push(name);
      }
      this.refreshDerived();
      return json({ set, rejected });
    }
    return { status: 404, body: `unknown stand-in control ${method} ${path}\n` };
  }
}
