// Small pieces: image references and module names, pull-secret lookup, the address policy and
// realm rules, WWW-Authenticate parsing, the tar reader, unboxing, options from the agent config.

import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../src/config/load.js';
import { moduleNameFromUrl } from '../../src/wasm/cache.js';
import { displayUrl } from '../../src/wasm/convert.js';
import { credentialsFor } from '../../src/wasm/docker-config.js';
import { retryableStatus } from '../../src/wasm/http-client.js';
import { AddressPolicy, normalizeIp, validateRealm } from '../../src/wasm/net-guard.js';
import { parseChallenges, parseReference } from '../../src/wasm/oci.js';
import { wasmOptionsFromConfig } from '../../src/wasm/options.js';
import { firstTarFile, GzipTarFile, isTar, TarFileFinder, tarEntries, unboxIfPossible } from '../../src/wasm/unbox.js';
import { gzip, tarOf, wasmModule } from './support.js';

describe('image references', () => {
  it('parses like go-containerregistry', () => {
    expect(parseReference('ghcr.io/istio/plugin:1.2')).toEqual({ registry: 'ghcr.io', repository: 'istio/plugin', tag: '1.2' });
    expect(parseReference('127.0.0.1:5000/a/b/c')).toEqual({ registry: '127.0.0.1:5000', repository: 'a/b/c', tag: 'latest' });
    expect(parseReference('localhost/x@sha256:' + 'a'.repeat(64))).toEqual({ registry: 'localhost', repository: 'x', digest: 'sha256:' + 'a'.repeat(64) });
    expect(parseReference('docker.io/envoy')).toEqual({ registry: 'index.docker.io', repository: 'library/envoy', tag: 'latest' });
    expect(parseReference('istio/proxy:tag@sha256:' + 'b'.repeat(64))).toEqual({ registry: 'index.docker.io', repository: 'istio/proxy', digest: 'sha256:' + 'b'.repeat(64) });
    expect(() => parseReference('Upper/Case:v1')).toThrow(/invalid repository/);
    expect(() => parseReference('r.io/x@sha256:short')).toThrow(/invalid digest/);
    expect(() => parseReference('r.io/x:bad/tag!')).toThrow();
  });

  it('names modules by URL, or by repository for oci:// (tag and digest dropped)', () => {
    expect(moduleNameFromUrl('oci://ghcr.io/a/b:v1')).toBe('oci://ghcr.io/a/b');
    expect(moduleNameFromUrl('oci://ghcr.io/a/b@sha256:' + 'c'.repeat(64))).toBe('oci://ghcr.io/a/b');
    expect(moduleNameFromUrl('oci://docker.io/plugin')).toBe('oci://index.docker.io/library/plugin');
    expect(moduleNameFromUrl('https://e.com/a.wasm?x=1')).toBe('https://e.com/a.wasm?x=1');
  });

  it('parses WWW-Authenticate challenges', () => {
    expect(parseChallenges(['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull"'])).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:a/b:pull' } },
    ]);
    expect(parseChallenges(['Basic realm="basic-realm"'])).toEqual([{ scheme: 'basic', params: { realm: 'basic-realm' } }]);
  });
});

describe('pull secrets', () => {
  const auth = (u: string, p: string): string => Buffer.from(`${u}:${p}`).toString('base64');
  it('finds credentials by registry, then by host of a URL-shaped key; Docker Hub by its v1 key', () => {
    const secret = JSON.stringify({
      auths: {
        'r.example:5000': { auth: auth('a', 'b:c') },
        'https://other.example/v1/': { username: 'u', password: 'p' },
        'https://index.docker.io/v1/': { auth: auth('hub', 'pw') },
        'tok.example': { registrytoken: 'rt' },
      },
    });
    expect(credentialsFor(secret, 'r.example:5000')).toEqual({ username: 'a', password: 'b:c' });
    expect(credentialsFor(secret, 'other.example')).toEqual({ username: 'u', password: 'p' });
    expect(credentialsFor(secret, 'index.docker.io')).toEqual({ username: 'hub', password: 'pw' });
    expect(credentialsFor(secret, 'tok.example')).toEqual({ registryToken: 'rt' });
    expect(credentialsFor(secret, 'unknown.example')).toBeUndefined();
    expect(credentialsFor('{}', 'r.example')).toBeUndefined();
  });
  it('rejects malformed secrets without quoting them', () => {
    for (const bad of ['null', 'not json', '[]', '{"auths": 5}']) {
      let msg = '';
      try {
        credentialsFor(bad, 'r');
      } catch (err) {
        msg = (err as Error).message;
      }
      expect(msg).toMatch(/^invalid image pull secret/);
      expect(msg).not.toContain(bad);
    }
  });
});

describe('address policy', () => {
  const policy = new AddressPolicy(['10.0.0.0/8', 'fd12::/16', 'garbage', '1.2.3.4']);
  it('blocks link-local, metadata and configured ranges; allows private and loopback', () => {
    expect(policy.blockedCidrs).toEqual(['10.0.0.0/8', 'fd12::/16']);
    for (const ip of ['169.254.169.254', '169.254.0.1', 'fe80::1', '::ffff:169.254.169.254', '[fe80::a%eth0]', '100.100.100.200', 'fd00:ec2::254', '10.1.2.3', 'fd12::1', '224.0.0.251', 'ff02::1']) {
      expect(policy.check(ip), ip).toBeDefined();
    }
    for (const ip of ['127.0.0.1', '::1', '192.168.1.1', '172.16.0.1', '8.8.8.8', '2001:db8::1', '100.100.100.201']) {
      expect(policy.check(ip), ip).toBeUndefined();
    }
    expect(normalizeIp('::ffff:a9fe:a9fe')).toBe('169.254.169.254');
  });
  it('validates bearer realms as Istio does', () => {
    expect(validateRealm('https://auth.example.com/token')).toBeUndefined();
    expect(validateRealm('http://token.registry.svc:5001/auth')).toBeUndefined();
    expect(validateRealm('ftp://x/token')).toBe('realm scheme "ftp" not allowed');
    expect(validateRealm('https://localhost/t')).toBe('realm targets localhost');
    expect(validateRealm('http://metadata.google.internal/')).toBe('realm targets cloud metadata service');
    for (const ip of ['10.0.0.1', '127.0.0.1', '169.254.169.254', '[::1]', '[fe80::1]', '192.168.0.10']) expect(validateRealm(`http://${ip}/token`), ip).toBe('realm targets private/loopback/link-local IP');
    expect(validateRealm('not a url')).toBe('invalid realm URL');
  });
  it('does not let a trailing dot, case or a subdomain of localhost past the host rules', () => {
    for (const h of ['localhost.', 'LOCALHOST.', 'localhost..', 'api.localhost', 'api.localhost.']) expect(validateRealm(`https://${h}/t`), h).toBe('realm targets localhost');
    for (const h of ['metadata.google.internal.', 'METADATA.GOOGLE.INTERNAL', 'metadata', 'metadata.']) expect(validateRealm(`http://${h}/t`), h).toBe('realm targets cloud metadata service');
    for (const h of ['10.0.0.1.', '127.0.0.1.', '169.254.169.254.']) expect(validateRealm(`http://${h}/t`), h).toBe('realm targets private/loopback/link-local IP');
    expect(validateRealm('https://auth.example.com./token')).toBeUndefined();
  });
  it('requires an https realm for an https registry', () => {
    expect(validateRealm('http://auth.example.com/token', 'https')).toBe('realm must be https for an https registry (got http)');
    expect(validateRealm('https://auth.example.com/token', 'https')).toBeUndefined();
    expect(validateRealm('http://auth.example.com/token', 'http')).toBeUndefined();
  });
  it('retries the 5xx Go retries', () => {
    expect([500, 502, 503, 504, 501, 505, 511, 404, 429].map(retryableStatus)).toEqual([true, true, true, true, false, false, false, false, false]);
  });
});

/** Feeds `tar` to a TarFileFinder for plugin.wasm in chunks of the given sizes, in turn. */
function find(tar: Buffer, sizes: readonly number[]): Buffer | undefined {
  const finder = new TarFileFinder('plugin.wasm', 1 << 20);
  for (let off = 0, i = 0; off < tar.length && !finder.done; i++) {
    const n = sizes[i % sizes.length]!;
    finder.push(tar.subarray(off, off + n));
    off += n;
  }
  finder.finish();
  return finder.file;
}

describe('tar and unboxing', () => {
  it('reads ustar, GNU long names and pax paths', () => {
    const long = 'd/'.repeat(80) + 'plugin.wasm';
    const data = Buffer.from('wasm!');
    const gnu = tarOf([{ name: '././@LongLink', data: Buffer.from(long + '\0'), type: 'L' as '0' }, { name: 'short', data }]);
    expect([...tarEntries(gnu)].map((e) => e.name)).toEqual([long]);
    expect(find(gnu, [gnu.length])?.equals(data)).toBe(true);
    const rec = (k: string, v: string): string => {
      let len = k.length + v.length + 3;
      len += String(len).length;
      return `${len} ${k}=${v}\n`;
    };
    const pax = tarOf([{ name: 'PaxHeaders/x', data: Buffer.from(rec('path', 'a/b/plugin.wasm')), type: 'x' as '0' }, { name: 'x', data }]);
    expect([...tarEntries(pax)].map((e) => e.name)).toEqual(['a/b/plugin.wasm']);
    expect(isTar(pax)).toBe(true);
    const corrupt = Buffer.from(gnu);
    corrupt[10] = 0x41;
    expect(() => [...tarEntries(corrupt)]).toThrow(/checksum/);
    expect(firstTarFile(tarOf([{ name: 'dir/', data: Buffer.alloc(0), type: '5' }]))).toBeUndefined();
  });

  it('finds plugin.wasm in a tar fed in chunks of any size, keeping nothing else', () => {
    const mod = wasmModule(3000);
    const rec = (k: string, v: string): string => {
      let len = k.length + v.length + 3;
      len += String(len).length;
      return `${len} ${k}=${v}\n`;
    };
    const tar = tarOf([
      { name: 'README', data: Buffer.alloc(700, 0x41) },
      { name: 'empty', data: Buffer.alloc(0) },
      { name: 'PaxHeaders/x', data: Buffer.from(rec('path', 'deep/dir/plugin.wasm')), type: 'x' as '0' },
      { name: 'ignored-name', data: mod },
      { name: 'later/plugin.wasm', data: Buffer.from('second one, not taken') },
    ]);
    // every chunking: byte by byte, across header, data and padding boundaries, and whole
    for (const sizes of [[1], [7], [511, 2], [512], [1000], [tar.length]]) expect(find(tar, sizes)?.equals(mod), String(sizes)).toBe(true);
    expect(find(tarOf([{ name: 'other.wasm', data: mod }]), [100])).toBeUndefined();
    // cut inside the file: truncated, never a short module
    const finder = new TarFileFinder('plugin.wasm', 1 << 20);
    finder.push(tarOf([{ name: 'plugin.wasm', data: mod }]).subarray(0, 1500));
    expect(finder.file).toBeUndefined();
    expect(() => finder.finish()).toThrow('truncated tar archive');
    // over the cap: refused from its header, before any of it is kept
    const small = new TarFileFinder('plugin.wasm', 1000);
    expect(() => small.push(tarOf([{ name: 'plugin.wasm', data: mod }]))).toThrow(`plugin.wasm is ${mod.length} bytes, more than the limit of 1000 bytes`);
  });

  it('GzipTarFile unpacks a tar.gz as it arrives; a bomb, bad gzip or a missing file is an error', async () => {
    const mod = wasmModule(5000);
    const gz = gzip(tarOf([{ name: 'a/plugin.wasm', data: mod }]));
    const feed = async (bytes: Buffer, cap = 1 << 20): Promise<Buffer> => {
      const g = new GzipTarFile('plugin.wasm', cap, 'layer');
      for (let i = 0; i < bytes.length; i += 100) await g.write(bytes.subarray(i, i + 100));
      return g.result();
    };
    expect((await feed(gz)).equals(mod)).toBe(true);
    // 64 MiB of zeros in a tar entry before the module: stopped at the cap while decompressing
    const bomb = gzip(tarOf([{ name: 'zeros', data: Buffer.alloc(64 << 20) }, { name: 'plugin.wasm', data: mod }]));
    expect(bomb.length).toBeLessThan(1 << 20);
    await expect(feed(bomb, 4 << 20)).rejects.toThrow('layer decompresses to more than the limit of 4194304 bytes');
    await expect(feed(Buffer.from('not gzip at all'))).rejects.toThrow(/layer is not valid gzip/);
    await expect(feed(gzip(tarOf([{ name: 'x.wasm', data: mod }])))).rejects.toThrow('plugin.wasm not found in the archive');
  });

  it('unboxes nested layers and returns unknown bytes as they are', async () => {
    const mod = wasmModule(500);
    expect((await unboxIfPossible(gzip(tarOf([{ name: 'm.wasm', data: gzip(mod) }])), 1 << 20)).equals(mod)).toBe(true);
    const junk = Buffer.from('just some bytes');
    expect(await unboxIfPossible(junk, 1 << 20)).toBe(junk);
    const badGz = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x01]);
    expect(await unboxIfPossible(badGz, 1 << 20)).toBe(badGz);
  });
});

describe('options', () => {
  it('come from WASM_* env vars, with Istio data dir under the agent cwd and zero meaning default', () => {
    const config = loadAgentConfig({
      env: {
        WASM_INSECURE_REGISTRIES: 'a.example:5000, *',
        WASM_MODULE_EXPIRY: '2h',
        WASM_PURGE_INTERVAL: '10m',
        WASM_HTTP_REQUEST_TIMEOUT: '3s',
        WASM_HTTP_REQUEST_MAX_RETRIES: '0',
        ISTIO_WASM_MAX_BINARY_SIZE_BYTES: '1048576',
        BLOCKED_CIDRS_IN_WASM_FETCH: '10.0.0.0/8,192.168.0.0/16',
        POD_NAME: 'p',
        POD_NAMESPACE: 'ns',
        INSTANCE_IP: '10.0.0.1',
      },
      cwd: '/',
      hostAddresses: ['10.0.0.1'],
    });
    expect(wasmOptionsFromConfig(config)).toEqual({
      dir: '/var/lib/istio/data',
      insecureRegistries: ['a.example:5000', '*'],
      moduleExpiryMs: 2 * 3600_000,
      purgeIntervalMs: 600_000,
      httpRequestTimeoutMs: 3000,
      httpRequestMaxRetries: 5,
      maxBinarySizeBytes: 1048576,
      blockedCidrs: ['10.0.0.0/8', '192.168.0.0/16'],
      proxy: { httpProxy: '', httpsProxy: '', noProxy: '' },
      tlsRestrictions: { minVersion: 'TLSv1.2' }, // no COMPLIANCE_POLICY
    });
  });

  it('take proxies as Go reads them: upper case first, host:port as http://, bad values named', () => {
    const pod = { POD_NAME: 'p', POD_NAMESPACE: 'ns', INSTANCE_IP: '10.0.0.1' };
    const proxyOf = (env: Record<string, string>) => wasmOptionsFromConfig(loadAgentConfig({ env: { ...pod, ...env }, cwd: '/', hostAddresses: ['10.0.0.1'] })).proxy;
    expect(proxyOf({ HTTPS_PROXY: 'https://user:pw@proxy.corp:8443', https_proxy: 'http://lower:1', http_proxy: 'squid.corp:3128', no_proxy: '.svc,10.0.0.0/8' })).toEqual({
      httpsProxy: 'https://user:pw@proxy.corp:8443',
      httpProxy: 'http://squid.corp:3128',
      noProxy: '.svc,10.0.0.0/8',
    });
    expect(proxyOf({ https_proxy: '10.1.2.3:3128', NO_PROXY: '*', no_proxy: 'ignored' })).toEqual({ httpsProxy: 'http://10.1.2.3:3128', httpProxy: '', noProxy: '*' });
    // a proxy that cannot be used is named in a warning and not used (Istio's agent starts with it too)
    const bad = loadAgentConfig({ env: { ...pod, HTTPS_PROXY: 'socks5://proxy:1080', http_proxy: 'http://[bad' }, cwd: '/', hostAddresses: ['10.0.0.1'] });
    expect(wasmOptionsFromConfig(bad).proxy).toEqual({ httpsProxy: '', httpProxy: '', noProxy: '' });
    expect(bad.warnings.join('\n')).toMatch(
      /env HTTPS_PROXY: proxy scheme socks5 is not supported \(http or https\) \(value: "socks5:\/\/proxy:1080"\); using the default, ""\n.*env http_proxy: expected a proxy URL such as http:\/\/proxy\.example:3128, or host:port \(value: "http:\/\/\[bad"\)/,
    );
  });

  it('redacts credentials from URLs shown in logs and NACKs', () => {
    expect(displayUrl('https://user:pw@e.com/a.wasm?X-Amz-Signature=abc')).toBe('https://e.com/a.wasm?<redacted>');
    expect(displayUrl('oci://ghcr.io/a/b:v1')).toBe('oci://ghcr.io/a/b:v1');
  });
});
