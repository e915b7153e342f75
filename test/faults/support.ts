// Shared set-up for the fault suite: the real `pilot-agent` process in a scratch root, proxyless
// (DISABLE_ENVOY, as Istio's grpc-agent pods run) or with the Envoy stand-in, pointed at a
// control plane the test starts, and helpers that wait for what the agent reports.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, vi } from 'vitest';
import { openSotw } from '../control-plane/index.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { killStarted, runAgent, type RunningProcess } from '../support/processes.js';

export interface ProxylessAgentOptions {
  readonly root: string;
  readonly discoveryAddress: string;
  /** TLS to the control plane with this root; plaintext when absent. */
  readonly rootCertPem?: string;
  readonly token?: string;
  readonly proxyConfig?: Record<string, unknown>;
  readonly env?: Record<string, string>;
}

/** Starts `pilot-agent proxy sidecar` as a proxyless pod runs it; resolves once its xDS socket exists. */
export async function startProxylessAgent(o: ProxylessAgentOptions): Promise<RunningProcess> {
  if (o.rootCertPem) writeIstiodMounts(o.root, o.rootCertPem, o.token ?? 'fault-token');
  const pod = injectedProxy('grpc-agent.yaml.injected');
  const agent = runAgent(pod.args, {
    cwd: o.root,
    env: {
      ...pod.env,
      GRPC_XDS_BOOTSTRAP: './etc/istio/proxy/grpc-bootstrap.json',
      OUTPUT_CERTS: '',
      ISTIOD_SAN: 'istiod.istio-system.svc',
      PROXY_CONFIG: JSON.stringify({
        discoveryAddress: o.discoveryAddress,
        statusPort: 0,
        ...(o.rootCertPem ? {} : { controlPlaneAuthPolicy: 'NONE' }),
        ...o.proxyConfig,
      }),
      ...o.env,
    },
  });
  await vi.waitFor(
    () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited early:\n${agent.output()}`);
      expect(existsSync(xdsSocketOf(o.root))).toBe(true);
    },
    { timeout: 20_000, interval: 50 },
  );
  return agent;
}

export const xdsSocketOf = (root: string): string => join(root, 'etc/istio/proxy/XDS');

/** A fresh SotW client on the agent's XDS socket asks for `typeUrl` and gets `count` resources. */
export async function expectSotwPush(root: string, typeUrl: string, count: number): Promise<void> {
  const client = openSotw({ address: `unix:${xdsSocketOf(root)}`, tls: false });
  try {
    client.request({ type_url: typeUrl });
    const res = await client.next(20_000);
    expect(res.typeUrl).toBe(typeUrl);
    expect(res.resources).toHaveLength(count);
  } finally {
    client.close();
  }
}

/** After a suite: the agent stopped as a pod stops it, then what else it started, the control plane, the scratch root. */
export async function stopSuite(agent: RunningProcess | undefined, cp: { close(): Promise<void> } | undefined, work: { cleanup(): void } | undefined): Promise<void> {
  agent?.child.kill('SIGTERM');
  await agent?.exited;
  killStarted();
  await cp?.close();
  work?.cleanup();
}

/** Fails with the agent's output when it is no longer running. */
export function expectRunning(agent: RunningProcess): void {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) {
    throw new Error(`the agent died (code ${agent.child.exitCode}, signal ${agent.child.signalCode}):\n${agent.output().slice(-4000)}`);
  }
}
