// The hello pod's real agent with the Envoy stand-in's SDS client (ENVOY_STANDIN_SDS=1), against a
// development control plane that is both istiod and the CA: for tests of what Envoy receives over
// SDS. The stand-in's events go to <dir>/record.jsonl.

import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { injectedProxy, writeIstiodMounts } from './hello-pod.js';
import { envoyStandInPath } from './paths.js';
import { freePort, killRecordedStandIns, killStarted, runAgent, stopAgent, tempDir, type RunningProcess } from './processes.js';

export interface SdsPod {
  readonly agent: RunningProcess;
  /** The stand-in's admin port (/standin/secrets). */
  readonly adminPort: number;
  readonly record: string;
}

/**
 * Starts `pilot-agent proxy sidecar` in `dir` (the container's `/`); `env` adds to or overrides the
 * pod's, `proxyConfig` to the ProxyConfig's.
 */
export async function startSdsPod(o: { cp: ControlPlane; token: string; dir: string; env?: Record<string, string>; proxyConfig?: Record<string, unknown> }): Promise<SdsPod> {
  const pod = injectedProxy('hello.yaml.injected');
  writeIstiodMounts(o.dir, o.cp.rootCertPem, o.token);
  const adminPort = await freePort();
  const record = join(o.dir, 'record.jsonl');
  const agent = runAgent(pod.args, {
    cwd: o.dir,
    env: {
      ...pod.env,
      CA_ADDR: o.cp.address,
      ISTIOD_SAN: 'istiod.istio-system.svc',
      ENVOY_STANDIN_SDS: '1',
      ENVOY_STANDIN_RECORD: record,
      PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: adminPort, statusPort: 0, discoveryAddress: o.cp.address, terminationDrainDuration: '0s', ...o.proxyConfig }),
      ...o.env,
    },
  });
  return { agent, adminPort, record };
}

/** Stops the agent (SIGTERM) and any stand-in left behind (by the PIDs it recorded). */
export async function stopSdsPod(pod: SdsPod | undefined): Promise<void> {
  if (!pod) return;
  await stopAgent(pod.agent);
  killRecordedStandIns(pod.record);
  killStarted();
}

export interface SdsPods {
  /** The control plane (istiod and CA) of the suite. */
  readonly cp: () => ControlPlane;
  /** The working directory of the current test's pod. */
  readonly dir: () => string;
  /** Starts this test's pod in a fresh temp dir; stopped and removed after the test. */
  start(prefix: string, env?: Record<string, string>, beforeStart?: (dir: string) => void | Promise<void>, proxyConfig?: Record<string, unknown>): Promise<SdsPod>;
}

/** Registers a suite's control plane (token `token`) and per-test pods with vitest's hooks. */
export function useSdsPods(token: string): SdsPods {
  let cp: ControlPlane | undefined;
  let work: ReturnType<typeof tempDir> | undefined;
  let pod: SdsPod | undefined;
  beforeAll(async () => {
    cp = await startControlPlane({ token, log: () => undefined });
  });
  afterAll(async () => {
    await cp?.close();
  });
  afterEach(async () => {
    await stopSdsPod(pod);
    pod = undefined;
    work?.cleanup();
    work = undefined;
  });
  return {
    cp: () => cp!,
    dir: () => work!.path,
    async start(prefix, env = {}, beforeStart, proxyConfig) {
      work = tempDir(prefix);
      await beforeStart?.(work.path);
      pod = await startSdsPod({ cp: cp!, token, dir: work.path, env, ...(proxyConfig ? { proxyConfig } : {}) });
      return pod;
    },
  };
}
