// End to end: the development control plane pushes ECDS resources with remote Wasm code (an OCI
// image in a real registry, a module on an HTTPS server, one that cannot be fetched, one that is
// malformed) through the real XdsProxy with the Wasm interceptor, to an ADS client standing in for
// Envoy. The client must see local filenames pointing at files with the right bytes, RBAC in place
// of the unfetchable filter, other resources untouched, and istiod a NACK for the malformed one
// carrying the last ACKed version. SotW and Delta.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WasmModuleCache } from '../../src/wasm/cache.js';
import { WasmEcdsInterceptor } from '../../src/wasm/convert.js';
import { TypeUrl } from '../../src/xds/type-urls.js';
import { XdsProxy } from '../../src/xds/xds-proxy.js';
import { openDelta, openSotw, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { TEC, decode, wasmFilter } from './ecds-fixtures.js';
import { createPki, pushModule, sha256, startFileServer, startRegistry, testLookup, wasmModule, type FileServer, type Registry } from './support.js';

const ECDS = TypeUrl.ExtensionConfig;
const TOKEN = 'e2e-token';
const REG = 'registry.test';
let dir: string;
let cp: ControlPlane;
let reg: Registry;
let files: FileServer;
let caPem: string;
let ociWasm: Buffer;
let ociDigest: string;
let httpWasm: Buffer;
let proxy: XdsProxy | undefined;
let cache: WasmModuleCache | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pa-wasm-e2e-'));
  writeFileSync(join(dir, 'token'), TOKEN);
  const pki = await createPki(join(dir, 'pki'));
  caPem = readFileSync(pki.caCert, 'utf8');
  files = await startFileServer({ tls: await pki.issue('files', ['files.test']), host: 'files.test' });
  httpWasm = wasmModule(100_000, 'http');
  files.serve('/filter.wasm', httpWasm);
  reg = await startRegistry({ storage: join(dir, 'storage') });
  ociWasm = wasmModule(200_000, 'oci');
  ociDigest = await pushModule(reg.address, 'wasm/filter', 'v1', 'oci', ociWasm);
  cp = await startControlPlane({ token: TOKEN });
}, 60_000);

afterAll(async () => {
  await cp?.close();
  await files?.close();
  await reg?.kill();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await proxy?.close();
  await cache?.close();
  proxy = undefined;
  cache = undefined;
  cp.disconnectAll();
});

async function startProxy(): Promise<{ address: string; tls: false }> {
  cache = new WasmModuleCache({
    dir: join(dir, `data-${Math.random().toString(36).slice(2)}`),
    lookup: testLookup({ [REG]: '127.0.0.1', 'files.test': '127.0.0.1' }),
    extraCaCerts: [caPem],
    insecureRegistries: [`${REG}:${reg.port}`],
    initialBackoffMs: 10,
    httpRequestMaxRetries: 2,
  });
  const socketPath = join(dir, `XDS-${Math.random().toString(36).slice(2)}`);
  proxy = new XdsProxy({
    socketPath,
    upstream: { address: cp.address, tls: { rootCa: () => Buffer.from(cp.rootCertPem), serverName: 'istiod.istio-system.svc' }, tokenPath: join(dir, 'token'), clusterId: 'Kubernetes', headers: {} },
  });
  proxy.registerInterceptor(ECDS, new WasmEcdsInterceptor(cache));
  await proxy.start();
  return { address: `unix:${socketPath}`, tls: false };
}

function resources(): { json: unknown }[] {
  const secret = JSON.stringify({ auths: { [`${REG}:${reg.port}`]: { auth: Buffer.from('anyone:anything').toString('base64') } } });
  return [
    { json: wasmFilter('ns.oci-filter', `oci://${REG}:${reg.port}/wasm/filter:v1`, { env: { ISTIO_META_WASM_IMAGE_PULL_SECRET: secret, ISTIO_META_WASM_IMAGE_PULL_POLICY: 'IfNotPresent', ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION: '11' } }) },
    { json: wasmFilter('ns.http-filter', `${files.origin}/filter.wasm`, { sha256: sha256(httpWasm), hostEnvKeys: ['POD_NAME'], env: { ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION: '12' } }) },
    { json: wasmFilter('ns.missing-filter', `${files.origin}/missing.wasm`, { failOpen: true }) },
    { json: { '@type': 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig', name: 'ns.plain', typed_config: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'not wasm' } } },
  ];
}

type Decoded = { name: string; typed_config: { '@type': string; config?: { vm_config?: { code?: { local?: { filename: string } }; environment_variables?: unknown } }; rules_stat_prefix?: string; value?: string } };

function checkConverted(byName: Map<string, Decoded>): void {
  const oci = byName.get('ns.oci-filter')!;
  const ociPath = oci.typed_config.config!.vm_config!.code!.local!.filename;
  expect(ociPath).toBe(join(cache!.options.dir, sha256(`oci://${REG}:${reg.port}/wasm/filter`), `${ociDigest}.wasm`));
  expect(readFileSync(ociPath).equals(ociWasm)).toBe(true);
  expect(oci.typed_config.config!.vm_config!.environment_variables).toBeUndefined();

  const http = byName.get('ns.http-filter')!;
  const httpPath = http.typed_config.config!.vm_config!.code!.local!.filename;
  expect(readFileSync(httpPath).equals(httpWasm)).toBe(true);
  expect(http.typed_config.config!.vm_config!.environment_variables).toEqual({ host_env_keys: ['POD_NAME'] });

  expect(byName.get('ns.missing-filter')).toEqual({ name: 'ns.missing-filter', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', rules_stat_prefix: 'wasm-default-allow' } });
  expect(byName.get('ns.plain')).toEqual({ name: 'ns.plain', typed_config: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'not wasm' } });
}

describe('ECDS with remote Wasm through the xDS proxy', () => {
  it('SotW: Envoy gets local files with the right bytes; a malformed update is NACKed with the last ACKed version', { timeout: 60_000 }, async () => {
    const target = await startProxy();
    const names = ['ns.oci-filter', 'ns.http-filter', 'ns.missing-filter', 'ns.plain', 'ns.broken'];
    const v1 = cp.setResources(ECDS, resources(), { replace: true });
    const client = openSotw(target);
    try {
      client.request({ type_url: ECDS, resource_names: names, node: { id: 'sidecar~10.0.0.1~a.ns~ns.svc.cluster.local' } });
      const res = await client.next(30_000);
      expect(res.versionInfo).toBe(v1);
      const byName = new Map(res.resources.map((r) => [(decode(TEC, r.value) as Decoded).name, decode(TEC, r.value) as Decoded]));
      checkConverted(byName);
      client.ack(res, names);
      await cp.waitForAck(ECDS, v1);

      // istiod pushes a config the agent cannot make sense of: NACK upstream, Envoy sees nothing
      cp.setResources(ECDS, [...resources(), { json: { '@type': 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig', name: 'ns.broken', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm', config: { name: 'ns.broken' } } } }], { replace: true });
      const nack = await cp.waitForNack(ECDS);
      expect(nack.errorDetail.message).toContain('no remote and local load found in Wasm HTTP filter "ns.broken"');
      const lastReq = cp.connectedStreams()[0]!.lastRequestByType[ECDS] as { versionInfo?: string };
      expect(lastReq.versionInfo).toBe(v1);
      expect(await client.expectNone(300)).toBe(true);
      // the second push re-used both cached modules; only the missing one was tried again
      expect(files.hits.get('/filter.wasm')).toBe(1);
      expect(cache!.downloads).toBe(4);
    } finally {
      client.close();
    }
  });

  it('Delta: the same conversion, resource names and versions kept', { timeout: 60_000 }, async () => {
    const target = await startProxy();
    cp.setResources(ECDS, resources(), { replace: true });
    const client = openDelta(target);
    try {
      client.request({ type_url: ECDS, resource_names_subscribe: ['ns.oci-filter', 'ns.http-filter', 'ns.missing-filter', 'ns.plain'] });
      const res = await client.next(30_000);
      const byName = new Map(res.resources.map((r) => [r.name, decode(TEC, r.resource!.value) as Decoded]));
      expect([...byName.keys()].sort()).toEqual(['ns.http-filter', 'ns.missing-filter', 'ns.oci-filter', 'ns.plain']);
      for (const r of res.resources) expect(r.version).not.toBe('');
      checkConverted(byName);
    } finally {
      client.close();
    }
  });
});

