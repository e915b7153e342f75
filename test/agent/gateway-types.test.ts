// `pilot-agent proxy waypoint` and `pilot-agent proxy router` through the real agent, with the
// argv Istio's deployment templates give them (manifests/charts/istio-control/istio-discovery/
// files/waypoint.yaml and kube-gateway.yaml) and the Envoy stand-in, which parses the bootstrap
// strictly (a bootstrap Envoy would reject never reaches LIVE). Istio's expectations:
// - the node ID starts with the node type (pkg/istio-agent/agent.go: type~ip~id~domain);
// - a waypoint always uses Delta xDS and enables metadata discovery (pkg/bootstrap/config.go
//   toTemplateParams, "Waypoint overrides"), whatever ISTIO_DELTA_XDS says;
// - both drain as gateways: every listener, not inbound only (app/cmd.go: Sidecar is
//   `Type == SidecarProxy`; pkg/envoy/proxy.go Drain).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { readRecord, type RecordEvent } from '../envoy-stand-in/recorder.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, isAlive, killStarted, runAgent, tempDir, type RunningProcess } from '../support/processes.js';

let work: ReturnType<typeof tempDir>;
let record: string;

beforeEach(() => {
  work = tempDir('pa-gateway-types-');
  record = join(work.path, 'envoy-record.jsonl');
});
afterEach(() => {
  killStarted();
  for (const ev of readRecord(record)) if (ev.event === 'start' && typeof ev.pid === 'number' && isAlive(ev.pid)) process.kill(ev.pid, 'SIGKILL');
  work.cleanup();
});

/** The downward-API env of a gateway-like deployment in namespace `default`. */
function podEnv(name: string, ip: string): Record<string, string> {
  return {
    POD_NAME: `${name}-6b7c9d5f4-x8k2p`,
    POD_NAMESPACE: 'default',
    INSTANCE_IP: ip,
    SERVICE_ACCOUNT: name,
    ISTIO_META_SERVICE_ACCOUNT: name,
    ISTIO_META_CLUSTER_ID: 'Kubernetes',
    ISTIO_META_INTERCEPTION_MODE: 'REDIRECT',
    ISTIO_META_WORKLOAD_NAME: name,
    ISTIO_META_OWNER: `kubernetes://apis/apps/v1/namespaces/default/deployments/${name}`,
    ISTIO_META_MESH_ID: 'cluster.local',
    TRUST_DOMAIN: 'cluster.local',
    CA_ADDR: 'istiod.istio-system.svc:15012',
    PILOT_CERT_PROVIDER: 'istiod',
  };
}

interface Bootstrap {
  node: { id: string; metadata: Record<string, unknown> };
  dynamic_resources: { ads_config: { api_type: string } };
  bootstrap_extensions?: { name: string; typed_config?: { type_url?: string } }[];
  stats_config: { stats_matcher: { inclusion_list: { patterns: { prefix?: string }[] } } };
}

async function run(args: string[], env: Record<string, string>): Promise<{ agent: RunningProcess; bootstrap: Bootstrap; drains: RecordEvent[] }> {
  // no istiod here: plaintext to an address nothing listens on (the stand-in does not dial ADS)
  const proxyConfig = { binaryPath: envoyStandInPath, proxyAdminPort: await freePort(), statusPort: 0, controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1', terminationDrainDuration: '0s' };
  const agent = runAgent(args, { cwd: work.path, env: { ...env, PROXY_CONFIG: JSON.stringify(proxyConfig), ENVOY_STANDIN_RECORD: record } });
  await vi.waitFor(
    () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited early:\n${agent.output()}`);
      expect(readRecord(record).filter((e) => e.event === 'live')).toHaveLength(1);
    },
    { timeout: 20_000, interval: 50 },
  );
  const bootstrap = JSON.parse(readFileSync(join(work.path, 'etc/istio/proxy/envoy-rev.json'), 'utf8')) as Bootstrap;
  agent.child.kill('SIGTERM');
  expect((await agent.exited).code, agent.output()).toBe(0);
  const drains = readRecord(record).filter((e) => e.event === 'admin' && e.path === '/drain_listeners');
  return { agent, bootstrap, drains };
}

const metadataDiscovery = (b: Bootstrap): boolean => (b.bootstrap_extensions ?? []).some((e) => e.name === 'metadata_discovery' && e.typed_config?.type_url === 'type.googleapis.com/istio.workload.BootstrapExtension');
const statsPrefixes = (b: Bootstrap): string[] => b.stats_config.stats_matcher.inclusion_list.patterns.flatMap((p) => (p.prefix ? [p.prefix] : []));

describe('pilot-agent proxy waypoint', () => {
  const args = ['proxy', 'waypoint', '--domain', 'default.svc.cluster.local', '--serviceCluster', 'waypoint.default', '--proxyLogLevel', 'warning', '--proxyComponentLogLevel', 'misc:error', '--log_output_level', 'default:info'];

  it('runs Envoy as a waypoint node, with Delta xDS and metadata discovery even when ISTIO_DELTA_XDS=false, and drains every listener', { timeout: 60_000 }, async () => {
    const { agent, bootstrap, drains } = await run(args, { ...podEnv('waypoint', '10.244.1.30'), ISTIO_DELTA_XDS: 'false' });
    expect(bootstrap.node.id).toBe('waypoint~10.244.1.30~waypoint-6b7c9d5f4-x8k2p.default~default.svc.cluster.local');
    expect(bootstrap.node.metadata).toMatchObject({
      NAMESPACE: 'default',
      CLUSTER_ID: 'Kubernetes',
      SERVICE_ACCOUNT: 'waypoint',
      WORKLOAD_NAME: 'waypoint',
      OWNER: 'kubernetes://apis/apps/v1/namespaces/default/deployments/waypoint',
      INTERCEPTION_MODE: 'REDIRECT',
      MESH_ID: 'cluster.local',
    });
    expect(bootstrap.dynamic_resources.ads_config.api_type).toBe('DELTA_GRPC');
    expect(metadataDiscovery(bootstrap)).toBe(true);
    expect(statsPrefixes(bootstrap)).toContain('workload_discovery');
    expect(drains.map((d) => d.query)).toEqual([{ graceful: '' }]);
    expect(agent.output()).toMatch(/Proxy role: .*type=waypoint id=waypoint-6b7c9d5f4-x8k2p\.default/);
  });
});

describe('pilot-agent proxy router', () => {
  const args = ['proxy', 'router', '--domain', 'default.svc.cluster.local', '--proxyLogLevel', 'warning', '--proxyComponentLogLevel', 'misc:error', '--log_output_level', 'default:info'];

  it('runs Envoy as a router node, with the xDS protocol ISTIO_DELTA_XDS says and no metadata discovery, and drains every listener', { timeout: 60_000 }, async () => {
    const { bootstrap, drains } = await run(args, { ...podEnv('ingress', '10.244.1.31'), ISTIO_DELTA_XDS: 'false' });
    expect(bootstrap.node.id).toBe('router~10.244.1.31~ingress-6b7c9d5f4-x8k2p.default~default.svc.cluster.local');
    expect(bootstrap.node.metadata).toMatchObject({ NAMESPACE: 'default', WORKLOAD_NAME: 'ingress', SERVICE_ACCOUNT: 'ingress' });
    expect(bootstrap.dynamic_resources.ads_config.api_type).toBe('GRPC');
    expect(metadataDiscovery(bootstrap)).toBe(false);
    expect(drains.map((d) => d.query)).toEqual([{ graceful: '' }]);
  });
});

it('rejects a node type Istio does not run Envoy as here, naming the valid ones', { timeout: 30_000 }, async () => {
  const agent = runAgent(['proxy', 'ztunnel'], { cwd: work.path, env: podEnv('ztunnel', '10.244.1.32') });
  const exit = await agent.exited;
  expect(exit.code).not.toBe(0);
  expect(agent.output()).toContain('invalid proxy type (want sidecar, router, waypoint)');
});
