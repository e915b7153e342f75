// OUTPUT_CERTS through the real agent, started as Istio's injector starts a proxyless pod
// (grpc-agent.yaml.injected: DISABLE_ENVOY, OUTPUT_CERTS), with the development control plane as
// istiod and CA. Istio's OutputKeyCertToDir (security/pkg/nodeagent/util/util.go) writes the files
// 0644 when KUBERNETES_SERVICE_HOST is set, so that the pod's other containers (running as other
// users) can read them, and 0600 otherwise.

import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { runAgent, stopAgent, tempDir, type RunningProcess } from '../support/processes.js';

const TOKEN = 'output-certs-token';
const FILES = ['key.pem', 'cert-chain.pem', 'root-cert.pem'];

let cp: ControlPlane;
let work: ReturnType<typeof tempDir> | undefined;
let agent: RunningProcess | undefined;

beforeAll(async () => {
  cp = await startControlPlane({ token: TOKEN, log: () => undefined });
});

afterAll(async () => {
  await cp?.close();
});

afterEach(async () => {
  await stopAgent(agent);
  work?.cleanup();
});

describe.each([
  { where: 'in Kubernetes (KUBERNETES_SERVICE_HOST set)', env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' } as Record<string, string>, mode: 0o644 },
  { where: 'outside Kubernetes', env: {} as Record<string, string>, mode: 0o600 },
])('OUTPUT_CERTS $where', ({ env, mode }) => {
  it(`writes key, chain and root with mode ${mode.toString(8)}`, { timeout: 60_000 }, async () => {
    work = tempDir('pa-output-certs-');
    writeIstiodMounts(work.path, cp.rootCertPem, TOKEN);
    const pod = injectedProxy('grpc-agent.yaml.injected');
    const out = join(work.path, 'var/lib/istio/data');
    const current = runAgent(pod.args, {
      cwd: work.path,
      env: {
        ...pod.env,
        ...env,
        // the fixture's absolute paths, relative to the test's scratch root (the container's /)
        GRPC_XDS_BOOTSTRAP: './etc/istio/proxy/grpc-bootstrap.json',
        OUTPUT_CERTS: './var/lib/istio/data',
        CA_ADDR: cp.address,
        ISTIOD_SAN: 'istiod.istio-system.svc',
        PROXY_CONFIG: JSON.stringify({ discoveryAddress: cp.address, statusPort: 0 }),
      },
    });
    agent = current;
    const modes = (): Record<string, number | undefined> =>
      Object.fromEntries(
        FILES.map((f) => {
          try {
            return [f, statSync(join(out, f)).mode & 0o777];
          } catch {
            return [f, undefined];
          }
        }),
      );
    await vi.waitFor(
      () => {
        if (current.child.exitCode !== null) throw new Error(`agent exited:\n${current.output()}`);
        expect(modes()).toEqual(Object.fromEntries(FILES.map((f) => [f, mode])));
      },
      { timeout: 40_000, interval: 100 },
    );
    expect(cp.ca.calls).toBeGreaterThanOrEqual(1);
  });
});
