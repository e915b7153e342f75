// The Agent owns the lifecycle of the per-pod components: it starts them in order, and stops them
// in reverse. Start order: workload socket check (an external SDS server there?) -> secret
// manager -> SDS server -> DNS proxy (when on) ->
// xDS proxy (with the Wasm cache behind its ECDS interceptor) -> xDS debug port -> gRPC bootstrap -> Envoy
// bootstrap -> Envoy -> certificate warm-up (the CA fetch, unless Envoy asked first) -> status server.
// `done` settles with the process exit code once everything has stopped.
//
// Lifecycle: new -> starting -> running -> stopping -> stopped. Every way down (a requested stop,
// Envoy exiting by itself, a failed start-up, the process's own fatal error) goes through one
// shutdown, run once: Envoy is never left running behind the agent, and one component failing to
// close does not keep the others open. A stop requested during start-up takes effect at the next
// step, so no component starts after it.

import { rmSync } from 'node:fs';
import { writeEnvoyBootstrap } from '../bootstrap/envoy-bootstrap.js';
import { writeGrpcBootstrap } from '../bootstrap/grpc-bootstrap.js';
import type { AgentConfig } from '../config/load.js';
import { EnvoyAdminClient, knownIstioListeners } from '../envoy/admin-client.js';
import { buildEnvoyArgs, readBootstrapOverride } from '../envoy/envoy-args.js';
import { EnvoyProcess, envoyRunAs, exitCodeFor } from '../envoy/envoy-process.js';
import { dnsServerEnabled, dnsServerOptionsFrom } from '../dns/from-config.js';
import type { LocalDnsServer } from '../dns/server.js';
import { HeldListener } from '../grpc/held-listener.js';
import { SdsServer } from '../sds/server.js';
import { resolveWorkloadSds, type WorkloadSds } from '../sds/workload-socket.js';
import { statusServerOptionsFrom } from '../status/from-config.js';
import { parseStatusInputs } from '../status/inputs.js';
import { StatusServer } from '../status/server.js';
import { grpcGoKeepalive } from '../grpc/keepalive.js';
import { envoyGrpcCipherSuites } from '../security/compliance-policy.js';
import { caIsIstiod, secretManagerOptionsFrom, validateSecurityConfig } from '../security/options.js';
import { proxyConfigTrustHandler } from '../security/proxy-config-trust.js';
import { SecretManager } from '../security/secret-manager.js';
import { sleep } from '../util/backoff.js';
import { lazy } from '../util/lazy.js';
import { MemoryGovernor, memoryLimitFrom } from './memory-governor.js';
import { logger } from '../util/logger.js';
import type { WasmRuntime } from '../wasm/index.js';
import { TypeUrl } from '../xds/type-urls.js';
import { lastKnownGoodStore } from '../xds/last-known-good.js';
import { upstreamOptionsFrom } from '../xds/upstream-options.js';
import { XdsDebugPort } from '../xds/debug-port.js';
import { XdsProxy } from '../xds/xds-proxy.js';
import type { WorkloadHealthChecker } from './workload-health.js';

const log = logger('default');

/** Thrown inside start-up when a stop was requested meanwhile: not a failure. */
class StartAborted extends Error {
  readonly code = 'AGENT_START_ABORTED';
}

/** How long the drain may take when the agent stops because of its own failure. */
const FAILURE_DRAIN_MS = 3000;

type AgentPhase = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

export interface AgentDeps {
  /** Environment handed to Envoy (Istio passes the agent's own). */
  readonly processEnv: NodeJS.ProcessEnv;
  /** --log_as_json: Envoy's bootstrap then asks for JSON access logs too. */
  readonly logAsJson?: boolean;
}

export class Agent {
  private envoy: EnvoyProcess | undefined;
  private xdsProxy: XdsProxy | undefined;
  /** PROXY_XDS_DEBUG_VIA_AGENT: istiod's debug API on localhost:15004. */
  private xdsDebugPort: XdsDebugPort | undefined;
  private secretManager: SecretManager | undefined;
  private sdsServer: SdsServer | undefined;
  private statusServer: StatusServer | undefined;
  /** ProxyConfig readinessProbe: the workload's health, reported to istiod. */
  private workloadHealth: WorkloadHealthChecker | undefined;
  private wasm: WasmRuntime | undefined;
  private dnsServer: LocalDnsServer | undefined;
  /** Sockets bound before Envoy's spawn, until their servers take them (then closed with those). */
  private sdsListener: HeldListener | undefined;
  private xdsListener: HeldListener | undefined;
  private debugListener: HeldListener | undefined;
  /** GOMEMLIMIT or the cgroup limit: watched, and caches dropped under pressure. */
  readonly memory: MemoryGovernor;
  private bootstrapToRemove: string | undefined;
  /** Who serves the workload certificate (decided at start). */
  private workloadSds: WorkloadSds | undefined;
  private phase: AgentPhase = 'new';
  private stopRequested = false;
  private startup: Promise<void> | undefined;
  private shuttingDown: Promise<void> | undefined;
  private resolveDone!: (code: number) => void;
  /** Exit code for the process: 0 after a requested stop, Envoy's status when it ended by itself. */
  readonly done: Promise<number> = new Promise((r) => (this.resolveDone = r));

  constructor(private readonly config: AgentConfig, private readonly deps: AgentDeps) {
    this.memory = new MemoryGovernor(memoryLimitFrom(config.env.GOMEMLIMIT));
  }

  get envoyProcess(): EnvoyProcess | undefined {
    return this.envoy;
  }

  get xds(): XdsProxy | undefined {
    return this.xdsProxy;
  }

  /** Workload certificates (for /debug/certs: summaries(), never keys). */
  get secrets(): SecretManager | undefined {
    return this.secretManager;
  }

  /**
   * Starts every component in order. On failure, stops what started (Envoy included) and rethrows.
   * When a stop is requested meanwhile, resolves once start-up has stopped at the next step.
   */
  async start(): Promise<void> {
    if (this.phase !== 'new') throw new Error(`the agent was already started (${this.phase})`);
    this.phase = 'starting';
    this.startup = this.startComponents();
    try {
      await this.startup;
    } catch (err) {
      if (err instanceof StartAborted) return; // stop() shuts down what started
      // the error itself is the caller's to report (the CLI prints it once, as Istio's cobra does)
      log.info('start-up failed: stopping what started');
      await this.shutdown({ maxDrainMs: 0 });
      throw err;
    }
    if (this.phase === 'starting') this.phase = 'running';
  }

  /** Between start-up steps: ends start-up when a stop was requested or Envoy already exited. */
  private checkpoint(): void {
    if (this.stopRequested || this.shuttingDown) throw new StartAborted('stop requested during start-up');
  }

  /**
   * Start-up, in Istio's order as Envoy sees it: everything Envoy connects to is listening before
   * it is spawned. Configuration is checked and the sockets bound first; the servers behind them
   * start after the spawn, while Envoy starts, and load node:http2 and the other built-ins they
   * need then (util/builtin.ts); held-listener.ts holds what connects meanwhile.
   */
  private async startComponents(): Promise<void> {
    const { config } = this;
    // another SDS server (SPIRE's, say) may own the workload socket: then it serves default and
    // ROOTCA, no CA is asked, and this agent serves file certificates only
    const workloadSds = await resolveWorkloadSds(config);
    this.workloadSds = workloadSds;
    const sdsMode = workloadSds.external ? { externalWorkloadSds: workloadSds.workloadSocket } : {};
    for (const w of validateSecurityConfig(config, sdsMode)) log.warn(w);
    this.checkpoint();
    this.memory.start();
    // parsed first so that bad ISTIO_KUBE_APP_PROBERS / ISTIO_PROMETHEUS_ANNOTATIONS stop start-up
    // before anything runs; the server itself is started last and closed first
    const statusOptions = statusServerOptionsFrom(config, {
      onQuit: () => this.quitNow(),
      onDrain: () => this.drainNow(),
      xdsSyncState: () => this.xdsProxy?.syncState(),
      xdsLastKnownGood: () => this.xdsProxy?.lastKnownGoodView() ?? { enabled: false },
      xdsConnections: () => this.xdsProxy?.connectionsView() ?? [],
      memory: () => ({ ...this.memory.view() }),
      certs: () => this.secretManager?.summaries() ?? [],
      wasm: () => this.wasm?.debugView() ?? { modules: [] },
      // Istio's readiness waits for the first name table while the DNS proxy is on
      dnsReady: () => this.dnsServer?.ready() ?? true,
      ndsz: () => this.dnsServer?.debugTable(),
    });
    const statusInputs = parseStatusInputs(statusOptions);
    // a VM's WorkloadGroup probe: parsed here so that a bad one stops start-up before anything runs
    // (the checker loads only then: pods have none)
    const readinessProbe = config.proxyConfig.readinessProbe;
    const health = readinessProbe === undefined || readinessProbe === null ? undefined : await import('./workload-health.js');
    const workloadProbe = health?.parseReadinessProbe(readinessProbe);
    const secrets = new SecretManager(secretManagerOptionsFrom(config, sdsMode));
    this.secretManager = secrets;
    // the certificate warm-up waits for Envoy's spawn (secrets.warmUp() below): an SDS request that
    // comes first starts the fetch itself
    secrets.start({ warmUp: false });
    // The workload certificate is presented to istiod for mounted certificates (Istio's rule) and,
    // once issued, when istiod is the CA: istiod asks for client certificates and checks them
    // against its own root, so it can identify the proxy by certificate as well as by token. A
    // certificate from another CA is not presented: istiod might not trust its root and would
    // then refuse the connection. PROV_CERT's files, or those FILE_MOUNTED_CERTS' proxyMetadata
    // names, take precedence, as in Istio (upstreamOptionsFrom).
    const presentCertificate = secrets.sources.default === 'file' || caIsIstiod(config);
    const upstream = upstreamOptionsFrom(config, presentCertificate ? () => secrets.clientCertificate() : undefined);
    if (!config.env.DISABLE_ENVOY) {
      this.sdsListener = await HeldListener.unix(workloadSds.listenPath, { name: 'SDS', log: (m) => log.info(m), warn: (m) => log.warn(m) });
      this.checkpoint();
    }
    // before the xDS proxy: it subscribes the name table on Envoy's first LDS request
    if (dnsServerEnabled(config)) {
      const { LocalDnsServer } = await import('../dns/server.js');
      this.checkpoint();
      const dns = await LocalDnsServer.start(dnsServerOptionsFrom(config));
      this.dnsServer = dns;
      this.memory.onPressure(() => dns.dropCaches());
      this.checkpoint();
    }
    this.xdsListener = await HeldListener.unix(config.paths.xdsSocket, { name: 'xDS', log: (m) => log.info(m), warn: (m) => log.warn(m) });
    this.checkpoint();
    const debugHost = config.node.ipv6 ? '::1' : '127.0.0.1';
    if (config.env.PROXY_XDS_DEBUG_VIA_AGENT) {
      try {
        this.debugListener = await HeldListener.tcp(debugHost, config.env.PROXY_XDS_DEBUG_VIA_AGENT_PORT, { name: 'debug', warn: (m) => log.warn(m) });
      } catch (err) {
        throw new Error(`failed to start istio tap server: ${(err as Error).message}`, { cause: err });
      }
      this.checkpoint();
    }
    // the node's warnings (a bad ISTIO_METAJSON_*, ...) are logged once: here when no Envoy
    // bootstrap is built to log them
    if (config.paths.grpcBootstrap) {
      const grpcBootstrap = writeGrpcBootstrap(config, config.env.DISABLE_ENVOY ? { warn: (m) => log.warn(m) } : {});
      log.info(`gRPC xDS bootstrap written to ${grpcBootstrap.path}`);
    } else log.info('GRPC_XDS_BOOTSTRAP is empty: no gRPC xDS bootstrap is written');
    if (config.env.DISABLE_ENVOY) log.info('DISABLE_ENVOY is set: running without Envoy');
    else {
      await this.startEnvoy();
      this.checkpoint();
    }

    if (this.sdsListener) {
      const sds = new SdsServer({ socketPath: workloadSds.listenPath, secrets, filesOnly: workloadSds.external, listener: this.sdsListener });
      this.sdsServer = sds;
      await sds.start();
      this.checkpoint();
    }
    const lastKnownGood = config.env.PROXY_XDS_LAST_KNOWN_GOOD ? lastKnownGoodStore(config) : undefined;
    if (lastKnownGood) this.memory.onPressure(() => lastKnownGood.dropCaches());
    const xds = new XdsProxy({
      socketPath: config.paths.xdsSocket,
      listener: this.xdsListener,
      upstream,
      maxRequestBytes: config.env.ISTIO_GPRC_MAXRECVMSGSIZE,
      serverKeepalive: grpcGoKeepalive(config.env.GRPC_KEEPALIVE_INTERVAL, config.env.GRPC_KEEPALIVE_TIMEOUT, 'server'),
      maxConcurrentStreams: config.env.ISTIO_GPRC_MAXSTREAMS,
      ...(lastKnownGood ? { lastKnownGood } : {}),
    });
    this.xdsProxy = xds;
    if (this.dnsServer) xds.registerHandler(this.dnsServer.nameTableHandler);
    // PROXY_CONFIG_XDS_AGENT: istiod's ProxyConfig adds trust anchors to ROOTCA
    if (config.env.PROXY_CONFIG_XDS_AGENT) xds.registerHandler(proxyConfigTrustHandler(secrets));
    // ECDS: remote Wasm modules are fetched into the cache and handed to Envoy as local files.
    // The Wasm machinery (protos, HTTP/OCI clients) loads with the first ECDS push, not at start.
    // With ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION=false ECDS is relayed untouched, as Istio
    // forwards it (Envoy then fetches remote code itself).
    if (config.env.ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION) {
      xds.registerInterceptor(TypeUrl.ExtensionConfig, {
        intercept: async (message, ctx) => (await this.wasmRuntime()).interceptor.intercept(message, ctx),
      });
    } else {
      log.info('ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION is false: ECDS is relayed to Envoy unconverted');
    }
    await xds.start();
    this.checkpoint();
    if (this.debugListener) {
      const debugPort = new XdsDebugPort({ host: debugHost, port: config.env.PROXY_XDS_DEBUG_VIA_AGENT_PORT, listener: this.debugListener, proxy: xds });
      this.xdsDebugPort = debugPort;
      await debugPort.start();
      this.checkpoint();
    }
    secrets.warmUp();
    const status = new StatusServer(statusOptions, statusInputs);
    await status.start();
    if (this.stopRequested || this.shuttingDown) {
      // the shutdown that began meanwhile did not know this server yet
      await status.close();
      this.checkpoint();
    }
    this.statusServer = status;
    if (health && workloadProbe) {
      const ipv6 = config.node.ipv6;
      const checker = new health.WorkloadHealthChecker({
        probe: workloadProbe,
        defaultHost: config.env.REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION ? 'localhost' : (config.node.ipAddresses[0] ?? 'localhost'),
        httpSourceAddress: ipv6 ? '::6' : '127.0.0.6',
        ...(config.env.DISABLE_ENVOY ? {} : { envoyReady: async () => { const r = await status.checkReadiness(); return r.ready ? undefined : r.reason; } }),
        onChange: (event) => xds.reportHealth(event),
      });
      this.workloadHealth = checker;
      checker.start();
    }
  }

  private async startEnvoy(): Promise<void> {
    const { config } = this;
    const bootstrap = writeEnvoyBootstrap(config, {
      logAsJson: this.deps.logAsJson ?? false,
      // the node's file-credential metadata and the sds-files-grpc cluster (Istio's ServeOnlyFiles)
      customCredentialsFileExists: this.workloadSds?.external ?? false,
      warn: (m) => log.warn(m),
    });
    if (bootstrap.generated) this.bootstrapToRemove = bootstrap.path;
    log.info(`Envoy bootstrap ${bootstrap.generated ? 'written to' : 'taken from customConfigFile'} ${bootstrap.path}`);
    const override = config.envoy.bootstrapOverride ? readBootstrapOverride(config.envoy.bootstrapOverride, config.env.HOST_IP) : '';
    const args = buildEnvoyArgs({ launch: config.envoy, bootstrapPath: bootstrap.path, ipv6: config.node.ipv6, configOverrideJson: override });
    const env = { ...this.deps.processEnv };
    // limit the TLS 1.2 ciphers of Envoy's google_grpc client to compliant ones, as Istio does
    const grpcCiphers = envoyGrpcCipherSuites(config.env.COMPLIANCE_POLICY);
    if (grpcCiphers) env.GRPC_SSL_CIPHER_SUITES = grpcCiphers;
    const envoy = new EnvoyProcess({
      binaryPath: config.envoy.binaryPath,
      args,
      env,
      // the bootstrap refers to Istio's relative paths (./etc/istio/proxy/XDS, ./var/run/secrets/...)
      cwd: config.paths.cwd,
      admin: new EnvoyAdminClient(config.envoy.adminPort, config.node.ipv6 ? '::1' : '127.0.0.1'),
      inboundOnly: config.proxyType === 'sidecar',
      terminationDrainMs: config.envoy.terminationDrainMs,
      exitOnZeroActiveConnections: config.envoy.exitOnZeroActiveConnections,
      minimumDrainMs: config.envoy.minimumDrainMs,
      knownListeners: knownIstioListeners({
        status: Number(config.proxyConfig.statusPort ?? 15020),
        prometheus: config.env.ENVOY_PROMETHEUS_PORT,
        secureMetrics: config.env.ENVOY_SECURE_METRICS_PORT,
        secureMergedMetrics: config.env.ENVOY_SECURE_MERGED_METRICS_PORT,
      }),
      runAs: envoyRunAs(process.getuid?.(), config.env.DNS_PROXY_ADDR),
    });
    this.envoy = envoy;
    // registered before the spawn: an Envoy that dies at once still takes the agent down with it
    void envoy.exited.then(async (exit) => {
      if (!exit.requested) {
        if (exit.code === 0) log.info('Envoy exited normally');
        else log.error(`Envoy exited with error: ${exit.signal ? `signal: ${exit.signal}` : `exit status ${exit.code}`}`);
        if (exit.signal === 'SIGKILL') log.warn('Envoy may have been out of memory killed. Check memory usage and limits.');
      }
      await this.shutdown();
      this.resolveDone(exitCodeFor(exit));
    });
    await envoy.start();
  }

  /** Loaded with the first ECDS push; a failed load is retried by the next push. */
  private readonly wasmRuntime = lazy(async (): Promise<WasmRuntime> => {
    const { createWasmRuntime } = await import('../wasm/index.js');
    this.wasm = createWasmRuntime(this.config);
    return this.wasm;
  });

  /** /quitquitquit on the status port: stop at once, without draining (as Istio). */
  async quitNow(): Promise<void> {
    this.envoy?.skipDrain();
    await this.stop();
  }

  /** /drain on the status port: drain now, make the later stop immediate. */
  async drainNow(): Promise<void> {
    await this.envoy?.drainNow();
  }

  /**
   * Graceful stop (SIGTERM/SIGINT). A second call while the first is draining stops Envoy at once.
   * During start-up: start-up ends at its next step, then what started is stopped.
   */
  async stop(): Promise<void> {
    if (this.stopRequested) {
      log.warn('Termination requested again: stopping at once');
      await this.envoy?.terminate();
      return;
    }
    this.stopRequested = true;
    if (this.phase === 'starting') await this.startup?.catch(() => undefined);
    await this.shutdown();
    if (this.envoy) log.info('Agent has successfully terminated');
    // 0, unless Envoy crashed during the drain, before it was told to stop
    this.resolveDone(this.envoy ? exitCodeFor(await this.envoy.exited) : 0);
  }

  /**
   * The process's last-resort path (an uncaught exception or unhandled rejection): stop Envoy,
   * draining only briefly, close and remove what must not outlive the process. Never rejects.
   */
  async abort(): Promise<void> {
    this.stopRequested = true;
    // start-up stops at its next step; it must not spawn Envoy behind the shutdown
    if (this.phase === 'starting') await Promise.race([this.startup?.catch(() => undefined), sleep(FAILURE_DRAIN_MS, undefined, { keepAlive: true })]);
    // a graceful shutdown already under way may be in a long drain: it gets FAILURE_DRAIN_MS more,
    // then a second terminate() stops Envoy at once
    const envoy = this.envoy;
    const cut = this.shuttingDown ? setTimeout(() => void envoy?.terminate(), FAILURE_DRAIN_MS) : undefined;
    try {
      await this.shutdown({ maxDrainMs: FAILURE_DRAIN_MS });
    } finally {
      clearTimeout(cut);
    }
  }

  /** Synchronous last resort, for the process 'exit' handler: Envoy must not outlive the agent. */
  killEnvoyNow(): void {
    this.envoy?.killNow();
  }

  /** Stops everything, once: status server, Envoy, then the other components in reverse start order. */
  private shutdown(envoyStop: { maxDrainMs?: number } = {}): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.phase = 'stopping';
      this.memory.stop();
      this.workloadHealth?.stop();
      await closeSafely('status server', () => this.statusServer?.close());
      const envoy = this.envoy;
      if (envoy && envoy.state !== 'exited') await closeSafely('Envoy', () => envoy.terminate(envoyStop));
      await this.stopComponents();
      this.cleanup();
      this.phase = 'stopped';
    })();
    return this.shuttingDown;
  }

  /** Stops the non-Envoy components in reverse start order; one failing does not skip the others. */
  private async stopComponents(): Promise<void> {
    const debugPort = this.xdsDebugPort;
    this.xdsDebugPort = undefined;
    await closeSafely('xDS debug port', () => debugPort?.close());
    const xds = this.xdsProxy;
    this.xdsProxy = undefined;
    await closeSafely('xDS proxy', () => xds?.close());
    const wasm = this.wasm;
    this.wasm = undefined;
    await closeSafely('Wasm cache', () => wasm?.close());
    const dns = this.dnsServer;
    this.dnsServer = undefined;
    await closeSafely('DNS proxy', () => dns?.close());
    const sds = this.sdsServer;
    this.sdsServer = undefined;
    await closeSafely('SDS server', () => sds?.close());
    const secrets = this.secretManager;
    this.secretManager = undefined;
    await closeSafely('secret manager', () => secrets?.close());
    // those no server took (a stop during start-up); closing a taken one again does nothing
    const listeners = [this.debugListener, this.xdsListener, this.sdsListener];
    this.debugListener = this.xdsListener = this.sdsListener = undefined;
    for (const l of listeners) await closeSafely(`socket ${l?.path ?? 'listener'}`, () => l?.close());
  }

  private cleanup(): void {
    if (this.bootstrapToRemove) {
      const path = this.bootstrapToRemove;
      this.bootstrapToRemove = undefined;
      try {
        rmSync(path, { force: true });
      } catch (err) {
        log.error(`cannot remove the Envoy bootstrap ${path}: ${(err as Error).message}`);
      }
    }
  }
}

/** Runs one component's close; a failure is logged and does not stop the rest of the shutdown. */
async function closeSafely(what: string, close: () => Promise<unknown> | undefined): Promise<void> {
  try {
    await close();
  } catch (err) {
    log.error(`stopping the ${what} failed: ${(err as Error).stack ?? String(err)}`);
  }
}
