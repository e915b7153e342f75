// The agent's memory under a stream of large pushes: what Node's HTTP/2 layer reads istiod's bytes
// into is freed as the pushes go by (the proxy paces young-generation collections, util/gc.ts),
// so the agent does not grow by the volume of the pushes it has forwarded. Without the pacing the
// agent measured here grew by ~30 MiB of anonymous memory over forty 1 MiB pushes, and kept it.

import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs/minimal.js';
import { afterEach, describe, expect, it } from 'vitest';
import { frameMessage } from '../../src/grpc/frames.js';
import { SOTW } from '../../src/xds/protocol.js';
import { encodeSotwRequest, summarizeSotwResponse } from '../../src/xds/wire.js';
import { startProxylessAgent, xdsSocketOf } from '../faults/support.js';
import { stopAgent, tempDir, type RunningProcess } from '../support/processes.js';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const LEN = 2;
const identity = (b: Buffer): Buffer => b;

/** A SotW CDS response of `count` resources of `each` bytes: about count * each bytes. */
function largeResponse(count: number, each: number, nonce: string): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | LEN).string('v1');
  for (let i = 0; i < count; i++) {
    const any = protobuf.Writer.create().uint32((1 << 3) | LEN).string(CDS).uint32((2 << 3) | LEN).bytes(Buffer.alloc(each, i % 251)).finish();
    w.uint32((2 << 3) | LEN).bytes(any);
  }
  w.uint32((4 << 3) | LEN).string(CDS);
  w.uint32((5 << 3) | LEN).string(nonce);
  return Buffer.from(w.finish());
}

/** An "istiod" that answers every request on an ADS stream with the same pre-framed push. */
async function pushingIstiod(push: Buffer): Promise<{ address: string; close: () => Promise<void> }> {
  const framed = frameMessage(push);
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    stream.on('data', () => stream.write(framed));
    stream.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function anonMiB(pid: number): number {
  const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no RssAnon in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

let agent: RunningProcess | undefined;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  await stopAgent(agent);
  agent = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('memory under large pushes', () => {
  it('does not grow by what it has forwarded: forty 1 MiB pushes leave the agent within 16 MiB of where it was', { timeout: 60_000 }, async () => {
    const push = largeResponse(64, 16 * 1024, 'n1');
    const istiod = await pushingIstiod(push);
    cleanups.push(istiod.close);
    const root = tempDir('pa-push-memory-');
    cleanups.push(root.cleanup);
    // FILE_MOUNTED_CERTS: no CA here; certificate retries would allocate on their own schedule
    agent = await startProxylessAgent({ root: root.path, discoveryAddress: istiod.address, env: { FILE_MOUNTED_CERTS: 'true' } });
    const pid = agent.child.pid!;

    const client = new grpc.Client(`unix:${xdsSocketOf(root.path)}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
    cleanups.push(() => client.close());
    const call = client.makeBidiStreamRequest(SOTW.method, identity, identity);
    call.on('error', () => undefined);
    cleanups.push(() => call.cancel());
    const received: Buffer[] = [];
    let waiter: (() => void) | undefined;
    call.on('data', (b: Buffer) => {
      received.push(b);
      waiter?.();
    });
    const request = Buffer.from(encodeSotwRequest({ typeUrl: CDS, responseNonce: '', resourceNames: [] }));
    const pushOnce = async (): Promise<void> => {
      const got = new Promise<void>((resolve) => (waiter = resolve));
      call.write(request);
      await got;
    };

    for (let i = 0; i < 5; i++) await pushOnce();
    const before = anonMiB(pid);
    for (let i = 0; i < 40; i++) await pushOnce();
    const after = anonMiB(pid);

    // every push arrived whole and unchanged
    expect(received).toHaveLength(45);
    for (const r of received) expect(r.equals(push)).toBe(true);
    expect(summarizeSotwResponse(received[44]!).resourceCount).toBe(64);
    expect(after - before, `agent anonymous memory ${before.toFixed(1)} -> ${after.toFixed(1)} MiB over 40 pushes of ${(push.length / 1048576).toFixed(2)} MiB`).toBeLessThan(16);
  });
});
