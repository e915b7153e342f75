// The Agent owns the lifecycle of the per-pod components: it starts them in order, and stops them
// in reverse. Start order (the ones not built yet are marked): secret manager* -> SDS server* ->
// xDS proxy* -> gRPC bootstrap* -> Envoy bootstrap -> Envoy -> status server*.
// `done` settles with the process exit code once everything has stopped.

import { rmSync } from 'node:fs';
import { writeEnvoyBootstrap } from '../bootstrap/envoy-bootstrap.js';
import type { AgentConfig } from '../config/load.js';
import { EnvoyAdminClient, knownIstioListeners } from '../envoy/admin-client.js';
import { buildEnvoyArgs, readBootstrapOverride } from '../envoy/envoy-args.js';
import { EnvoyProcess, exitCodeFor } from '../envoy/envoy-process.js';
import { logger } from '../util/logger.js';

const log = logger('default');

export interface AgentDeps {
  /** Environment handed to Envoy (Istio passes the agent's own). */
  readonly processEnv: NodeJS.ProcessEnv;
}

export class Agent {
  private envoy: EnvoyProcess | undefined;
  private bootstrapToRemove: string | undefined;
  private stopping = false;
  private resolveDone!: (code: number) => void;
  /** Exit code for the process: 0 after a requested stop, Envoy's status when it ended by itself. */
  readonly done: Promise<number> = new Promise((r) => (this.resolveDone = r));

  constructor(private readonly config: AgentConfig, private readonly deps: AgentDeps) {}

  get envoyProcess(): EnvoyProcess | undefined {
    return this.envoy;
  }

  async start(): Promise<void> {
    const { config } = this;
    if (config.env.DISABLE_ENVOY) {
      log.info('DISABLE_ENVOY is set: running without Envoy');
      return;
    }
    const bootstrap = writeEnvoyBootstrap(config);
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
    try {
      await envoy.start();
    } catch (err) {
      this.cleanup();
      throw err;
    }
    void envoy.exited.then((exit) => {
      if (!exit.requested) {
        if (exit.code === 0) log.info('Envoy exited normally');
        else log.error(`Envoy exited with error: ${exit.signal ? `signal: ${exit.signal}` : `exit status ${exit.code}`}`);
        if (exit.signal === 'SIGKILL') log.warn('Envoy may have been out of memory killed. Check memory usage and limits.');
      }
      this.cleanup();
      this.resolveDone(exitCodeFor(exit));
    });
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
    if (this.envoy) {
      await this.envoy.terminate();
      log.info('Agent has successfully terminated');
    } else {
      this.cleanup();
      this.resolveDone(0);
    }
  }

  private cleanup(): void {
    if (this.bootstrapToRemove) {
      rmSync(this.bootstrapToRemove, { force: true });
      this.bootstrapToRemove = undefined;
    }
  }
}
