// The module cache over HTTPS: a node https server with a test CA serves modules (raw, gzip, tar,
// tar.gz) and faults; the cache must verify TLS, checksums and the magic, cap sizes while
// streaming, retry what is retryable, share concurrent downloads, never show a partial file,
// survive restarts, honour pull policies, purge, and refuse blocked addresses at dial time.

import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics/registry.js';
import { collectAll } from '../../src/util/gc.js';
import { WasmModuleCache, type GetOptions } from '../../src/wasm/cache.js';
import type { WasmOptions } from '../../src/wasm/options.js';
import { createPki, gzip, sha256, startFileServer, tarOf, testLookup, wasmModule, type FileServer } from './support.js';

let dir: string;
let server: FileServer;
let caPem: string;
const HOST = 'wasm.test';
const lookup = testLookup({ [HOST]: '127.0.0.1', 'metadata.test': '169.254.169.254', 'alibaba.test': '100.100.100.200' });
const caches: WasmModuleCache[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pa-wasm-http-'));
  const pki = await createPki(join(dir, 'pki'));
  const cert = await pki.issue('server', [HOST, 'localhost', '127.0.0.1']);
  caPem = readFileSync(pki.caCert, 'utf8');
  server = await startFileServer({ tls: cert, host: HOST });
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
});

function newCache(over: Partial<WasmOptions> = {}, cacheDir = mkdtempSync(join(dir, 'cache-'))): WasmModuleCache {
  const c = new WasmModuleCache({ dir: cacheDir, lookup, extraCaCerts: [caPem], initialBackoffMs: 10, httpRequestTimeoutMs: 2000, httpRequestMaxRetries: 3, ...over });
  caches.push(c);
  return c;
}

const opts = (o: Partial<GetOptions> = {}): GetOptions => ({ resourceName: 'ns.plugin', resourceVersion: '1', requestTimeoutMs: 10_000, pullPolicy: 'Unspecified', ...o });

let n = 0;
/** Serves `body` at a fresh path; returns its URL. */
function serve(body: Buffer): string {
  const path = `/m${++n}.wasm`;
  server.serve(path, body);
  return `${server.origin}${path}`;
}

function hits(url: string): number {
  return server.hits.get(new URL(url).pathname) ?? 0;
}

function wasmFiles(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = await registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
}

describe('HTTPS fetch', () => {
  it('downloads over verified TLS into <dir>/<sha256(url)>/<sha256(module)>.wasm, 0644', async () => {
    const mod = wasmModule(4096);
    const url = serve(mod);
    const cache = newCache();
    const before = await metric('istio_agent_wasm_remote_fetch_count', { result: 'success' });
    const path = await cache.get(url, opts({ checksum: sha256(mod) }));
    expect(path).toBe(join(cache.options.dir, sha256(url), `${sha256(mod)}.wasm`));
    expect(readFileSync(path).equals(mod)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(await metric('istio_agent_wasm_remote_fetch_count', { result: 'success' })).toBe(before + 1);
    expect(cache.summaries()).toEqual([expect.objectContaining({ module: url, checksum: sha256(mod), path, sizeBytes: mod.length, urls: [url] })]);
  });

  it('unboxes gzip, tar (first regular file) and tar.gz; the checksum is of the module itself', async () => {
    const mod = wasmModule(2048);
    const tar = tarOf([{ name: 'dir/', data: Buffer.alloc(0), type: '5' }, { name: 'dir/filter.wasm', data: mod }]);
    const cache = newCache();
    for (const body of [gzip(mod), tar, gzip(tar), gzip(gzip(mod))]) {
      const path = await cache.get(serve(body), opts({ checksum: sha256(mod) }));
      expect(readFileSync(path).equals(mod)).toBe(true);
    }
  });

  it('rejects a wrong sha256 and bytes that are not Wasm, leaving nothing behind; a correct fetch then works', async () => {
    const mod = wasmModule();
    const url = serve(mod);
    const cache = newCache();
    const mismatches = await metric('istio_agent_wasm_remote_fetch_count', { result: 'checksum_mismatched' });
    await expect(cache.get(url, opts({ checksum: 'f'.repeat(64) }))).rejects.toThrow(`module downloaded from ${url} has checksum ${sha256(mod)}, which does not match: ${'f'.repeat(64)}`);
    expect(await metric('istio_agent_wasm_remote_fetch_count', { result: 'checksum_mismatched' })).toBe(mismatches + 1);
    const notWasm = serve(Buffer.from('<html>this is not a wasm module</html>'));
    await expect(cache.get(notWasm, opts())).rejects.toThrow(`fetched Wasm binary from ${notWasm} is invalid`);
    expect(wasmFiles(cache.options.dir)).toEqual([]);
    expect(cache.summaries()).toEqual([]);
    const path = await cache.get(url, opts({ checksum: sha256(mod) }));
    expect(readFileSync(path).equals(mod)).toBe(true);
  });

  it('caps the size: by content-length before reading, while streaming without one, and after decompression', async () => {
    const cache = newCache({ maxBinarySizeBytes: 64 * 1024 });
    const big = serve(wasmModule(65 * 1024));
    await expect(cache.get(big, opts())).rejects.toThrow(/module is \d+ bytes, more than the limit of 65536 bytes/);
    let streamed = 0;
    server.route('/endless', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.concat([Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]), Buffer.alloc(16 * 1024 - 8)]);
      const pump = (): void => {
        if (res.destroyed || streamed > 64 * 1024 * 1024) return void res.end();
        streamed += chunk.length;
        if (res.write(chunk)) setImmediate(pump);
        else res.once('drain', pump);
      };
      pump();
    });
    await expect(cache.get(`${server.origin}/endless`, opts())).rejects.toThrow(/module exceeds the limit of 65536 bytes/);
    expect(streamed).toBeLessThan(4 * 1024 * 1024); // the transfer was cut, not read to the end
    const bomb = serve(gzip(Buffer.alloc(32 * 1024 * 1024)));
    await expect(cache.get(bomb, opts())).rejects.toThrow(/decompresses to more than the limit of 65536 bytes/);
    expect(wasmFiles(cache.options.dir)).toEqual([]);
  });

  it('retries transport errors and 5xx with backoff, but not 404, 501 or 505', async () => {
    const mod = wasmModule();
    let calls = 0;
    server.route('/flaky.wasm', (req, res) => {
      calls++;
      if (calls === 1) return void req.socket.destroy(); // transport error
      if (calls === 2) return void res.writeHead(503).end('busy');
      res.writeHead(200).end(mod);
    });
    const cache = newCache();
    const path = await cache.get(`${server.origin}/flaky.wasm`, opts());
    expect(readFileSync(path).equals(mod)).toBe(true);
    expect(calls).toBe(3);
    for (const code of [404, 501, 505]) {
      server.route(`/status${code}`, (_req, res) => void res.writeHead(code).end());
      await expect(cache.get(`${server.origin}/status${code}`, opts())).rejects.toThrow(`status code ${code}`);
      expect(server.hits.get(`/status${code}`)).toBe(1);
    }
    server.route('/status500', (_req, res) => void res.writeHead(500).end());
    await expect(cache.get(`${server.origin}/status500`, opts())).rejects.toThrow('wasm module download failed after 3 attempts, last error: wasm module download request failed: status code 500');
    expect(server.hits.get('/status500')).toBe(3);
  });

  it('times out a request that hangs, per attempt and overall', async () => {
    server.route('/hang', () => undefined);
    // long enough per attempt for the TLS handshake to finish on a loaded machine, so that each
    // attempt reaches the server and hangs there
    const cache = newCache({ httpRequestTimeoutMs: 1000, httpRequestMaxRetries: 2 });
    const t0 = Date.now();
    await expect(cache.get(`${server.origin}/hang`, opts())).rejects.toThrow(/after 2 attempts, last error: request timed out after 1000ms/);
    expect(server.hits.get('/hang')).toBe(2);
    expect(Date.now() - t0).toBeLessThan(6000);
    const overall = newCache({ httpRequestTimeoutMs: 5000, httpRequestMaxRetries: 5 });
    const t1 = Date.now();
    await expect(overall.get(`${server.origin}/hang`, opts({ requestTimeoutMs: 300 }))).rejects.toThrow(/timed out/);
    expect(Date.now() - t1).toBeLessThan(2000);
    // a full collection while the fetch waits must not take its deadline away (on Node 20 an
    // AbortSignal.timeout combined by AbortSignal.any was collected, and the fetch ran on
    // through every attempt's own timeout)
    const t2 = Date.now();
    const failed = expect(overall.get(`${server.origin}/hang?gc`, opts({ requestTimeoutMs: 500 }))).rejects.toThrow(/timed out/);
    setTimeout(collectAll, 100);
    await failed;
    expect(Date.now() - t2).toBeLessThan(3000);
  });

  it('verifies TLS: an unknown CA fails unless the host is an insecure registry', async () => {
    const mod = wasmModule();
    const url = serve(mod);
    const strict = newCache({ extraCaCerts: [] });
    await expect(strict.get(url, opts())).rejects.toThrow(/self-signed|unable to (get|verify)|certificate/i);
    const insecure = newCache({ extraCaCerts: [], insecureRegistries: [`${HOST}:${server.port}`] });
    expect(readFileSync(await insecure.get(url, opts())).equals(mod)).toBe(true);
    const star = newCache({ extraCaCerts: [], insecureRegistries: ['*'] });
    expect(readFileSync(await star.get(url, opts())).equals(mod)).toBe(true);
  });
});

describe('dial guard', () => {
  it('refuses link-local and cloud-metadata addresses, by name or literal, and redirects to them', async () => {
    const cache = newCache({ httpRequestMaxRetries: 5 });
    const t0 = Date.now();
    await expect(cache.get('http://metadata.test/latest/meta-data', opts())).rejects.toThrow('connection blocked: resolved IP 169.254.169.254 is link-local');
    await expect(cache.get('http://169.254.169.254/latest/meta-data', opts())).rejects.toThrow('connection blocked: resolved IP 169.254.169.254 is link-local');
    await expect(cache.get('http://[fe80::1]/x.wasm', opts())).rejects.toThrow('is link-local');
    await expect(cache.get('http://[::ffff:169.254.169.254]/x.wasm', opts())).rejects.toThrow('is link-local');
    await expect(cache.get('http://alibaba.test/x.wasm', opts())).rejects.toThrow('connection blocked: resolved IP 100.100.100.200 is a known cloud metadata address');
    server.route('/redirect', (_req, res) => void res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/iam' }).end());
    await expect(cache.get(`${server.origin}/redirect`, opts())).rejects.toThrow('connection blocked: resolved IP 169.254.169.254 is link-local');
    expect(Date.now() - t0).toBeLessThan(2000); // refused at once, never retried nor dialed
  });

  it('follows redirects to allowed hosts', async () => {
    const mod = wasmModule();
    const target = serve(mod);
    server.route('/moved', (_req, res) => void res.writeHead(301, { location: target }).end());
    const cache = newCache();
    expect(readFileSync(await cache.get(`${server.origin}/moved`, opts())).equals(mod)).toBe(true);
  });

  it('refuses BLOCKED_CIDRS_IN_WASM_FETCH ranges (here loopback) and ignores malformed entries', async () => {
    const cache = newCache({ blockedCidrs: ['not-a-cidr', '10.0.0.0/8', '127.0.0.0/8'] });
    await expect(cache.get(serve(wasmModule()), opts())).rejects.toThrow('connection blocked: resolved IP 127.0.0.1 is in a blocked CIDR range');
  });
});

describe('cache behaviour', () => {
  it('shares one download among 100 concurrent requests for a module', async () => {
    const mod = wasmModule(256 * 1024);
    let calls = 0;
    server.route('/shared.wasm', (_req, res) => {
      calls++;
      setTimeout(() => res.writeHead(200).end(mod), 150);
    });
    const cache = newCache();
    const lookupsBefore = await metric('istio_agent_wasm_cache_lookup_count', { hit: 'false' });
    const paths = await Promise.all(Array.from({ length: 100 }, (_, i) => cache.get(`${server.origin}/shared.wasm`, opts({ resourceName: `ns.p${i}` }))));
    expect(new Set(paths).size).toBe(1);
    expect(calls).toBe(1);
    expect(cache.downloads).toBe(1);
    expect(await metric('istio_agent_wasm_cache_lookup_count', { hit: 'false' })).toBe(lookupsBefore + 100);
    await cache.get(`${server.origin}/shared.wasm`, opts());
    expect(calls).toBe(1);
  });

  it('never shows a partial module file: a download cut mid-way leaves nothing, not even a temp file', async () => {
    const mod = wasmModule(1024 * 1024);
    server.route('/cut.wasm', (req, res) => {
      res.writeHead(200, { 'content-length': mod.length });
      res.write(mod.subarray(0, 300 * 1024), () => setTimeout(() => req.socket.destroy(), 50));
    });
    const cache = newCache({ httpRequestMaxRetries: 2 });
    const p = cache.get(`${server.origin}/cut.wasm`, opts());
    await expect(p).rejects.toThrow(/after 2 attempts/);
    expect(wasmFiles(cache.options.dir)).toEqual([]);
  });

  it('IfNotPresent ignores resource versions; Always pulls again when the version changes; :latest only for oci', async () => {
    const v1 = wasmModule(1000, 'v1');
    const v2 = wasmModule(1000, 'v2');
    let body = v1;
    server.route('/policy.wasm', (_req, res) => void res.writeHead(200).end(body));
    const url = `${server.origin}/policy.wasm`;
    const cache = newCache();
    const p1 = await cache.get(url, opts({ resourceVersion: '1', pullPolicy: 'IfNotPresent' }));
    body = v2;
    expect(await cache.get(url, opts({ resourceVersion: '2', pullPolicy: 'IfNotPresent' }))).toBe(p1);
    expect(await cache.get(url, opts({ resourceVersion: '3' }))).toBe(p1); // unspecified = IfNotPresent for http
    expect(server.hits.get('/policy.wasm')).toBe(1);
    expect(await cache.get(url, opts({ resourceVersion: '3', pullPolicy: 'Always' }))).toBe(p1); // same version as last seen
    const p2 = await cache.get(url, opts({ resourceVersion: '4', pullPolicy: 'Always' }));
    expect(p2).not.toBe(p1);
    expect(readFileSync(p2).equals(v2)).toBe(true);
    expect(server.hits.get('/policy.wasm')).toBe(2);
    expect(readFileSync(p1).equals(v1)).toBe(true); // the old module stays until purged
  });

  it('survives a restart: files on disk are reused (verified), not downloaded again', async () => {
    const mod = wasmModule(8192);
    const url = serve(mod);
    const cacheDir = mkdtempSync(join(dir, 'restart-'));
    const first = newCache({}, cacheDir);
    const path = await first.get(url, opts());
    await first.close();
    // a temp file left by a crash is cleaned up at start
    writeFileSync(join(cacheDir, sha256(url), `.${sha256(mod)}.wasm.123.abcd.tmp`), 'partial');

    const second = newCache({}, cacheDir);
    expect(readdirSync(join(cacheDir, sha256(url)))).toEqual([`${sha256(mod)}.wasm`]);
    expect(await second.get(url, opts({ checksum: sha256(mod) }))).toBe(path);
    const third = newCache({}, cacheDir);
    expect(await third.get(url, opts())).toBe(path); // no sha256: the newest file for the URL
    expect(hits(url)).toBe(1);
    expect(second.downloads + third.downloads).toBe(0);

    // a corrupted file is not trusted
    chmodSync(path, 0o644);
    writeFileSync(path, Buffer.concat([mod.subarray(0, 100), Buffer.from('garbage')]));
    const fourth = newCache({}, cacheDir);
    expect(await fourth.get(url, opts({ checksum: sha256(mod) }))).toBe(path);
    expect(hits(url)).toBe(2);
    expect(readFileSync(path).equals(mod)).toBe(true);
  });

  it('purges modules unused for the expiry (files, empty dirs, entries), and files of an earlier run', async () => {
    let now = 1_000_000;
    const clock = { now: () => now };
    const cacheDir = mkdtempSync(join(dir, 'purge-'));
    const a = wasmModule(100, 'a');
    const b = wasmModule(100, 'b');
    const urlA = serve(a);
    const urlB = serve(b);
    const cache = newCache({ moduleExpiryMs: 60_000, ...clock }, cacheDir);
    const pa = await cache.get(urlA, opts());
    now += 30_000;
    const pb = await cache.get(urlB, opts());
    now += 40_000; // a: 70 s unused, b: 40 s
    expect(cache.purge()).toBe(1);
    expect(existsSync(pa)).toBe(false);
    expect(existsSync(join(cacheDir, sha256(urlA)))).toBe(false);
    expect(existsSync(pb)).toBe(true);
    expect((await registry.getSingleMetric('istio_agent_wasm_cache_entries')!.get()).values[0]!.value).toBe(1);
    // a purged module is fetched again
    expect(await cache.get(urlA, opts())).toBe(pa);
    expect(hits(urlA)).toBe(2);
    await cache.close();

    // after a restart, files nobody asks for go after the expiry too
    const later = newCache({ moduleExpiryMs: 60_000, ...clock }, cacheDir);
    now += 61_000;
    expect(later.purge()).toBe(2);
    expect(wasmFiles(cacheDir)).toEqual([]);
  });

  it('purges on the WASM_PURGE_INTERVAL timer', async () => {
    const cache = newCache({ moduleExpiryMs: 1, purgeIntervalMs: 100 });
    const path = await cache.get(serve(wasmModule()), opts());
    cache.startPurging();
    await expect.poll(() => existsSync(path), { timeout: 3000 }).toBe(false);
  });

  it('rejects unsupported schemes and bad URLs', async () => {
    const cache = newCache();
    await expect(cache.get('ftp://example.com/a.wasm', opts())).rejects.toThrow('unsupported Wasm module downloading URL scheme: ftp');
    await expect(cache.get('::not a url', opts())).rejects.toThrow('fail to parse Wasm module fetch url');
  });
});
