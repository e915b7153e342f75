// The Agent owns the lifecycle of the per-pod components: it starts them in order, and stops them
// in reverse. Start order: secret manager -> SDS server -> DNS proxy (when on) ->
// xDS proxy (with the Wasm cache behind its ECDS interceptor) -> gRPC bootstrap -> Envoy
// bootstrap -> Envoy -> status server.
// `done` settles with the process exit code once everything has stopped.

import { rmSync } from 'node:fs';
import { writeEnvoyBootstrap } from '../bootstrap/envoy-bootstrap.js';
import { writeGrpcBootstrap } from '../bootstrap/grpc-bootstrap.js';
import type { AgentConfig } from '../config/load.js';
import { EnvoyAdminClient, knownIstioListeners } from '../envoy/admin-client.js';
import { buildEnvoyArgs, readBootstrapOverride } from '../envoy/envoy-args.js';
import { EnvoyProcess, exitCodeFor } from '../envoy/envoy-process.js';
import { dnsServerEnabled, dnsServerOptionsFrom } from '../dns/from-config.js';
import type { LocalDnsServer } from '../dns/server.js';
import { SdsServer } from '../sds/server.js';
import { StatusServer, statusServerOptionsFrom } from '../status/index.js';
import { caIsIstiod, secretManagerOptionsFrom, validateSecurityConfig } from '../security/options.js';
import { SecretManager } from '../security/secret-manager.js';
import { logger } from '../util/logger.js';
import type { WasmRuntime } from '../wasm/index.js';
import { TypeUrl } from '../xds/type-urls.js';
import { upstreamOptionsFrom } from '../xds/upstream.js';
import { XdsProxy } from '../xds/xds-proxy.js';

const log = logger('default');

export interface AgentDeps {
  /** Environment handed to Envoy (Istio passes the agent's own). */
  readonly processEnv: NodeJS.ProcessEnv;
  /** --log_as_json: Envoy's bootstrap then asks for JSON access logs too. */
  readonly logAsJson?: boolean;
}

export class Agent {
  private envoy: EnvoyProcess | undefined;
  private xdsProxy: XdsProxy | undefined;
  private secretManager: SecretManager | undefined;
  private sdsServer: SdsServer | undefined;
  private statusServer: StatusServer | undefined;
  private wasm: WasmRuntime | undefined;
  private dnsServer: LocalDnsServer | undefined;
  private bootstrapToRemove: string | undefined;
  private stopping = false;
  private resolveDone!: (code: number) => void;
  /** Exit code for the process: 0 after a requested stop, Envoy's status when it ended by itself. */
  readonly done: Promise<number> = new Promise((r) => (this.resolveDone = r));

  constructor(private readonly config: AgentConfig, private readonly deps: AgentDeps) {}

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

  /** Starts every component in order; on failure, stops those already started and rethrows. */
  async start(): Promise<void> {
    try {
      await this.startComponents();
    } catch (err) {
      await this.stopComponents();
      this.cleanup();
      throw err;
    }
  }

  private async startComponents(): Promise<void> {
    const { config } = this;
    validateSecurityConfig(config);
    // built first so that bad ISTIO_KUBE_APP_PROBERS / ISTIO_PROMETHEUS_ANNOTATIONS stop start-up
    // before anything runs; started last, closed first
    const status = new StatusServer(
      statusServerOptionsFrom(config, {
        onQuit: () => this.quitNow(),
        onDrain: () => this.drainNow(),
        xdsSyncState: () => this.xdsProxy?.syncState(),
        certs: () => this.secretManager?.summaries() ?? [],
        wasm: () => this.wasm?.debugView() ?? { modules: [] },
        // Istio's readiness waits for the first name table while the DNS proxy is on
        dnsReady: () => this.dnsServer?.ready() ?? true,
        ndsz: () => this.dnsServer?.debugTable(),
      }),
    );
    const secrets = new SecretManager(secretManagerOptionsFrom(config));
    this.secretManager = secrets;
    secrets.start(); // returns at once: default and ROOTCA warm up in the background
    if (!config.env.DISABLE_ENVOY) {
      const sds = new SdsServer({ socketPath: config.paths.sdsSocket, secrets });
      this.sdsServer = sds;
      await sds.start();
    }
    // before the xDS proxy: it subscribes the name table on Envoy's first LDS request
    if (dnsServerEnabled(config)) {
      const { LocalDnsServer } = await import('../dns/server.js');
      this.dnsServer = await LocalDnsServer.start(dnsServerOptionsFrom(config));
    }
    // The workload certificate is presented to istiod for mounted certificates (Istio's rule) and,
    // once issued, when istiod is the CA: istiod asks for client certificates and checks them
    // against its own root, so it can identify the proxy by certificate as well as by token. A
    // certificate from another CA is not presented: istiod might not trust its root and would
    // then refuse the connection.
    const presentCertificate = secrets.sources.default === 'file' || caIsIstiod(config);
    const clientCert = presentCertificate ? () => secrets.clientCertificate() : undefined;
    const xds = new XdsProxy({ socketPath: config.paths.xdsSocket, upstream: upstreamOptionsFrom(config, clientCert) });
    this.xdsProxy = xds;
    if (this.dnsServer) xds.registerHandler(this.dnsServer.nameTableHandler);
    // ECDS: remote Wasm modules are fetched into the cache and handed to Envoy as local files.
    // The Wasm machinery (protos, HTTP/OCI clients) loads with the first ECDS push, not at start.
    xds.registerInterceptor(TypeUrl.ExtensionConfig, {
      intercept: async (message, ctx) => (await this.wasmRuntime()).interceptor.intercept(message, ctx),
    });
    await xds.start();
    const grpcBootstrap = writeGrpcBootstrap(config);
    log.info(`gRPC xDS bootstrap written to ${grpcBootstrap.path}`);
    if (config.env.DISABLE_ENVOY) log.info('DISABLE_ENVOY is set: running without Envoy');
    else await this.startEnvoy();
    this.statusServer = status;
    await status.start();
  }

  private async startEnvoy(): Promise<void> {
    const { config } = this;
    const bootstrap = writeEnvoyBootstrap(config, { logAsJson: this.deps.logAsJson ?? false, warn: (m) => log.warn(m) });
    if (bootstrap.generated) this.bootstrapToRemove = bootstrap.path;
    log.info(`Envoy bootstrap ${bootstrap.generated ? 'written to' : 'taken from customConfigFile'} ${bootstrap.path}`);
    const override = config.envoy.bootstrapOverride ? readBootstrapOverride(config.envoy.bootstrapOverride, config.env.HOST_IP) : '';
    const args = buildEnvoyArgs({ launch: config.envoy, bootstrapPath: bootstrap.path, ipv6: config.node.ipv6, configOverrideJson: override });
    const env = { ...this.deps.processEnv };
    if (config.env.COMPLIANCE_POLICY === 'fips-140-2' || config.env.COMPLIANCE_POLICY === 'fips-140-3') {
      // limit the TLS 1.2 ciphers of Envoy's google_grpc client to compliant ones, as Istio does
      env.GRPC_SSL_CIPHER_SUITES = 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384';
    }
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
    });
    this.envoy = envoy;
    await envoy.start();
    void envoy.exited.then(async (exit) => {
      if (!exit.requested) {
        if (exit.code === 0) log.info('Envoy exited normally');
        else log.error(`Envoy exited with error: ${exit.signal ? `signal: ${exit.signal}` : `exit status ${exit.code}`}`);
        if (exit.signal === 'SIGKILL') log.warn('Envoy may have been out of memory killed. Check memory usage and limits.');
      }
      await this.stopComponents();
      this.cleanup();
      this.resolveDone(exitCodeFor(exit));
    });
  }

  private wasmLoading: Promise<WasmRuntime> | undefined;

  private wasmRuntime(): Promise<WasmRuntime> {
    this.wasmLoading ??= import('../wasm/index.js').then((m) => (this.wasm = m.createWasmRuntime(this.config)));
    return this.wasmLoading;
  }

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
   * Graceful stop. A second call while the first is draining stops Envoy at once.
   */
  async stop(): Promise<void> {
    if (this.stopping) {
      log.warn('Termination requested again: stopping at once');
      if (this.envoy) await this.envoy.terminate();
      return;
    }
    this.stopping = true;
    await this.statusServer?.close();
    if (this.envoy) {
      // the exit handler registered in start() stops the other components and settles `done`
      await this.envoy.terminate();
      log.info('Agent has successfully terminated');
    } else {
      await this.stopComponents();
      this.cleanup();
      this.resolveDone(0);
    }
  }

  /** Stops the non-Envoy components in reverse start order. Idempotent. */
  private async stopComponents(): Promise<void> {
    await this.statusServer?.close();
    const xds = this.xdsProxy;
    this.xdsProxy = undefined;
    await xds?.close();
    const wasm = this.wasmLoading;
    this.wasmLoading = undefined;
    this.wasm = undefined;
    await (await wasm)?.close();
    const dns = this.dnsServer;
    this.dnsServer = undefined;
    await dns?.close();
    const sds = this.sdsServer;
    this.sdsServer = undefined;
    await sds?.close();
    const secrets = this.secretManager;
    this.secretManager = undefined;
    await secrets?.close();
  }

  private cleanup(): void {
    if (this.bootstrapToRemove) {
      rmSync(this.bootstrapToRemove, { force: true });
      this.bootstrapToRemove = undefined;
    }
  }
}
