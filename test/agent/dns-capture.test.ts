// The real agent with ISTIO_META_DNS_CAPTURE=true: readiness waits for the first name table, the
// table arrives from the development control plane through the agent's own NDS subscription
// (made on the first LDS request of the client on the xDS socket), and `dig` gets answers.

import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { openSotw, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { dig, encodeNameTableWire } from '../dns/support.js';
import { injectedProxy } from '../support/hello-pod.js';
import { freePort, runAgent, stopAgent, tempDir, type RunningProcess } from '../support/processes.js';

const NDS = 'type.googleapis.com/istio.networking.nds.v1.NameTable';
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';
let cp: ControlPlane;
let work: ReturnType<typeof tempDir>;
let agent: RunningProcess;
let dnsPort: number;
let statusPort: number;

beforeAll(async () => {
  work = tempDir('pa-dns-agent-');
  cp = await startControlPlane({ plaintext: true, log: () => undefined });
  cp.setResources(LDS, [], { replace: true });
  dnsPort = await freePort();
  statusPort = await freePort();
  mkdirSync(join(work.path, 'etc'), { recursive: true });
  const pod = injectedProxy('hello.yaml.injected');
  agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      DISABLE_ENVOY: 'true',
      ISTIO_META_DNS_CAPTURE: 'true',
      DNS_PROXY_ADDR: `127.0.0.1:${dnsPort}`,
      PROXY_CONFIG: JSON.stringify({ controlPlaneAuthPolicy: 'NONE', discoveryAddress: cp.address, statusPort }),
    },
  });
});

afterAll(async () => {
  await stopAgent(agent);
  await cp?.close();
  work?.cleanup();
});

it('is not ready until the name table arrives, then answers from it', { timeout: 60_000 }, async () => {
  const ready = (): Promise<{ status: number; body: string }> =>
    fetch(`http://127.0.0.1:${statusPort}/healthz/ready`).then(async (r) => ({ status: r.status, body: await r.text() }), () => ({ status: 0, body: '' }));
  await vi.waitFor(async () => {
    if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
    expect((await ready()).status).toBe(503);
  }, { timeout: 20_000, interval: 100 });
  expect((await ready()).body.toLowerCase()).toContain('dns');

  const version = cp.setResources(NDS, [{ name: 'table', binary: encodeNameTableWire({ 'reviews.default.svc.cluster.local': { ips: ['10.96.0.20'], registry: 'Kubernetes', shortname: 'reviews', namespace: 'default' } }) }], { replace: true });
  // a client's first LDS request through the agent makes it subscribe the name table
  const client = openSotw({ address: `unix:${join(work.path, 'etc/istio/proxy/XDS')}`, tls: false });
  try {
    client.request({ type_url: LDS, node: { id: 'sidecar~10.244.1.17~hello.default~default.svc.cluster.local' } });
    await cp.waitForAck(NDS, version, { timeoutMs: 20_000 });
    await vi.waitFor(async () => expect((await ready()).status).toBe(200), { timeout: 20_000, interval: 100 });
    const full = await dig('127.0.0.1', dnsPort, ['reviews.default.svc.cluster.local', 'A']);
    expect(full.status).toBe('NOERROR');
    expect(full.answers.map((a) => a.data)).toEqual(['10.96.0.20']);
    const short = await dig('127.0.0.1', dnsPort, ['reviews', 'A']);
    expect(short.answers.map((a) => a.data)).toContain('10.96.0.20');
    // Envoy never sees the agent's own type
    for (const r of client.received) expect(r.typeUrl).not.toBe(NDS);
  } finally {
    client.close();
  }
});
