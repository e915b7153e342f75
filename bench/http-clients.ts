// Bench `http-clients`: why the agent has two HTTP clients of its own besides undici (which it
// uses for the Wasm fetches: remote servers, its connector guard and interceptors).
//
//   - local calls (Envoy's admin API for readiness and drain, the status port for `pilot-agent
//     wait`): util/local-http.ts over node:http against undici's request(), each in a fresh
//     process, from loading the client to the first answer, and the resident memory that costs.
//     `local_cold_ratio` and `local_rss_ratio` are undici / node:http (> 1: node:http is cheaper).
//   - the merged-metrics scrape (status/scrape-client.ts): CPU time to read a 20 MB Prometheus
//     body, against undici's body stream and node:http's response stream.
//     `scrape_cpu_ratio_undici` and `scrape_cpu_ratio_node_http` are the other / the scrape client.
//
// The bodies come from a separate process, so each client process's CPU time is its own.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { median, round, type Bench } from './harness.js';
import { spawnTracked, waitForLine, type BenchChild } from './processes.js';

const ROLE_FLAG = '--http-clients-bench-role';
const BIG_BYTES = 20 * 1000 * 1000;
const STATS_BODY = 'cluster_manager.cds.update_success: 1\nlistener_manager.lds.update_success: 1\nserver.state: 0\nlistener_manager.workers_started: 1\n';
const MiB = 1024 * 1024;

type LocalClient = 'node-http' | 'undici';
type StreamClient = 'scrape-client' | 'undici' | 'node-http';

// ----- child roles ------------------------------------------------------------------------------

async function serverRole(): Promise<void> {
  const big = Buffer.alloc(BIG_BYTES, 'envoy_cluster_upstream_rq{cluster_name="outbound|8080||svc.ns.svc.cluster.local"} 1\n');
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/big')) {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': big.length });
      res.end(big);
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(STATS_BODY);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
}

/** One cold call in this fresh process: load the client, call, report time and RSS growth. */
async function coldRole(args: { client: LocalClient; port: number }): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const rss0 = process.memoryUsage().rss;
  const url = `http://127.0.0.1:${args.port}/stats?usedonly&filter=x`;
  const t0 = performance.now();
  let body: string;
  if (args.client === 'node-http') {
    const { localRequest } = await import('../src/util/local-http.js');
    body = (await localRequest(url, { timeoutMs: 5000 })).body;
  } else {
    const { request } = await import('undici');
    body = await (await request(url, { signal: AbortSignal.timeout(5000) })).body.text();
  }
  const ms = performance.now() - t0;
  if (body !== STATS_BODY) throw new Error(`unexpected body from ${url}`);
  gc?.();
  process.stdout.write(`${JSON.stringify({ ms, rssMiB: (process.memoryUsage().rss - rss0) / MiB })}\n`);
}

/** CPU milliseconds of this process for each of `runs` reads of the big body (after one warm-up). */
async function streamRole(args: { client: StreamClient; port: number; runs: number }): Promise<void> {
  const url = `http://127.0.0.1:${args.port}/big`;
  const readOnce = async (): Promise<number> => {
    let bytes = 0;
    if (args.client === 'scrape-client') {
      const { ScrapeSource } = await import('../src/status/scrape-client.js');
      const src = await ScrapeSource.open(url, {}, AbortSignal.timeout(60_000));
      for (let s = await src.read(); s; s = await src.read()) {
        bytes += s.data.length;
        s.release();
      }
      src.destroy();
    } else if (args.client === 'undici') {
      const { request } = await import('undici');
      const res = await request(url, { signal: AbortSignal.timeout(60_000) });
      for await (const chunk of res.body) bytes += (chunk as Buffer).length;
    } else {
      await new Promise<void>((resolve, reject) => {
        http
          .get(url, { agent: false }, (res) => {
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.on('end', resolve);
            res.on('error', reject);
          })
          .on('error', reject);
      });
    }
    return bytes;
  };
  await readOnce();
  const cpu: number[] = [];
  for (let i = 0; i < args.runs; i++) {
    const c0 = process.cpuUsage();
    const bytes = await readOnce();
    const c = process.cpuUsage(c0);
    if (bytes !== BIG_BYTES) throw new Error(`${args.client} read ${bytes} bytes, want ${BIG_BYTES}`);
    cpu.push((c.user + c.system) / 1000);
  }
  process.stdout.write(`${JSON.stringify({ cpuMs: median(cpu) })}\n`);
}

// ----- the bench --------------------------------------------------------------------------------

const self = fileURLToPath(import.meta.url);

function startRole(role: string, args: Record<string, unknown> = {}): BenchChild {
  return spawnTracked(`http-clients ${role}`, process.execPath, ['--expose-gc', self, ROLE_FLAG, role, JSON.stringify(args)], { echoStderr: true });
}

/** The child's report: its first stdout line that is a JSON object. */
async function report<T>(child: BenchChild): Promise<T> {
  return JSON.parse((await waitForLine(child, /^\{.*\}$/, 300_000))[0]) as T;
}

async function runRole<T>(role: string, args: Record<string, unknown>): Promise<T> {
  const child = startRole(role, args);
  const result = await report<T>(child);
  await child.exited;
  return result;
}

export const httpClientsBench: Bench = async ({ runs }) => {
  const server = startRole('server');
  try {
    const { port } = await report<{ port: number }>(server);
    const cold: Record<LocalClient, { ms: number[]; rss: number[] }> = { 'node-http': { ms: [], rss: [] }, undici: { ms: [], rss: [] } };
    for (let i = 0; i < runs; i++) {
      // alternating, so that both see the same machine noise
      for (const client of ['node-http', 'undici'] as const) {
        const r = await runRole<{ ms: number; rssMiB: number }>('cold', { client, port });
        cold[client].ms.push(r.ms);
        cold[client].rss.push(r.rssMiB);
      }
    }
    const stream: Record<StreamClient, number> = { 'scrape-client': 0, undici: 0, 'node-http': 0 };
    for (const client of Object.keys(stream) as StreamClient[]) stream[client] = (await runRole<{ cpuMs: number }>('stream', { client, port, runs })).cpuMs;

    const m = (xs: number[]): number => median(xs);
    const figures = {
      local_cold_ms_node_http: round(m(cold['node-http'].ms)),
      local_cold_ms_undici: round(m(cold.undici.ms)),
      local_cold_ratio: round(m(cold.undici.ms) / m(cold['node-http'].ms)),
      local_rss_mib_node_http: round(m(cold['node-http'].rss)),
      local_rss_mib_undici: round(m(cold.undici.rss)),
      local_rss_ratio: round(m(cold.undici.rss) / Math.max(0.1, m(cold['node-http'].rss))),
      scrape_cpu_ms_scrape_client: round(stream['scrape-client']),
      scrape_cpu_ms_undici: round(stream.undici),
      scrape_cpu_ms_node_http: round(stream['node-http']),
      scrape_cpu_ratio_undici: round(stream.undici / stream['scrape-client']),
      scrape_cpu_ratio_node_http: round(stream['node-http'] / stream['scrape-client']),
    };
    return {
      rows: [
        ['local call, cold (node:http / undici)', `${figures.local_cold_ms_node_http} ms / ${figures.local_cold_ms_undici} ms (x${figures.local_cold_ratio})`],
        ['local call, RSS growth (node:http / undici)', `${figures.local_rss_mib_node_http} MiB / ${figures.local_rss_mib_undici} MiB`],
        ['20 MB scrape CPU: scrape client', `${figures.scrape_cpu_ms_scrape_client} ms`],
        ['20 MB scrape CPU: undici', `${figures.scrape_cpu_ms_undici} ms (x${figures.scrape_cpu_ratio_undici})`],
        ['20 MB scrape CPU: node:http', `${figures.scrape_cpu_ms_node_http} ms (x${figures.scrape_cpu_ratio_node_http})`],
      ],
      figures,
    };
  } finally {
    await server.stop();
  }
};

// ----- child entry ------------------------------------------------------------------------------

const roleAt = process.argv.indexOf(ROLE_FLAG);
if (roleAt >= 0) {
  const role = process.argv[roleAt + 1];
  const args = JSON.parse(process.argv[roleAt + 2] ?? '{}') as never;
  const roles: Record<string, (a: never) => Promise<void>> = { server: serverRole, cold: coldRole, stream: streamRole };
  const fn = role ? roles[role] : undefined;
  if (!fn) {
    process.stderr.write(`unknown role ${role}\n`);
    process.exit(2);
  }
  fn(args).then(
    () => {
      if (role !== 'server') process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
