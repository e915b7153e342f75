// /healthz/ready: Istio's readiness checks (pilot/cmd/pilot-agent/status/ready, grpcready and the
// agent's DNS check), in Istio's order:
//   1. Envoy accepted its first CDS and LDS update (cached once seen, as Istio does);
//   2. Envoy's server.state is LIVE and its workers have started;
//   3. the gRPC xDS bootstrap file loads (cached), and the certificate files it names exist;
//   4. the DNS proxy has its name table, when DNS is on.
// Unlike Istio, step 2 is not cached after the first success: a server.state of DRAINING (health
// check failed, hot restart) makes readiness fail again instead of being hidden. But once Envoy was
// LIVE, an admin API that fails or is slow to answer (a main thread busy with a large push, CPU
// throttling) does not fail readiness: Istio would not ask at all and the kubelet's probe goes
// through Envoy's worker threads, so the answer after ADMIN_STALE_AFTER_MS is the state Envoy last
// reported, while the call goes on in the background. The first success records
// istio_agent_startup_duration_seconds.

import { existsSync, readFileSync } from 'node:fs';
import { EnvoyAdminClient, parseEnvoyStats } from '../envoy/admin-client.js';
import { logger } from '../util/logger.js';
import { statusMetrics } from './metrics.js';

const log = logger('default');

export const UPDATE_STATS_FILTER = '^(cluster_manager\\.cds|listener_manager\\.lds)\\.(update_success|update_rejected)$';
export const READY_STATS_FILTER = '^(server\\.state|listener_manager\\.workers_started)';
/** Istio's readinessTimeout for the Envoy admin stats call. */
const ADMIN_TIMEOUT_MS = 3000;
/** Once Envoy was LIVE: how long a readiness answer waits for the admin API before using the last state. */
const ADMIN_STALE_AFTER_MS = 500;

const SERVER_STATES = ['LIVE', 'DRAINING', 'PRE_INITIALIZING', 'INITIALIZING'] as const;

export function serverStateName(state: number): string {
  return SERVER_STATES[state] ?? 'UNKNOWN';
}

export interface UpdateStats {
  readonly cdsSuccess: number;
  readonly cdsRejected: number;
  readonly ldsSuccess: number;
  readonly ldsRejected: number;
}

export function describeUpdates(s: UpdateStats): string {
  return `cds updates: ${s.cdsSuccess} successful, ${s.cdsRejected} rejected; lds updates: ${s.ldsSuccess} successful, ${s.ldsRejected} rejected`;
}

export interface ReadinessOptions {
  /** Envoy admin API host (127.0.0.1 or ::1) and port. */
  readonly adminHost: string;
  readonly adminPort: number;
  /** DISABLE_ENVOY: no Envoy checks. */
  readonly noEnvoy: boolean;
  /** gRPC xDS bootstrap path; checked when set. */
  readonly grpcBootstrapPath?: string | undefined;
  /** When DNS is on: whether the DNS proxy has its name table. */
  readonly dnsReady?: (() => boolean) | undefined;
  /** When the agent started, on the performance.now() clock (startup_duration_seconds is measured from it). */
  readonly startedAt: number;
}

interface EnvoyState {
  /** Whether the admin API answered (a failure is then Envoy's own state, not the call's). */
  readonly answered: boolean;
  readonly failure: string | undefined;
}

export type ReadinessResult = { readonly ready: true } | { readonly ready: false; readonly reason: string };

export class Readiness {
  private configReceived = false;
  private admin: EnvoyAdminClient | undefined;
  private recordedStartup = false;
  private grpcBootstrap: { paths: string[] } | undefined;
  private inflight: Promise<ReadinessResult> | undefined;
  private lastReady: boolean | undefined;
  private terminated: string | undefined;
  /** Envoy was LIVE with workers started at least once. */
  private envoyWasLive = false;
  /** Once LIVE: why Envoy's last answered state is not ready (undefined: LIVE). */
  private lastEnvoyFailure: string | undefined;
  /** Once LIVE: the admin call in progress, shared by the answers that wait on it. */
  private envoyRefresh: Promise<EnvoyState> | undefined;

  constructor(private readonly opts: ReadinessOptions) {}

  /** After this, every check fails with "server is terminated" (Istio's cancelled context). */
  terminate(cause: string): void {
    this.terminated ??= cause;
  }

  /** Runs the checks; concurrent callers share one run. Logs only on a ready/not-ready transition. */
  check(): Promise<ReadinessResult> {
    this.inflight ??= this.run().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async run(): Promise<ReadinessResult> {
    let reason: string | undefined;
    try {
      reason = await this.firstFailure();
    } catch (err) {
      reason = (err as Error).message;
    }
    const ready = reason === undefined;
    if (ready !== this.lastReady) {
      if (ready) log.info('Envoy proxy is ready');
      else log.warn(`Envoy proxy is NOT ready: ${reason}`);
    } else if (!ready) {
      log.debug(`Envoy proxy is NOT ready: ${reason}`);
    }
    this.lastReady = ready;
    return ready ? { ready } : { ready, reason: reason! };
  }

  private async firstFailure(): Promise<string | undefined> {
    if (!this.opts.noEnvoy) {
      const config = await this.checkConfigStatus();
      if (config) return config;
      const envoy = await this.checkEnvoyReady();
      if (envoy) return envoy;
    }
    if (this.opts.grpcBootstrapPath) {
      const grpc = this.checkGrpcBootstrap(this.opts.grpcBootstrapPath);
      if (grpc) return grpc;
    }
    if (this.opts.dnsReady && !this.opts.dnsReady()) {
      return 'istio DNS capture is turned ON and DNS lookup table is not ready yet';
    }
    if (this.terminated) return `server is terminated: ${this.terminated}`;
    if (!this.recordedStartup) {
      this.recordedStartup = true;
      const seconds = (performance.now() - this.opts.startedAt) / 1000;
      statusMetrics.startupDuration.set(seconds);
      log.info(`Readiness succeeded in ${seconds.toFixed(3)}s`);
    }
    return undefined;
  }

  private adminStats(filter: string): Promise<string> {
    this.admin ??= new EnvoyAdminClient(this.opts.adminPort, this.opts.adminHost);
    return this.admin.stats(`usedonly&filter=${encodeURIComponent(filter)}`, ADMIN_TIMEOUT_MS);
  }

  private async checkConfigStatus(): Promise<string | undefined> {
    if (this.configReceived) return undefined;
    const stats = parseEnvoyStats(await this.adminStats(UPDATE_STATS_FILTER));
    const s: UpdateStats = {
      cdsSuccess: stats.get('cluster_manager.cds.update_success') ?? 0,
      cdsRejected: stats.get('cluster_manager.cds.update_rejected') ?? 0,
      ldsSuccess: stats.get('listener_manager.lds.update_success') ?? 0,
      ldsRejected: stats.get('listener_manager.lds.update_rejected') ?? 0,
    };
    const cds = s.cdsSuccess > 0;
    const lds = s.ldsSuccess > 0;
    if (cds && lds) {
      this.configReceived = true;
      return undefined;
    }
    if (!cds && !lds) return `config not received from XDS server (is Istiod running?): ${describeUpdates(s)}`;
    if (s.cdsRejected > 0 || s.ldsRejected > 0) return `config received from XDS server, but was rejected: ${describeUpdates(s)}`;
    return `config not fully received from XDS server: ${describeUpdates(s)}`;
  }

  private async checkEnvoyReady(): Promise<string | undefined> {
    if (this.terminated) return `server is terminated: ${this.terminated}`;
    if (!this.envoyWasLive) {
      const first = await this.readEnvoyState();
      if (first.failure === undefined) this.envoyWasLive = true;
      return first.failure;
    }
    this.envoyRefresh ??= this.readEnvoyState().then((s) => {
      this.envoyRefresh = undefined;
      if (s.answered) this.lastEnvoyFailure = s.failure;
      return s;
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ADMIN_STALE_AFTER_MS)));
    const fresh = await Promise.race([this.envoyRefresh, late]).finally(() => clearTimeout(timer));
    return fresh?.answered ? fresh.failure : this.lastEnvoyFailure;
  }

  /** Envoy's server.state and workers: why it is not ready (undefined: ready), and whether the admin API answered at all. */
  private async readEnvoyState(): Promise<EnvoyState> {
    try {
      return { answered: true, failure: envoyStateFailure(await this.adminStats(READY_STATS_FILTER)) };
    } catch (err) {
      return { answered: false, failure: `failed to get readiness stats: ${(err as Error).message}` };
    }
  }

  /** grpcready: the bootstrap loads once (then cached); file_watcher certificate files must exist. */
  private checkGrpcBootstrap(path: string): string | undefined {
    if (!this.grpcBootstrap) {
      try {
        const json = JSON.parse(readFileSync(path, 'utf8')) as { certificate_providers?: Record<string, { plugin_name?: unknown; config?: Record<string, unknown> }> };
        const paths: string[] = [];
        for (const provider of Object.values(json.certificate_providers ?? {})) {
          if (provider?.plugin_name !== 'file_watcher') continue;
          for (const key of ['certificate_file', 'private_key_file', 'ca_certificate_file']) {
            const p = provider.config?.[key];
            if (typeof p === 'string' && p !== '') paths.push(p);
          }
          break;
        }
        this.grpcBootstrap = { paths };
      } catch (err) {
        return `failed loading ${path}: ${(err as Error).message}`;
      }
    }
    for (const p of this.grpcBootstrap.paths) if (!existsSync(p)) return `${p} does not exist`;
    return undefined;
  }
}

/** Why Envoy's readiness stats say it is not ready; undefined when LIVE with workers started. */
function envoyStateFailure(text: string): string | undefined {
  const stats = parseEnvoyStats(text);
  const state = stats.get('server.state');
  if (state === undefined) return `server.state is not yet updated: ${text.trim()}`;
  const workers = stats.get('listener_manager.workers_started');
  if (workers === undefined) return `listener_manager.workers_started is not yet updated: ${text.trim()}`;
  if (state !== 0) return `server is not live, current state is: ${serverStateName(state)}`;
  if (workers !== 1) return 'workers have not yet started';
  return undefined;
}
