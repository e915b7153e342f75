// The xDS proxy between a real gRPC ADS client on the unix socket and the development control
// plane over TLS with a bearer token: pass-through, ACK/NACK, metadata, failure propagation,
// agent-consumed types, interceptors, large pushes, and no leaks.

import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs/minimal.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDelta, openSotw, resourceNames, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { repoRoot } from '../support/paths.js';
import { SOTW } from '../../src/xds/protocol.js';
import { registry } from '../../src/metrics/registry.js';
import { XdsProxy, type AgentTypeHandler } from '../../src/xds/xds-proxy.js';
import { XdsDebugPort } from '../../src/xds/debug-port.js';
import type { UpstreamOptions } from '../../src/xds/upstream-options.js';

const controlPlaneMain = join(repoRoot, 'dist-test/test/control-plane/main.js');
const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const ECDS = 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig';
// dynamic ProxyConfig: an agent-consumed type for which the control plane stores nothing unless told (it answers the name table with an empty one)
const AGENT_TYPE = 'type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig';

let cp: ControlPlane;
let dir: string;
let proxy: XdsProxy | undefined;
const TOKEN = 'test-token-123';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pa-xds-'));
  cp = await startControlPlane({ token: TOKEN });
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
});
afterAll(async () => {
  await cp.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  cp.disconnectAll();
});

function upstream(over: Partial<UpstreamOptions> = {}): UpstreamOptions {
  return {
    address: cp.address,
    tls: { rootCa: () => Buffer.from(cp.rootCertPem), serverName: 'istiod.istio-system.svc' },
    tokenPath: join(dir, 'token'),
    clusterId: 'Kubernetes',
    headers: { 'X-Tenant': 'blue' },
    ...over,
  };
}

async function startProxy(over: Partial<UpstreamOptions> = {}): Promise<{ proxy: XdsProxy; target: { address: string; tls: false } }> {
  const socketPath = join(dir, `XDS-${Math.random().toString(36).slice(2)}`);
  proxy = new XdsProxy({ socketPath, upstream: upstream(over) });
  await proxy.start();
  return { proxy, target: { address: `unix:${socketPath}`, tls: false } };
}

function cluster(name: string): { json: unknown } {
  return { json: { '@type': CDS, name, type: 'EDS', eds_cluster_config: { eds_config: { ads: {} } }, connect_timeout: '1s' } };
}

/** A Cluster with an extra field number the Envoy protos do not define: survives only if never decoded. */
function clusterWithUnknownField(name: string): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | 2).string(name); // name
  w.uint32((9999 << 3) | 2).string('opaque-bytes-from-a-newer-istiod'); // unknown field 9999
  return w.finish();
}

describe('xDS proxy (SotW)', () => {
  it('passes responses through byte for byte and ACKs upstream, with token, ClusterID and XDS_HEADER metadata', async () => {
    const { target } = await startProxy();
    const binary = clusterWithUnknownField('outbound|80||a.default.svc.cluster.local');
    const version = cp.setResources(CDS, [{ name: 'outbound|80||a.default.svc.cluster.local', binary }], { replace: true });
    const client = openSotw(target);
    try {
      client.request({ type_url: CDS, node: { id: 'sidecar~10.0.0.1~a.default~default.svc.cluster.local' } });
      const res = await client.next();
      expect(res.typeUrl).toBe(CDS);
      expect(res.resources).toHaveLength(1);
      expect(Buffer.from(res.resources[0]!.value).equals(Buffer.from(binary))).toBe(true);
      client.ack(res);
      await cp.waitForAck(CDS, version);
      const stream = cp.connectedStreams()[0]!;
      expect(stream.metadata.authorization).toEqual([`Bearer ${TOKEN}`]);
      expect(stream.metadata.clusterid).toEqual(['Kubernetes']);
      expect(stream.metadata['x-tenant']).toEqual(['blue']);
      expect((stream.node as { id: string }).id).toBe('sidecar~10.0.0.1~a.default~default.svc.cluster.local');
      const sync = proxy!.syncState().get(CDS)!;
      expect(sync).toMatchObject({ lastVersion: version, lastResources: 1, lastAck: 'ACK' });
    } finally {
      client.close();
    }
  });

  it("forwards Envoy's NACK upstream unchanged", async () => {
    const { target } = await startProxy();
    cp.setResources(CDS, [cluster('c1')], { replace: true });
    const client = openSotw(target);
    try {
      client.request({ type_url: CDS });
      const res = await client.next();
      client.nack(res, 'cluster c1: bad config');
      const nack = await cp.waitForNack(CDS);
      expect(nack.errorDetail?.message).toBe('cluster c1: bad config');
      await vi.waitFor(() => expect(proxy!.syncState().get(CDS)!.lastAck).toBe('NACK'), { timeout: 10_000 });
    } finally {
      client.close();
    }
  });

  it('ends the downstream stream with the upstream status so Envoy reconnects, and counts it', async () => {
    const { target } = await startProxy();
    cp.setResources(CDS, [cluster('c1')], { replace: true });
    const client = openSotw(target);
    client.request({ type_url: CDS });
    await client.next();
    const stream = await cp.waitForStream();
    cp.disconnect(stream.id, grpc.status.UNAVAILABLE, 'istiod restarting');
    const st = await client.status;
    expect(st.code).toBe(grpc.status.UNAVAILABLE);
    expect(st.details).toContain('istiod restarting');
    client.close();
  });

  it('fails the downstream with UNAVAILABLE when istiod cannot be reached', async () => {
    const { target } = await startProxy({ address: '127.0.0.1:1' });
    const client = openSotw(target);
    client.request({ type_url: CDS });
    const st = await client.status;
    expect(st.code).toBe(grpc.status.UNAVAILABLE);
    expect(st.details).toBe('connect ECONNREFUSED 127.0.0.1:1'); // the cause, not a wrapper's words
    client.close();
  });

  it('refuses an istiod whose certificate does not name the expected server, counted as Istio counts it', async () => {
    // Istio's dial does not block: a handshake that fails ends the stream, a termination with
    // error; istiod_connection_failures counts only dial options that could not be built
    const failuresBefore = await counter('istio_agent_istiod_connection_failures');
    const errorsBefore = await counter('istio_agent_istiod_connection_terminations', { type: 'error' });
    const { target } = await startProxy({ tls: { rootCa: () => Buffer.from(cp.rootCertPem), serverName: 'istiod.other-namespace.svc' } });
    const client = openSotw(target);
    client.request({ type_url: CDS });
    const st = await client.status;
    expect(st.code).toBe(grpc.status.UNAVAILABLE);
    expect(st.details).toContain('istiod.other-namespace.svc');
    expect(cp.connectedStreams()).toHaveLength(0);
    expect(await counter('istio_agent_istiod_connection_failures')).toBe(failuresBefore);
    expect(await counter('istio_agent_istiod_connection_terminations', { type: 'error' })).toBe(errorsBefore + 1);
    client.close();
  });

  it('cancels the upstream stream when Envoy goes away, counting both ends as cancelled as Istio does', async () => {
    const { target } = await startProxy();
    cp.setResources(CDS, [cluster('outbound|80||cancel.default.svc.cluster.local')], { replace: true });
    const client = openSotw(target);
    client.request({ type_url: CDS });
    await client.next(); // istiod has answered: the agent knows its upstream is connected
    expect(cp.connectedStreams()).toHaveLength(1);
    const cancelled = { type: 'cancelled' };
    const [envoyBefore, istiodBefore] = [await counter('istio_agent_envoy_connection_terminations', cancelled), await counter('istio_agent_istiod_connection_terminations', cancelled)];
    client.close();
    await vi.waitFor(() => expect(cp.connectedStreams()).toHaveLength(0), { timeout: 10_000 });
    await vi.waitFor(() => expect(proxy!.connections).toBe(0), { timeout: 10_000 });
    expect(await counter('istio_agent_envoy_connection_terminations', cancelled)).toBe(envoyBefore + 1);
    expect(await counter('istio_agent_istiod_connection_terminations', cancelled)).toBe(istiodBefore + 1);
  });

  it('keeps one active downstream stream: a new one replaces the old', async () => {
    const { target } = await startProxy();
    const first = openSotw(target);
    first.request({ type_url: CDS });
    await cp.waitForStream();
    await vi.waitFor(() => expect(first.received.length).toBeGreaterThan(0));
    const [istiodCancelled, envoyCancelled] = [await counter('istio_agent_istiod_connection_terminations', { type: 'cancelled' }), await counter('istio_agent_envoy_connection_terminations', { type: 'cancelled' })];
    const second = openSotw(target);
    second.request({ type_url: CDS });
    const st = await first.status;
    expect(st.code).toBe(grpc.status.OK);
    // both ends of the replaced stream count as cancelled, as Istio's stop channel ends them
    expect(await counter('istio_agent_istiod_connection_terminations', { type: 'cancelled' })).toBe(istiodCancelled + 1);
    expect(await counter('istio_agent_envoy_connection_terminations', { type: 'cancelled' })).toBe(envoyCancelled + 1);
    await vi.waitFor(() => expect(cp.connectedStreams()).toHaveLength(1), { timeout: 10_000 });
    expect(proxy!.connections).toBe(1);
    first.close();
    second.close();
  });

  it('drops types Envoy does not know, forwarding nothing', async () => {
    const { target } = await startProxy();
    const odd = 'type.googleapis.com/istio.example.v1.Unknown';
    cp.setResources(odd, [{ name: 'x', binary: new Uint8Array([10, 1, 120]) }], { replace: true });
    const client = openSotw(target);
    try {
      client.request({ type_url: odd });
      expect(await client.expectNone(500)).toBe(true);
    } finally {
      client.close();
    }
  });

  it('subscribes agent-consumed types on the first LDS request, consumes them and ACKs or NACKs itself', async () => {
    const { target, proxy: p } = await startProxy();
    const seen: string[] = [];
    let fail = false;
    const handler: AgentTypeHandler = {
      typeUrl: AGENT_TYPE,
      handle: (resources, version) => {
        if (fail) throw new Error('bad name table');
        seen.push(`${version}:${resources.length}`);
      },
    };
    p.registerHandler(handler);
    const v1 = cp.setResources(AGENT_TYPE, [{ name: 'table', binary: new Uint8Array([10, 0]) }], { replace: true });
    cp.setResources(LDS, [], { replace: true });
    const requestsBefore = await counter('istio_agent_xds_proxy_requests');
    const client = openSotw(target);
    try {
      client.request({ type_url: LDS });
      await cp.waitForAck(AGENT_TYPE, v1);
      expect(seen).toEqual([`${v1}:1`]);
      // every request istiod received is counted, the agent's subscription and ACK included (as Istio)
      expect(await counter('istio_agent_xds_proxy_requests')).toBe(requestsBefore + cp.connectedStreams()[0]!.requests.length);
      expect(cp.connectedStreams()[0]!.requests.length).toBeGreaterThanOrEqual(3);
      fail = true;
      cp.setResources(AGENT_TYPE, [{ name: 'table', binary: new Uint8Array([10, 2, 8, 1]) }], { replace: true });
      const nack = await cp.waitForNack(AGENT_TYPE);
      expect(nack.errorDetail?.message).toBe('bad name table');
      // an empty response to an agent type is neither handled nor ACKed (Istio's types are singletons)
      fail = false;
      const stream = (): ReturnType<typeof cp.connectedStreams>[number] => cp.connectedStreams()[0]!;
      const agentRequests = (): number => stream().requests.filter((r) => r.typeUrl === AGENT_TYPE).length;
      const asked = agentRequests();
      cp.setResources(AGENT_TYPE, [], { replace: true });
      await vi.waitFor(() => expect(stream().responses.some((r) => r.typeUrl === AGENT_TYPE && r.resourceCount === 0)).toBe(true));
      await new Promise((r) => setTimeout(r, 300));
      expect(agentRequests()).toBe(asked);
      expect(seen).toEqual([`${v1}:1`]);
      // Envoy never saw the agent's type
      for (const r of client.received) expect(r.typeUrl).not.toBe(AGENT_TYPE);
    } finally {
      client.close();
    }
  });

  it("reports the workload's health to istiod (istio.io/health) after the first LDS request, on each change and on every new stream, as Istio", async () => {
    const { target, proxy: p } = await startProxy();
    const HEALTH = 'type.googleapis.com/istio.v1.HealthInformation';
    const healthRequests = (): { error?: string }[] =>
      cp.connectedStreams().flatMap((st) => st.requests.filter((r) => r.typeUrl === HEALTH).map((r) => (r.errorDetail ? { error: r.errorDetail.message } : {})));
    p.reportHealth({ healthy: true });
    const client = openSotw(target);
    try {
      client.request({ type_url: CDS });
      await cp.waitForStream();
      await new Promise((r) => setTimeout(r, 200));
      expect(healthRequests()).toEqual([]); // not before Envoy's first LDS request
      client.request({ type_url: LDS });
      await vi.waitFor(() => expect(healthRequests()).toEqual([{}]));
      p.reportHealth({ healthy: false, message: 'status code was not from [200,400), bad code 503' });
      await vi.waitFor(() => expect(healthRequests()).toEqual([{}, { error: 'status code was not from [200,400), bad code 503' }]));
    } finally {
      client.close();
    }
    // a new stream (Envoy reconnected) is told the last state once its LDS request went
    await vi.waitFor(() => expect(cp.connectedStreams()).toHaveLength(0), { timeout: 10_000 });
    const again = openSotw(target);
    try {
      again.request({ type_url: LDS });
      await vi.waitFor(() => expect(healthRequests()).toEqual([{ error: 'status code was not from [200,400), bad code 503' }]));
    } finally {
      again.close();
    }
  });

  it('rewrites ECDS off the read path, as Istio: other types pass a slow rewrite; a NACK reports the last ACKed version', async () => {
    const { target, proxy: p } = await startProxy();
    let mode: 'slow' | 'nack' = 'slow';
    // the rewrite of wasm-a v1 waits until the CDS push has reached the client (a Wasm server that
    // takes its time): before, every other type waited behind it
    let cdsArrived: () => void = () => undefined;
    const cdsSeen = new Promise<void>((r) => (cdsArrived = r));
    const rewritten: string[] = [];
    p.registerInterceptor(ECDS, {
      intercept: async (message, ctx) => {
        if (mode === 'nack') return { kind: 'nack', reason: 'wasm: malformed config' };
        if (rewritten.length === 0) await cdsSeen;
        rewritten.push(ctx.summary.version);
        return { kind: 'forward', message };
      },
    });
    const ext = (name: string, value = name): { json: unknown } => ({
      json: { '@type': ECDS, name, typed_config: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value } },
    });
    const v1 = cp.setResources(ECDS, [ext('wasm-a')], { replace: true });
    cp.setResources(CDS, [cluster('c1')], { replace: true });
    const client = openSotw(target);
    try {
      client.request({ type_url: ECDS, resource_names: ['wasm-a'] });
      await vi.waitFor(() => expect(p.connectionsView()[0]?.rewrites).toBe(1));
      client.request({ type_url: CDS });
      const first = await client.next();
      expect(first.typeUrl).toBe(CDS);
      cdsArrived();
      const second = await client.next();
      expect(second.typeUrl).toBe(ECDS);
      expect(rewritten).toEqual([v1]);
      client.ack(first);
      client.ack(second, ['wasm-a']);
      await cp.waitForAck(ECDS, v1);
      mode = 'nack';
      cp.setResources(ECDS, [ext('wasm-a', 'v2 of wasm-a')], { replace: true });
      const nack = await cp.waitForNack(ECDS);
      expect(nack.errorDetail?.message).toBe('wasm: malformed config');
      const lastReq = cp.connectedStreams()[0]!.lastRequestByType[ECDS] as { versionInfo?: string; version_info?: string };
      expect(lastReq.versionInfo ?? lastReq.version_info).toBe(v1);
    } finally {
      client.close();
    }
  });

  it("/debug/syncz takes Envoy's ACK or NACK for the last response only when it names that response's nonce", async () => {
    const { proxy: p } = await startProxy();
    p.noteResponse({ typeUrl: CDS, version: 'v1', nonce: 'n1', resourceCount: 1 }, 10, 'held');
    p.noteResponse({ typeUrl: CDS, version: 'v2', nonce: 'n2', resourceCount: 1 }, 10, 'held');
    p.noteRequest(CDS, false, 'n1'); // the ACK of the previous push
    expect(p.syncState().get(CDS)).toMatchObject({ lastVersion: 'v2', lastAck: 'pending' });
    p.noteRequest(CDS, true, 'n2');
    expect(p.syncState().get(CDS)).toMatchObject({ lastVersion: 'v2', lastAck: 'NACK' });
  });

  it('applies backpressure: a paused Envoy stops the proxy from pulling more pushes from istiod', { timeout: 90_000 }, async () => {
    const { target, proxy: p } = await startProxy();
    const payload = (i: number): Uint8Array => {
      const w = protobuf.Writer.create();
      w.uint32((1 << 3) | 2).string('big');
      w.uint32((9999 << 3) | 2).bytes(new Uint8Array(1024 * 1024).fill(i));
      return w.finish();
    };
    cp.setResources(CDS, [{ name: 'big', binary: payload(0) }], { replace: true });
    // a raw client whose reading we control, as a stuck Envoy would behave
    const client = new grpc.Client(target.address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
    const call = client.makeBidiStreamRequest(SOTW.method, (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b);
    const received: Buffer[] = [];
    call.on('data', (b: Buffer) => received.push(b));
    call.on('error', () => undefined);
    call.write(SOTW.encodeRequest({ typeUrl: CDS, responseNonce: '' }));
    await vi.waitFor(() => expect(received.length).toBe(1), { timeout: 10_000 });
    const pulledBefore = await responsesPulled();
    call.pause();
    for (let i = 1; i <= 60; i++) {
      cp.setResources(CDS, [{ name: 'big', binary: payload(i) }], { replace: true });
      await new Promise((r) => setTimeout(r, 5)); // one push per change (the control plane batches a tick)
    }
    // the control plane has handed all 60 pushes to its stream, and the proxy has stopped reading
    // istiod's stream because the client does not read: from then on nothing more can be pulled
    await vi.waitFor(
      () => {
        expect(cp.connectedStreams()[0]!.responseCount).toBeGreaterThanOrEqual(61);
        expect(p.connectionsView()[0]?.pausedFor).toContain('envoy-slow');
      },
      { timeout: 30_000, interval: 20 },
    );
    // 60 pushes of 1 MB were sent. The paused test client itself still buffers up to 16 messages
    // (grpc-js' readable highWaterMark) before its HTTP/2 window closes; beyond those and the
    // proxy's own two, the proxy must not have taken more off istiod's stream.
    const pulled = (await responsesPulled()) - pulledBefore;
    expect(pulled).toBeLessThanOrEqual(16 + 2 + 4);
    call.resume();
    await vi.waitFor(() => expect(p.syncState().get(CDS)!.responses).toBe(61), { timeout: 30_000 });
    await vi.waitFor(() => expect(received.length).toBe(61), { timeout: 30_000 });
    // in order: the last one Envoy gets is the last one pushed
    expect(received[60]!.includes(Buffer.alloc(4096, 60))).toBe(true);
    call.cancel();
    client.close();
  });

  it('a rewrite that ends while a large push is being streamed to Envoy is written after that push, never inside it', { timeout: 60_000 }, async () => {
    const { target, proxy: p } = await startProxy();
    const ext = { json: { '@type': ECDS, name: 'wasm-b', typed_config: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'b' } } };
    let streamingSeen = 0;
    p.registerInterceptor(ECDS, {
      intercept: async (message) => {
        // finish exactly while the CDS push is half-way through the proxy
        for (;;) {
          if (p.connectionsView()[0]?.streaming) break;
          await new Promise((r) => setImmediate(r));
        }
        streamingSeen++;
        return { kind: 'forward', message };
      },
    });
    const big = new Uint8Array(40 * 1024 * 1024).fill(0x62);
    const w = protobuf.Writer.create();
    w.uint32((1 << 3) | 2).string('big');
    w.uint32((9999 << 3) | 2).bytes(big);
    cp.setResources(ECDS, [ext], { replace: true });
    cp.setResources(CDS, [{ name: 'big', binary: w.finish() }], { replace: true });
    const client = openSotw(target);
    try {
      client.request({ type_url: ECDS, resource_names: ['wasm-b'] });
      await vi.waitFor(() => expect(p.connectionsView()[0]?.rewrites).toBe(1));
      client.request({ type_url: CDS });
      const first = await client.next(30_000);
      const second = await client.next(30_000);
      expect(streamingSeen).toBe(1);
      expect([first.typeUrl, second.typeUrl]).toEqual([CDS, ECDS]);
      expect(first.resources[0]!.value.length).toBeGreaterThan(40 * 1024 * 1024);
      expect(second.resources).toHaveLength(1);
    } finally {
      client.close();
    }
  });

  it('delivers a push larger than 64 MiB both ways through the socket', { timeout: 120_000 }, async () => {
    const { target } = await startProxy();
    const big = new Uint8Array(70 * 1024 * 1024).fill(0x61);
    const w = protobuf.Writer.create();
    w.uint32((1 << 3) | 2).string('huge');
    w.uint32((9999 << 3) | 2).bytes(big);
    cp.setResources(CDS, [{ name: 'huge', binary: w.finish() }], { replace: true });
    const client = openSotw(target);
    try {
      client.request({ type_url: CDS });
      const res = await client.next(60_000);
      expect(res.resources[0]!.value.length).toBeGreaterThan(70 * 1024 * 1024);
      expect(proxy!.largestMessageBytes).toBeGreaterThan(64 * 1024 * 1024);
    } finally {
      client.close();
    }
  });
});

describe('xDS proxy (Delta)', () => {
  it('passes Delta responses and ACKs through', async () => {
    const { target } = await startProxy();
    cp.setResources(CDS, [cluster('d1'), cluster('d2')], { replace: true });
    const client = openDelta(target);
    try {
      client.request({ type_url: CDS, node: { id: 'sidecar~10.0.0.2~b.default~default.svc.cluster.local' } });
      const res = await client.next();
      expect(res.resources.map((r) => r.name).sort()).toEqual(['d1', 'd2']);
      client.ack(res);
      await vi.waitFor(() => expect(cp.acks(CDS).length).toBeGreaterThanOrEqual(1), { timeout: 10_000 });
      cp.removeResources(CDS, ['d2']);
      const removal = await client.next();
      expect(removal.removedResources).toEqual(['d2']);
    } finally {
      client.close();
    }
  });

  it('NACKs an agent-consumed Delta type with the reason', async () => {
    const { target, proxy: p } = await startProxy();
    p.registerHandler({
      typeUrl: AGENT_TYPE,
      handle: () => {
        throw new Error('table rejected');
      },
    });
    cp.setResources(AGENT_TYPE, [{ name: 'table', binary: new Uint8Array([10, 0]) }], { replace: true });
    const client = openDelta(target);
    try {
      client.request({ type_url: LDS });
      const stream = await cp.waitForStream({ kind: 'delta' });
      const nack = await cp.waitForNack(AGENT_TYPE, { streamId: stream.id });
      expect(nack.errorDetail?.message).toBe('table rejected');
    } finally {
      client.close();
    }
  });
});

describe('xDS proxy: requests that do not parse', () => {
  const identity = (b: Buffer): Buffer => b;
  /** One raw request on a stream of `method`; resolves with the status the stream ends with. */
  function rawRequest(address: string, method: string, bytes: Buffer): Promise<grpc.StatusObject> {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const call = client.makeBidiStreamRequest(method, identity, identity);
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.write(bytes);
    return new Promise((resolve) => call.on('status', (st: grpc.StatusObject) => {
      client.close();
      resolve(st);
    }));
  }
  // field 1 with wire type 6, which protobuf does not have; and a length running past the end
  const MALFORMED: [string, Buffer][] = [
    ['wire type 6', Buffer.from([0x0e, 0x01, 0x02])],
    ['truncated length', Buffer.from([0x0a, 0x7f, 0x61])],
  ];

  /** The names in the first CDS push a new, well-formed client gets. */
  async function firstPushNames(protocol: 'SotW' | 'Delta', target: { address: string; tls: false }): Promise<string[]> {
    if (protocol === 'SotW') {
      const client = openSotw(target);
      try {
        client.request({ type_url: CDS });
        return resourceNames(await client.next());
      } finally {
        client.close();
      }
    }
    const client = openDelta(target);
    try {
      client.request({ type_url: CDS });
      return (await client.next()).resources.map((r) => r.name);
    } finally {
      client.close();
    }
  }

  for (const [protocol, method] of [
    ['SotW', '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources'],
    ['Delta', '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources'],
  ] as const) {
    it(`${protocol}: ends that stream with INTERNAL "failed to unmarshal", counts it, and serves the next client`, async () => {
      const { target } = await startProxy();
      cp.setResources(CDS, [cluster('after-bad-request')], { replace: true });
      for (const [label, bytes] of MALFORMED) {
        const before = await counter('istio_agent_envoy_connection_terminations');
        const st = await rawRequest(target.address, method, bytes);
        expect(st.code, label).toBe(grpc.status.INTERNAL);
        expect(st.details, label).toMatch(/^grpc: failed to unmarshal the received message: ./);
        expect(await counter('istio_agent_envoy_connection_terminations'), label).toBe(before + 1);
      }
      // the agent is unharmed: a well-formed client on the same socket gets its push
      expect(await firstPushNames(protocol, target)).toEqual(['after-bad-request']);
    });
  }

  it("the debug port's gRPC tap answers INTERNAL \"failed to unmarshal\" and keeps serving", async () => {
    let taps = 0;
    const port = new XdsDebugPort({
      host: '127.0.0.1',
      port: 0,
      proxy: {
        tapRequest: () => {
          taps++;
          return Promise.resolve(undefined);
        },
      },
    });
    await port.start();
    try {
      const address = `127.0.0.1:${port.port}`;
      const method = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
      for (const [label, bytes] of MALFORMED) {
        const st = await rawRequest(address, method, bytes);
        expect(st.code, label).toBe(grpc.status.INTERNAL);
        expect(st.details, label).toMatch(/^grpc: failed to unmarshal the received message: ./);
      }
      expect(taps).toBe(0);
      // a well-formed debug request still reaches the proxy (which here never answers: Istio's timeout status)
      const ok = new protobuf.Writer().uint32((4 << 3) | 2).string('istio.io/debug/syncz').finish();
      const st = await rawRequest(address, method, Buffer.from(ok));
      expect(taps).toBe(1);
      expect(st.details).toContain('timed out waiting for Istiod to respond');
    } finally {
      await port.close();
    }
  });
});

describe('the debug port under idle and half-sent connections', () => {
  it('closes a connection that has not sent a whole first request in time (nothing, 2 bytes, half a request); one that does is served', async () => {
    const port = new XdsDebugPort({ host: '127.0.0.1', port: 0, firstRequestTimeoutMs: 300, proxy: { tapRequest: () => Promise.resolve(undefined) } });
    await port.start();
    const idle: net.Socket[] = [];
    try {
      const closed: Promise<void>[] = [];
      for (const bytes of ['', 'GE', 'GET /debug/syncz HTTP/1.1\r\nHost: x\r\n']) {
        const s = net.connect(port.port, '127.0.0.1');
        s.on('error', () => undefined);
        closed.push(new Promise((r) => s.once('close', () => r())));
        if (bytes) s.write(bytes);
        idle.push(s);
      }
      await Promise.all(closed);
      // a whole request in time is answered (the proxy here has no istiod: Istio's 504)
      const res = await fetch(`http://127.0.0.1:${port.port}/debug/syncz`);
      expect(res.status).toBe(504);
      await res.arrayBuffer();
    } finally {
      for (const s of idle) s.destroy();
      await port.close();
    }
  });
});

describe('xDS proxy resources', () => {
  // The control plane runs in a process of its own here, so this process's handles and heap are
  // the proxy's (and the test clients') alone.
  it('returns handles and heap to their baseline after 1,000 streams opened and killed', { timeout: 240_000 }, async () => {
    const resources = join(dir, 'leak-resources');
    mkdirSync(resources, { recursive: true });
    writeFileSync(join(resources, 'clusters.json'), JSON.stringify([cluster('c1').json]));
    const cpProcess = spawn(process.execPath, [controlPlaneMain, '--plaintext', '--listen', '127.0.0.1:0', '--resources', resources, '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const address = await new Promise<string>((resolve, reject) => {
        let out = '';
        cpProcess.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /listening on (\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        cpProcess.once('exit', (code) => reject(new Error(`control plane exited ${code}`)));
      });
      const { target, proxy: p } = await startProxy({ address, tls: undefined });
      const cycle = async (): Promise<void> => {
        const client = openSotw(target);
        client.request({ type_url: CDS });
        await client.next();
        client.close();
      };
      for (let i = 0; i < 30; i++) await cycle(); // warm up pools and JIT
      await vi.waitFor(() => expect(p.connections).toBe(0), { timeout: 10_000 });
      await settle();
      const handlesBefore = process.getActiveResourcesInfo().length;
      const heapBefore = process.memoryUsage().heapUsed;
      for (let i = 0; i < 1000; i++) await cycle();
      await vi.waitFor(() => expect(p.connections).toBe(0), { timeout: 20_000 });
      await vi.waitFor(
        async () => {
          await settle();
          expect(process.getActiveResourcesInfo().length).toBeLessThanOrEqual(handlesBefore + 2);
        },
        { timeout: 20_000, interval: 200 },
      );
      await settle();
      const growth = process.memoryUsage().heapUsed - heapBefore;
      // 1,000 streams, each with its own upstream channel: leaking even a few KB each would show
      expect(growth).toBeLessThan(4 * 1024 * 1024);
    } finally {
      cpProcess.kill('SIGKILL');
    }
  });
});

/** The value of one of the agent's counters, summed over its labels. */
async function counter(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((sum, v) => sum + v.value, 0);
}

/** Responses the proxy has read off upstream streams so far (its Prometheus counter). */
function responsesPulled(): Promise<number> {
  return counter('istio_agent_xds_proxy_responses');
}

/** Lets closed sockets finish closing and collects garbage (the suite runs with --expose-gc). */
async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 100));
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc (vitest.config.ts execArgv)');
  gc();
  gc();
}
