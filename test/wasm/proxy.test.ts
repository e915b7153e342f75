// Wasm fetches through HTTPS_PROXY / HTTP_PROXY, as Go's http.ProxyFromEnvironment chooses the proxy:
// a real forward proxy the test starts (CONNECT tunnels, absolute-form requests), a real HTTPS file
// server and a real registry (Debian's docker-registry) behind it, under test names the agent and
// the proxy each resolve. Checked: fetches go through the proxy (module and registry), NO_PROXY and
// loopback targets bypass it, and the dial guard still refuses a blocked target, before the proxy
// is asked for anything. The choice rules themselves are checked against Go's, case by case.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WasmModuleCache, type GetOptions } from '../../src/wasm/cache.js';
import type { WasmOptions } from '../../src/wasm/options.js';
import { ProxyRules } from '../../src/wasm/proxy.js';
import { createPki, pushModule, sha256, startFileServer, startForwardProxy, startRegistry, testLookup, wasmModule, type FileServer, type ForwardProxy, type Registry } from './support.js';

const MODULES = 'modules.test';
const REG = 'registry.test';
const METADATA = 'metadata.test'; // a name that resolves to the cloud metadata address
const PUBLIC = 'public.test'; // a name outside every blocked range (TEST-NET-1)
const names = { [MODULES]: '127.0.0.1', [REG]: '127.0.0.1', [METADATA]: '169.254.169.254', [PUBLIC]: '192.0.2.10' };
const lookup = testLookup(names);

let dir: string;
let caPem: string;
let https: FileServer;
let http: FileServer;
let registry: Registry;
let proxy: ForwardProxy;
const mod = wasmModule(8192, 'proxied');
let ociDigest: string;
const caches: WasmModuleCache[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pa-wasm-proxy-'));
  const pki = await createPki(join(dir, 'pki'));
  caPem = readFileSync(pki.caCert, 'utf8');
  https = await startFileServer({ tls: await pki.issue('modules', [MODULES]), host: MODULES });
  http = await startFileServer({ host: MODULES });
  https.serve('/m.wasm', mod);
  http.serve('/m.wasm', mod);
  const storage = join(dir, 'storage');
  const plain = await startRegistry({ storage });
  ociDigest = await pushModule(plain.address, 'wasm/proxied', 'v1', 'oci', mod);
  await plain.kill();
  registry = await startRegistry({ storage, tls: await pki.issue('registry', [REG]), readOnly: true });
  proxy = await startForwardProxy(names);
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await registry?.kill();
  await https?.close();
  await http?.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
  proxy.requests.length = 0;
});

function newCache(noProxy = '', over: Partial<WasmOptions> = {}): WasmModuleCache {
  const c = new WasmModuleCache({
    dir: mkdtempSync(join(dir, 'cache-')),
    lookup,
    extraCaCerts: [caPem],
    initialBackoffMs: 10,
    httpRequestTimeoutMs: 5000,
    httpRequestMaxRetries: 2,
    proxy: { httpsProxy: proxy.url, httpProxy: proxy.url, noProxy },
    ...over,
  });
  caches.push(c);
  return c;
}

const opts = (o: Partial<GetOptions> = {}): GetOptions => ({ resourceName: 'ns.plugin', resourceVersion: '1', requestTimeoutMs: 15_000, pullPolicy: 'Unspecified', checksum: sha256(mod), ...o });

describe('through the proxy', () => {
  it('https modules go through a CONNECT tunnel (TLS to the server inside it)', async () => {
    const path = await newCache().get(`https://${MODULES}:${https.port}/m.wasm`, opts());
    expect(readFileSync(path).equals(mod)).toBe(true);
    expect(proxy.requests).toEqual([`CONNECT ${MODULES}:${https.port}`]);
  });

  it('http modules are asked of the proxy in absolute form, as Go does', async () => {
    const url = `http://${MODULES}:${http.port}/m.wasm`;
    const path = await newCache().get(url, opts());
    expect(readFileSync(path).equals(mod)).toBe(true);
    expect(proxy.requests).toEqual([`GET ${url}`]);
  });

  it('OCI registry pulls go through it too (manifest and blobs)', async () => {
    const path = await newCache().get(`oci://${REG}:${registry.port}/wasm/proxied:v1`, opts({ checksum: ociDigest.replace(/^sha256:/, '') }));
    expect(readFileSync(path).equals(mod)).toBe(true);
    expect(proxy.requests.length).toBeGreaterThanOrEqual(1);
    expect(new Set(proxy.requests)).toEqual(new Set([`CONNECT ${REG}:${registry.port}`]));
  });
});

describe('around the proxy', () => {
  it.each([MODULES, '.test', '*.test', 'other.example, MODULES.test', `${MODULES}:<port>`, '*'])('NO_PROXY=%s: fetched directly', async (entry) => {
    const before = https.hits.get('/m.wasm') ?? 0;
    const path = await newCache(entry.replace('<port>', String(https.port))).get(`https://${MODULES}:${https.port}/m.wasm`, opts());
    expect(readFileSync(path).equals(mod)).toBe(true);
    expect(https.hits.get('/m.wasm')).toBe(before + 1);
    expect(proxy.requests).toEqual([]);
  });

  it('a NO_PROXY entry with another port does not bypass it', async () => {
    await newCache(`${MODULES}:1`).get(`https://${MODULES}:${https.port}/m.wasm`, opts());
    expect(proxy.requests).toEqual([`CONNECT ${MODULES}:${https.port}`]);
  });

  it('loopback targets are never proxied', async () => {
    await newCache().get(`http://127.0.0.1:${http.port}/m.wasm`, opts());
    expect(proxy.requests).toEqual([]);
  });
});

describe('the dial guard, with a proxy', () => {
  it('refuses a target name that resolves to a link-local address, without asking the proxy', async () => {
    await expect(newCache().get(`https://${METADATA}/m.wasm`, opts())).rejects.toThrow(`connection blocked: resolved IP 169.254.169.254 is link-local (${METADATA}, to be reached through the proxy)`);
    expect(proxy.requests).toEqual([]);
  });

  it('refuses a blocked IP literal and a BLOCKED_CIDRS_IN_WASM_FETCH target, without asking the proxy', async () => {
    await expect(newCache().get('http://169.254.169.254/latest/meta-data', opts())).rejects.toThrow('connection blocked: resolved IP 169.254.169.254 is link-local');
    // the proxy itself (127.0.0.1) is allowed; the target range is not
    const blocked = newCache('', { blockedCidrs: ['10.0.0.0/8'], lookup: testLookup({ ...names, [MODULES]: '10.1.2.3' }) });
    await expect(blocked.get(`https://${MODULES}:${https.port}/m.wasm`, opts())).rejects.toThrow('connection blocked: resolved IP 10.1.2.3 is in a blocked CIDR range (BLOCKED_CIDRS_IN_WASM_FETCH)');
    expect(proxy.requests).toEqual([]);
  });

  it('the connection to the proxy is guarded too, as Istio dials the proxy through its guard', async () => {
    const cache = newCache('', { blockedCidrs: ['127.0.0.0/8'] });
    await expect(cache.get(`https://${PUBLIC}/m.wasm`, opts())).rejects.toThrow('connection blocked: resolved IP 127.0.0.1 is in a blocked CIDR range');
    expect(proxy.requests).toEqual([]);
  });
});

describe("the proxy choice, as Go's httpproxy", () => {
  const rules = (noProxy: string, proxies = { httpsProxy: 'http://p:3128', httpProxy: 'http://q:3128' }) => new ProxyRules({ ...proxies, noProxy });
  const via = (r: ProxyRules, url: string) => r.proxyFor(new URL(url)) ?? 'direct';

  it('picks the proxy by scheme; nothing proxies localhost or loopback', () => {
    const r = rules('');
    expect(via(r, 'https://a.example/x')).toBe('http://p:3128');
    expect(via(r, 'http://a.example/x')).toBe('http://q:3128');
    for (const u of ['http://localhost:8080/', 'https://127.0.0.1/', 'https://127.9.9.9/', 'http://[::1]:80/', 'http://[::ffff:127.0.0.1]/']) expect(via(r, u), u).toBe('direct');
    expect(via(r, 'http://0.0.0.0:8080/')).toBe('http://q:3128'); // unspecified is not loopback
    expect(via(rules('', { httpsProxy: '', httpProxy: 'http://q:3128' }), 'https://a.example/')).toBe('direct'); // HTTP_PROXY is for http only
  });

  it.each([
    // [NO_PROXY, url, direct?]
    ['foo.com', 'https://foo.com/', true],
    ['foo.com', 'https://bar.foo.com/', true],
    ['foo.com', 'https://barfoo.com/', false],
    ['.foo.com', 'https://foo.com/', false],
    ['.foo.com', 'https://bar.foo.com/', true],
    ['*.foo.com', 'https://foo.com/', false],
    ['*.foo.com', 'https://x.bar.foo.com/', true],
    ['FOO.com', 'https://Foo.COM/', true],
    ['foo.com:443', 'https://foo.com/', true],
    ['foo.com:8443', 'https://foo.com/', false],
    ['foo.com:8443', 'https://foo.com:8443/', true],
    ['10.0.0.1', 'https://10.0.0.1/', true],
    ['10.0.0.1:80', 'https://10.0.0.1/', false],
    ['10.0.0.0/8', 'https://10.200.0.1/', true],
    ['10.0.0.0/8', 'https://11.0.0.1/', false],
    ['10.0.0.0/8', 'https://ten.example/', false], // CIDRs match IP literals only, as in Go
    ['2001:db8::/32', 'https://[2001:db8::5]/', true],
    ['[2001:db8::5]:443', 'https://[2001:db8::5]/', true],
    ['foo.com, *', 'https://any.example/', true],
    [' , ,bar.com', 'https://bar.com/', true],
  ] as const)('NO_PROXY=%j, %s: direct %s', (noProxy, url, direct) => {
    expect(via(rules(noProxy), url) === 'direct').toBe(direct);
  });
});
