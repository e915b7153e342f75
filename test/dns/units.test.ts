// Unit checks of the DNS proxy's pieces: the lookup table construction (Istio's alternate hosts
// and search-domain CNAMEs), the NameTable codec against Istio's field numbers, resolv.conf
// parsing, and the wire helpers (truncation keeps messages decodable).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../src/config/load.js';
import { dnsServerEnabled, dnsServerOptionsFrom } from '../../src/dns/from-config.js';
import { forEachHost, LookupTable, proxyScope } from '../../src/dns/lookup-table.js';
import { decodeNameTable, encodeNameTable, type NameTable } from '../../src/dns/name-table.js';
import { parseResolvConf, parseUpstream } from '../../src/dns/resolv-conf.js';
import { adaptUpstreamResponse, parseQuery, tableReply, type Query } from '../../src/dns/wire.js';
import { encodeNameTableWire, optAnswer } from './support.js';

const table: NameTable = await decodeNameTable(
  encodeNameTableWire({
    'web.ns1.svc.cluster.local': { ips: ['10.0.0.1', 'fd00::1'], registry: 'Kubernetes', shortname: 'web', namespace: 'ns1' },
    'db.ns2.svc.cluster.local': { ips: ['10.0.0.2'], registry: 'Kubernetes', shortname: 'db', namespace: 'ns2' },
    'far.ns2.svc.other.zone': { ips: ['10.0.0.3'], registry: 'Kubernetes', shortname: 'far', namespace: 'ns2' },
    'alt.ns1.svc.cluster.local': { ips: ['10.0.0.4'], registry: 'Kubernetes', shortname: 'alt', namespace: 'ns1', altHosts: ['alt.ns1.svc.clusterset.local'] },
    'dot.ns1.svc.cluster.local.': { ips: ['10.0.0.5'], registry: 'Kubernetes', shortname: 'dot', namespace: 'ns1' },
    'ext.example.com': { ips: ['192.0.2.1'], registry: 'External' },
    'none.example.com': { ips: ['bogus'], registry: 'External' },
  }),
);
const scope = proxyScope('ns1', 'ns1.svc.cluster.local');

function names(): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  forEachHost(table, scope, (n, v4, v6) => (out[[...v4, ...v6].join(',')] = [...n].sort()));
  return out;
}

describe('lookup table', () => {
  it('decodes the NameTable as Istio encodes it and round-trips through our proto', async () => {
    expect(table.get('web.ns1.svc.cluster.local')).toEqual({ ips: ['10.0.0.1', 'fd00::1'], registry: 'Kubernetes', shortname: 'web', namespace: 'ns1', altHosts: [] });
    expect(table.get('alt.ns1.svc.cluster.local')!.altHosts).toEqual(['alt.ns1.svc.clusterset.local']);
    expect(await decodeNameTable(await encodeNameTable(table))).toEqual(table);
    await expect(decodeNameTable(new Uint8Array([0x0a, 0x05, 0x0a]))).rejects.toThrow();
  });

  it("builds Istio's alternate hosts", () => {
    expect(names()).toEqual({
      '10.0.0.1,fd00::1': ['web.', 'web.ns1.', 'web.ns1.svc.', 'web.ns1.svc.cluster.local.'],
      '10.0.0.2': ['db.ns2.', 'db.ns2.svc.', 'db.ns2.svc.cluster.local.'],
      '10.0.0.3': ['far.ns2.svc.other.zone.'],
      '10.0.0.4': ['alt.', 'alt.ns1.', 'alt.ns1.svc.', 'alt.ns1.svc.cluster.local.', 'alt.ns1.svc.clusterset.local.'],
      // a Kubernetes host already ending in a dot gets no names at all (Istio)
      '10.0.0.5': [],
      '192.0.2.1': ['ext.example.com.'],
    });
    // the domain need not start with the namespace
    expect(proxyScope('ns1', 'svc.cluster.local')).toEqual({ namespace: 'ns1', domain: 'svc.cluster.local', domainParts: ['svc', 'cluster', 'local'] });
  });

  it('adds a CNAME for each name + the first search domain, unless that is already one of its names', () => {
    const t = new LookupTable(table, scope, ['ns1.svc.cluster.local', 'svc.cluster.local']);
    const A = 1;
    expect(t.lookup(A, 'web.ns1.svc.cluster.local.')!.addresses).toHaveLength(1);
    expect(t.lookup(A, 'web.ns1.ns1.svc.cluster.local.')!.cname).toBeDefined();
    expect(t.lookup(A, 'ext.example.com.ns1.svc.cluster.local.')!.cname).toBeDefined();
    // "web." + search = "web.ns1.svc.cluster.local.", a real name: no CNAME there
    expect(t.lookup(A, 'web.ns1.svc.cluster.local.')!.cname).toBeUndefined();
    expect(t.lookup(A, 'web.ns1.svc.cluster.local.ns1.svc.cluster.local.')).toBeUndefined();
    expect(t.lookup(A, 'ext.example.com.svc.cluster.local.')).toBeUndefined();
    expect(t.lookup(A, 'none.example.com.')).toBeUndefined();
    expect(t.lookup(16 /* TXT */, 'web.')).toBeUndefined();
    const noSearch = new LookupTable(table, scope, []);
    expect(noSearch.lookup(A, 'web.ns1.ns1.svc.cluster.local.')).toBeUndefined();
  });
});

describe('resolv.conf', () => {
  it('reads nameservers in order and the last search/domain line, skipping comments', () => {
    const conf = parseResolvConf('# c\n; c\nnameserver 10.96.0.10\nsearch a.svc b.svc\nnameserver fd00::a\ndomain only.one\noptions ndots:5\n');
    expect(conf).toEqual({ nameservers: ['10.96.0.10', 'fd00::a'], search: ['only.one'] });
    expect(parseUpstream('10.96.0.10')).toEqual({ host: '10.96.0.10', port: 53, family: 4 });
    expect(parseUpstream('10.96.0.10:5353')).toEqual({ host: '10.96.0.10', port: 5353, family: 4 });
    expect(parseUpstream('fd00::a')).toEqual({ host: 'fd00::a', port: 53, family: 6 });
    expect(parseUpstream('[fd00::a]:54')).toEqual({ host: 'fd00::a', port: 54, family: 6 });
    expect(parseUpstream('dns.google')).toBeUndefined();
  });
});

describe('wire', () => {
  function query(edns?: number): Query {
    const raw = dnsPacket.encode({
      type: 'query',
      id: 4242,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: 'Big.Example.com', type: 'A' }],
      additionals: edns === undefined ? [] : [optAnswer(edns)],
    });
    const p = parseQuery(raw);
    if (p.kind !== 'query') throw new Error('not a query');
    return p.query;
  }
  const t = new LookupTable(
    new Map([['big.example.com', { ips: Array.from({ length: 200 }, (_, i) => `10.7.${i >> 8}.${i & 255}`), registry: 'External', shortname: '', namespace: '', altHosts: [] }]]),
    scope,
    [],
  );
  const found = t.lookup(1, 'big.example.com.')!;

  it('parses the question and the EDNS size', () => {
    expect(query()).toMatchObject({ id: 4242, name: 'Big.Example.com', fqdn: 'big.example.com.', qtype: 1, qclass: 1, ednsSize: undefined });
    expect(query(1400).ednsSize).toBe(1400);
  });

  it('fits table answers to the limit with compressed owners, TC when records are left out', () => {
    const full = dnsPacket.decode(tableReply(query(), found, 65535));
    expect(full.answers).toHaveLength(200);
    expect(full.answers!.every((a) => a.name === 'Big.Example.com')).toBe(true);
    const small = tableReply(query(), found, 512);
    expect(small.length).toBeLessThanOrEqual(512);
    const d = dnsPacket.decode(small);
    expect(d.flag_tc).toBe(true);
    expect(d.flag_aa).toBe(true);
    expect(d.answers!.length).toBe(Math.floor((512 - 12 - 21) / 16));
  });

  it('cuts upstream answers at record boundaries, keeping the OPT record last, or dropping it', () => {
    const upstream = tableReply(query(4096), found, 65535); // compressed, with OPT at the end
    const cut = adaptUpstreamResponse(upstream, 7, false, 1232);
    expect(cut.length).toBeLessThanOrEqual(1232);
    const d = dnsPacket.decode(cut);
    expect(d.id).toBe(7);
    expect(d.flag_tc).toBe(true);
    expect(d.additionals!.map((a) => a.type)).toEqual(['OPT']);
    const stripped = dnsPacket.decode(adaptUpstreamResponse(upstream, 8, true, 512));
    expect(stripped.additionals).toEqual([]);
    expect(stripped.answers!.length).toBe(Math.floor((512 - 12 - 21) / 16));
    const whole = dnsPacket.decode(adaptUpstreamResponse(upstream, 9, false, 65535));
    expect([whole.flag_tc, whole.answers!.length]).toEqual([false, 200]);
    // OPT not last: re-encoded with OPT moved to the end
    const odd = dnsPacket.encode({
      type: 'response',
      id: 1,
      questions: [{ name: 'x.test', type: 'A' }],
      additionals: [optAnswer(4096), { type: 'A', name: 'x.test', ttl: 1, data: '10.0.0.1' }],
    });
    expect(dnsPacket.decode(adaptUpstreamResponse(odd, 2, false, 512)).additionals!.map((a) => a.type)).toEqual(['A', 'OPT']);
    expect(() => adaptUpstreamResponse(Buffer.from(upstream.subarray(0, 40)), 1, false, 512)).toThrow();
  });
});

describe('settings from AgentConfig', () => {
  function config(proxyType: string, env: Record<string, string>): ReturnType<typeof loadAgentConfig> {
    const dir = mkdtempSync(join(tmpdir(), 'pa-dns-cfg-'));
    try {
      return loadAgentConfig({ cwd: dir, proxyType, hostAddresses: ['10.0.0.9'], env: { POD_NAME: 'app', POD_NAMESPACE: 'ns1', ...env } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('is on for a sidecar with DNS capture, or anywhere with ISTIO_META_ENABLE_DNS_SERVER (Istio isDNSServerEnabled)', () => {
    expect(dnsServerEnabled(config('sidecar', {}))).toBe(false);
    expect(dnsServerEnabled(config('sidecar', { ISTIO_META_DNS_CAPTURE: 'true' }))).toBe(true);
    expect(dnsServerEnabled(config('router', { ISTIO_META_DNS_CAPTURE: 'true' }))).toBe(false);
    expect(dnsServerEnabled(config('router', { ISTIO_META_ENABLE_DNS_SERVER: 'true' }))).toBe(true);
  });

  it('takes the address, namespace, domain, parallelism and timeout from the config', () => {
    expect(dnsServerOptionsFrom(config('sidecar', {}))).toEqual({
      addr: 'localhost:15053',
      proxyNamespace: 'ns1',
      proxyDomain: 'ns1.svc.cluster.local',
      forwardParallel: false,
      upstreamTimeoutMs: 5000,
    });
    const c = config('sidecar', { DNS_PROXY_ADDR: '127.0.0.1:15054', DNS_FORWARD_PARALLEL: 'true', DNS_FORWARD_TIMEOUT: '750ms' });
    expect(dnsServerOptionsFrom(c)).toMatchObject({ addr: '127.0.0.1:15054', forwardParallel: true, upstreamTimeoutMs: 750 });
  });
});
