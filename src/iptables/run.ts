// `pilot-agent istio-iptables`: configuration -> rule plan -> applied (or, with --dry-run,
// printed) -> routes -> optional validation. Returns the process exit code: 0, or Istio's 126
// when validation fails; other failures throw and the CLI exits 1 (not its 255 for other
// commands), as Istio's handleErrorWithCode does.

import { readFileSync, writeFileSync } from 'node:fs';
import { applyPlan } from './apply.js';
import type { CaptureConfig } from './config.js';
import { CAPTURE_ENV, captureConfigFrom, type Env, type RawFlagValues } from './flags.js';
import { planCapture } from './plan.js';
import { interfaceAddresses, withPodNetwork } from './pod-network.js';
import { configureRoutes, removeRoutes } from './routes.js';
import { VALIDATION_ERROR_CODE, validateCapture } from './validation.js';
import { DryRunXtables, RealXtables, type Xtables } from './xtables.js';
import { logger } from '../util/logger.js';

const log = logger('default');

export interface IstioIptablesIo {
  readonly env: Env;
  /** where --dry-run prints the recorded commands */
  readonly stdout: (text: string) => void;
}

const VALIDATION_FAILED = `iptables validation failed; workload is not ready for Istio.
When using Istio CNI, this can occur if a pod is scheduled before the node is ready.

If installed with 'cni.repair.deletePods=true', this pod should automatically be deleted and retry.
Otherwise, this pod will need to be manually removed so that it is scheduled on a node with istio-cni running, allowing iptables rules to be established.`;

function logConfig(cfg: CaptureConfig): void {
  const lines = [
    `PROXY_PORT=${cfg.proxyPort}`, `PROXY_INBOUND_CAPTURE_PORT=${cfg.inboundCapturePort}`, `PROXY_TUNNEL_PORT=${cfg.inboundTunnelPort}`,
    `PROXY_UID=${cfg.proxyUID}`, `PROXY_GID=${cfg.proxyGID}`, `INBOUND_INTERCEPTION_MODE=${cfg.inboundInterceptionMode}`,
    `INBOUND_TPROXY_MARK=${cfg.inboundTProxyMark}`, `INBOUND_TPROXY_ROUTE_TABLE=${cfg.inboundTProxyRouteTable}`,
    `INBOUND_PORTS_INCLUDE=${cfg.inboundPortsInclude}`, `INBOUND_PORTS_EXCLUDE=${cfg.inboundPortsExclude}`,
    `OUTBOUND_OWNER_GROUPS_INCLUDE=${cfg.ownerGroupsInclude}`, `OUTBOUND_OWNER_GROUPS_EXCLUDE=${cfg.ownerGroupsExclude}`,
    `OUTBOUND_IP_RANGES_INCLUDE=${cfg.outboundIPRangesInclude}`, `OUTBOUND_IP_RANGES_EXCLUDE=${cfg.outboundIPRangesExclude}`,
    `OUTBOUND_PORTS_INCLUDE=${cfg.outboundPortsInclude}`, `OUTBOUND_PORTS_EXCLUDE=${cfg.outboundPortsExclude}`,
    `KUBE_VIRT_INTERFACES=${cfg.rerouteVirtualInterfaces}`, `ENABLE_INBOUND_IPV6=${cfg.enableIPv6}`, `DUAL_STACK=${cfg.dualStack}`,
    `DNS_CAPTURE=${cfg.redirectDNS}`, `DROP_INVALID=${cfg.dropInvalid}`, `CAPTURE_ALL_DNS=${cfg.captureAllDNS}`,
    `DNS_SERVERS=[${cfg.dnsServersV4.join(' ')}],[${cfg.dnsServersV6.join(' ')}]`, `NETWORK_NAMESPACE=${cfg.networkNamespace}`,
    `CNI_MODE=${cfg.cniMode}`, `EXCLUDE_INTERFACES=${cfg.excludeInterfaces}`, `RECONCILE=${cfg.reconcile}`,
    `CLEANUP_ONLY=${cfg.cleanupOnly}`, `FORCE_APPLY=${cfg.forceApply}`, `FORCE_IPTABLES_BINARY=${cfg.forceIptablesBinary}`,
  ];
  log.info(`Istio config:\n${lines.join('\n')}`);
}

/** Programs the capture (Istio's ProgramIptables): rules, then routes. */
export function programIptables(cfg: CaptureConfig, io: IstioIptablesIo): void {
  let xt: Xtables;
  let dryRun: DryRunXtables | undefined;
  if (cfg.dryRun) {
    log.info('running iptables in dry-run mode, no rule changes will be made');
    xt = dryRun = new DryRunXtables();
  } else {
    xt = new RealXtables({
      forceBinary: cfg.forceIptablesBinary,
      podScopedLockFile: cfg.cniMode && cfg.networkNamespace !== '' ? cfg.networkNamespace : undefined,
      env: io.env,
    });
  }
  try {
    applyPlan(cfg, planCapture(cfg), xt);
  } finally {
    if (dryRun) {
      const text = dryRun.recorded.map((l) => `${l}\n`).join('');
      io.stdout(text);
      const file = io.env[CAPTURE_ENV.dryRunFile];
      if (file) writeFileSync(file, text);
    }
  }
  if (cfg.dryRun) log.info('skipping configuring routes due to dry run mode');
  else if (cfg.cleanupOnly) removeRoutes(cfg);
  else configureRoutes(cfg);
}

export async function runIstioIptables(cli: RawFlagValues, io: IstioIptablesIo): Promise<number> {
  const cfg = withPodNetwork(captureConfigFrom(cli, io.env), {
    envoyUser: io.env[CAPTURE_ENV.envoyUser] ?? 'istio-proxy',
    addresses: () => interfaceAddresses().map((a) => a.address),
    resolvConf: () => readFileSync('/etc/resolv.conf', 'utf8'),
  });
  logConfig(cfg);
  if (!cfg.skipRuleApply) programIptables(cfg, io);
  if (!cfg.runValidation) return 0;
  try {
    await validateCapture({
      ipv6: cfg.hostIP.includes(':'),
      proxyPort: Number(cfg.proxyPort),
      inboundCapturePort: Number(cfg.inboundCapturePort),
      probePort: cfg.iptablesProbePort,
      timeoutMs: cfg.probeTimeoutMs,
    });
    return 0;
  } catch {
    log.error(VALIDATION_FAILED);
    return VALIDATION_ERROR_CODE;
  }
}
