// Bench `metrics`: one merged scrape of the status port (agent metrics + a 20 MB Envoy Prometheus
// body + two application targets), timed as a ratio to fetching the Envoy body alone in the same
// run, and the status server's peak RSS growth as a multiple of the largest single source.
//
// Three processes, so that each figure belongs to the right one: this one is the client (as
// Prometheus), a `sources` child serves the Envoy and app bodies, an `agent` child runs the
// StatusServer. The agent's peak RSS is its VmHWM, reset (clear_refs) while idle after start-up.
//
// For scale, the same run also fetches the Envoy body through a bare TCP relay (a `relay` child:
// net.Socket pipe both ways, no HTTP, no merging): `tcp_relay_ratio` is what any extra hop costs
// on this machine, the floor under `merge_ratio`.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort } from '../test/support/processes.js';
import { median, round, type Bench } from './harness.js';

const ENVOY_BYTES = 20 * 1000 * 1000;
const APP_BYTES = 256 * 1024;
const ROLE_FLAG = '--metrics-bench-role';
const MiB = 1024 * 1024;

/** Envoy-like Prometheus text of about `bytes` bytes. */
function envoyBody(bytes: number): Buffer {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    let s = '';
    if (i % 200 === 0) s += `# TYPE envoy_cluster_upstream_rq_${i / 200} counter\n`;
    s += `envoy_cluster_upstream_rq_${Math.floor(i / 200)}{response_code_class="2xx",cluster_name="outbound|8080||svc-${i % 997}.ns-${i % 13}.svc.cluster.local"} ${i * 7}\n`;
    parts.push(s);
    size += s.length;
  }
  return Buffer.from(parts.join(''));
}

function appBody(name: string, bytes: number): Buffer {
  const parts: string[] = [`# TYPE ${name}_requests_total counter\n`];
  let size = parts[0]!.length;
  for (let i = 0; size < bytes; i++) {
    const s = `${name}_requests_total{path="/api/v1/items/${i}",method="GET",code="200"} ${i}\n`;
    parts.push(s);
    size += s.length;
  }
  return Buffer.from(parts.join(''));
}

// ----- child roles ------------------------------------------------------------------------------

async function sourcesRole(): Promise<void> {
  const bodies = new Map<string, Buffer>([
    ['/stats/prometheus', envoyBody(ENVOY_BYTES)],
    ['/metrics', appBody('app', APP_BYTES)],
    ['/custom-metrics', appBody('custom', APP_BYTES)],
  ]);
  const listen = (paths: string[]): Promise<number> => {
    const server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      const body = paths.includes(path) ? bodies.get(path) : undefined;
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(body);
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
  };
  const envoy = await listen(['/stats/prometheus']);
  const app1 = await listen(['/metrics']);
  const app2 = await listen(['/custom-metrics']);
  process.stdout.write(JSON.stringify({ envoy, app1, app2, envoyBytes: bodies.get('/stats/prometheus')!.length }) + '\n');
}

async function relayRole(args: { envoy: number }): Promise<void> {
  const net = await import('node:net');
  const server = net.createServer((client) => {
    const upstream = net.connect(args.envoy, '127.0.0.1');
    client.pipe(upstream).on('error', () => client.destroy());
    upstream.pipe(client).on('error', () => upstream.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n');
}

async function agentRole(args: { port: number; envoy: number; app1: number; app2: number }): Promise<void> {
  const { configureLogging } = await import('../src/util/logger.js');
  configureLogging({ write: () => undefined });
  const { StatusServer } = await import('../src/status/server.js');
  const status = new StatusServer({
    port: args.port,
    host: '127.0.0.1',
    proxyType: 'sidecar',
    adminPort: 1,
    envoyMetricsUrl: `http://127.0.0.1:${args.envoy}/stats/prometheus`,
    prometheusAnnotations: JSON.stringify({ scrape: 'true', targets: [{ port: String(args.app1), path: '/metrics' }, { port: String(args.app2), path: '/custom-metrics' }] }),
  });
  await status.start();
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
}

// ----- the client --------------------------------------------------------------------------------

function firstLine(child: ChildProcess): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => reject(new Error(`bench child exited (${code}): ${err}`)));
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l) as Record<string, unknown>));
  });
}

function startRole(role: string, args: Record<string, number> = {}): ChildProcess {
  const self = fileURLToPath(import.meta.url);
  return spawn(process.execPath, [self, ROLE_FLAG, role, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** GET `url` to the end; returns [ms, bytes]. */
function fetchAll(url: string): Promise<[number, number]> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, headers: { accept: 'text/plain;version=0.0.4' } }, (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`${url}: HTTP ${res.statusCode}`));
          else resolve([Number(process.hrtime.bigint() - t0) / 1e6, bytes]);
        });
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1] ?? NaN) * 1024;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

export const metricsBench: Bench = async ({ runs }) => {
  const sources = startRole('sources');
  let agent: ChildProcess | undefined;
  let relay: ChildProcess | undefined;
  try {
    const src = (await firstLine(sources)) as { envoy: number; app1: number; app2: number; envoyBytes: number };
    relay = startRole('relay', { envoy: src.envoy });
    const relayPort = ((await firstLine(relay)) as { port: number }).port;
    const port = await freePort();
    agent = startRole('agent', { port, envoy: src.envoy, app1: src.app1, app2: src.app2 });
    await firstLine(agent);
    await sleep(500); // idle after start-up
    const pid = agent.pid!;
    const idleRss = procStatus(pid, 'VmRSS');
    let hwmReset = true;
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5'); // reset VmHWM to the current RSS
    } catch {
      hwmReset = false; // then VmHWM includes start-up, an overestimate
    }
    const direct: number[] = [];
    const merged: number[] = [];
    const relayed: number[] = [];
    let mergedBytes = 0;
    const envoyUrl = `http://127.0.0.1:${src.envoy}/stats/prometheus`;
    const statusUrl = `http://127.0.0.1:${port}/stats/prometheus`;
    for (let i = 0; i < Math.max(1, runs); i++) {
      // interleaved, so machine noise hits both series alike
      direct.push((await fetchAll(envoyUrl))[0]);
      const [ms, bytes] = await fetchAll(statusUrl);
      merged.push(ms);
      mergedBytes = bytes;
      relayed.push((await fetchAll(`http://127.0.0.1:${relayPort}/stats/prometheus`))[0]);
    }
    const peak = procStatus(pid, 'VmHWM');
    const growth = Math.max(0, peak - idleRss);
    const largest = src.envoyBytes;
    const d = median(direct);
    const m = median(merged);
    const r = median(relayed);
    return {
      rows: [
        ['Envoy body (MiB)', (src.envoyBytes / MiB).toFixed(1)],
        ['app targets (KiB each)', String(APP_BYTES / 1024)],
        ['merged answer (MiB)', (mergedBytes / MiB).toFixed(1)],
        ['fetch Envoy alone (median ms)', d.toFixed(1)],
        ['merged scrape (median ms)', m.toFixed(1)],
        ['merge ratio (target <= 1.2)', (m / d).toFixed(2)],
        ['bare TCP relay (median ms)', r.toFixed(1)],
        ['bare TCP relay ratio (floor of any extra hop)', (r / d).toFixed(2)],
        ['agent idle RSS (MiB)', (idleRss / MiB).toFixed(1)],
        [`agent peak RSS growth (MiB)${hwmReset ? '' : ' [VmHWM not reset]'}`, (growth / MiB).toFixed(1)],
        ['RSS growth / largest source (target < 2)', (growth / largest).toFixed(2)],
        ['runs', String(runs)],
      ],
      figures: {
        merge_ratio: round(m / d),
        rss_growth_over_largest_source: round(growth / largest),
        tcp_relay_ratio: round(r / d),
        envoy_fetch_ms: round(d, 1),
        merged_scrape_ms: round(m, 1),
        rss_growth_mb: round(growth / MiB, 1),
        envoy_body_mb: round(src.envoyBytes / MiB, 1),
      },
    };
  } finally {
    if (agent) await stop(agent);
    if (relay) await stop(relay);
    await stop(sources);
  }
};

// child entry: `node metrics.js --metrics-bench-role <sources|relay|agent> <json args>`
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2] === ROLE_FLAG) {
  const role = process.argv[3];
  const args = JSON.parse(process.argv[4] ?? '{}') as { port: number; envoy: number; app1: number; app2: number };
  (role === 'sources' ? sourcesRole() : role === 'relay' ? relayRole(args) : agentRole(args)).catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
