// The status port's own bounds, with small limits so the tests run fast: header size, slow headers
// (slowloris), connection flood (the oldest idle connection gives way, readiness still answered),
// concurrent scrapes, and peers that reset their connections at every stage.

import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { configureLogging } from '../../src/util/logger.js';
import { call, closeRawServers, closeStarted, httpServer, rawServer, startStatus } from './support.js';

const logs: string[] = [];
configureLogging({ write: (l) => void logs.push(l) });

const clients = new Set<net.Socket>();
afterEach(async () => {
  for (const c of clients) c.destroy();
  await closeStarted();
  await closeRawServers();
});

/** A client connection to the status port; `received` is what the agent sent, `closed` settles when it closes. */
function connect(port: number, send = ''): { socket: net.Socket; received: () => string; closed: Promise<void> } {
  const socket = net.connect({ port, host: '127.0.0.1' });
  clients.add(socket);
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  socket.on('error', () => undefined);
  if (send) socket.on('connect', () => socket.write(send));
  const closed = new Promise<void>((r) => socket.once('close', () => (clients.delete(socket), r())));
  return { socket, received: () => got, closed };
}

const connected = (c: { socket: net.Socket }): Promise<void> => new Promise((r) => (c.socket.connecting ? c.socket.once('connect', () => r()) : r()));

describe('status port bounds', () => {
  it('answers 431 to headers over maxHeaderBytes and closes', async () => {
    const status = await startStatus({ maxHeaderBytes: 1024 });
    const c = connect(status.port, `GET /healthz/ready HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(2048)}\r\n\r\n`);
    await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1\.1 431 /);
    // within the limit: answered
    expect((await call(`http://127.0.0.1:${status.port}/healthz/ready`, { headers: { 'x-ok': 'a'.repeat(512) } })).status).toBe(503);
  });

  it('drops a client that sends its headers a byte at a time (slowloris), or nothing at all, after headersTimeoutMs', async () => {
    const status = await startStatus({ headersTimeoutMs: 300 });
    const slow = connect(status.port);
    await connected(slow);
    const request = 'GET /healthz/ready HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'z'.repeat(10_000);
    let i = 0;
    const drip = setInterval(() => !slow.socket.destroyed && slow.socket.write(request[i++ % request.length]!), 20);
    const silent = connect(status.port);
    await Promise.all([slow.closed, silent.closed]).finally(() => clearInterval(drip));
    expect(slow.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(silent.received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('keeps at most maxConnections open: the oldest idle connection gives way, and readiness is still answered', async () => {
    const status = await startStatus({ maxConnections: 8 });
    const flood = Array.from({ length: 40 }, () => connect(status.port)); // connect, send nothing
    await Promise.all(flood.map(connected));
    // the agent closed all but the newest ones
    await vi.waitFor(() => expect(flood.filter((c) => !c.socket.destroyed).length).toBeLessThanOrEqual(8));
    expect(status.connectionCount).toBeLessThanOrEqual(8);
    // a kubelet probe arriving now evicts the oldest idle connection and is answered
    for (let i = 0; i < 5; i++) {
      const r = await call(`http://127.0.0.1:${status.port}/healthz/ready`);
      expect(r.status).toBe(503); // answered: not ready, no Envoy here
      expect(r.body).toContain('/stats?usedonly');
    }
    expect(status.connectionCount).toBeLessThanOrEqual(8);
    expect(logs.filter((l) => l.includes('status port: 8 connections open (the limit)'))).toHaveLength(1);
  });

  it('refuses a new connection when every open one has a request in progress', async () => {
    const app = await httpServer(() => undefined); // a probe target that never answers: the probes stay in progress
    const status = await startStatus({ maxConnections: 3, kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port: app.port }, timeoutSeconds: 30 } }) });
    const busy = Array.from({ length: 3 }, () => connect(status.port, 'GET /app-health/a/livez HTTP/1.1\r\nHost: x\r\n\r\n'));
    await vi.waitFor(() => expect(app.seen.length).toBe(3));
    const refused = connect(status.port, 'GET /healthz/ready HTTP/1.1\r\nHost: x\r\n\r\n');
    await refused.closed;
    expect(refused.received()).toBe('');
    expect(busy.every((c) => !c.socket.destroyed)).toBe(true);
    await app.close();
  });

  it('serves at most maxConcurrentScrapes at once; more wait their turn within their deadline, while readiness is still answered', async () => {
    // an Envoy whose metrics never end: each scrape stays in progress until the test lets go
    let envoyScrapes = 0;
    const endless = await rawServer((s) => s.once('data', () => (envoyScrapes++, s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nenvoy_x 1\n'))));
    const status = await startStatus({ maxConcurrentScrapes: 2, envoyMetricsUrl: `http://127.0.0.1:${endless}/stats/prometheus` });
    const scrape = 'GET /stats/prometheus HTTP/1.1\r\nHost: x\r\n\r\n';
    const held = [connect(status.port, scrape), connect(status.port, scrape)];
    await vi.waitFor(() => expect(held.every((c) => c.received().includes('envoy_x 1'))).toBe(true));
    // a scrape with a short deadline waits that long for a slot, then is told why
    const short = await call(`http://127.0.0.1:${status.port}/stats/prometheus`, { headers: { 'x-prometheus-scrape-timeout-seconds': '0.3' } });
    expect([short.status, short.body]).toEqual([503, 'timed out after 0.3s waiting for one of 2 metrics scrapes in progress to finish\n']);
    expect((await call(`http://127.0.0.1:${status.port}/healthz/ready`)).status).toBe(503);
    // two more wait (one of them gives up, leaving the queue); none reaches Envoy while the slots are taken
    const waiting = connect(status.port, scrape);
    const quitter = connect(status.port, scrape);
    await connected(waiting);
    await connected(quitter);
    await new Promise((r) => setTimeout(r, 200));
    quitter.socket.destroy();
    expect(envoyScrapes).toBe(2);
    expect(waiting.received()).toBe('');
    // a slot frees: the waiting scrape is served, and still no more than two are in progress
    held[0]!.socket.destroy();
    await vi.waitFor(() => expect(waiting.received()).toContain('envoy_x 1'));
    expect(envoyScrapes).toBe(3);
    for (const c of [held[1]!, waiting]) c.socket.destroy();
    await vi.waitFor(async () => expect((await call(`http://127.0.0.1:${status.port}/stats/prometheus`, { headers: { 'x-prometheus-scrape-timeout-seconds': '0.2' } })).status).toBe(200));
    expect(logs.filter((l) => l.includes('2 metrics scrapes in progress (the limit); more wait for one to finish'))).toHaveLength(1);
  });

  it('answers 503 at once past maxWaitingScrapes, so that waiting scrapes never take the connections probes need', async () => {
    let envoyScrapes = 0;
    const endless = await rawServer((s) => s.once('data', () => (envoyScrapes++, s.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nenvoy_x 1\n'))));
    const status = await startStatus({ maxConnections: 8, maxConcurrentScrapes: 2, maxWaitingScrapes: 2, envoyMetricsUrl: `http://127.0.0.1:${endless}/stats/prometheus` });
    const scrape = 'GET /stats/prometheus HTTP/1.1\r\nHost: x\r\n\r\n';
    const scrapes = Array.from({ length: 8 }, () => connect(status.port, scrape));
    await vi.waitFor(() => expect(envoyScrapes).toBe(2));
    // two in progress, two waiting, the other four told at once (and their connections idle again)
    await vi.waitFor(() => expect(scrapes.filter((c) => c.received().startsWith('HTTP/1.1 503')).length).toBe(4));
    expect(scrapes.find((c) => c.received().startsWith('HTTP/1.1 503'))!.received()).toContain('too many metrics scrapes: 2 in progress and 2 waiting; try again later');
    // a kubelet probe is still answered (503: no Envoy here)
    expect((await call(`http://127.0.0.1:${status.port}/healthz/ready`)).status).toBe(503);
  });

  it('handles pipelined requests one after another, and closes a connection with too many waiting', async () => {
    let inProgress = 0;
    let most = 0;
    const app = await httpServer((_q, r) => {
      most = Math.max(most, ++inProgress);
      setTimeout(() => (inProgress--, r.end('ok')), 20);
    });
    const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port: app.port } } }) });
    const probe = 'GET /app-health/a/livez HTTP/1.1\r\nHost: x\r\n\r\n';
    const few = connect(status.port, probe.repeat(4) + 'GET /app-health/a/livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await few.closed;
    expect(few.received().match(/HTTP\/1\.1 200 OK/g)).toHaveLength(5);
    expect(most).toBe(1);
    const many = connect(status.port, probe.repeat(50));
    await many.closed;
    expect(most).toBe(1);
    expect(app.seen.length).toBeLessThanOrEqual(5 + 1);
    await app.close();
  });

  it('has no "possible memory leak" warning with many requests in progress', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const app = await httpServer((_q, r) => setTimeout(() => r.end('ok'), 50));
      const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port: app.port } } }) });
      const answers = await Promise.all(Array.from({ length: 30 }, () => call(`http://127.0.0.1:${status.port}/app-health/a/livez`)));
      expect(answers.every((a) => a.status === 200)).toBe(true);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
      expect(warnings.filter((w) => w.includes('MaxListenersExceeded'))).toEqual([]);
      await app.close();
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('survives peers that reset their connection at every stage', async () => {
    const app = await httpServer((_q, r) => setTimeout(() => r.end('ok'), 50));
    const envoy = await rawServer((s) => s.once('data', () => s.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n${'envoy_y 1\n'.repeat(200_000)}`)));
    const status = await startStatus({ envoyMetricsUrl: `http://127.0.0.1:${envoy}/stats/prometheus`, kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port: app.port } } }) });
    const stages: [string, (c: ReturnType<typeof connect>) => Promise<void>][] = [
      ['mid-headers', async (c) => void c.socket.write('GET /healthz/re')],
      ['after the request', async (c) => void c.socket.write('GET /app-health/a/livez HTTP/1.1\r\nHost: x\r\n\r\n')],
      ['mid-answer', (c) => new Promise<void>((r) => (c.socket.write('GET /stats/prometheus HTTP/1.1\r\nHost: x\r\n\r\n'), c.socket.once('data', () => r())))],
      ['mid-body', async (c) => void c.socket.write('POST /quitquitquit HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc')],
    ];
    for (let round = 0; round < 5; round++) {
      for (const [, stage] of stages) {
        const c = connect(status.port);
        await connected(c);
        await stage(c);
        c.socket.resetAndDestroy();
      }
    }
    await vi.waitFor(() => expect(status.connectionCount).toBe(0));
    expect((await call(`http://127.0.0.1:${status.port}/app-health/a/livez`)).body).toBe('ok');
    await app.close();
  });
});
