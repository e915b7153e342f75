// The DNS proxy end to end: the dev control plane pushes a NameTable through the real xDS proxy
// (subscribed on the first LDS request of a real ADS client), dig queries the agent's DNS server,
// and dnsmasq is the upstream resolver named in a test resolv.conf.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openSotw, startControlPlane, type ControlPlane, type SotwClient } from '../control-plane/index.js';
import { registry } from '../../src/metrics/registry.js';
import { LocalDnsServer } from '../../src/dns/server.js';
import type { NameInfo } from '../../src/dns/name-table.js';
import { XdsProxy } from '../../src/xds/xds-proxy.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { dig, encodeNameTableWire, fakeUpstream, hostsLines, silentUdp, startDnsmasq, udpQuery, type DigResult, type Dnsmasq, type NameInfoInput } from './support.js';
import { freePort } from '../support/processes.js';

const NDS = TypeUrl.NameTable;
const LDS = TypeUrl.Listener;
const K8S = 'Kubernetes';
const HEADLESS_IPS = Array.from({ length: 100 }, (_, i) => `10.5.${Math.floor(i / 200)}.${(i % 200) + 1}`);

const TABLE: Record<string, NameInfoInput> = {
  'reviews.ns1.svc.cluster.local': { ips: ['10.0.1.1'], registry: K8S, shortname: 'reviews', namespace: 'ns1' },
  'ratings.ns2.svc.cluster.local': { ips: ['10.0.2.1'], registry: K8S, shortname: 'ratings', namespace: 'ns2' },
  'catalog.ns2.svc.cluster.remote': { ips: ['10.0.3.1', '10.0.3.2', '10.0.3.3', '10.0.3.4'], registry: K8S, shortname: 'catalog', namespace: 'ns2' },
  'headless.ns1.svc.cluster.local': { ips: HEADLESS_IPS, registry: K8S, shortname: 'headless', namespace: 'ns1' },
  'aliased.ns1.svc.cluster.local': { ips: ['10.0.4.1'], registry: K8S, shortname: 'aliased', namespace: 'ns1', altHosts: ['aliased.ns1.svc.clusterset.local'] },
  'api.external.test': { ips: ['192.0.2.10'], registry: 'External' },
  'v6only.external.test': { ips: ['2001:db8::10'], registry: 'External' },
  'dual.external.test': { ips: ['192.0.2.20', '2001:db8::20'], registry: 'External' },
  '*.wild.test': { ips: ['192.0.2.30'], registry: 'External' },
  '*.deep.wild.test': { ips: ['192.0.2.31'], registry: 'External' },
  'dotted.external.test.': { ips: ['192.0.2.40'], registry: 'External' },
  'unparseable.external.test': { ips: ['not-an-ip'], registry: 'External' },
};

const isRoot = process.getuid?.() === 0;

let dir: string;
let cp: ControlPlane;
let dnsmasq: Dnsmasq;
let dns: LocalDnsServer;
let proxy: XdsProxy;
let envoy: SotwClient;
let resolvConf: string;
let port: number;

const q = (args: string[]): Promise<DigResult> => dig('127.0.0.1', port, args);
const addrs = (r: DigResult, type = 'A'): string[] => r.answers.filter((a) => a.type === type).map((a) => a.data);

async function metric(name: string): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => !('metricName' in v) || v.metricName === name || v.metricName === `${name}_count`)?.value ?? 0;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pa-dns-'));
  // As root, dnsmasq serves on <random 127.x address>:53, the port resolv.conf implies; otherwise
  // (or if that port is taken) on a free port, given to the server as an explicit upstream.
  const hosts = `10.1.0.1 forwarded.test\n10.1.0.2 api.external.test\n10.1.0.3 ratings\n${hostsLines('big.test', 60)}`;
  const randomLoopback = `127.${100 + Math.floor(Math.random() * 100)}.${Math.floor(Math.random() * 250)}.${2 + Math.floor(Math.random() * 250)}`;
  let onPort53: Dnsmasq | undefined;
  if (isRoot) {
    try {
      onPort53 = await startDnsmasq({ host: randomLoopback, port: 53, hosts });
    } catch {
      /* fall back below */
    }
  }
  const viaResolvConfOnly = onPort53 !== undefined;
  dnsmasq = onPort53 ?? (await startDnsmasq({ host: '127.0.0.1', port: await freePort(), hosts }));
  const host = dnsmasq.host;
  resolvConf = join(dir, 'resolv.conf');
  writeFileSync(resolvConf, `# test resolver\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local\nnameserver ${host}\noptions ndots:5\n`);
  cp = await startControlPlane({ plaintext: true });
  dns = await LocalDnsServer.start({
    addr: '127.0.0.1:0',
    proxyNamespace: 'ns1',
    proxyDomain: 'ns1.svc.cluster.local',
    resolvConfPath: resolvConf,
    ...(viaResolvConfOnly ? {} : { upstreams: [`${host}:${dnsmasq.port}`] }),
    upstreamTimeoutMs: 2000,
  });
  port = dns.port;
  const socketPath = join(dir, 'XDS');
  proxy = new XdsProxy({ socketPath, upstream: { address: cp.address, clusterId: 'Kubernetes', headers: {} } });
  proxy.registerHandler(dns.nameTableHandler);
  await proxy.start();
  expect(dns.ready()).toBe(false);
  const version = cp.setResources(NDS, [{ name: 'nametable', binary: encodeNameTableWire(TABLE) }], { replace: true });
  cp.setResources(LDS, [], { replace: true });
  envoy = openSotw({ address: `unix:${socketPath}`, tls: false });
  envoy.request({ type_url: LDS, node: { id: 'sidecar~10.0.0.9~app.ns1~ns1.svc.cluster.local' } });
  await cp.waitForAck(NDS, version);
  await vi.waitFor(() => expect(dns.ready()).toBe(true));
}, 60_000);

afterAll(async () => {
  envoy?.close();
  await proxy?.close();
  await dns?.close();
  await cp?.close();
  await dnsmasq?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('name table answers', () => {
  it('answers a Kubernetes service under its FQDN, name.ns., name.ns.svc. and (same namespace) name., authoritative, TTL 30', async () => {
    for (const name of ['reviews.ns1.svc.cluster.local.', 'reviews.ns1.', 'reviews.ns1.svc.', 'reviews.']) {
      const r = await q([name, 'A']);
      expect(r.status, name).toBe('NOERROR');
      expect(r.flags, name).toEqual(expect.arrayContaining(['qr', 'aa', 'rd', 'ra']));
      expect(r.answers, name).toEqual([{ name, ttl: 30, type: 'A', data: '10.0.1.1' }]);
    }
  });

  it('gives no short name to services of other namespaces, and no short forms at all to other domains', async () => {
    expect(addrs(await q(['ratings.ns2.', 'A']))).toEqual(['10.0.2.1']);
    expect(addrs(await q(['ratings.ns2.svc.', 'A']))).toEqual(['10.0.2.1']);
    // not ours: forwarded, and dnsmasq knows "ratings." as 10.1.0.3
    expect(addrs(await q(['ratings.', 'A']))).toEqual(['10.1.0.3']);
    expect((await q(['catalog.ns2.svc.cluster.remote.', 'A'])).answers).toHaveLength(4);
    expect((await q(['catalog.ns2.', 'A'])).status).toBe('NXDOMAIN');
  });

  it('answers the first search domain expansion with a CNAME to the canonical name plus its addresses', async () => {
    const r = await q(['reviews.ns1.ns1.svc.cluster.local.', 'A']);
    expect(r.flags).toContain('aa');
    expect(r.answers).toEqual([
      { name: 'reviews.ns1.ns1.svc.cluster.local.', ttl: 30, type: 'CNAME', data: 'reviews.ns1.' },
      { name: 'reviews.ns1.', ttl: 30, type: 'A', data: '10.0.1.1' },
    ]);
    const ext = await q(['api.external.test.ns1.svc.cluster.local.', 'A']);
    expect(ext.answers).toEqual([
      { name: 'api.external.test.ns1.svc.cluster.local.', ttl: 30, type: 'CNAME', data: 'api.external.test.' },
      { name: 'api.external.test.', ttl: 30, type: 'A', data: '192.0.2.10' },
    ]);
    // the FQDN + search domain is not a name of the table: forwarded (dnsmasq says NXDOMAIN)
    expect((await q(['reviews.ns1.svc.cluster.local.ns1.svc.cluster.local.', 'A'])).status).toBe('NXDOMAIN');
    // only the first search domain is expanded
    expect((await q(['api.external.test.svc.cluster.local.', 'A'])).status).toBe('NXDOMAIN');
  });

  it('answers alt hosts and non-Kubernetes hosts (with or without a trailing dot); skips hosts without a valid IP', async () => {
    expect(addrs(await q(['aliased.ns1.svc.clusterset.local.', 'A']))).toEqual(['10.0.4.1']);
    expect(addrs(await q(['api.external.test.', 'A']))).toEqual(['192.0.2.10']); // the table wins over dnsmasq's 10.1.0.2
    expect(addrs(await q(['dotted.external.test.', 'A']))).toEqual(['192.0.2.40']);
    expect((await q(['unparseable.external.test.', 'A'])).status).toBe('NXDOMAIN'); // forwarded
  });

  it('answers A and AAAA separately; a known name without records of the type is NOERROR with no answers', async () => {
    expect(addrs(await q(['dual.external.test.', 'A']))).toEqual(['192.0.2.20']);
    expect(addrs(await q(['dual.external.test.', 'AAAA']), 'AAAA')).toEqual(['2001:db8::20']);
    expect(addrs(await q(['v6only.external.test.', 'AAAA']), 'AAAA')).toEqual(['2001:db8::10']);
    const none = await q(['v6only.external.test.', 'A']);
    expect(none.status).toBe('NOERROR');
    expect(none.flags).toContain('aa');
    expect(none.answers).toEqual([]);
    const none4 = await q(['reviews.ns1.ns1.svc.cluster.local.', 'AAAA']);
    expect([none4.status, none4.answers.length]).toEqual(['NOERROR', 0]);
  });

  it('forwards other query types of known names (Istio answers only A and AAAA)', async () => {
    expect((await q(['reviews.ns1.svc.cluster.local.', 'TXT'])).status).toBe('NXDOMAIN');
  });

  it('matches wildcards label by label, most specific first, answering under the question name', async () => {
    expect((await q(['foo.wild.test.', 'A'])).answers).toEqual([{ name: 'foo.wild.test.', ttl: 30, type: 'A', data: '192.0.2.30' }]);
    expect((await q(['a.b.c.wild.test.', 'A'])).answers).toEqual([{ name: 'a.b.c.wild.test.', ttl: 30, type: 'A', data: '192.0.2.30' }]);
    expect((await q(['x.deep.wild.test.', 'A'])).answers).toEqual([{ name: 'x.deep.wild.test.', ttl: 30, type: 'A', data: '192.0.2.31' }]);
    expect((await q(['wild.test.', 'A'])).status).toBe('NXDOMAIN'); // the wildcard does not cover its parent
    const chained = await q(['foo.wild.test.ns1.svc.cluster.local.', 'A']);
    expect(chained.answers).toEqual([
      { name: 'foo.wild.test.ns1.svc.cluster.local.', ttl: 30, type: 'CNAME', data: '*.wild.test.' },
      { name: '*.wild.test.', ttl: 30, type: 'A', data: '192.0.2.30' },
    ]);
  });

  it('is case-insensitive and echoes the question as asked', async () => {
    const r = await q(['ReViEwS.NS1.SVC.Cluster.Local.', 'A']);
    expect(r.answers).toEqual([{ name: 'ReViEwS.NS1.SVC.Cluster.Local.', ttl: 30, type: 'A', data: '10.0.1.1' }]);
    expect(addrs(await q(['FOO.WILD.TEST.', 'A']))).toEqual(['192.0.2.30']);
  });

  it("forwards a name with a dot inside a label (reviews\\.ns1.): Istio's key is the escaped text, which no table name is", async () => {
    for (const name of ['reviews\\.ns1.svc.cluster.local.', 'reviews\\.ns1.']) {
      const r = await q([name, 'A']);
      expect(r.answers, name).toEqual([]);
      expect(r.status, name).toBe('NXDOMAIN'); // dnsmasq's answer: forwarded, not the table's 10.0.1.1
    }
    expect(addrs(await q(['reviews.ns1.', 'A']))).toEqual(['10.0.1.1']);
  });

  it('answers over TCP too', async () => {
    const r = await q(['+tcp', 'reviews.', 'A']);
    expect(r.answers).toEqual([{ name: 'reviews.', ttl: 30, type: 'A', data: '10.0.1.1' }]);
    const all = await q(['+tcp', 'headless.ns1.svc.cluster.local.', 'A']);
    expect(all.flags).not.toContain('tc');
    expect(addrs(all).sort()).toEqual([...HEADLESS_IPS].sort());
  });

  it('rotates the order of the addresses between answers', async () => {
    const firsts = new Set<string>();
    for (let i = 0; i < 20; i++) firsts.add(addrs(await q(['catalog.ns2.svc.cluster.remote.', 'A']))[0]!);
    expect(firsts.size).toBeGreaterThan(1);
    const r = await q(['catalog.ns2.svc.cluster.remote.', 'A']);
    expect(addrs(r).sort()).toEqual(['10.0.3.1', '10.0.3.2', '10.0.3.3', '10.0.3.4']);
  });

  it('truncates UDP answers to 512 bytes without EDNS (TC set) and to the EDNS size with it', async () => {
    const plain = await q(['+noedns', '+ignore', 'headless.ns1.svc.cluster.local.', 'A']);
    expect(plain.flags).toContain('tc');
    // owner names are compressed: far more than 7 uncompressed records fit
    expect(plain.answers.length).toBeGreaterThan(20);
    expect(plain.answers.length).toBeLessThan(100);
    const edns = await q(['+bufsize=4096', 'headless.ns1.svc.cluster.local.', 'A']);
    expect(edns.flags).not.toContain('tc');
    expect(edns.answers).toHaveLength(100);
    expect(edns.ednsUdp).toBeGreaterThan(0);
    const small = await q(['+bufsize=1000', '+ignore', 'headless.ns1.svc.cluster.local.', 'A']);
    expect(small.flags).toContain('tc');
    expect(small.answers.length).toBeGreaterThan(plain.answers.length);
    // dig's own fallback: truncated over UDP, complete over TCP
    const fallback = await q(['+noedns', 'headless.ns1.svc.cluster.local.', 'A']);
    expect(fallback.answers).toHaveLength(100);
  });
});

describe('forwarding to the resolv.conf nameservers', () => {
  it('forwards unknown names over UDP and TCP, passing NXDOMAIN through', async () => {
    const before = await metric('istio_agent_dns_upstream_requests_total');
    const r = await q(['forwarded.test.', 'A']);
    expect(r.answers).toEqual([expect.objectContaining({ name: 'forwarded.test.', type: 'A', data: '10.1.0.1' })]);
    expect(addrs(await q(['+tcp', 'forwarded.test.', 'A']))).toEqual(['10.1.0.1']);
    expect((await q(['missing.test.', 'A'])).status).toBe('NXDOMAIN');
    expect(await metric('istio_agent_dns_upstream_requests_total')).toBeGreaterThanOrEqual(before + 3);
  });

  it('returns answers larger than 512 bytes: whole with EDNS, truncated (TC) without, whole over TCP', async () => {
    const edns = await q(['+bufsize=1232', 'big.test.', 'A']);
    expect(edns.status).toBe('NOERROR');
    expect(edns.answers).toHaveLength(60);
    expect(edns.flags).not.toContain('tc');
    const plain = await q(['+noedns', '+ignore', 'big.test.', 'A']);
    expect(plain.status).toBe('NOERROR');
    expect(plain.flags).toContain('tc');
    expect(plain.answers.length).toBeGreaterThan(0);
    expect(plain.answers.length).toBeLessThan(60);
    expect(plain.ednsUdp).toBeUndefined(); // the OPT the agent added upstream is not shown to the client
    expect((await q(['+noedns', 'big.test.', 'A'])).answers).toHaveLength(60);
    expect((await q(['+tcp', 'big.test.', 'A'])).answers).toHaveLength(60);
  });
});

describe('xDS', () => {
  it('keeps the NameTable away from Envoy and NACKs a table that does not decode, keeping the last good one', async () => {
    for (const r of envoy.received) expect(r.typeUrl).not.toBe(NDS);
    cp.setResources(NDS, [{ name: 'nametable', binary: new Uint8Array([0x0a, 0xff, 0xff, 0xff]) }], { replace: true });
    const nack = await cp.waitForNack(NDS);
    expect(nack.errorDetail?.message).toBeTruthy();
    expect(addrs(await q(['reviews.', 'A']))).toEqual(['10.0.1.1']);
    // a good table again replaces it
    const v = cp.setResources(NDS, [{ name: 'nametable', binary: encodeNameTableWire({ ...TABLE, 'new.external.test': { ips: ['192.0.2.99'] } }) }], { replace: true });
    await cp.waitForAck(NDS, v);
    expect(addrs(await q(['new.external.test.', 'A']))).toEqual(['192.0.2.99']);
  });

  it('debugTable() lists the table and the alternate names (registry Kubernetes)', () => {
    const t = dns.debugTable()!.table;
    expect(t['reviews.ns1.svc.cluster.local']).toEqual({ ips: ['10.0.1.1'], registry: 'Kubernetes', shortname: 'reviews', namespace: 'ns1' });
    expect(t['reviews.']).toEqual({ ips: ['10.0.1.1'], registry: 'Kubernetes' });
    expect(t['reviews.ns1.svc.']).toEqual({ ips: ['10.0.1.1'], registry: 'Kubernetes' });
    expect(t['aliased.ns1.svc.cluster.local']!.altHosts).toEqual(['aliased.ns1.svc.clusterset.local']);
    expect(t['ratings.']).toBeUndefined();
    expect(t['api.external.test.']).toEqual({ ips: ['192.0.2.10'], registry: 'Kubernetes' });
  });

  it('counts requests in istio_agent_dns_requests_total', async () => {
    const before = await metric('istio_agent_dns_requests_total');
    await q(['reviews.', 'A']);
    expect(await metric('istio_agent_dns_requests_total')).toBe(before + 1);
    const text = await registry.metrics();
    expect(text).toContain('istio_agent_dns_upstream_failures_total');
    expect(text).toContain('istio_agent_dns_upstream_request_duration_seconds_bucket{le="0.001"}');
  });
});

describe('standalone servers', () => {
  const servers: LocalDnsServer[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
    for (const c of cleanups) await c();
  });
  async function server(opts: Partial<Parameters<typeof LocalDnsServer.start>[0]>): Promise<LocalDnsServer> {
    const s = await LocalDnsServer.start({ addr: '127.0.0.1:0', proxyNamespace: 'ns1', proxyDomain: 'ns1.svc.cluster.local', searchDomains: [], upstreams: [], ...opts });
    servers.push(s);
    return s;
  }

  it('answers SERVFAIL before the first table (not serving :53), and is not ready', async () => {
    const s = await server({ upstreams: [`${dnsmasq.host}:${dnsmasq.port}`] });
    expect(s.ready()).toBe(false);
    expect(s.debugTable()).toBeUndefined();
    expect((await dig('127.0.0.1', s.port, ['forwarded.test.', 'A'])).status).toBe('SERVFAIL');
    s.updateLookupTable(new Map());
    expect(s.ready()).toBe(true);
    expect(addrs(await dig('127.0.0.1', s.port, ['forwarded.test.', 'A']))).toEqual(['10.1.0.1']);
  });

  it('answers repeated questions from its answer cache with the right ID and flags, and forgets it with a new table', async () => {
    const s = await server({});
    const info = (ip: string): NameInfo => ({ ips: [ip], registry: 'External', shortname: '', namespace: '', altHosts: [] });
    s.updateLookupTable(new Map([['cached.test', info('192.0.2.1')]]));
    for (let i = 0; i < 3; i++) {
      const r = await udpQuery('127.0.0.1', s.port, 'Cached.Test', 'A');
      expect(r.answers).toEqual([expect.objectContaining({ name: 'Cached.Test', data: '192.0.2.1', ttl: 30 })]);
      expect([r.flag_aa, r.flag_rd, r.flag_ra]).toEqual([true, true, true]);
    }
    const norec = await dig('127.0.0.1', s.port, ['+noedns', '+norecurse', 'cached.test.', 'A']);
    expect(norec.flags).toEqual(['qr', 'aa']);
    s.updateLookupTable(new Map([['cached.test', info('192.0.2.2')]]));
    expect((await udpQuery('127.0.0.1', s.port, 'Cached.Test', 'A')).answers).toEqual([expect.objectContaining({ data: '192.0.2.2' })]);
  });

  it('forwards before the first table when told to (Istio: serving :53 as root)', async () => {
    const s = await server({ upstreams: [`${dnsmasq.host}:${dnsmasq.port}`], respondBeforeSync: true });
    expect(addrs(await dig('127.0.0.1', s.port, ['forwarded.test.', 'A']))).toEqual(['10.1.0.1']);
  });

  it('SERVFAILs after the timeout when the only upstream never answers, and counts the failure', async () => {
    const silent = await silentUdp();
    cleanups.push(silent.close);
    const s = await server({ upstreams: [`127.0.0.1:${silent.port}`], upstreamTimeoutMs: 300 });
    s.updateLookupTable(new Map());
    const failures = await metric('istio_agent_dns_upstream_failures_total');
    const r = await dig('127.0.0.1', s.port, ['nowhere.test.', 'A']);
    expect(r.status).toBe('SERVFAIL');
    expect(r.ms).toBeGreaterThanOrEqual(250);
    expect(silent.received()).toBe(1);
    expect(await metric('istio_agent_dns_upstream_failures_total')).toBe(failures + 1);
  });

  it('tries the next upstream after one times out (sequential), or takes the first answer (parallel)', async () => {
    const silent = await silentUdp();
    cleanups.push(silent.close);
    const upstreams = [`127.0.0.1:${silent.port}`, `${dnsmasq.host}:${dnsmasq.port}`];
    const seq = await server({ upstreams, upstreamTimeoutMs: 300 });
    seq.updateLookupTable(new Map());
    for (let i = 0; i < 4; i++) expect(addrs(await dig('127.0.0.1', seq.port, ['forwarded.test.', 'A']))).toEqual(['10.1.0.1']);
    const par = await server({ upstreams, upstreamTimeoutMs: 2000, forwardParallel: true });
    par.updateLookupTable(new Map());
    const received = silent.received();
    const r = await dig('127.0.0.1', par.port, ['forwarded.test.', 'A']);
    expect(addrs(r)).toEqual(['10.1.0.1']);
    expect(r.ms).toBeLessThan(1500);
    expect(silent.received()).toBe(received + 1);
  });

  it('moves on at once from an upstream whose port is closed (ICMP unreachable), without waiting for the timeout', async () => {
    const closed = await silentUdp();
    const closedPort = closed.port;
    await closed.close();
    const s = await server({ upstreams: [`127.0.0.1:${closedPort}`, `${dnsmasq.host}:${dnsmasq.port}`], upstreamTimeoutMs: 5000 });
    s.updateLookupTable(new Map());
    for (let i = 0; i < 6; i++) {
      const r = await dig('127.0.0.1', s.port, ['forwarded.test.', 'A']);
      expect(addrs(r)).toEqual(['10.1.0.1']);
      expect(r.ms).toBeLessThan(2500);
    }
  });

  it('passes an upstream SERVFAIL through as an answer (not a failure)', async () => {
    const fake = await fakeUpstream(() => ({ flags: 2 /* SERVFAIL */, answers: [] }));
    cleanups.push(fake.close);
    const s = await server({ upstreams: [`127.0.0.1:${fake.port}`] });
    s.updateLookupTable(new Map());
    const failures = await metric('istio_agent_dns_upstream_failures_total');
    expect((await dig('127.0.0.1', s.port, ['x.test.', 'A'])).status).toBe('SERVFAIL');
    expect(await metric('istio_agent_dns_upstream_failures_total')).toBe(failures);
  });

  it('asks again without EDNS when an old upstream rejects the OPT record the agent added (FORMERR)', async () => {
    const fake = await fakeUpstream((query) =>
      query.additionals?.some((r) => r.type === 'OPT')
        ? { flags: 1 /* FORMERR */, answers: [] }
        : { flags: 0, answers: [{ type: 'A', name: query.questions![0]!.name, ttl: 5, data: '10.9.9.9' }] },
    );
    cleanups.push(fake.close);
    const s = await server({ upstreams: [`127.0.0.1:${fake.port}`] });
    s.updateLookupTable(new Map());
    expect(addrs(await dig('127.0.0.1', s.port, ['+noedns', 'old.test.', 'A']))).toEqual(['10.9.9.9']);
    expect(fake.seen.map((x) => x.packet.additionals?.length ?? 0)).toEqual([1, 0]);
    // the client's own EDNS query: its answer is the client's to handle
    expect((await dig('127.0.0.1', s.port, ['old.test.', 'A'])).status).toBe('FORMERR');
  });

  it('forwards over the protocol of the question', async () => {
    const fake = await fakeUpstream((query, protocol) => ({
      flags: 0,
      answers: [{ type: 'A', name: query.questions![0]!.name, ttl: 5, data: protocol === 'udp' ? '10.9.0.1' : '10.9.0.2' }],
    }));
    cleanups.push(fake.close);
    const s = await server({ upstreams: [`127.0.0.1:${fake.port}`] });
    s.updateLookupTable(new Map());
    expect(addrs(await dig('127.0.0.1', s.port, ['p.test.', 'A']))).toEqual(['10.9.0.1']);
    expect(addrs(await dig('127.0.0.1', s.port, ['+tcp', 'p.test.', 'A']))).toEqual(['10.9.0.2']);
  });

  it('asks upstreams with an EDNS size, so an oversized UDP answer becomes TC instead of SERVFAIL (Istio bug)', async () => {
    // an upstream that ignores the size limits: 64 A records over UDP whatever the query says
    const fake = await fakeUpstream((query) => ({
      flags: 0,
      answers: Array.from({ length: 64 }, (_, i) => ({ type: 'A' as const, name: query.questions![0]!.name, ttl: 5, data: `240.0.0.${i}` })),
    }));
    cleanups.push(fake.close);
    const s = await server({ upstreams: [`127.0.0.1:${fake.port}`] });
    s.updateLookupTable(new Map());
    const plain = await dig('127.0.0.1', s.port, ['+noedns', '+ignore', 'giant.test.', 'A']);
    expect(plain.status).toBe('NOERROR');
    expect(plain.flags).toContain('tc');
    expect(plain.answers.length).toBeGreaterThan(0);
    const udpQuery = fake.seen.find((x) => x.protocol === 'udp')!.packet;
    expect(udpQuery.additionals?.some((r) => r.type === 'OPT')).toBe(true);
    expect((await dig('127.0.0.1', s.port, ['+noedns', 'giant.test.', 'A'])).answers).toHaveLength(64);
    expect((await dig('127.0.0.1', s.port, ['+bufsize=4096', 'giant.test.', 'A'])).answers).toHaveLength(64);
  });

  it('listens on 127.0.0.1 and ::1 for "localhost" when resolv.conf has IPv4 and IPv6 nameservers', async () => {
    const conf = join(dir, 'resolv-dual.conf');
    writeFileSync(conf, `nameserver ${dnsmasq.host}\nnameserver fd00::10\nsearch ns1.svc.cluster.local\n`);
    const s = await LocalDnsServer.start({ addr: 'localhost:0', proxyNamespace: 'ns1', proxyDomain: 'ns1.svc.cluster.local', resolvConfPath: conf });
    servers.push(s);
    const { udp, tcp } = s.addresses();
    expect(udp).toEqual([`127.0.0.1:${s.port}`, `[::1]:${s.port}`]);
    expect(tcp).toEqual(udp);
    expect(s.searchDomains).toEqual(['ns1.svc.cluster.local']);
    s.updateLookupTable(new Map([['v6.test', { ips: ['192.0.2.1'], registry: 'External', shortname: '', namespace: '', altHosts: [] }]]));
    expect(addrs(await dig('::1', s.port, ['v6.test.', 'A']))).toEqual(['192.0.2.1']);
    const v4only = join(dir, 'resolv-v4.conf');
    writeFileSync(v4only, `nameserver ${dnsmasq.host}\n`);
    const s4 = await LocalDnsServer.start({ addr: 'localhost:0', proxyNamespace: 'ns1', proxyDomain: 'ns1.svc.cluster.local', resolvConfPath: v4only });
    servers.push(s4);
    expect(s4.addresses().udp).toEqual([`127.0.0.1:${s4.port}`]);
  });
});
