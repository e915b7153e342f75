// COMPLIANCE_POLICY reaches Wasm module fetches: the cache built from the agent's configuration
// (as createWasmRuntime builds it) against an HTTPS server started here that offers only TLS 1.3,
// which fips-140-2 (TLS 1.2 only) must refuse, for verified and insecure registries alike. The
// OCI registry client shares the same HTTP client.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../src/config/load.js';
import { WasmModuleCache, type GetOptions } from '../../src/wasm/cache.js';
import { wasmOptionsFromConfig } from '../../src/wasm/options.js';
import { createPki, sha256, startFileServer, testLookup, wasmModule, type FileServer } from './support.js';

const HOST = 'wasm.test';
let dir: string;
let caPem: string;
let tls13Only: FileServer;
let tls12Only: FileServer;
const caches: WasmModuleCache[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pa-wasm-compliance-'));
  const pki = await createPki(join(dir, 'pki'));
  const cert = await pki.issue('server', [HOST]);
  caPem = readFileSync(pki.caCert, 'utf8');
  tls13Only = await startFileServer({ tls: { ...cert, offer: { minVersion: 'TLSv1.3' } }, host: HOST });
  tls12Only = await startFileServer({ tls: { ...cert, offer: { maxVersion: 'TLSv1.2' } }, host: HOST });
});
afterAll(async () => {
  await Promise.all([tls13Only.close(), tls12Only.close()]);
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
});

/** The module cache as the agent builds it from its env. */
function cacheFor(env: Record<string, string>): WasmModuleCache {
  const config = loadAgentConfig({ env: { POD_NAME: 'p', POD_NAMESPACE: 'ns', INSTANCE_IP: '10.0.0.1', ...env }, cwd: dir, hostAddresses: ['10.0.0.1'] });
  const cache = new WasmModuleCache(
    wasmOptionsFromConfig(config, { dir: mkdtempSync(join(dir, 'cache-')), lookup: testLookup({ [HOST]: '127.0.0.1' }), extraCaCerts: [caPem], initialBackoffMs: 10, httpRequestMaxRetries: 1 }),
  );
  caches.push(cache);
  return cache;
}

const opts = (checksum: string): GetOptions => ({ resourceName: 'ns.plugin', resourceVersion: '1', requestTimeoutMs: 10_000, pullPolicy: 'Unspecified', checksum });

describe('COMPLIANCE_POLICY on Wasm module fetches', () => {
  it('fips-140-2 refuses a TLS 1.3-only server, verified or insecure; without a policy the module is fetched', async () => {
    const mod = wasmModule(1024, 'compliance');
    tls13Only.serve('/m.wasm', mod);
    const url = `${tls13Only.origin}/m.wasm`;
    await expect(cacheFor({ COMPLIANCE_POLICY: 'fips-140-2' }).get(url, opts(sha256(mod)))).rejects.toThrow(/version|handshake|protocol/i);
    await expect(cacheFor({ COMPLIANCE_POLICY: 'fips-140-2', WASM_INSECURE_REGISTRIES: '*' }).get(url, opts(sha256(mod)))).rejects.toThrow(/version|handshake|protocol/i);
    expect(tls13Only.hits.get('/m.wasm') ?? 0).toBe(0);
    expect(readFileSync(await cacheFor({}).get(url, opts(sha256(mod)))).equals(mod)).toBe(true);
  });

  it('fips-140-3 fetches from a TLS 1.2-only server (FIPS suites and P-256 offered by default)', async () => {
    const mod = wasmModule(2048, 'compliance-12');
    tls12Only.serve('/m.wasm', mod);
    expect(readFileSync(await cacheFor({ COMPLIANCE_POLICY: 'fips-140-3' }).get(`${tls12Only.origin}/m.wasm`, opts(sha256(mod)))).equals(mod)).toBe(true);
  });
});
