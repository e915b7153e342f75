// The scrape deadline: X-Prometheus-Scrape-Timeout-Seconds as Prometheus sends it (float seconds),
// unusable values warned about once and replaced by the default (never "no deadline"), a client
// that stops reading cut at the deadline plus a grace, and nothing left behind by many scrapes with
// sources that hang, refuse, fail or never end, nor by clients that leave or never read.

import { getEventListeners } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { registry } from '../../src/metrics/registry.js';
import { MetricsMerger, parseScrapeTimeout } from '../../src/status/metrics-merge.js';
import { configureLogging } from '../../src/util/logger.js';
import { call, closeRawServers, closeStarted, endlessAnswer, freePort, openRawConnections, rawServer, startStatus } from './support.js';

const logs: string[] = [];
configureLogging({ write: (l) => void logs.push(l) });

const servers: net.Server[] = [];
/** The test's own clients (sockets that never read). */
const sockets = new Set<net.Socket>();
afterEach(async () => {
  await closeStarted();
  await closeRawServers();
  for (const s of sockets) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A close-delimited body that never ends: `bulk` bytes of metric lines at once, then a line every 20 ms. */
async function trickling(bulk: number): Promise<number> {
  const line = 'envoy_metric{x="y"} 1\n';
  // made once, so that the source answers at once (well within half the scrape deadline)
  const head = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n${line.repeat(Math.ceil(bulk / line.length))}`);
  return rawServer((s) => {
    s.once('data', () => {
      s.write(head);
      const timer = setInterval(() => s.write(line), 20);
      s.on('close', () => clearInterval(timer));
    });
  });
}

const hanging = () => rawServer((s) => s.resume()); // reads the request, never answers
const failing = () => rawServer((s) => s.once('data', () => s.end('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom')));

async function failures(type: string): Promise<number> {
  const m = await registry.getSingleMetric('istio_agent_scrape_failures_total')!.get();
  return m.values.find((v) => v.labels.type === type)?.value ?? 0;
}

/** Sockets and servers this process holds open (what a leak would add to). */
const openHandles = (): number => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => h instanceof net.Socket || h instanceof net.Server).length;

/**
 * Sends a scrape on a raw socket and never reads the answer. (A socket that does not read never
 * learns that the agent closed it: the test watches the agent's side instead.)
 */
function nonReadingScrape(port: number, headers = ''): net.Socket {
  const socket = net.connect({ port, host: '127.0.0.1' });
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  socket.on('error', () => undefined);
  socket.on('connect', () => {
    socket.write(`GET /stats/prometheus HTTP/1.1\r\nHost: x\r\n${headers}\r\n`);
    socket.pause(); // the agent's writes back up
  });
  return socket;
}

/** Waits for `count()` to reach zero, then drops what the test still holds. */
async function agentClosedAll(count: () => number, clients: net.Socket[]): Promise<void> {
  await vi.waitFor(() => expect(count()).toBe(0), { timeout: 10_000 });
  for (const c of clients) c.destroy();
}

describe('X-Prometheus-Scrape-Timeout-Seconds', () => {
  it('is float seconds, as Prometheus sends it and Istio reads it (strconv.ParseFloat)', () => {
    expect(parseScrapeTimeout('9.5')).toEqual({ ms: 9500 });
    expect(parseScrapeTimeout('10')).toEqual({ ms: 10_000 });
    expect(parseScrapeTimeout('0.25')).toEqual({ ms: 250 });
    expect(parseScrapeTimeout('.5')).toEqual({ ms: 500 });
    expect(parseScrapeTimeout('1e1')).toEqual({ ms: 10_000 });
    expect(parseScrapeTimeout('+2')).toEqual({ ms: 2000 });
    for (const bad of ['abc', '9.5s', '0x10', 'Inf', 'NaN', '1e400', '1,5', '9 5']) expect(parseScrapeTimeout(bad), bad).toEqual({ invalid: 'not a number of seconds' });
    for (const bad of ['0', '-1', '-0.5', '0.0']) expect(parseScrapeTimeout(bad), bad).toEqual({ invalid: 'not a positive number of seconds' });
    // longer than any working Prometheus configuration: clamped (setTimeout would fire at once past 24.8 days)
    expect(parseScrapeTimeout('3000000')).toEqual({ ms: 600_000, clamped: true });
  });

  it('zero, negative or garbage values give one warning and the default deadline, never none', async () => {
    const hang = await hanging();
    const status = await startStatus({ noEnvoy: true, defaultScrapeTimeoutMs: 300, prometheusAnnotations: JSON.stringify({ port: String(hang) }) });
    logs.length = 0;
    const before = await failures('application');
    for (const value of ['0', '-1', 'soon', '0', '-1', 'soon']) {
      const r = await call(`http://127.0.0.1:${status.port}/stats/prometheus`, { headers: { 'x-prometheus-scrape-timeout-seconds': value } });
      expect(r.status).toBe(200);
      expect(r.body).toContain('istio_agent_scrapes_total');
    }
    expect(await failures('application')).toBe(before + 6);
    for (const value of ['0', '-1', 'soon']) {
      expect(logs.filter((l) => l.includes(`X-Prometheus-Scrape-Timeout-Seconds ${JSON.stringify(value)}`)), value).toHaveLength(1);
    }
    expect(logs.find((l) => l.includes('"soon"'))).toContain('using the default deadline of 0.3s');
  });
});

describe('scrape deadline and what it leaves behind', () => {
  it('cuts the answer to a client that stops reading at the deadline plus the grace', async () => {
    const envoy = await trickling(16 * 1024 * 1024); // more than the socket buffers and the answer's unflushed allowance
    const status = await startStatus({ envoyMetricsUrl: `http://127.0.0.1:${envoy}/stats/prometheus`, defaultScrapeTimeoutMs: 200, scrapeGraceMs: 200 });
    logs.length = 0;
    const clients = [nonReadingScrape(status.port), nonReadingScrape(status.port, 'X-Prometheus-Scrape-Timeout-Seconds: 0.3\r\n')];
    await vi.waitFor(() => expect(status.connectionCount).toBe(2));
    await agentClosedAll(() => status.connectionCount, clients);
    // closed while the answer was stuck, not after a complete small answer went idle
    expect(logs.join('')).not.toContain('no response before half the scrape deadline');
  });

  it('many scrapes with hanging, refused, failing and endless sources, and clients that leave or never read, leave no socket or listener behind', async () => {
    const hang = await hanging();
    const refused = await freePort();
    const fail = await failing();
    const trailer = await rawServer(endlessAnswer('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na 1\n\r\n0\r\nX-T: ', 'x'));
    const big = await trickling(16 * 1024 * 1024);
    const targets = [hang, refused, fail, trailer].map((port) => ({ port: String(port) }));
    const status = await startStatus({
      envoyMetricsUrl: `http://127.0.0.1:${big}/stats/prometheus`,
      defaultScrapeTimeoutMs: 300,
      scrapeGraceMs: 100,
      prometheusAnnotations: JSON.stringify({ targets }),
    });
    const round = async (): Promise<void> => {
      const url = `http://127.0.0.1:${status.port}/stats/prometheus`;
      // (a reading client slower than the short grace here gets its answer cut: what counts is what is left behind)
      const scrape = (headers: Record<string, string> = {}): Promise<unknown> => call(url, { headers }).catch(() => undefined);
      await scrape({ 'x-prometheus-scrape-timeout-seconds': '0.2' });
      await scrape();
      await scrape({ 'x-prometheus-scrape-timeout-seconds': 'garbage' });
      // a client that leaves mid-answer
      await new Promise<void>((resolve) => {
        const req = http.get(url, { agent: false }, (res) => res.once('data', () => (req.destroy(), resolve())));
        req.on('error', () => resolve());
      });
      await agentClosedAll(() => status.connectionCount, [nonReadingScrape(status.port)]);
    };
    await round(); // warm-up: pools, lazily loaded modules
    await vi.waitFor(() => expect(openRawConnections() + sockets.size).toBe(0), { timeout: 5000 });
    const baseline = openHandles();
    for (let i = 0; i < 4; i++) await round();
    // every connection of the agent's is gone: to the sources (the test servers see them close) and from the clients
    await vi.waitFor(() => expect(openRawConnections() + sockets.size).toBe(0), { timeout: 5000 });
    await vi.waitFor(() => expect(openHandles()).toBeLessThanOrEqual(baseline), { timeout: 5000 });
  });

  it('removes its listeners from the server-wide signal after every scrape', async () => {
    const hang = await hanging();
    const fail = await failing();
    const merger = new MetricsMerger({ envoyUrl: `http://127.0.0.1:${hang}/stats/prometheus`, appUrls: [`http://127.0.0.1:${fail}/m`], registry, defaultTimeoutMs: 200, graceMs: 100 });
    const closing = new AbortController();
    const server = http.createServer((req, res) => void merger.serve(req, res, closing.signal));
    server.keepAliveTimeout = 100; // the non-reading client's small answer completes: idle, then closed
    const accepted = new Set<net.Socket>();
    server.on('connection', (s: net.Socket) => {
      accepted.add(s);
      s.on('close', () => accepted.delete(s));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    for (let i = 0; i < 10; i++) await call(`http://127.0.0.1:${port}/metrics`, { headers: { 'x-prometheus-scrape-timeout-seconds': i % 2 ? '0.1' : '-3' } });
    await agentClosedAll(() => accepted.size, [nonReadingScrape(port)]);
    expect(getEventListeners(closing.signal, 'abort')).toHaveLength(0);
  });
});
