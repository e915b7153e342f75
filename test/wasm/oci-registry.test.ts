// OCI pulls from a real registry (Debian's docker-registry) that skopeo pushed to: the three Wasm
// image layouts, tags and digests, plain HTTP / TLS / htpasswd / token auth, and the faults -
// 401, 404, 500, hangs, an unsafe token realm, a registry killed mid-download, an unknown layout,
// a bad pull secret - each ending in an error that leaves the cache clean. No secret is ever logged.

import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { registry as metricsRegistry } from '../../src/metrics/registry.js';
import { configureLogging, parseOutputLevels } from '../../src/util/logger.js';
import { WasmModuleCache, type GetOptions } from '../../src/wasm/cache.js';
import { convertResource } from '../../src/wasm/convert.js';
import type { WasmOptions } from '../../src/wasm/options.js';
import { freePort } from '../support/processes.js';
import { TEC, TEC_URL, decode, tecBytes, wasmFilter } from './ecds-fixtures.js';
import {
  createPki,
  pushModule,
  sha256,
  startRegistry,
  startThrottlingProxy,
  startTokenServer,
  testLookup,
  wasmModule,
  type Layout,
  type Registry,
  type TestPki,
  type TokenServer,
} from './support.js';

const REG = 'registry.test';
const AUTH = 'auth.test';
let dir: string;
let storage: string;
let pki: TestPki;
let caPem: string;
let plain: Registry;
let tls: Registry;
let basic: Registry;
let token: Registry;
let tokenServer: TokenServer;
const caches: WasmModuleCache[] = [];
const modules = new Map<Layout, { wasm: Buffer; digest: string }>();
const lookup = testLookup({ [REG]: '127.0.0.1', [AUTH]: '127.0.0.1' });
const USER = 'wasm-puller';
const PASS = 'S3cr3t-P4ssw0rd-xyz';
let logs: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pa-wasm-oci-'));
  storage = join(dir, 'storage');
  pki = await createPki(join(dir, 'pki'));
  caPem = readFileSync(pki.caCert, 'utf8');
  plain = await startRegistry({ storage });
  for (const layout of ['docker', 'oci', 'artifact', 'artifact-1layer', 'unknown'] as const) {
    const wasm = wasmModule(64 * 1024, layout);
    modules.set(layout, { wasm, digest: await pushModule(plain.address, `wasm/${layout}`, 'v1', layout, wasm) });
  }
  const serverCert = await pki.issue('registry', [REG, 'localhost', '127.0.0.1']);
  tls = await startRegistry({ storage, tls: serverCert, readOnly: true });
  basic = await startRegistry({ storage, users: { [USER]: PASS }, readOnly: true });
  const signer = await pki.issue('token-signer', ['token-signer.test']);
  tokenServer = await startTokenServer({ certPem: signer.certPem, keyPem: signer.keyPem, issuer: 'test-issuer', service: 'wasm-registry', users: { [USER]: PASS } });
  token = await startRegistry({ storage, readOnly: true, token: { realm: `http://${AUTH}:${tokenServer.port}/token`, service: 'wasm-registry', issuer: 'test-issuer', rootCertBundle: pki.caCert } });
  configureLogging({ outputLevels: parseOutputLevels('all:debug'), write: (l) => void logs.push(l) });
}, 120_000);

afterAll(async () => {
  configureLogging({ outputLevels: parseOutputLevels('info'), write: (l) => void process.stdout.write(l) });
  for (const r of [plain, tls, basic, token]) await r?.kill();
  await tokenServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
});

function newCache(over: Partial<WasmOptions> = {}, cacheDir = mkdtempSync(join(dir, 'cache-'))): WasmModuleCache {
  const c = new WasmModuleCache({ dir: cacheDir, lookup, extraCaCerts: [caPem], initialBackoffMs: 10, httpRequestTimeoutMs: 3000, httpRequestMaxRetries: 3, ...over });
  caches.push(c);
  return c;
}

const opts = (o: Partial<GetOptions> = {}): GetOptions => ({ resourceName: 'ns.plugin', resourceVersion: '1', requestTimeoutMs: 20_000, pullPolicy: 'Unspecified', ...o });

function secretFor(host: string, user = USER, pass = PASS): Uint8Array {
  return Buffer.from(JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${pass}`).toString('base64') } } }));
}

function files(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = await metricsRegistry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
}

function expectNoSecretsLogged(extra: readonly string[] = []): void {
  const text = logs.join('');
  for (const s of [PASS, Buffer.from(`${USER}:${PASS}`).toString('base64'), ...tokenServer.issued, ...extra]) expect(text).not.toContain(s);
}

describe('OCI layouts on a plain-HTTP registry (insecure)', () => {
  for (const layout of ['docker', 'oci', 'artifact', 'artifact-1layer'] as const) {
    it(`pulls the ${layout} layout by tag and by digest; the checksum is the manifest digest`, async () => {
      const { wasm, digest } = modules.get(layout)!;
      const cache = newCache({ insecureRegistries: [`${REG}:${plain.port}`] });
      const repo = `oci://${REG}:${plain.port}/wasm/${layout}`;
      const path = await cache.get(`${repo}:v1`, opts());
      expect(readFileSync(path).equals(wasm)).toBe(true);
      expect(path).toBe(join(cache.options.dir, sha256(repo), `${digest}.wasm`));
      // by digest, and by tag with the digest as sha256: the same cached module, no new download
      expect(await cache.get(`${repo}@sha256:${digest}`, opts())).toBe(path);
      expect(await cache.get(`${repo}:v1`, opts({ checksum: digest, resourceName: 'other' }))).toBe(path);
      expect(cache.downloads).toBe(1);
    });
  }

  it('pulls by digest from a cold cache', async () => {
    const { wasm, digest } = modules.get('oci')!;
    const cache = newCache({ insecureRegistries: ['*'] });
    expect(readFileSync(await cache.get(`oci://${REG}:${plain.port}/wasm/oci@sha256:${digest}`, opts())).equals(wasm)).toBe(true);
  });

  it('checks the manifest digest before downloading any layer', async () => {
    const cache = newCache({ insecureRegistries: ['*'] });
    const before = await metric('istio_agent_wasm_remote_fetch_count', { result: 'checksum_mismatched' });
    await expect(cache.get(`oci://${REG}:${plain.port}/wasm/oci:v1`, opts({ checksum: 'a'.repeat(64) }))).rejects.toThrow(/has checksum [0-9a-f]{64}, which does not match: a{64}/);
    expect(cache.downloads).toBe(0);
    expect(await metric('istio_agent_wasm_remote_fetch_count', { result: 'checksum_mismatched' })).toBe(before + 1);
  });

  it('rejects an image in an unknown layout, and a missing image (404, not retried)', async () => {
    const cache = newCache({ insecureRegistries: ['*'] });
    await expect(cache.get(`oci://${REG}:${plain.port}/wasm/unknown:v1`, opts())).rejects.toThrow(/could not fetch Wasm binary: the given image is in invalid format as an OCI image: could not parse as compat variant: invalid media type application\/vnd.example.unknown.layer.v1 .*could not parse as oci variant/);
    const manifestFailures = await metric('istio_agent_wasm_remote_fetch_count', { result: 'manifest_failure' });
    await expect(cache.get(`oci://${REG}:${plain.port}/wasm/nope:v1`, opts())).rejects.toThrow(/could not fetch Wasm OCI image: fetching manifest .*unexpected status code 404/);
    expect(await metric('istio_agent_wasm_remote_fetch_count', { result: 'manifest_failure' })).toBe(manifestFailures + 1);
    expect(files(cache.options.dir)).toEqual([]);
  });

  it('does not speak plain HTTP to a registry that is not listed as insecure', async () => {
    const cache = newCache();
    await expect(cache.get(`oci://${REG}:${plain.port}/wasm/oci:v1`, opts())).rejects.toThrow(/could not fetch Wasm OCI image/);
  });
});

describe('OCI pull policy and restarts', () => {
  it('re-pulls :latest when the resource version changes (and only then); other tags stay cached', async () => {
    const a = wasmModule(4096, 'latest-a');
    const b = wasmModule(4096, 'latest-b');
    await pushModule(plain.address, 'wasm/rolling', 'latest', 'artifact', a);
    await pushModule(plain.address, 'wasm/rolling', 'stable', 'artifact', a);
    const cache = newCache({ insecureRegistries: ['*'] });
    const base = `oci://${REG}:${plain.port}/wasm/rolling`;
    const pa = await cache.get(`${base}:latest`, opts({ resourceVersion: '1' }));
    const ps = await cache.get(`${base}:stable`, opts({ resourceVersion: '1' }));
    expect(ps).toBe(pa); // same manifest digest: one module
    await pushModule(plain.address, 'wasm/rolling', 'latest', 'artifact', b);
    await pushModule(plain.address, 'wasm/rolling', 'stable', 'artifact', b);
    expect(await cache.get(`${base}:latest`, opts({ resourceVersion: '1' }))).toBe(pa);
    expect(await cache.get(`${base}:stable`, opts({ resourceVersion: '2' }))).toBe(pa); // IfNotPresent by default
    const pb = await cache.get(`${base}:latest`, opts({ resourceVersion: '2' }));
    expect(readFileSync(pb).equals(b)).toBe(true);
    expect(cache.downloads).toBe(2);
  });

  it('after a restart resolves a tag with one manifest request and reuses the file on disk', async () => {
    const { wasm } = modules.get('oci')!;
    const first = newCache({ insecureRegistries: ['*'] });
    const url = `oci://${REG}:${plain.port}/wasm/oci:v1`;
    const path = await first.get(url, opts());
    await first.close();
    const second = new WasmModuleCache({ ...first.options });
    caches.push(second);
    expect(await second.get(url, opts())).toBe(path);
    expect(second.downloads).toBe(0);
    expect(readFileSync(path).equals(wasm)).toBe(true);
    // the module's own digest is recorded beside it (the file is named by the manifest's)
    expect(readFileSync(`${path}.sha256`, 'utf8').trim()).toBe(createHash('sha256').update(wasm).digest('hex'));
  });

  it('after a restart downloads again a module file cut short (a crash or a full disk), or one without its digest record', async () => {
    const { wasm } = modules.get('oci')!;
    const first = newCache({ insecureRegistries: ['*'] });
    const url = `oci://${REG}:${plain.port}/wasm/oci:v1`;
    const path = await first.get(url, opts());
    await first.close();
    // cut to its first 1000 bytes: it still starts with the Wasm magic number
    writeFileSync(path, wasm.subarray(0, 1000));
    const second = new WasmModuleCache({ ...first.options });
    caches.push(second);
    expect(await second.get(url, opts())).toBe(path);
    expect(second.downloads).toBe(1);
    expect(readFileSync(path).equals(wasm)).toBe(true);
    await second.close();
    rmSync(`${path}.sha256`);
    const third = new WasmModuleCache({ ...first.options });
    caches.push(third);
    expect(await third.get(url, opts())).toBe(path);
    expect(third.downloads).toBe(1);
    expect(readFileSync(`${path}.sha256`, 'utf8').trim()).toBe(createHash('sha256').update(wasm).digest('hex'));
  });
});

describe('OCI over TLS and with auth', () => {
  it('verifies the registry certificate; insecure skips verification', async () => {
    const url = `oci://${REG}:${tls.port}/wasm/artifact:v1`;
    const { wasm } = modules.get('artifact')!;
    expect(readFileSync(await newCache().get(url, opts())).equals(wasm)).toBe(true);
    await expect(newCache({ extraCaCerts: [] }).get(url, opts())).rejects.toThrow(/certificate|self-signed|unable to (get|verify)/i);
    expect(readFileSync(await newCache({ extraCaCerts: [], insecureRegistries: [`${REG}:${tls.port}`] }).get(url, opts())).equals(wasm)).toBe(true);
  });

  it('authenticates with Basic credentials from the pull secret (htpasswd)', async () => {
    logs = [];
    const host = `${REG}:${basic.port}`;
    const url = `oci://${host}/wasm/docker:v1`;
    const cache = newCache({ insecureRegistries: [host] });
    expect(readFileSync(await cache.get(url, opts({ pullSecret: secretFor(host) }))).equals(modules.get('docker')!.wasm)).toBe(true);
    await expect(newCache({ insecureRegistries: [host] }).get(url, opts({ pullSecret: secretFor(host, USER, 'wrong-password') }))).rejects.toThrow(/status code 401 \(unauthorized\)/);
    await expect(newCache({ insecureRegistries: [host] }).get(url, opts())).rejects.toThrow(/registry requires credentials/);
    // a secret for another registry is anonymous here
    await expect(newCache({ insecureRegistries: [host] }).get(url, opts({ pullSecret: secretFor('other.example:5000') }))).rejects.toThrow(/registry requires credentials/);
    expectNoSecretsLogged(['wrong-password']);
  });

  it('fails cleanly on a malformed pull secret, without echoing it', async () => {
    logs = [];
    const host = `${REG}:${basic.port}`;
    const cache = newCache({ insecureRegistries: [host] });
    const bad = Buffer.from('{"auths": {"registry.test": {"auth": "bm90LWJhc2U2NC1jb2xvbg=="}}'); // truncated JSON
    const err = await cache.get(`oci://${host}/wasm/oci:v1`, opts({ pullSecret: bad })).catch((e: Error) => e);
    expect(String(err)).toMatch(/invalid image pull secret: not a JSON docker config/);
    expect(String(err)).not.toContain('bm90');
    const noColon = Buffer.from(JSON.stringify({ auths: { [host]: { auth: Buffer.from('no-colon-here').toString('base64') } } }));
    await expect(cache.get(`oci://${host}/wasm/oci:v1`, opts({ pullSecret: noColon }))).rejects.toThrow(/malformed "auth"/);
    expectNoSecretsLogged(['bm90LWJhc2U2NC1jb2xvbg', Buffer.from('no-colon-here').toString('base64')]);
    expect(files(cache.options.dir)).toEqual([]);
  });

  it('gets a bearer token from the realm with the pull secret (token auth)', async () => {
    logs = [];
    const host = `${REG}:${token.port}`;
    const cache = newCache({ insecureRegistries: [host] });
    const url = `oci://${host}/wasm/oci:v1`;
    expect(readFileSync(await cache.get(url, opts({ pullSecret: secretFor(host) }))).equals(modules.get('oci')!.wasm)).toBe(true);
    const req = tokenServer.requests.at(-1)!;
    expect(req.authorization).toBe(`Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}`);
    expect(new URLSearchParams(req.query).get('scope')).toBe('repository:wasm/oci:pull');
    expect(new URLSearchParams(req.query).get('service')).toBe('wasm-registry');
    expect(tokenServer.issued.length).toBeGreaterThan(0);
    await expect(newCache({ insecureRegistries: [host] }).get(url, opts({ pullSecret: secretFor(host, USER, 'nope') }))).rejects.toThrow(/token request to http:\/\/auth.test:\d+\/token failed with status code 401/);
    expectNoSecretsLogged();
  });
});

describe('OCI faults (a fake registry)', () => {
  let fake: Server;
  let fakePort: number;
  let mode: 'realm-loopback' | 'realm-metadata' | 'realm-file' | '500' | 'hang' = '500';
  let requests = 0;

  beforeAll(async () => {
    fake = createServer((req, res) => {
      requests++;
      switch (mode) {
        case 'realm-loopback':
          return void res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${fakePort}/token",service="x"` }).end();
        case 'realm-metadata':
          return void res.writeHead(401, { 'www-authenticate': 'Bearer realm="http://metadata.google.internal/computeMetadata/v1/token"' }).end();
        case 'realm-file':
          return void res.writeHead(401, { 'www-authenticate': 'Bearer realm="file:///etc/passwd"' }).end();
        case '500':
          return void res.writeHead(500).end('oops');
        case 'hang':
          return void req.on('close', () => undefined);
      }
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    fakePort = (fake.address() as { port: number }).port;
  });
  afterAll(async () => {
    fake.closeAllConnections();
    await new Promise<void>((r) => fake.close(() => r()));
  });

  it('refuses unsafe bearer realms before sending credentials', async () => {
    const host = `${REG}:${fakePort}`;
    for (const [m, why] of [
      ['realm-loopback', 'realm targets private/loopback/link-local IP'],
      ['realm-metadata', 'realm targets cloud metadata service'],
      ['realm-file', 'realm scheme "file" not allowed'],
    ] as const) {
      mode = m;
      requests = 0;
      await expect(newCache({ insecureRegistries: ['*'] }).get(`oci://${host}/wasm/x:v1`, opts({ pullSecret: secretFor(host) }))).rejects.toThrow(`rejected unsafe bearer realm: ${why}`);
      expect(requests).toBeLessThanOrEqual(2); // https attempt fails, plain http gets the challenge; the realm is never called
    }
  });

  it('every fault ends in the RBAC fallback through the conversion, and leaves the cache clean for the next fetch', { timeout: 60_000 }, async () => {
    await pushModule(plain.address, 'wasm/notwasm', 'v1', 'artifact', Buffer.from('definitely not a wasm module'));
    const p = `${REG}:${plain.port}`;
    const b = `${REG}:${basic.port}`;
    const cases: { what: string; url: string; sha256?: string; secret?: string; cache?: Partial<WasmOptions>; mode?: typeof mode }[] = [
      { what: 'wrong sha256', url: `oci://${p}/wasm/oci:v1`, sha256: 'a'.repeat(64) },
      { what: 'not wasm', url: `oci://${p}/wasm/notwasm:v1` },
      { what: 'oversized', url: `oci://${p}/wasm/oci:v1`, cache: { maxBinarySizeBytes: 1000 } },
      { what: '401', url: `oci://${b}/wasm/oci:v1` },
      { what: 'bad pull secret', url: `oci://${b}/wasm/oci:v1`, secret: '{"auths": 1' },
      { what: '404', url: `oci://${p}/wasm/nope:v1` },
      { what: '500', url: `oci://${REG}:${fakePort}/wasm/x:v1`, mode: '500' },
      { what: 'timeout', url: `oci://${REG}:${fakePort}/wasm/x:v1`, mode: 'hang', cache: { httpRequestTimeoutMs: 200, httpRequestMaxRetries: 2 } },
      { what: 'unknown layout', url: `oci://${p}/wasm/unknown:v1` },
    ];
    const cacheDir = mkdtempSync(join(dir, 'faults-'));
    for (const c of cases) {
      if (c.mode) mode = c.mode;
      const shared = newCache({ insecureRegistries: ['*'], ...c.cache }, cacheDir);
      const env = c.secret ? { ISTIO_META_WASM_IMAGE_PULL_SECRET: c.secret } : undefined;
      const out = await convertResource({ typeUrl: TEC_URL, value: tecBytes(wasmFilter(`ns.${c.what}`, c.url, { ...(c.sha256 ? { sha256: c.sha256 } : {}), ...(env ? { env } : {}) })) }, shared);
      expect(out, c.what).toMatchObject({ kind: 'rewritten', fallback: 'deny' });
      expect(decode(TEC, (out as { value: Uint8Array }).value), c.what).toEqual({ name: `ns.${c.what}`, typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', rules: {}, rules_stat_prefix: 'wasm-default-deny' } });
      expect(files(cacheDir), c.what).toEqual([]);
    }
    const good = newCache({ insecureRegistries: ['*'] }, cacheDir);
    const ok = await convertResource({ typeUrl: TEC_URL, value: tecBytes(wasmFilter('ns.good', `oci://${p}/wasm/oci:v1`)) }, good);
    expect(ok.kind).toBe('rewritten');
    expect((ok as { fallback?: string }).fallback).toBeUndefined();
    expect(files(cacheDir).sort()).toEqual([`${modules.get('oci')!.digest}.wasm`, `${modules.get('oci')!.digest}.wasm.sha256`]);
  });

  it('retries 500s, then gives up', async () => {
    mode = '500';
    const cache = newCache({ insecureRegistries: ['*'] });
    await expect(cache.get(`oci://${REG}:${fakePort}/wasm/x:v1`, opts())).rejects.toThrow(/failed after 3 attempts, last error: .*unexpected status code 500/);
  });

  it('times out a registry that never answers', async () => {
    mode = 'hang';
    const cache = newCache({ insecureRegistries: ['*'], httpRequestTimeoutMs: 200, httpRequestMaxRetries: 2 });
    const t0 = Date.now();
    await expect(cache.get(`oci://${REG}:${fakePort}/wasm/x:v1`, opts())).rejects.toThrow(/could not fetch Wasm OCI image/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('bearer realm of an https registry', () => {
  // one https server is the registry and (for https realms) the token service; a plain-http token
  // service and one on 127.0.0.2 (a blocked address) count what reaches them
  let registry: Server;
  let regPort: number;
  let realm = '';
  const tokenRequests: string[] = [];
  const elsewhere = { http: 0, blocked: 0 };
  let httpToken: Server;
  let blockedToken: Server;
  const listen = (srv: Server, host: string): Promise<number> => new Promise((r) => srv.listen(0, host, () => r((srv.address() as { port: number }).port)));

  beforeAll(async () => {
    const cert = await pki.issue('realm-registry', [REG, AUTH, 'blocked-auth.test', 'localhost']);
    registry = createHttpsServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
      if (req.url?.startsWith('/token')) {
        tokenRequests.push(req.headers.authorization ?? '');
        return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t0k3n"}');
      }
      if (req.headers.authorization === 'Bearer t0k3n') return void res.writeHead(404).end();
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="reg"` }).end();
    });
    regPort = await listen(registry, '127.0.0.1');
    httpToken = createServer((_q, r) => (elsewhere.http++, r.end('{"token":"x"}')));
    blockedToken = createServer((_q, r) => (elsewhere.blocked++, r.end('{"token":"x"}')));
    blockedToken.on('connection', () => elsewhere.blocked++);
    await listen(httpToken, '127.0.0.1');
    await listen(blockedToken, '127.0.0.2');
  });
  afterAll(async () => {
    for (const srv of [registry, httpToken, blockedToken]) {
      srv?.closeAllConnections();
      await new Promise<void>((r) => (srv ? srv.close(() => r()) : r()));
    }
  });

  const pull = (cache = newCache()) => cache.get(`oci://${REG}:${regPort}/wasm/x:v1`, opts({ pullSecret: secretFor(`${REG}:${regPort}`) }));

  it('must be https, and gets the token over verified TLS when it is', async () => {
    realm = `http://${AUTH}:${(httpToken.address() as { port: number }).port}/token`;
    await expect(pull()).rejects.toThrow('rejected unsafe bearer realm: realm must be https for an https registry (got http)');
    expect(elsewhere.http).toBe(0);
    realm = `https://${AUTH}:${regPort}/token`;
    await expect(pull()).rejects.toThrow(/unexpected status code 404/);
    expect(tokenRequests.at(-1)).toBe(`Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}`);
  });

  it('a trailing dot does not get a realm past the host checks', async () => {
    const before = tokenRequests.length;
    for (const [host, why] of [
      ['localhost.', 'realm targets localhost'],
      ['LOCALHOST.', 'realm targets localhost'],
      ['metadata.google.internal.', 'realm targets cloud metadata service'],
      ['127.0.0.1.', 'realm targets private/loopback/link-local IP'],
    ] as const) {
      realm = `https://${host}:${regPort}/token`;
      await expect(pull(), host).rejects.toThrow(`rejected unsafe bearer realm: ${why}`);
    }
    expect(tokenRequests.length).toBe(before);
  });

  it('goes through the same dial guard as every Wasm fetch (BLOCKED_CIDRS_IN_WASM_FETCH)', async () => {
    realm = `https://blocked-auth.test:${(blockedToken.address() as { port: number }).port}/token`;
    const cache = newCache({ blockedCidrs: ['127.0.0.2/32'], lookup: testLookup({ [REG]: '127.0.0.1', 'blocked-auth.test': '127.0.0.2' }) });
    await expect(pull(cache)).rejects.toThrow('connection blocked: resolved IP 127.0.0.2 is in a blocked CIDR range (BLOCKED_CIDRS_IN_WASM_FETCH)');
    expect(elsewhere.blocked).toBe(0);
  });
});

describe('registry killed mid-download', () => {
  it('fails the fetch, leaves no file, and a restarted registry then serves the module', { timeout: 60_000 }, async () => {
    const ownStorage = join(dir, 'storage-kill');
    const port = await freePort();
    let reg = await startRegistry({ storage: ownStorage, port });
    const wasm = wasmModule(32 * 1024 * 1024, 'big'); // more than the kernel buffers between registry and proxy hold
    await pushModule(reg.address, 'wasm/big', 'v1', 'artifact', wasm);
    const proxy = await startThrottlingProxy(port, 128 * 1024, 10); // ~12 MB/s
    try {
      const host = `${REG}:${proxy.port}`;
      const cache = newCache({ insecureRegistries: [host], httpRequestMaxRetries: 3 });
      const fetching = cache.get(`oci://${host}/wasm/big:v1`, opts());
      const settled = fetching.then(() => 'ok', (e: Error) => e);
      await expect.poll(() => proxy.sent(), { timeout: 10_000, interval: 20 }).toBeGreaterThan(1024 * 1024);
      const dl = await metric('istio_agent_wasm_remote_fetch_count', { result: 'download_failure' });
      await reg.kill('SIGKILL');
      const err = await settled;
      expect(String(err)).toMatch(/could not fetch Wasm binary: downloading layer sha256:[0-9a-f]{64} failed after 3 attempts/);
      expect(await metric('istio_agent_wasm_remote_fetch_count', { result: 'download_failure' })).toBe(dl + 1);
      expect(files(cache.options.dir)).toEqual([]);

      reg = await startRegistry({ storage: ownStorage, port });
      const path = await cache.get(`oci://${host}/wasm/big:v1`, opts());
      expect(readFileSync(path).equals(wasm)).toBe(true);
    } finally {
      await proxy.close();
      await reg.kill();
    }
  });
});
