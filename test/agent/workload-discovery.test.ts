// Workload discovery through the real agent: Istio's xDS proxy relays
// type.googleapis.com/istio.workload.Workload to Envoy besides Envoy's own types (Envoy's peer
// metadata discovery subscribes to it) and drops every other non-Envoy type, e.g. ztunnel's
// istio.workload.Address (pkg/istio-agent/xds_proxy.go forwardToEnvoy, xds_proxy_delta.go
// forwardDeltaToEnvoy). A client on the agent's xDS socket stands in for Envoy, SotW then Delta,
// against the development control plane; the resource bytes must arrive as the control plane sent
// them and the client's ACK must reach the control plane.

import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDelta, openSotw, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { injectedProxy } from '../support/hello-pod.js';
import { runAgent, stopAgent, tempDir, type RunningProcess } from '../support/processes.js';

const WORKLOAD = 'type.googleapis.com/istio.workload.Workload';
const ADDRESS = 'type.googleapis.com/istio.workload.Address';
const NODE = { id: 'sidecar~10.244.1.17~hello.default~default.svc.cluster.local' };
const WORKLOAD_NAME = 'Kubernetes//Pod/default/reviews-v1-5d9c8';

/**
 * An istio.workload.Workload as istiod encodes one (field numbers from Istio's
 * pkg/workloadapi/workload.proto), plus a field no proto declares: it must survive the relay too.
 */
function workloadBytes(uid = WORKLOAD_NAME, hostname = ''): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).string('reviews-v1-5d9c8'); // name
  w.tag(2, WireType.LengthDelimited).string('default'); // namespace
  w.tag(3, WireType.LengthDelimited).bytes(Uint8Array.of(10, 244, 1, 23)); // addresses
  w.tag(6, WireType.LengthDelimited).string('cluster.local'); // trust_domain
  w.tag(7, WireType.LengthDelimited).string('bookinfo-reviews'); // service_account
  w.tag(10, WireType.LengthDelimited).string('reviews'); // canonical_name
  w.tag(11, WireType.LengthDelimited).string('v1'); // canonical_revision
  w.tag(13, WireType.LengthDelimited).string('reviews-v1'); // workload_name
  w.tag(20, WireType.LengthDelimited).string(uid); // uid
  if (hostname) w.tag(21, WireType.LengthDelimited).string(hostname); // hostname
  w.tag(999, WireType.Varint).uint32(7);
  return w.finish();
}

let cp: ControlPlane;
let work: ReturnType<typeof tempDir>;
let agent: RunningProcess;
let socket: string;
const workload = workloadBytes();

beforeAll(async () => {
  work = tempDir('pa-wds-');
  cp = await startControlPlane({ plaintext: true, log: () => undefined });
  cp.setResources(WORKLOAD, [{ name: WORKLOAD_NAME, binary: workload }], { replace: true });
  cp.setResources(ADDRESS, [{ name: 'default/10.244.1.23', binary: Uint8Array.of(0x0a, 0x02, 0x08, 0x01) }], { replace: true });
  const pod = injectedProxy('hello.yaml.injected');
  // xdsproxy at debug level: the log says whether a response was held whole or streamed on
  agent = runAgent([...pod.args, '--log_output_level=default:info,xdsproxy:debug'], {
    cwd: work.path,
    env: {
      ...pod.env,
      DISABLE_ENVOY: 'true',
      PROXY_CONFIG: JSON.stringify({ controlPlaneAuthPolicy: 'NONE', discoveryAddress: cp.address, statusPort: 0 }),
    },
  });
  socket = join(work.path, 'etc/istio/proxy/XDS');
  await vi.waitFor(
    () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
      expect(existsSync(socket)).toBe(true);
    },
    { timeout: 20_000, interval: 50 },
  );
});

afterAll(async () => {
  await stopAgent(agent);
  await cp?.close();
  work?.cleanup();
});

/** Resolves once the control plane has sent `typeUrl` on its newest stream (the agent's upstream). */
async function sentUpstream(typeUrl: string): Promise<void> {
  await vi.waitFor(() => expect(cp.lastStream()?.responses.some((r) => r.typeUrl === typeUrl)).toBe(true), { timeout: 20_000, interval: 50 });
}

describe('istio.workload.Workload through the agent', () => {
  it('SotW: relayed with its bytes untouched and ACKed upstream; Address is dropped', { timeout: 60_000 }, async () => {
    const client = openSotw({ address: `unix:${socket}`, tls: false });
    try {
      // Address first: once the Workload response arrives, an Address relayed before it would be here
      client.request({ type_url: ADDRESS, node: NODE });
      await sentUpstream(ADDRESS);
      client.request({ type_url: WORKLOAD });
      const res = await client.next(20_000);
      expect(res.typeUrl).toBe(WORKLOAD);
      expect(res.versionInfo).toBe(cp.version(WORKLOAD));
      expect(res.resources.map((r) => r.typeUrl)).toEqual([WORKLOAD]);
      expect(Buffer.from(res.resources[0]!.value).equals(Buffer.from(workload))).toBe(true);
      client.ack(res);
      const ack = await cp.waitForAck(WORKLOAD, res.versionInfo, { streamId: cp.lastStream()!.id, timeoutMs: 20_000 });
      expect(ack.nonce).toBe(res.nonce);
      expect(client.received.map((r) => r.typeUrl)).toEqual([WORKLOAD]);
      expect(agent.output()).toContain(`Skipping forwarding type url ${ADDRESS} to Envoy as is not a valid Envoy type`);

      // a push large enough to be streamed on as it arrives (the agent decides from its first bytes)
      const big = workloadBytes('Kubernetes//Pod/default/big', 'h'.repeat(200 * 1024));
      const version = cp.setResources(WORKLOAD, [{ name: 'Kubernetes//Pod/default/big', binary: big }]);
      const push = await client.next(20_000);
      expect(push.versionInfo).toBe(version);
      const byName = new Map(push.resources.map((r) => [Buffer.from(r.value).includes(Buffer.from('/default/big')) ? 'big' : 'first', Buffer.from(r.value)]));
      expect(byName.get('big')?.equals(Buffer.from(big))).toBe(true);
      expect(byName.get('first')?.equals(Buffer.from(workload))).toBe(true);
      client.ack(push);
      await cp.waitForAck(WORKLOAD, version, { streamId: cp.lastStream()!.id, timeoutMs: 20_000 });
      expect(agent.output()).toMatch(/streamed response WDS resources=2 /);
    } finally {
      client.close();
    }
  });

  it('Delta: relayed with its bytes untouched and ACKed upstream; Address is dropped', { timeout: 60_000 }, async () => {
    const client = openDelta({ address: `unix:${socket}`, tls: false });
    try {
      client.request({ type_url: ADDRESS, node: NODE, resource_names_subscribe: ['*'] });
      await vi.waitFor(() => expect(cp.lastStream()?.kind).toBe('delta'), { timeout: 20_000, interval: 50 });
      await sentUpstream(ADDRESS);
      client.request({ type_url: WORKLOAD, resource_names_subscribe: ['*'] });
      const res = await client.next(20_000);
      expect(res.typeUrl).toBe(WORKLOAD);
      // the SotW case added a second workload: every resource the control plane holds arrives
      expect(res.resources.map((r) => r.name).sort()).toEqual(cp.resources(WORKLOAD).map((r) => r.name).sort());
      const first = res.resources.find((r) => r.name === WORKLOAD_NAME);
      expect(first?.resource?.typeUrl).toBe(WORKLOAD);
      expect(Buffer.from(first!.resource!.value).equals(Buffer.from(workload))).toBe(true);
      client.ack(res);
      const ack = await cp.waitForAck(WORKLOAD, undefined, { streamId: cp.lastStream()!.id, timeoutMs: 20_000 });
      expect(ack.nonce).toBe(res.nonce);
      expect(client.received.map((r) => r.typeUrl)).toEqual([WORKLOAD]);
    } finally {
      client.close();
    }
  });
});
