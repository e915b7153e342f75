// The forwarder's waits: everything asked of one upstream, the retry without EDNS included, ends
// within DNS_FORWARD_TIMEOUT, and a UDP socket that cannot even connect fails its queries at once.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import { Forwarder } from '../../src/dns/forwarder.js';
import { parseUpstream } from '../../src/dns/resolv-conf.js';
import { parseQuery, type Query } from '../../src/dns/wire.js';

function query(name: string): Query {
  const parsed = parseQuery(dnsPacket.encode({ type: 'query', id: 4321, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }));
  if (parsed.kind !== 'query') throw new Error('not a query');
  return parsed.query;
}

function forwarder(upstream: string, timeoutMs: number): Forwarder {
  const f = new Forwarder({ upstreams: [parseUpstream(upstream)!], parallel: false, timeoutMs, maxInflight: 16 });
  forwarders.push(f);
  return f;
}

const forwarders: Forwarder[] = [];
const sockets: UdpSocket[] = [];
afterEach(async () => {
  for (const f of forwarders.splice(0)) f.close();
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

describe('forwarder', () => {
  it('gives the retry without EDNS only what is left of the forward timeout', async () => {
    // an old server that is slow to reject the agent's OPT record and never answers the retry
    const seen: boolean[] = [];
    const sock = createSocket('udp4');
    sockets.push(sock);
    sock.on('message', (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      const withOpt = q.additionals?.some((r) => r.type === 'OPT') ?? false;
      seen.push(withOpt);
      if (!withOpt) return;
      const formerr = dnsPacket.encode({ type: 'response', id: q.id, flags: 1 /* FORMERR */, questions: q.questions });
      setTimeout(() => sock.send(formerr, rinfo.port, rinfo.address), 1500);
    });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const f = forwarder(`127.0.0.1:${sock.address().port}`, 2000);
    const t0 = performance.now();
    expect(await f.forward(query('old.test'), 'udp')).toBeUndefined();
    const ms = performance.now() - t0;
    expect(seen[0]).toBe(true);
    // 2 s for both; a fresh timeout for the retry would take 1.5 + 2 s
    expect(ms).toBeLessThan(3000);
    expect(f.inFlight).toBe(0);
  });

  it('fails a query at once when its UDP socket cannot connect to the upstream, without throwing', async () => {
    // connect() to the broadcast address fails (EACCES without SO_BROADCAST, or ENETUNREACH)
    const f = forwarder('255.255.255.255:53', 5000);
    const t0 = performance.now();
    expect(await f.forward(query('nowhere.test'), 'udp')).toBeUndefined();
    expect(performance.now() - t0).toBeLessThan(2500);
    expect(f.inFlight).toBe(0);
  });
});
