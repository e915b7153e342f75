// Bench `wasm`: the ECDS Wasm path against a real local registry (Debian's docker-registry, images
// pushed with skopeo).
//   - cache_hit_ms: converting a one-resource ECDS response whose module is already cached
//     (decode, cache lookup, re-encode, response rebuild), median;
//   - downloads_for_100_concurrent: module downloads caused by 100 concurrent ECDS responses for
//     one module on a cold cache (1 = all shared the download);
//   - pull_50mb_ratio: pulling a 50 MB module (OCI artifact) into a cold cache - manifest, blob,
//     digest check, atomic write - as a ratio to `skopeo copy` of the same image to a local
//     directory in the same run (median of alternating runs). Below 1 means faster than skopeo.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configureLogging, parseOutputLevels } from '../src/util/logger.js';
import { WasmModuleCache } from '../src/wasm/cache.js';
import { WasmEcdsInterceptor } from '../src/wasm/convert.js';
import { SOTW } from '../src/xds/protocol.js';
import { summarizeSotwResponse } from '../src/xds/wire.js';
import { sotwResponse, tecBytes, wasmFilter } from '../test/wasm/ecds-fixtures.js';
import { pushModule, startRegistry, testLookup, wasmModule } from '../test/wasm/support.js';
import { median, round, timeCommand, type Bench } from './harness.js';

const REG = 'registry.test';

export const wasmBench: Bench = async ({ runs }) => {
  configureLogging({ outputLevels: parseOutputLevels('all:warn') }); // one info line per pull otherwise
  const dir = mkdtempSync(join(tmpdir(), 'pa-bench-wasm-'));
  const reg = await startRegistry({ storage: join(dir, 'storage') });
  const caches: WasmModuleCache[] = [];
  const newCache = (): WasmModuleCache => {
    const c = new WasmModuleCache({ dir: mkdtempSync(join(dir, 'cache-')), lookup: testLookup({ [REG]: '127.0.0.1' }), insecureRegistries: [`${REG}:${reg.port}`], httpRequestTimeoutMs: 60_000 });
    caches.push(c);
    return c;
  };
  try {
    const small = wasmModule(512 * 1024, 'bench-small');
    await pushModule(reg.address, 'bench/small', 'v1', 'oci', small);
    const big = wasmModule(50 * 1024 * 1024, 'bench-big');
    await pushModule(reg.address, 'bench/big', 'v1', 'artifact', big);
    const signal = new AbortController().signal;
    const ecds = (name: string, url: string): Buffer => sotwResponse([{ value: tecBytes(wasmFilter(name, url, { env: { ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION: '1' } })) }]);

    // cache hit
    const hitCache = newCache();
    const interceptor = new WasmEcdsInterceptor(hitCache);
    const hitMsg = ecds('ns.small', `oci://${REG}:${reg.port}/bench/small:v1`);
    const ctx = { protocol: SOTW, summary: summarizeSotwResponse(hitMsg), signal };
    const first = await interceptor.intercept(hitMsg, ctx); // downloads, loads the protos
    if (first.kind !== 'forward') throw new Error(`conversion failed: ${first.reason}`);
    const hits: number[] = [];
    for (let i = 0; i < Math.max(50, runs * 10); i++) {
      const t0 = process.hrtime.bigint();
      await interceptor.intercept(hitMsg, ctx);
      hits.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }

    // 100 concurrent ECDS responses for one module, cold cache
    const coldCache = newCache();
    const cold = new WasmEcdsInterceptor(coldCache);
    const url = `oci://${REG}:${reg.port}/bench/small:v1`;
    const t100 = process.hrtime.bigint();
    const actions = await Promise.all(
      Array.from({ length: 100 }, (_, i) => {
        const msg = ecds(`ns.p${i}`, url);
        return cold.intercept(msg, { protocol: SOTW, summary: summarizeSotwResponse(msg), signal });
      }),
    );
    const concurrentMs = Number(process.hrtime.bigint() - t100) / 1e6;
    if (actions.some((a) => a.kind !== 'forward')) throw new Error('a concurrent conversion failed');
    const downloads = coldCache.downloads;

    // 50 MB pull vs skopeo copy
    const pullRuns = Math.max(3, Math.min(runs, 5));
    const ours: number[] = [];
    const skopeo: number[] = [];
    // one untimed round first: JIT, connection pools and the registry's own caches warm for both
    for (let i = -1; i < pullRuns; i++) {
      const out = mkdtempSync(join(dir, 'skopeo-'));
      const run = async (): Promise<void> => {
        const ms = await timeCommand('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${reg.address}/bench/big:v1`, `dir:${out}`]);
        if (i >= 0) skopeo.push(ms);
      };
      const pull = async (): Promise<void> => {
        const c = newCache();
        const t0 = process.hrtime.bigint();
        await c.get(`oci://${REG}:${reg.port}/bench/big:v1`, { resourceName: 'ns.big', resourceVersion: '1', requestTimeoutMs: 120_000, pullPolicy: 'IfNotPresent' });
        if (i >= 0) ours.push(Number(process.hrtime.bigint() - t0) / 1e6);
        await c.close();
      };
      if (i % 2) {
        await run();
        await pull();
      } else {
        await pull();
        await run();
      }
      rmSync(out, { recursive: true, force: true });
    }
    const hit = median(hits);
    const pullRatio = median(ours) / median(skopeo);
    return {
      rows: [
        ['cache-hit ECDS conversion (median ms)', hit.toFixed(3)],
        ['100 concurrent ECDS responses, cold cache (ms)', concurrentMs.toFixed(1)],
        ['    module downloads', String(downloads)],
        [`50 MB pull into the cache (median of ${pullRuns}, ms)`, median(ours).toFixed(1)],
        [`skopeo copy of the same image (median of ${pullRuns}, ms)`, median(skopeo).toFixed(1)],
        ['pull ratio (ours / skopeo)', pullRatio.toFixed(2)],
      ],
      figures: {
        cache_hit_ms: round(hit, 3),
        downloads_for_100_concurrent: downloads,
        pull_50mb_ratio: round(pullRatio),
        pull_50mb_ms: round(median(ours), 1),
        skopeo_50mb_ms: round(median(skopeo), 1),
        concurrent_100_ms: round(concurrentMs, 1),
      },
    };
  } finally {
    await Promise.all(caches.map((c) => c.close()));
    await reg.kill();
    rmSync(dir, { recursive: true, force: true });
  }
};
