// Which user Envoy runs as. Istio's agent, when it runs as root with a DNS_PROXY_ADDR ending in
// ":53" (its way of serving DNS on port 53 without iptables capture), starts Envoy as the proxy
// user 1337:1337, whose traffic the capture rules let through; otherwise Envoy runs as the agent's
// user. Through the real agent and the Envoy stand-in, which records the uid and gid it runs with,
// and which must still read the bootstrap and reach both sockets as that user.

import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { envoyRunAs, ISTIO_PROXY_USER } from '../../src/envoy/envoy-process.js';
import { startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, runAgent, stopAgentAndStandIns, type RunningProcess, tempDir } from '../support/processes.js';

const TOKEN = 'envoy-user-token';
const isRoot = process.getuid?.() === 0;

describe('envoyRunAs (Istio: AgentIsRoot = uid 0 and DNS_PROXY_ADDR ending in ":53")', () => {
  it.each([
    [0, '127.0.0.1:53', ISTIO_PROXY_USER],
    [0, ':53', ISTIO_PROXY_USER],
    [0, '[::]:53', ISTIO_PROXY_USER],
    [0, 'localhost:15053', undefined],
    [0, '127.0.0.1:5353', undefined],
    [1337, '127.0.0.1:53', undefined],
    [undefined, ':53', undefined],
  ])('agent uid %s, DNS_PROXY_ADDR %j', (uid, addr, want) => {
    expect(envoyRunAs(uid, addr)).toEqual(want);
  });
});

describe.skipIf(!isRoot)('the agent running as root', () => {
  let cp: ControlPlane;
  let work: ReturnType<typeof tempDir> | undefined;
  let agent: RunningProcess | undefined;

  beforeAll(async () => {
    cp = await startControlPlane({ token: TOKEN, log: () => undefined });
  });
  afterAll(async () => {
    await cp.close();
  });
  afterEach(async () => {
    await stopAgentAndStandIns(agent, work);
  });

  /** Starts the hello pod's agent; returns the stand-in's start record once it has its workload certificate over SDS. */
  async function startAndWaitForCertificate(env: Record<string, string>): Promise<{ uid: unknown; gid: unknown }> {
    work = tempDir('pa-envoy-user-');
    // a pod's /etc/istio/proxy is readable by the proxy user; the temp root is 0700 by default
    chmodSync(work.path, 0o755);
    writeIstiodMounts(work.path, cp.rootCertPem, TOKEN);
    const record = join(work.path, 'record.jsonl');
    writeFileSync(record, '', { mode: 0o666 });
    chmodSync(record, 0o666);
    const pod = injectedProxy('hello.yaml.injected');
    const a = runAgent(pod.args, {
      cwd: work.path,
      env: {
        ...pod.env,
        ...env,
        CA_ADDR: cp.address,
        ENVOY_STANDIN_ADS: '1',
        ENVOY_STANDIN_SDS: '1',
        ENVOY_STANDIN_RECORD: record,
        PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: await freePort(), statusPort: 0, discoveryAddress: cp.address, terminationDrainDuration: '0s' }),
      },
    });
    agent = a;
    const streamsBefore = cp.streams().length;
    await vi.waitFor(
      () => {
        if (a.child.exitCode !== null) throw new Error(`agent exited:\n${a.output()}`);
        // over SDS and ADS, through the sockets the agent made, as the user Envoy runs as
        expect(readRecord(record).some((e) => e.event === 'sds' && e.name === 'default')).toBe(true);
        expect(cp.streams().length).toBeGreaterThan(streamsBefore);
      },
      { timeout: 40_000, interval: 100 },
    );
    const start = readRecord(record).find((e) => e.event === 'start');
    expect(start).toBeDefined();
    return { uid: start!.uid, gid: start!.gid };
  }

  it('with DNS_PROXY_ADDR on port 53 runs Envoy as 1337:1337, which still gets its certificate and config', { timeout: 60_000 }, async () => {
    expect(await startAndWaitForCertificate({ DNS_PROXY_ADDR: '127.0.0.1:53' })).toEqual({ uid: 1337, gid: 1337 });
    expect(agent!.output()).toContain('Envoy runs as uid 1337, gid 1337');
  });

  it('with the default DNS_PROXY_ADDR runs Envoy as the agent user', { timeout: 60_000 }, async () => {
    expect(await startAndWaitForCertificate({})).toEqual({ uid: 0, gid: 0 });
    expect(agent!.output()).not.toContain('Envoy runs as uid');
  });
});
