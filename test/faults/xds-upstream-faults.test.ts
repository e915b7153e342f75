// The xDS proxy against an istiod that is down, hung or hostile, and a client that misbehaves:
// dials are bounded and spaced (jittered, capped backoff that a reconnecting client cannot
// bypass), requests sent while a dial waits are delivered once it succeeds, and a client cannot
// make the agent hold more than the request size limit.

import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { openSotw, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { frameHeader } from '../../src/grpc/frames.js';
import { registry } from '../../src/metrics/registry.js';
import { SOTW } from '../../src/xds/protocol.js';
import { XdsProxy, type XdsProxyOptions } from '../../src/xds/xds-proxy.js';
import { freePort } from '../support/processes.js';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';

let dir: string;
let proxy: XdsProxy | undefined;
const servers: net.Server[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pa-xds-faults-'));
});
afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function startProxy(address: string, over: Partial<XdsProxyOptions> = {}): Promise<string> {
  const socketPath = join(dir, `XDS-${Math.random().toString(36).slice(2)}`);
  proxy = new XdsProxy({ socketPath, upstream: { address, clusterId: 'Kubernetes', headers: {} }, ...over });
  await proxy.start();
  return socketPath;
}

/** An "istiod" that accepts TCP and drops it at once, counting the dials. */
async function droppingPeer(): Promise<{ address: string; dials: () => number }> {
  let dials = 0;
  const server = net.createServer((sock) => {
    dials++;
    sock.on('error', () => undefined);
    sock.destroy();
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, dials: () => dials };
}

function rawStream(socketPath: string): { session: http2.ClientHttp2Session; stream: http2.ClientHttp2Stream; status: Promise<{ code: number; message: string }> } {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  session.on('error', () => undefined);
  const stream = session.request({ ':method': 'POST', ':path': SOTW.method, 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => undefined);
  stream.resume();
  const status = new Promise<{ code: number; message: string }>((resolve) => {
    const take = (h: http2.IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined) resolve({ code: Number(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) });
    };
    stream.on('response', take);
    stream.on('trailers', take);
    stream.on('close', () => resolve({ code: -1, message: `stream closed (HTTP/2 code ${stream.rstCode})` }));
  });
  return { session, stream, status };
}

async function total(name: string): Promise<number> {
  return (await registry.getSingleMetric(name)!.get()).values.reduce((sum, v) => sum + v.value, 0);
}

/** Opens a stream on the agent's socket, sends an empty request and waits for the status it ends with. */
async function statusOfOneRequest(socketPath: string): Promise<{ code: number; message: string }> {
  const s = rawStream(socketPath);
  s.stream.write(frameHeader(0));
  try {
    return await s.status;
  } finally {
    s.session.destroy();
  }
}

describe('upstream dials', () => {
  it('backs off after a failed dial: a client reconnecting in a loop is refused at once, saying why, and does not make the agent redial', async () => {
    const peer = await droppingPeer();
    const socketPath = await startProxy(peer.address, { dialBackoff: { initialMs: 60_000, maxMs: 60_000, randomization: 0 } });
    const requests = await total('istio_agent_xds_proxy_requests');
    const first = rawStream(socketPath);
    first.stream.write(frameHeader(0));
    const refusedByPeer = await first.status;
    expect(refusedByPeer.code).toBe(grpc.status.UNAVAILABLE);
    // nothing reached istiod: no request counted (Istio counts in its send loop, which never started)
    expect(await total('istio_agent_xds_proxy_requests')).toBe(requests);
    first.session.destroy();
    expect(peer.dials()).toBe(1);
    const errors = async (): Promise<number> => (await registry.getSingleMetric('istio_agent_istiod_connection_terminations')!.get()).values.find((v) => v.labels.type === 'error')?.value ?? 0;
    const errorsBefore = await errors();
    // 20 reconnects while the backoff runs: each fails at once (as Istio's dial would), none dials
    for (let i = 0; i < 20; i++) {
      const st = await statusOfOneRequest(socketPath);
      expect(st.code).toBe(grpc.status.UNAVAILABLE);
      expect(st.message).toMatch(new RegExp(`^istiod at ${peer.address} unreachable: .+; not dialling again for \\d+ ms \\(backing off after 1 failed attempts\\)$`));
    }
    await vi.waitFor(() => expect(proxy!.connections).toBe(0));
    expect(peer.dials()).toBe(1);
    expect(proxy!.dialFailures).toBe(1);
    expect(proxy!.dialWaitMs()).toBeGreaterThan(50_000);
    // each refusal counts as the failed reconnect it stands for
    expect((await errors()) - errorsBefore).toBe(20);
  });

  it('dials again once the backoff has passed, and a dial that reaches istiod resets it', { timeout: 30_000 }, async () => {
    // istiod down: a port nothing listens on, then a control plane on it
    const port = await freePort();
    const socketPath = await startProxy(`127.0.0.1:${port}`, { dialBackoff: { initialMs: 400, randomization: 0 } });
    const target = { address: `unix:${socketPath}`, tls: false as const };
    const refused = openSotw(target);
    refused.request({ type_url: CDS });
    expect((await refused.status).code).toBe(grpc.status.UNAVAILABLE);
    refused.close();
    expect(proxy!.dialFailures).toBe(1);

    let cp: ControlPlane | undefined;
    try {
      cp = await startControlPlane({ plaintext: true, listen: `127.0.0.1:${port}` });
      cp.setResources(CDS, [{ json: { '@type': CDS, name: 'back', type: 'STATIC', connect_timeout: '1s' } }], { replace: true });
      // within the 400 ms: refused without a dial; after it: served
      await new Promise((r) => setTimeout(r, Math.max(0, proxy!.dialWaitMs() + 50)));
      const client = openSotw(target);
      try {
        client.request({ type_url: CDS });
        const res = await client.next(20_000);
        expect(res.resources).toHaveLength(1);
        expect(proxy!.dialFailures).toBe(0);
        expect(proxy!.dialWaitMs()).toBe(0);
      } finally {
        client.close();
      }
    } finally {
      await cp?.close();
    }
  });

  it('dials istiod without a token when the token file cannot be read, as Istio does: istiod says UNAUTHENTICATED', async () => {
    const cp = await startControlPlane({ plaintext: true, token: 'the-token' });
    try {
      const unreadable = join(dir, `token-dir-${Math.random().toString(36).slice(2)}`);
      mkdirSync(unreadable); // EISDIR on read, as EACCES would be for a file the agent may not read
      const socketPath = await startProxy(cp.address, { upstream: { address: cp.address, clusterId: 'Kubernetes', headers: {}, tokenPath: unreadable } });
      const st = await statusOfOneRequest(socketPath);
      expect(st.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(proxy!.dialFailures).toBe(0);
      expect(cp.rejectedStreams().at(-1)?.metadata.authorization).toBeUndefined();
    } finally {
      await cp.close();
    }
  });

  it('bounds the dial of a peer that accepts and never speaks (connect deadline), and counts the failure', async () => {
    const held: net.Socket[] = [];
    const hung = net.createServer((sock) => held.push(sock.on('error', () => undefined)));
    servers.push(hung);
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    const socketPath = await startProxy(`127.0.0.1:${(hung.address() as AddressInfo).port}`, {
      upstream: { address: `127.0.0.1:${(hung.address() as AddressInfo).port}`, clusterId: 'Kubernetes', headers: {}, connectTimeoutMs: 250 },
    });
    const st = await statusOfOneRequest(socketPath);
    expect(st.code).toBe(grpc.status.UNAVAILABLE);
    expect(st.message).toContain('within 250 ms');
    for (const h of held) h.destroy();
    expect(proxy!.dialFailures).toBe(1);
  });
});

describe('request size limit', () => {
  it('answers RESOURCE_EXHAUSTED for a request over the limit, judged on its declared length before the body arrives', async () => {
    const peer = await droppingPeer();
    const socketPath = await startProxy(peer.address, { maxRequestBytes: 1024, dialBackoff: { initialMs: 60_000 } });
    const s = rawStream(socketPath);
    // declares 1 GiB and sends 16 bytes of it: the answer must not wait for (or hold) the rest
    s.stream.write(Buffer.concat([frameHeader(1024 * 1024 * 1024), Buffer.alloc(16, 1)]));
    const st = await s.status;
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(st.message).toBe('request message of 1073741824 bytes exceeds the 1024-byte limit');
    s.session.destroy();
    await vi.waitFor(() => expect(proxy!.connections).toBe(0));
  });

  it('takes a request right at the limit', async () => {
    const peer = await droppingPeer();
    const socketPath = await startProxy(peer.address, { maxRequestBytes: 1024 });
    const s = rawStream(socketPath);
    s.stream.write(Buffer.concat([frameHeader(1024), Buffer.alloc(1024)]));
    // it reaches the upstream dial, which the dropping peer fails: UNAVAILABLE, not RESOURCE_EXHAUSTED
    expect((await s.status).code).toBe(grpc.status.UNAVAILABLE);
    s.session.destroy();
  });
});

describe('an upstream sending what no valid stream carries', () => {
  /** An "istiod" that answers the first request with `bytes` and then keeps the stream open. */
  async function answering(bytes: Buffer): Promise<string> {
    const server = http2.createServer();
    server.on('session', (s) => s.on('error', () => undefined));
    server.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.once('data', () => stream.write(bytes));
    });
    servers.push(server as unknown as net.Server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it("refuses a message declared larger than Istio's limit before buffering any of it", async () => {
    const socketPath = await startProxy(await answering(Buffer.concat([frameHeader(0xffffffff), Buffer.alloc(1024, 0x41)])));
    const st = await statusOfOneRequest(socketPath);
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(st.message).toBe('grpc: received message larger than max (4294967295 vs. 2147483647)');
  });

  it('ends the stream as soon as a held message is known to be malformed, not at its declared end', async () => {
    // declares 1 GiB, then a field with wire type 7 (none such): the rest is never sent
    const socketPath = await startProxy(await answering(Buffer.concat([frameHeader(1024 * 1024 * 1024), Buffer.from([0x0f, 0x01, 0x02])])));
    const responses = await total('istio_agent_xds_proxy_responses');
    const st = await statusOfOneRequest(socketPath);
    expect(st.code).toBe(grpc.status.INTERNAL);
    expect(st.message).toMatch(/^malformed xDS response: /);
    // a response that does not parse is not counted as one (Istio's Recv returned an error)
    expect(await total('istio_agent_xds_proxy_responses')).toBe(responses);
  });
});

describe('istiod going away mid-stream: the status Envoy gets, and the counters (as Istio)', () => {
  /** An "istiod" that answers headers, then at the first request ends the way `how` says. */
  async function ending(how: 'fin' | 'reset' | 'rst-cancel'): Promise<string> {
    const server = http2.createServer();
    let socket: net.Socket | undefined;
    server.on('connection', (sock: net.Socket) => (socket = sock));
    server.on('session', (s) => s.on('error', () => undefined));
    server.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.once('data', () => {
        if (how === 'rst-cancel') stream.close(http2.constants.NGHTTP2_CANCEL);
        // the TCP connection ends without a GOAWAY (istiod killed, its node gone), or is reset
        else if (how === 'fin') socket!.end();
        else socket!.resetAndDestroy();
      });
    });
    servers.push(server as unknown as net.Server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async function counter(name: string, type: string): Promise<number> {
    const m = await registry.getSingleMetric(name)!.get();
    return m.values.filter((v) => v.labels.type === type).reduce((sum, v) => sum + v.value, 0);
  }

  for (const [how, code, message] of [
    ['fin', grpc.status.UNAVAILABLE, /./],
    ['reset', grpc.status.UNAVAILABLE, /ECONNRESET/],
    ['rst-cancel', grpc.status.CANCELLED, /HTTP\/2 code 8/],
  ] as const) {
    it(`${how}: Envoy's stream ends ${grpc.status[code]} (not OK or INTERNAL), and Envoy's end is counted as cancelled`, async () => {
      const socketPath = await startProxy(await ending(how));
      const envoyCancelled = await counter('istio_agent_envoy_connection_terminations', 'cancelled');
      const st = await statusOfOneRequest(socketPath);
      expect(st.code, st.message).toBe(code);
      expect(st.message).toMatch(message);
      expect(await counter('istio_agent_envoy_connection_terminations', 'cancelled')).toBe(envoyCancelled + 1);
    });
  }
});
