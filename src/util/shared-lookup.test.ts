import type dns from 'node:dns';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { connectLookup, sharedLookup } from './shared-lookup.js';

type Cb = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

/** An underlying lookup whose answers the test releases by hand. */
function heldLookup(): { calls: string[]; answer(i: number, err: NodeJS.ErrnoException | null, address: dns.LookupAddress[]): void; fn: (h: string, o: dns.LookupOptions, cb: Cb) => void } {
  const calls: string[] = [];
  const callbacks: Cb[] = [];
  return {
    calls,
    answer: (i, err, address) => callbacks[i]!(err, address),
    fn: (hostname, _options, cb) => {
      calls.push(hostname);
      callbacks.push(cb);
    },
  };
}

const lookupOnce = (lookup: ReturnType<typeof sharedLookup>, host: string): Promise<{ err: NodeJS.ErrnoException | null; address: unknown }> =>
  new Promise((resolve) => (lookup as unknown as (h: string, o: dns.LookupOptions, cb: Cb) => void)(host, { all: true }, (err, address) => resolve({ err, address })));

describe('sharedLookup', () => {
  it('shares concurrent lookups of one name, not of different names, and caches nothing', async () => {
    const under = heldLookup();
    const lookup = sharedLookup(under.fn);
    const slow = [lookupOnce(lookup, 'istiod.slow.test'), lookupOnce(lookup, 'istiod.slow.test'), lookupOnce(lookup, 'istiod.slow.test')];
    const ca = lookupOnce(lookup, 'ca.local');
    // one lookup of the slow name however many connections wait on it: the CA's name is not queued behind copies
    expect(under.calls).toEqual(['istiod.slow.test', 'ca.local']);
    expect(lookup.pendingFor('istiod.slow.test')).toBeGreaterThanOrEqual(0);
    under.answer(1, null, [{ address: '10.0.0.2', family: 4 }]);
    expect((await ca).address).toEqual([{ address: '10.0.0.2', family: 4 }]);
    const timeout = Object.assign(new Error('getaddrinfo EAI_AGAIN istiod.slow.test'), { code: 'EAI_AGAIN' });
    under.answer(0, timeout, []);
    for (const r of await Promise.all(slow)) expect(r.err).toBe(timeout);
    expect(lookup.pendingFor('istiod.slow.test')).toBeUndefined();
    // after the answer, a new connection resolves again
    void lookupOnce(lookup, 'istiod.slow.test');
    expect(under.calls).toEqual(['istiod.slow.test', 'ca.local', 'istiod.slow.test']);
  });

  it('is what net.connect needs (autoSelectFamily asks for all addresses)', async () => {
    const server = net.createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const connected = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<string>((resolve, reject) => {
            const c = net.connect({ host: 'localhost', port, family: 4, lookup: connectLookup }, () => {
              resolve(c.remoteAddress ?? '');
              c.destroy();
            });
            c.on('error', reject);
          }),
      ),
    );
    expect(connected).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1']);
    server.close();
  });
});
