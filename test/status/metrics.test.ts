// /stats/prometheus: agent + Envoy (the stand-in) + the hello-multiport-metrics app targets merged;
// content negotiation and OpenMetrics; failures counted, never failing the scrape; the per-app cap;
// gzip; streaming; ISTIO_PROMETHEUS_ANNOTATIONS validation.

import http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { registry } from '../../src/metrics/registry.js';
import { allowedContentTypes, APP_ACCEPTED_TYPES, ENVOY_ACCEPTED_TYPES, negotiateMetricsFormat } from '../../src/status/accept.js';
import { LineAligner } from '../../src/status/metrics-merge.js';
import { parseScrapeConfig } from '../../src/status/scrape-config.js';
import { configureLogging } from '../../src/util/logger.js';
import { startEnvoyStandIn, type StandInProcess } from '../support/envoy-stand-in-harness.js';
import { call, closeStarted, freePort, httpServer, portsIn, proxyEnv, remapPorts, startStatus, type TestServer } from './support.js';

const logs: string[] = [];
configureLogging({ write: (l) => void logs.push(l) });

const OM = 'application/openmetrics-text; version=1.0.0; charset=utf-8';
const PROM_ACCEPT = 'application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2';

let envoy: StandInProcess;
let envoyUrl: string;
const servers: TestServer[] = [];

beforeAll(async () => {
  envoy = await startEnvoyStandIn();
  envoyUrl = `${envoy.adminUrl}/stats/prometheus`;
});
afterAll(async () => {
  await envoy?.stop();
});
afterEach(async () => {
  await closeStarted();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function app(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<TestServer> {
  const s = await httpServer(handler);
  servers.push(s);
  return s;
}

async function failures(type: string): Promise<number> {
  const m = await registry.getSingleMetric('istio_agent_scrape_failures_total')!.get();
  return m.values.find((v) => v.labels.type === type)?.value ?? 0;
}

const scrapes = async (): Promise<number> => (await registry.getSingleMetric('istio_agent_scrapes_total')!.get()).values[0]?.value ?? 0;

/** The two targets of hello-multiport-metrics, remapped to real servers answering `bodies`. */
async function multiport(bodies: [string, string], contentTypes: [string, string] = ['text/plain; version=0.0.4', 'text/plain; version=0.0.4']) {
  const raw = proxyEnv('hello-multiport-metrics.yaml.injected').ISTIO_PROMETHEUS_ANNOTATIONS!;
  expect(JSON.parse(raw)).toEqual({ scrape: 'true', path: '/metrics', port: '8080', targets: [{ port: '8080', path: '/metrics' }, { port: '9100', path: '/custom-metrics' }] });
  expect(portsIn(raw)).toEqual([8080, 9100]);
  const a = await app((req, res) => (req.url === '/metrics' ? res.writeHead(200, { 'content-type': contentTypes[0] }).end(bodies[0]) : res.writeHead(404).end()));
  const b = await app((req, res) => (req.url === '/custom-metrics' ? res.writeHead(200, { 'content-type': contentTypes[1] }).end(bodies[1]) : res.writeHead(404).end()));
  return { annotations: remapPorts(raw, new Map([[8080, a.port], [9100, b.port]])), a, b };
}

describe('merged metrics', () => {
  it('serves agent metrics, then Envoy, then each hello-multiport-metrics target in order', async () => {
    const { annotations, a, b } = await multiport(['# TYPE app_requests_total counter\napp_requests_total 7\n', 'custom_gauge{x="1"} 3']);
    const status = await startStatus({ envoyMetricsUrl: envoyUrl, prometheusAnnotations: annotations });
    const before = await scrapes();
    for (const path of ['/stats/prometheus', '/metrics']) {
      const r = await call(`http://127.0.0.1:${status.port}${path}?usedonly`, { headers: { accept: PROM_ACCEPT, 'user-agent': 'Prometheus/3.0', 'x-prometheus-scrape-timeout-seconds': '10' } });
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
      const agentAt = r.body.indexOf('# TYPE istio_agent_scrapes_total counter');
      const envoyAt = r.body.indexOf('envoy_server_live');
      const appAt = r.body.indexOf('app_requests_total 7\n');
      const customAt = r.body.indexOf('custom_gauge{x="1"} 3\n'); // a newline was added after the unterminated body
      expect(agentAt).toBeGreaterThanOrEqual(0);
      expect(envoyAt).toBeGreaterThan(agentAt);
      expect(appAt).toBeGreaterThan(envoyAt);
      expect(customAt).toBeGreaterThan(appAt);
      expect(r.body.endsWith('custom_gauge{x="1"} 3\n')).toBe(true);
    }
    expect(await scrapes()).toBe(before + 2);
    // Prometheus' headers forwarded; Accept narrowed per source as Istio does
    const seen = a.seen.at(-1)!;
    expect(seen.headers['user-agent']).toBe('Prometheus/3.0');
    expect(seen.headers['x-prometheus-scrape-timeout-seconds']).toBe('10');
    expect(seen.headers.accept).toBe(
      'application/openmetrics-text; escaping=allow-utf-8; q=0.4; version=1.0.0,application/openmetrics-text; q=0.3; version=0.0.1,text/plain; escaping=allow-utf-8; q=0.2; version=1.0.0,text/plain; q=0.1; version=0.0.4',
    );
    expect(b.seen.at(-1)!.url).toBe('/custom-metrics');
    const envoyCalls = JSON.parse((await envoy.get('/standin/calls')).body) as { path: string; query: Record<string, string> }[];
    expect(envoyCalls.filter((c) => c.path === '/stats/prometheus').at(-1)!.query).toEqual({ usedonly: '' }); // query forwarded
  });

  it('answers OpenMetrics when the apps do, with one # EOF at the very end', async () => {
    const { annotations } = await multiport(['# TYPE a counter\na_total 1\n# EOF\n', '# TYPE b gauge\nb 2\n# EOF'], [OM, OM]);
    const status = await startStatus({ envoyMetricsUrl: envoyUrl, prometheusAnnotations: annotations });
    const r = await call(`http://127.0.0.1:${status.port}/stats/prometheus`, { headers: { accept: PROM_ACCEPT } });
    expect(r.headers['content-type']).toBe(OM);
    expect(r.body.match(/# EOF/g)).toHaveLength(1);
    expect(r.body.endsWith('a_total 1\n# TYPE b gauge\nb 2\n# EOF\n')).toBe(true);
  });

  it('falls back to text when the apps disagree, dropping their # EOF lines', async () => {
    const { annotations } = await multiport(['a_total 1\n# EOF\n', 'b 2\n'], [OM, 'text/plain; version=0.0.4']);
    const status = await startStatus({ envoyMetricsUrl: envoyUrl, prometheusAnnotations: annotations });
    const r = await call(`http://127.0.0.1:${status.port}/stats/prometheus`, { headers: { accept: PROM_ACCEPT } });
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(r.body).not.toContain('# EOF');
    expect(r.body.endsWith('a_total 1\nb 2\n')).toBe(true);
  });

  it('counts failed sources and still answers with the others', async () => {
    const broken = await app((_req, res) => res.writeHead(500).end('boom'));
    const down = await freePort();
    const status = await startStatus({
      envoyMetricsUrl: `http://127.0.0.1:${await freePort()}/stats/prometheus`,
      prometheusAnnotations: JSON.stringify({ scrape: 'true', targets: [{ port: String(broken.port), path: '/m' }, { port: String(down) }] }),
    });
    const [envoyBefore, appBefore] = [await failures('envoy'), await failures('application')];
    const r = await call(`http://127.0.0.1:${status.port}/stats/prometheus`);
    expect(r.status).toBe(200);
    expect(r.body).toContain('istio_agent_scrapes_total');
    expect(r.body).not.toContain('boom');
    expect(await failures('envoy')).toBe(envoyBefore + 1);
    expect(await failures('application')).toBe(appBefore + 2);
  });

  it('logs a failing source once while it fails the same way, and again once it recovers', async () => {
    let broken = true;
    const flaky = await app((_req, res) => (broken ? res.writeHead(500).end('boom') : res.writeHead(200).end('flaky_metric 1\n')));
    const status = await startStatus({ noEnvoy: true, prometheusAnnotations: JSON.stringify({ targets: [{ port: String(flaky.port), path: '/m' }] }) });
    const before = await failures('application');
    logs.length = 0;
    for (let i = 0; i < 3; i++) expect((await call(`http://127.0.0.1:${status.port}/metrics`)).status).toBe(200);
    expect(await failures('application')).toBe(before + 3);
    const failed = `error scraping http://localhost:${flaky.port}/m, status code: 500`;
    expect(logs.filter((l) => l.includes(failed))).toHaveLength(1);
    broken = false;
    expect((await call(`http://127.0.0.1:${status.port}/metrics`)).body).toContain('flaky_metric 1\n');
    expect(logs.filter((l) => l.includes(`scraping http://localhost:${flaky.port}/m works again`))).toHaveLength(1);
    broken = true;
    await call(`http://127.0.0.1:${status.port}/metrics`);
    expect(logs.filter((l) => l.includes(failed))).toHaveLength(2);
  });

  it("scrapes app targets as Istio's http://localhost:<port>: Host localhost, on 127.0.0.1 or ::1 (an exporter bound to ::1 only)", async () => {
    const hosts: string[] = [];
    const v4 = await app((req, res) => (hosts.push(String(req.headers.host)), res.writeHead(200).end('v4_metric 1\n')));
    const v6 = servers[servers.push(await httpServer((req, res) => (hosts.push(String(req.headers.host)), res.writeHead(200).end('v6_metric 1\n')), { host: '::1' })) - 1]!;
    const status = await startStatus({ noEnvoy: true, prometheusAnnotations: JSON.stringify({ targets: [{ port: String(v4.port), path: '/m' }, { port: String(v6.port), path: '/m' }] }) });
    const before = await failures('application');
    const body = (await call(`http://127.0.0.1:${status.port}/stats/prometheus`)).body;
    expect(body).toContain('v4_metric 1\n');
    expect(body).toContain('v6_metric 1\n');
    expect(hosts.sort()).toEqual([`localhost:${v4.port}`, `localhost:${v6.port}`].sort());
    expect(await failures('application')).toBe(before);
  });

  it('caps each app target: drops one announced too big, cuts a chunked one at its last whole line', async () => {
    const big = 'big_metric{i="0123456789"} 1\n'.repeat(2000); // 58 KB
    const announced = await app((_req, res) => res.writeHead(200, { 'content-length': String(big.length) }).end(big));
    const chunked = await app((_req, res) => {
      res.writeHead(200); // no content-length: chunked
      res.write(big.slice(0, 20_000));
      setTimeout(() => res.end(big.slice(20_000)), 20);
    });
    const status = await startStatus({
      noEnvoy: true,
      maxAppBodyBytes: 32 * 1024,
      prometheusAnnotations: JSON.stringify({ targets: [{ port: String(announced.port) }, { port: String(chunked.port) }] }),
    });
    const before = await failures('application');
    const r = await call(`http://127.0.0.1:${status.port}/metrics`);
    expect(r.status).toBe(200);
    const lines = r.body.split('\n').filter((l) => l.startsWith('big_metric'));
    expect(lines.length).toBe(Math.floor((32 * 1024) / 29)); // only whole lines of the second target
    expect(lines.every((l) => l === 'big_metric{i="0123456789"} 1')).toBe(true);
    expect(r.body.endsWith('\n')).toBe(true);
    expect(await failures('application')).toBe(before + 2);
  });

  it('streams a single app target whole, however large (Istio caps only when it merges several)', async () => {
    const big = 'big_metric{i="0123456789"} 1\n'.repeat(2000); // 58 KB
    const announced = await app((_req, res) => res.writeHead(200, { 'content-length': String(big.length) }).end(big));
    const status = await startStatus({ noEnvoy: true, maxAppBodyBytes: 32 * 1024, prometheusAnnotations: JSON.stringify({ targets: [{ port: String(announced.port) }] }) });
    const before = await failures('application');
    const r = await call(`http://127.0.0.1:${status.port}/metrics`);
    expect(r.body.split('\n').filter((l) => l === 'big_metric{i="0123456789"} 1')).toHaveLength(2000);
    expect(await failures('application')).toBe(before);
  });

  it('writes no empty line, which would fail the whole scrape when the answer is OpenMetrics', async () => {
    for (const contentType of [OM, 'text/plain; version=0.0.4']) {
      const only = await app((_req, res) => res.writeHead(200, { 'content-type': contentType }).end('# TYPE a counter\na_total 1\n'));
      const status = await startStatus({ envoyMetricsUrl: envoyUrl, prometheusAnnotations: JSON.stringify({ targets: [{ port: String(only.port) }] }) });
      const r = await call(`http://127.0.0.1:${status.port}/stats/prometheus`, { headers: { accept: PROM_ACCEPT } });
      expect(r.headers['content-type']).toBe(contentType === OM ? OM : 'text/plain; version=0.0.4; charset=utf-8');
      expect(r.body).toContain('# TYPE istio_agent_scrapes_total counter\n');
      expect(r.body).toContain('envoy_server_live');
      const empty = r.body.split('\n').slice(0, -1).findIndex((l) => l === '');
      expect(empty, `line ${empty + 1} is empty`).toBe(-1);
    }
  });

  it('gzips when the client asks', async () => {
    const status = await startStatus({ envoyMetricsUrl: envoyUrl });
    const r = await call(`http://127.0.0.1:${status.port}/stats/prometheus`, { headers: { 'accept-encoding': 'gzip, deflate' } });
    expect(r.headers['content-encoding']).toBe('gzip');
    expect(r.body).toContain('envoy_server_live');
    expect(r.rawBytes).toBeLessThan(Buffer.byteLength(r.body));
    const plain = await call(`http://127.0.0.1:${status.port}/stats/prometheus`, { headers: { 'accept-encoding': 'gzip;q=0' } });
    expect(plain.headers['content-encoding']).toBeUndefined();
  });

  it('streams: Envoy bytes reach the client before Envoy has finished', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const line = 'envoy_cluster_upstream_rq{cluster_name="c"} 1\n';
    const slowEnvoy = await app((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write(line.repeat(20_000)); // ~1 MB
      void released.then(() => res.end('envoy_last 1\n'));
    });
    const status = await startStatus({ envoyMetricsUrl: `http://127.0.0.1:${slowEnvoy.port}/stats/prometheus` });
    const got = await new Promise<{ early: number; total: string }>((resolve, reject) => {
      http.get(`http://127.0.0.1:${status.port}/stats/prometheus`, { agent: false }, (res) => {
        let body = '';
        let early = -1;
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
          if (early < 0 && body.split('envoy_cluster_upstream_rq').length > 10_000) {
            early = body.length;
            release();
          }
        });
        res.on('end', () => resolve({ early, total: body }));
        res.on('error', reject);
      });
    });
    expect(got.early).toBeGreaterThan(0); // half of Envoy's body was out while Envoy was still writing
    expect(got.total.endsWith('envoy_last 1\n')).toBe(true);
  });

  it.each([false, true])('stops reading the sources when the client goes away (gzip %s)', async (gzip) => {
    let upstreamClosed = false;
    const line = 'envoy_cluster_upstream_rq{cluster_name="c"} 1\n';
    const endless = await app((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const timer = setInterval(() => res.write(line.repeat(2000)), 5);
      req.socket.on('close', () => {
        clearInterval(timer);
        upstreamClosed = true;
      });
    });
    const status = await startStatus({ envoyMetricsUrl: `http://127.0.0.1:${endless.port}/stats/prometheus` });
    const before = await failures('envoy');
    await new Promise<void>((resolve, reject) => {
      const req = http.get(`http://127.0.0.1:${status.port}/stats/prometheus`, { agent: false, headers: gzip ? { 'accept-encoding': 'gzip' } : {} }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > 200_000) {
            req.destroy();
            resolve();
          }
        });
        res.on('error', () => undefined);
      });
      req.on('error', (err) => (err.message.includes('socket hang up') || err.message.includes('aborted') ? undefined : reject(err)));
    });
    await vi.waitFor(() => expect(upstreamClosed).toBe(true), { timeout: 5000 });
    expect(await failures('envoy')).toBe(before);
    // and the server still answers
    expect((await call(`http://127.0.0.1:${status.port}/healthz/ready`)).status).toBe(503);
  });

  it('honours X-Prometheus-Scrape-Timeout-Seconds: a hanging app is left out', async () => {
    const hang = await app(() => undefined);
    const status = await startStatus({ envoyMetricsUrl: envoyUrl, prometheusAnnotations: JSON.stringify({ scrape: 'true', port: String(hang.port) }) });
    const before = await failures('application');
    const t0 = Date.now();
    const r = await call(`http://127.0.0.1:${status.port}/stats/prometheus`, { headers: { 'x-prometheus-scrape-timeout-seconds': '0.5' } });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(r.status).toBe(200);
    expect(r.body).toContain('envoy_server_live');
    expect(await failures('application')).toBe(before + 1);
  });

  it('does not merge app metrics for a router, nor Envoy stats with PILOT_AGENT_MERGE_ENVOY_STATS=false', async () => {
    const a = await app((_req, res) => res.end('app_metric 1\n'));
    const status = await startStatus({ proxyType: 'router', envoyMetricsUrl: envoyUrl, mergeEnvoyStats: false, prometheusAnnotations: JSON.stringify({ port: String(a.port) }) });
    const r = await call(`http://127.0.0.1:${status.port}/stats/prometheus`);
    expect(r.body).toContain('istio_agent_scrapes_total');
    expect(r.body).not.toMatch(/^envoy_/m);
    expect(r.body).not.toContain('app_metric');
  });
});

describe('ISTIO_PROMETHEUS_ANNOTATIONS', () => {
  const errorOf = (raw: string): ConfigError => {
    try {
      parseScrapeConfig(raw, { statusPort: 15020 });
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error('expected a ConfigError');
  };

  it('parses the legacy and multi-target forms with Istio defaults', () => {
    expect(parseScrapeConfig('', { statusPort: 15020 })).toBeUndefined();
    expect(parseScrapeConfig('{"scrape":"false","port":"8080"}', { statusPort: 15020 })).toBeUndefined();
    expect(parseScrapeConfig('{"scrape":"true"}', { statusPort: 15020 })).toEqual([{ port: 80, path: '/metrics' }]);
    expect(parseScrapeConfig('{"scrape":"true","path":"/m","port":"9090"}', { statusPort: 15020 })).toEqual([{ port: 9090, path: '/m' }]);
    expect(parseScrapeConfig(proxyEnv('hello-multiport-metrics.yaml.injected').ISTIO_PROMETHEUS_ANNOTATIONS!, { statusPort: 15020 })).toEqual([
      { port: 8080, path: '/metrics' },
      { port: 9100, path: '/custom-metrics' },
    ]);
    expect(parseScrapeConfig('{"targets":[{"port":"9100"}]}', { statusPort: 15020 })).toEqual([{ port: 9100, path: '/metrics' }]);
  });

  it("refuses Istio's reserved ports, the status port and bad ports, naming each", () => {
    for (const port of [15000, 15001, 15004, 15006, 15008, 15021, 15053, 15090]) {
      expect(errorOf(`{"targets":[{"port":"${port}"}]}`).message).toMatch(new RegExp(`targets\\[0\\]\\.port: target port ${port} is reserved for Istio`));
    }
    expect(errorOf('{"port":"15020"}').message).toContain('application port is the same as agent port, which may lead to a recursive loop');
    expect(errorOf('{"targets":[{"port":"015020"}]}').message).toContain('target port 015020 is the same as agent port');
    const err = errorOf('{"targets":[{"port":"abc"},{"port":"8080"},{"port":""}]}');
    expect(err.issues.map((i) => i.field)).toEqual(['targets[0].port', 'targets[2].port']);
    expect(err.message).toContain('env ISTIO_PROMETHEUS_ANNOTATIONS: targets[0].port: invalid target port "abc"');
    expect(errorOf('{"port": 8080}').message).toContain('port: expected a string');
    expect(errorOf('not json').message).toContain('failed to unmarshal');
  });
});

describe('content negotiation (Istio allowedContentTypes / negotiateMetricsFormat)', () => {
  it('narrows the Accept header per source', () => {
    expect(allowedContentTypes(PROM_ACCEPT, ENVOY_ACCEPTED_TYPES)).toBe('text/plain; escaping=allow-utf-8; q=0.2; version=1.0.0,text/plain; q=0.1; version=0.0.4');
    expect(allowedContentTypes(undefined, ENVOY_ACCEPTED_TYPES)).toBe('text/plain;version=0.0.4');
    expect(allowedContentTypes('application/json', APP_ACCEPTED_TYPES)).toBe('text/plain;version=0.0.4');
    expect(allowedContentTypes('*/*', APP_ACCEPTED_TYPES)).toBe('text/plain; q=0.1; version=0.0.4');
    expect(allowedContentTypes('application/*', APP_ACCEPTED_TYPES)).toBe('application/openmetrics-text; q=0.1; version=0.0.1');
    expect(allowedContentTypes('application/*', ENVOY_ACCEPTED_TYPES)).toBe('text/plain;version=0.0.4');
    expect(allowedContentTypes('text/plain;;bad', APP_ACCEPTED_TYPES)).toBe('text/plain;version=0.0.4');
  });

  it('maps an app Content-Type to the merged format', () => {
    expect(negotiateMetricsFormat('application/openmetrics-text; version=1.0.0; charset=utf-8')).toBe(OM);
    expect(negotiateMetricsFormat('application/openmetrics-text')).toBe('application/openmetrics-text; version=0.0.1; charset=utf-8');
    expect(negotiateMetricsFormat('application/openmetrics-text; version=2.0.0')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(negotiateMetricsFormat('text/plain')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(negotiateMetricsFormat('')).toBe('text/plain; version=0.0.4; charset=utf-8');
  });
});

describe('LineAligner', () => {
  const run = (chunks: string[], stripEof: boolean, complete = true): string => {
    const l = new LineAligner(stripEof);
    let out = '';
    for (const c of chunks) for (const b of l.push(Buffer.from(c))) out += b.toString();
    return out + l.end(complete).toString();
  };

  it('strips a trailing # EOF however the body is chunked, and keeps one that is not at the end', () => {
    const body = 'a 1\nb 2\n# EOF\n';
    for (let i = 0; i <= body.length; i++) {
      for (let j = i; j <= body.length; j++) expect(run([body.slice(0, i), body.slice(i, j), body.slice(j)], true)).toBe('a 1\nb 2\n');
    }
    expect(run(['a 1\n# EO'], true)).toBe('a 1\n# EO');
    expect(run(['# EOF\nx 1\n'], true)).toBe('# EOF\nx 1\n');
    expect(run(['a 1\n# EOF  \r\n\n'], true)).toBe('a 1\n');
    expect(run(['a 1'], true)).toBe('a 1');
  });

  it('releases only whole lines and the same bytes however the body is split', () => {
    const bodies = ['x 1\nyy 2\n# EOF', 'x 1\n# EOF\nz 3\n', 'a 1\nlong_line_here 12345\n\n# EOF \n', '# EO\n# EOF\n', 'x 1\n  \n'];
    for (const body of bodies) {
      for (const strip of [true, false]) {
        const whole = run([body], strip);
        for (let i = 0; i <= body.length; i++) {
          for (let j = i; j <= body.length; j++) {
            const l = new LineAligner(strip);
            let out = '';
            for (const c of [body.slice(0, i), body.slice(i, j), body.slice(j)]) {
              for (const b of l.push(Buffer.from(c))) out += b.toString();
              expect(out === '' || out.endsWith('\n')).toBe(true);
            }
            expect(out + l.end(true).toString()).toBe(whole);
          }
        }
      }
    }
  });

  it('drops a partial last line when the body was cut short', () => {
    expect(run(['a 1\nb', ' 2'], false, false)).toBe('a 1\n');
    expect(run(['a 1\nb', ' 2'], true, false)).toBe('a 1\n');
    expect(run(['a 1\nb 2\n# EOF\n'], true, false)).toBe('a 1\nb 2\n');
  });
});
