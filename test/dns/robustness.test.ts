// The DNS server under hostile or broken input: malformed and truncated messages, stalled and
// garbage TCP streams, and query floods from another process. None may crash the server or keep
// other clients from being answered.

import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LocalDnsServer } from '../../src/dns/server.js';
import { dig, optAnswer, silentUdp, startDnsmasq, type Dnsmasq } from './support.js';
import { runLoad } from './load-client.js';
import { freePort } from '../support/processes.js';

let dnsmasq: Dnsmasq;
let server: LocalDnsServer;
let silent: Awaited<ReturnType<typeof silentUdp>>;
let floodServer: LocalDnsServer;

const TABLE = new Map([['svc.ns1.svc.cluster.local', { ips: ['10.0.0.1', '10.0.0.2'], registry: 'Kubernetes', shortname: 'svc', namespace: 'ns1', altHosts: [] }]]);

beforeAll(async () => {
  dnsmasq = await startDnsmasq({ host: '127.0.0.1', port: await freePort(), hosts: '10.1.0.1 forwarded.test\n' });
  silent = await silentUdp();
  server = await LocalDnsServer.start({
    addr: '127.0.0.1:0',
    proxyNamespace: 'ns1',
    proxyDomain: 'ns1.svc.cluster.local',
    upstreams: [`127.0.0.1:${dnsmasq.port}`],
    searchDomains: ['ns1.svc.cluster.local'],
    tcpIdleTimeoutMs: 800,
    tcpReadTimeoutMs: 800,
  });
  server.updateLookupTable(TABLE);
  // forwards go to an upstream that never answers; at most 200 upstream sockets
  floodServer = await LocalDnsServer.start({
    addr: '127.0.0.1:0',
    proxyNamespace: 'ns1',
    proxyDomain: 'ns1.svc.cluster.local',
    upstreams: [`127.0.0.1:${silent.port}`],
    searchDomains: [],
    upstreamTimeoutMs: 1500,
    maxUpstreamInflight: 200,
  });
  floodServer.updateLookupTable(TABLE);
}, 30_000);

afterAll(async () => {
  await server?.close();
  await floodServer?.close();
  await silent?.close();
  await dnsmasq?.stop();
});

async function stillAnswers(s: LocalDnsServer = server): Promise<void> {
  const r = await dig('127.0.0.1', s.port, ['svc.ns1.', 'A']);
  expect(r.status).toBe('NOERROR');
  expect(r.answers).toHaveLength(2);
}

/** Sends raw datagrams and collects what comes back within `waitMs`. */
async function sendRaw(port: number, packets: readonly Buffer[], waitMs = 300): Promise<Buffer[]> {
  const sock = createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  for (const p of packets) sock.send(p, port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, waitMs));
  sock.close();
  return got;
}

function header(id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(qd, 4);
  h.writeUInt16BE(an, 6);
  h.writeUInt16BE(ns, 8);
  h.writeUInt16BE(ar, 10);
  return h;
}

const validQuery = (id: number, name = 'svc.ns1', type: dnsPacket.RecordType = 'A'): Buffer =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type }] });

/** Deterministic pseudo-random bytes (xorshift), so a failure can be replayed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

describe('malformed UDP messages', () => {
  it('ignores what is shorter than a header or is a response; NOTIMP for other opcodes; FORMERR for bad counts and undecodable messages', async () => {
    const ignored = await sendRaw(server.port, [Buffer.alloc(0), Buffer.from([1, 2, 3]), Buffer.alloc(11), Buffer.concat([header(7, 0x8100, 1), validQuery(7).subarray(12)])]);
    expect(ignored).toHaveLength(0);
    const cases: [string, Buffer, number][] = [
      ['opcode STATUS', Buffer.concat([header(101, 2 << 11, 1), validQuery(0).subarray(12)]), 4],
      ['no question', header(102, 0x0100, 0), 1],
      ['two questions', Buffer.concat([header(103, 0x0100, 2), validQuery(0).subarray(12), validQuery(0).subarray(12)]), 1],
      ['question missing', header(104, 0x0100, 1), 1],
      ['question cut short', validQuery(105).subarray(0, 20), 1],
      ['label past the end', Buffer.concat([header(106, 0x0100, 1), Buffer.from([63, 97, 98])]), 1],
      ['pointer to itself', Buffer.concat([header(107, 0x0100, 1), Buffer.from([0xc0, 12, 0, 1, 0, 1])]), 1],
      ['bad label type', Buffer.concat([header(108, 0x0100, 1), Buffer.from([0x80, 0, 0, 1, 0, 1])]), 1],
      ['additional record cut short', Buffer.concat([validQuery(109), Buffer.from([0, 0, 41, 16])]).fill(0, 10, 11).fill(1, 11, 12), 1],
      ['three additional records', Buffer.concat([header(110, 0x0100, 1, 0, 0, 3), validQuery(0).subarray(12)]), 1],
    ];
    for (const [what, pkt, rcode] of cases) {
      const [reply] = await sendRaw(server.port, [pkt], 200);
      expect(reply, what).toBeDefined();
      expect(reply!.readUInt16BE(0), what).toBe(pkt.readUInt16BE(0));
      expect(reply!.readUInt16BE(2) & 0x8000, what).toBe(0x8000);
      expect(reply!.readUInt16BE(2) & 0xf, what).toBe(rcode);
    }
    await stillAnswers();
  });

  it('survives thousands of random and mutated packets, answering only with well-formed messages', async () => {
    const rnd = prng(0xd115);
    const packets: Buffer[] = [];
    const base = dnsPacket.encode({
      type: 'query',
      id: 1,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: 'svc.ns1.svc.cluster.local', type: 'A' }],
      additionals: [optAnswer(4096, [{ code: 10, data: Buffer.alloc(8, 1) }])],
    });
    for (let i = 0; i < 1500; i++) {
      // random bytes
      const len = rnd() % 80;
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = rnd() & 0xff;
      if (len >= 3) b[2]! &= 0x7f; // mostly queries, so they get past the QR check
      packets.push(b);
      // a valid query with a few bytes flipped, or cut short
      const m = Buffer.from(base);
      for (let k = 0; k < 1 + (rnd() % 3); k++) m[12 + (rnd() % (m.length - 12))] = rnd() & 0xff;
      packets.push(rnd() % 4 === 0 ? m.subarray(0, 12 + (rnd() % (m.length - 12))) : m);
    }
    const replies = await sendRaw(server.port, packets, 1500);
    expect(replies.length).toBeGreaterThan(0);
    for (const r of replies) expect(() => dnsPacket.decode(r)).not.toThrow();
    await stillAnswers();
  });
});

describe('TCP', () => {
  function open(port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1' }, () => resolve(s));
      s.once('error', reject);
    });
  }
  function frame(msg: Buffer): Buffer {
    const l = Buffer.alloc(2);
    l.writeUInt16BE(msg.length, 0);
    return Buffer.concat([l, msg]);
  }
  function readFrames(s: Socket, n: number, timeoutMs = 3000): Promise<Buffer[]> {
    return new Promise((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const out: Buffer[] = [];
      const timer = setTimeout(() => reject(new Error(`got ${out.length} of ${n} frames`)), timeoutMs);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + out[out.length - 1]!.length);
        }
        if (out.length >= n) {
          clearTimeout(timer);
          resolve(out);
        }
      });
    });
  }

  it('answers pipelined queries on one connection, garbage frames with FORMERR in between', async () => {
    const s = await open(server.port);
    const frames = [validQuery(1), header(2, 0x0100, 2), validQuery(3, 'forwarded.test'), Buffer.from([1, 2, 3]), validQuery(4)];
    const done = readFrames(s, 4);
    s.write(Buffer.concat(frames.map(frame)));
    const replies = await done;
    const byId = new Map(replies.map((r) => [r.readUInt16BE(0), dnsPacket.decode(r)]));
    expect(byId.get(1)!.answers).toHaveLength(2);
    expect((byId.get(2) as unknown as { rcode: string }).rcode).toBe('FORMERR');
    expect(byId.get(3)!.answers).toEqual([expect.objectContaining({ data: '10.1.0.1' })]);
    expect(byId.get(4)!.answers).toHaveLength(2);
    s.destroy();
  });

  it('answers a query sent before a half-close', async () => {
    const s = await open(server.port);
    const done = readFrames(s, 1);
    s.end(frame(validQuery(9)));
    expect(dnsPacket.decode((await done)[0]!).answers).toHaveLength(2);
  });

  it('keeps serving others while connections stall mid-frame or vanish, and closes idle ones', async () => {
    const stalled: Socket[] = [];
    for (let i = 0; i < 50; i++) {
      const s = await open(server.port);
      s.on('error', () => undefined);
      s.write(Buffer.from([0xff, 0xff, 1, 2, 3])); // announces 64 KiB, sends 3 bytes
      stalled.push(s);
    }
    const vanished = await open(server.port);
    vanished.write(frame(validQuery(5)).subarray(0, 7));
    vanished.destroy();
    await stillAnswers();
    expect((await dig('127.0.0.1', server.port, ['+tcp', 'svc.ns1.', 'A'])).answers).toHaveLength(2);
    // the read deadline (800 ms here) closes the stalled connections
    await vi.waitFor(() => expect(stalled.every((s) => s.destroyed || s.readableEnded)).toBe(true), { timeout: 5000 });
    for (const s of stalled) s.destroy();
  });

  it('closes a connection that drips a query a byte at a time: the deadline is per message, not per byte', async () => {
    const s = await open(server.port);
    s.on('error', () => undefined);
    const closed = new Promise<number>((resolve) => s.once('close', () => resolve(Date.now())));
    const bytes = frame(validQuery(11));
    const started = Date.now();
    let sent = 0;
    // one byte every 200 ms, well inside the 800 ms deadlines: the whole query would take ~6 s
    const drip = setInterval(() => {
      if (sent < bytes.length && !s.destroyed) s.write(bytes.subarray(sent, ++sent));
    }, 200);
    let answered = false;
    s.on('data', () => (answered = true));
    try {
      const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
      expect(at).toBeGreaterThan(0);
      expect(at - started).toBeLessThan(2500);
      expect(sent).toBeLessThan(bytes.length);
      expect(answered).toBe(false);
    } finally {
      clearInterval(drip);
      s.destroy();
    }
  });

  it('keeps a connection whose queries keep coming within the idle deadline', async () => {
    const s = await open(server.port);
    try {
      // five queries 500 ms apart: 2.5 s in all, each within the 800 ms of the previous answer
      for (let i = 0; i < 5; i++) {
        if (i) await new Promise((r) => setTimeout(r, 500));
        const got = readFrames(s, 1);
        s.write(frame(validQuery(20 + i)));
        expect(dnsPacket.decode((await got)[0]!).answers).toHaveLength(2);
        s.removeAllListeners('data');
      }
      expect(s.destroyed).toBe(false);
    } finally {
      s.destroy();
    }
  });
});

describe('floods', () => {
  it('answers 5,000 table queries and forwards from another process, all of them, with the correct data', async () => {
    const r = await runLoad({
      host: '127.0.0.1',
      port: server.port,
      names: [['svc.ns1.', 'A'], ['svc.ns1.ns1.svc.cluster.local.', 'A'], ['forwarded.test.', 'A'], ['SVC.NS1.', 'AAAA']],
      total: 5000,
      concurrency: 50,
    });
    expect(r.sent).toBe(5000);
    expect(r.answered).toBe(5000);
    expect(r.rcodes).toEqual({ 0: 5000 });
    expect(r.withAnswers).toBe(3750); // the AAAA queries are NOERROR without records
  });

  it('a blast of 5,000 queries whose upstream never answers neither crashes the server nor delays table answers to others', async () => {
    const blast = runLoad({
      host: '127.0.0.1',
      port: floodServer.port,
      names: [['unknown-1.test.', 'A'], ['svc.ns1.', 'A'], ['unknown-2.test.', 'A'], ['garbage.', 'TXT']],
      total: 5000,
      concurrency: 0,
      drainMs: 2500,
    });
    // while it runs: another client's table queries are answered promptly (a client retries after
    // 1 s, as resolvers do: a datagram may be dropped while the socket's queue is full)
    await new Promise((res) => setTimeout(res, 150));
    const during = await dig('127.0.0.1', floodServer.port, ['+tries=3', '+time=1', 'svc.ns1.', 'A']);
    expect(during.answers).toHaveLength(2);
    expect(during.ms).toBeLessThan(2500);
    const r = await blast;
    expect(r.sent).toBe(5000);
    // the forwards beyond 200 in flight got SERVFAIL at once; the rest after the 1.5 s timeout
    expect(r.rcodes['2'] ?? 0).toBeGreaterThan(0);
    expect(r.rcodes['0'] ?? 0).toBeGreaterThan(0);
    await stillAnswers(floodServer);
    expect(silent.received()).toBeLessThanOrEqual(4000);
  });
});
