// Bench `dns`: the agent's DNS proxy against dnsmasq answering the same names in the same run.
// - table hits: 1,000 Kubernetes services answered from the NDS table by the agent, and by
//   dnsmasq from a hosts file holding the same names;
//   (the agent twice: as configured, and without its answer cache, so every query is decoded);
// - forwarded: names the table does not have, which the agent forwards to that dnsmasq, against
//   dnsmasq answering them directly.
// Latency is one query at a time (p50, p99), alternating between the agent and dnsmasq query by
// query so that both see the same machine noise; throughput is 64 queries outstanding, runs
// interleaved. The load comes from a separate Node process (test/dns/load-client.ts), the same
// for both servers.
// - a large mesh's table: the heap its lookup table takes for 200,000 Kubernetes services (each
//   known by its forms and their search-domain expansions), against the table's wire size, and
//   the time to build it.

import { LocalDnsServer } from '../src/dns/server.js';
import { decodeNameTable } from '../src/dns/name-table.js';
import { LookupTable, proxyScope } from '../src/dns/lookup-table.js';
import { collectAll } from '../src/util/gc.js';
import { encodeNameTableWire, startDnsmasq, type NameInfoInput } from '../test/dns/support.js';
import { runLoad, type LoadResult } from '../test/dns/load-client.js';
import { freePort } from '../test/support/processes.js';
import { configureLogging, parseOutputLevels } from '../src/util/logger.js';
import { median, round, type Bench } from './harness.js';

const SERVICES = 1000;
const LATENCY_QUERIES = 2000;
const THROUGHPUT_QUERIES = 20_000;
const OUTSTANDING = 64;

type Names = readonly (readonly [string, 'A'])[];

const LARGE_MESH_SERVICES = 200_000;

/** Heap (MiB) and build time (ms) of the lookup table of a large mesh's name table, and its wire size (MiB). */
async function largeTable(): Promise<{ heapMiB: number; wireMiB: number; buildMs: number; names: number }> {
  const table: Record<string, NameInfoInput> = {};
  for (let i = 0; i < LARGE_MESH_SERVICES; i++) {
    const ns = `ns${i % 500}`;
    table[`svc${i}.${ns}.svc.cluster.local`] = { ips: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`], registry: 'Kubernetes', shortname: `svc${i}`, namespace: ns };
  }
  const wire = encodeNameTableWire(table);
  const decoded = await decodeNameTable(wire);
  collectAll();
  const before = process.memoryUsage();
  const t0 = performance.now();
  const lookup = new LookupTable(decoded, proxyScope('ns1', 'ns1.svc.cluster.local'), ['ns1.svc.cluster.local', 'svc.cluster.local', 'cluster.local']);
  const buildMs = performance.now() - t0;
  collectAll();
  const after = process.memoryUsage();
  const heap = after.heapUsed + after.external - before.heapUsed - before.external;
  return { heapMiB: heap / 1048576, wireMiB: wire.length / 1048576, buildMs, names: lookup.size };
}

export const dnsBench: Bench = async ({ runs }) => {
  configureLogging({ outputLevels: parseOutputLevels('all:error') });
  const table: Record<string, NameInfoInput> = {};
  let hosts = '';
  const hits: [string, 'A'][] = [];
  const forwarded: [string, 'A'][] = [];
  for (let i = 0; i < SERVICES; i++) {
    const ip = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    table[`svc-${i}.ns1.svc.cluster.local`] = { ips: [ip], registry: 'Kubernetes', shortname: `svc-${i}`, namespace: 'ns1' };
    hosts += `${ip} svc-${i}.ns1.svc.cluster.local\n10.200.${(i >> 8) & 255}.${i & 255} ext-${i}.example.test\n`;
    hits.push([`svc-${i}.ns1.svc.cluster.local.`, 'A']);
    forwarded.push([`ext-${i}.example.test.`, 'A']);
  }
  const dnsmasq = await startDnsmasq({ host: '127.0.0.1', port: await freePort(), hosts, extraArgs: ['--cache-size=10000'] });
  const agent = await LocalDnsServer.start({
    addr: '127.0.0.1:0',
    proxyNamespace: 'ns1',
    proxyDomain: 'ns1.svc.cluster.local',
    upstreams: [`127.0.0.1:${dnsmasq.port}`],
    searchDomains: ['ns1.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
  });
  // the same without its answer cache: every query decoded and answered from the table
  const uncached = await LocalDnsServer.start({
    addr: '127.0.0.1:0',
    proxyNamespace: 'ns1',
    proxyDomain: 'ns1.svc.cluster.local',
    upstreams: [`127.0.0.1:${dnsmasq.port}`],
    searchDomains: ['ns1.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
    answerCacheEntries: 0,
  });
  const nt = await decodeNameTable(encodeNameTableWire(table));
  agent.updateLookupTable(nt);
  uncached.updateLookupTable(nt);
  // latency: one query at a time, alternating agent / dnsmasq query by query, so that both see the
  // same machine noise; a ratio per run, then the median over runs
  type PortFigures = LoadResult['byPort'][number];
  const abLatency = async (names: Names): Promise<{ agent: PortFigures; dnsmasq: PortFigures; uncached: PortFigures; r: LoadResult }> => {
    const r = await runLoad({ host: '127.0.0.1', port: agent.port, alsoPorts: [dnsmasq.port, uncached.port], names, total: 3 * LATENCY_QUERIES, concurrency: 1 });
    return { agent: r.byPort[0]!, dnsmasq: r.byPort[1]!, uncached: r.byPort[2]!, r };
  };
  const throughput = (port: number, names: Names): Promise<LoadResult> => runLoad({ host: '127.0.0.1', port, names, total: THROUGHPUT_QUERIES, concurrency: OUTSTANDING });
  const hit: Awaited<ReturnType<typeof abLatency>>[] = [];
  const fwd: Awaited<ReturnType<typeof abLatency>>[] = [];
  const qpsRuns: Record<'agentHit' | 'dnsmasqHit' | 'agentFwd', LoadResult[]> = { agentHit: [], dnsmasqHit: [], agentFwd: [] };
  try {
    // warm-up: JIT, dnsmasq's cache
    await abLatency(hits);
    await abLatency(forwarded);
    const n = Math.max(1, Math.min(runs, 9));
    for (let i = 0; i < n; i++) {
      hit.push(await abLatency(hits));
      fwd.push(await abLatency(forwarded));
      qpsRuns.dnsmasqHit.push(await throughput(dnsmasq.port, hits));
      qpsRuns.agentHit.push(await throughput(agent.port, hits));
      qpsRuns.agentFwd.push(await throughput(agent.port, forwarded));
    }
  } finally {
    await agent.close();
    await uncached.close();
    await dnsmasq.stop();
  }
  for (const r of [...hit.map((x) => x.r), ...fwd.map((x) => x.r), ...Object.values(qpsRuns).flat()]) {
    if (r.answered !== r.sent || (r.rcodes['0'] ?? 0) !== r.sent) throw new Error(`a load run lost or failed queries: ${JSON.stringify(r)}`);
  }
  const large = await largeTable();
  const us = (ms: number): number => ms * 1000;
  const med = (xs: readonly number[]): number => median(xs);
  const hitRatio = med(hit.map((x) => x.agent.p50Ms / x.dnsmasq.p50Ms));
  const uncachedRatio = med(hit.map((x) => x.uncached.p50Ms / x.dnsmasq.p50Ms));
  const fwdRatio = med(fwd.map((x) => x.agent.p50Ms / x.dnsmasq.p50Ms));
  const m = (name: 'agentHit' | 'dnsmasqHit' | 'agentFwd'): number => med(qpsRuns[name].map((r) => r.qps));
  const lat = (xs: typeof hit, who: 'agent' | 'dnsmasq' | 'uncached', p: 'p50Ms' | 'p99Ms'): number => us(med(xs.map((x) => x[who][p])));
  return {
    rows: [
      ['table hit p50 / p99, agent (µs)', `${lat(hit, 'agent', 'p50Ms').toFixed(0)} / ${lat(hit, 'agent', 'p99Ms').toFixed(0)}`],
      ['same names p50 / p99, dnsmasq (µs)', `${lat(hit, 'dnsmasq', 'p50Ms').toFixed(0)} / ${lat(hit, 'dnsmasq', 'p99Ms').toFixed(0)}`],
      ['table hit p50 ratio (agent / dnsmasq)', hitRatio.toFixed(2)],
      ['table hit p50 / p99 without the answer cache (µs)', `${lat(hit, 'uncached', 'p50Ms').toFixed(0)} / ${lat(hit, 'uncached', 'p99Ms').toFixed(0)}`],
      ['table hit p50 ratio without the answer cache', uncachedRatio.toFixed(2)],
      ['forwarded p50 / p99, agent -> dnsmasq (µs)', `${lat(fwd, 'agent', 'p50Ms').toFixed(0)} / ${lat(fwd, 'agent', 'p99Ms').toFixed(0)}`],
      ['same names p50 / p99, dnsmasq direct (µs)', `${lat(fwd, 'dnsmasq', 'p50Ms').toFixed(0)} / ${lat(fwd, 'dnsmasq', 'p99Ms').toFixed(0)}`],
      ['forwarded p50 ratio (agent / dnsmasq)', fwdRatio.toFixed(2)],
      [`table hit qps, ${OUTSTANDING} outstanding: agent / dnsmasq`, `${m('agentHit').toFixed(0)} / ${m('dnsmasqHit').toFixed(0)}`],
      ['forwarded qps, agent', m('agentFwd').toFixed(0)],
      [`lookup table of ${LARGE_MESH_SERVICES} services (${large.names} names): heap MiB / wire MiB`, `${large.heapMiB.toFixed(0)} / ${large.wireMiB.toFixed(1)}`],
      ['lookup table build (ms)', large.buildMs.toFixed(0)],
      ['runs', String(hit.length)],
    ],
    figures: {
      table_hit_p50_ratio: round(hitRatio),
      table_hit_uncached_p50_ratio: round(uncachedRatio),
      forward_p50_ratio: round(fwdRatio),
      table_hit_qps: Math.round(m('agentHit')),
      table_hit_qps_ratio: round(m('agentHit') / m('dnsmasqHit')),
      forward_qps: Math.round(m('agentFwd')),
      table_hit_p50_us: round(lat(hit, 'agent', 'p50Ms'), 1),
      table_hit_p99_us: round(lat(hit, 'agent', 'p99Ms'), 1),
      dnsmasq_p50_us: round(lat(hit, 'dnsmasq', 'p50Ms'), 1),
      forward_p50_us: round(lat(fwd, 'agent', 'p50Ms'), 1),
      forward_p99_us: round(lat(fwd, 'agent', 'p99Ms'), 1),
      large_table_heap_mb: round(large.heapMiB, 1),
      large_table_heap_per_wire_byte: round(large.heapMiB / large.wireMiB),
      large_table_build_ms: Math.round(large.buildMs),
    },
  };
};
