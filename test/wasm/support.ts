// Test fixtures for Wasm fetching: module bytes, tar/gzip boxing, a test CA, an HTTPS file server
// with fault modes, a real registry (Debian's docker-registry) with optional TLS, htpasswd or token
// auth, OCI layouts pushed with skopeo, a throttling TCP proxy, an HTTP forward proxy (CONNECT and
// absolute-form, what HTTPS_PROXY points at), and a name resolver that maps test host names to
// loopback (so realm and host checks see names, as in a cluster).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, createSign, randomBytes } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer as createNetServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SecureContextOptions } from 'node:tls';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { LookupFunction } from '../../src/wasm/net-guard.js';
import { freePort } from '../support/processes.js';

const run = promisify(execFile);

export function sha256(b: Uint8Array | string): string {
  return createHash('sha256').update(b).digest('hex');
}

function leb128(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return Buffer.from(out);
}

/** A structurally valid Wasm module: header plus one custom section of `size` (approx.) random bytes. */
export function wasmModule(size = 1024, label = 'test'): Buffer {
  const name = Buffer.from(label);
  const payload = randomBytes(Math.max(0, size - 16 - name.length));
  const section = Buffer.concat([leb128(name.length), name, payload]);
  return Buffer.concat([Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x00]), leb128(section.length), section]);
}

/** A ustar archive of the given files (plus an optional directory entry first). */
export function tarOf(files: readonly { name: string; data: Buffer; type?: '0' | '5' }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const f of files) {
    const h = Buffer.alloc(512);
    h.write(f.name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(f.data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write(f.type ?? '0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, f.data, Buffer.alloc((512 - (f.data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export const gzip = (b: Buffer): Buffer => gzipSync(b);

/** Maps test host names to addresses; anything else goes to the system resolver. */
export function testLookup(names: Record<string, string>): LookupFunction {
  return (hostname, options, callback) => {
    const addr = names[hostname];
    if (addr === undefined) return dnsLookup(hostname, options as never, callback as never);
    const entry: LookupAddress = { address: addr, family: isIP(addr) || 4 };
    if ((options as { all?: boolean }).all) callback(null, [entry]);
    else callback(null, entry.address, entry.family);
  };
}

// ---------------------------------------------------------------------------------------------
// Certificates (openssl CLI: EC P-256, valid a day)

export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  /** Issues a server cert for the SANs; returns PEM cert and key paths. */
  issue(name: string, sans: readonly string[]): Promise<{ cert: string; key: string; certPem: string; keyPem: string }>;
}

export async function createPki(dir: string): Promise<TestPki> {
  mkdirSync(dir, { recursive: true });
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-out', caCert, '-subj', '/CN=wasm-test-ca', '-days', '1', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return {
    dir,
    caCert,
    caKey,
    async issue(name, sans) {
      const key = join(dir, `${name}.key`);
      const csr = join(dir, `${name}.csr`);
      const cert = join(dir, `${name}.crt`);
      const ext = join(dir, `${name}.ext`);
      writeFileSync(ext, `subjectAltName=${sans.map((s) => (isIP(s) ? `IP:${s}` : `DNS:${s}`)).join(',')}\nextendedKeyUsage=serverAuth\n`);
      await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${sans[0]}`]);
      await run('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '1', '-extfile', ext]);
      return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP(S) file server

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface FileServer {
  readonly port: number;
  readonly origin: string;
  /** Requests per path. */
  readonly hits: Map<string, number>;
  route(path: string, handler: Handler): void;
  serve(path: string, body: Buffer): void;
  close(): Promise<void>;
}

/** Listens on a free loopback port, keeping every open connection in `sockets` (close() destroys them); resolves with the port. */
async function listenTracking(server: Server, sockets: Set<Socket>): Promise<number> {
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

export async function startFileServer(opts: { tls?: { certPem: string; keyPem: string; offer?: Pick<SecureContextOptions, 'minVersion' | 'maxVersion' | 'ciphers' | 'ecdhCurve'> }; host?: string } = {}): Promise<FileServer> {
  const routes = new Map<string, Handler>();
  const hits = new Map<string, number>();
  const sockets = new Set<Socket>();
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0]!;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const h = routes.get(path);
    if (!h) {
      res.writeHead(404).end('not found');
      return;
    }
    h(req, res);
  };
  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.certPem, key: opts.tls.keyPem, ...opts.tls.offer }, handler) : createHttpServer(handler);
  const port = await listenTracking(server, sockets);
  return {
    port,
    origin: `${opts.tls ? 'https' : 'http'}://${opts.host ?? '127.0.0.1'}:${port}`,
    hits,
    route: (path, h) => void routes.set(path, h),
    serve: (path, body) => void routes.set(path, (_req, res) => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Registry (Debian docker-registry) and skopeo

export interface RegistryOptions {
  readonly storage: string;
  readonly tls?: { cert: string; key: string };
  /** htpasswd users (bcrypt via `htpasswd -B`). */
  readonly users?: Record<string, string>;
  /** Token auth: realm URL, service, issuer and the signer's cert bundle. */
  readonly token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  readonly port?: number;
  readonly readOnly?: boolean;
}

export interface Registry {
  readonly port: number;
  /** host:port on 127.0.0.1 */
  readonly address: string;
  readonly process: ChildProcess;
  readonly dir: string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const registries = new Set<ChildProcess>();

export async function startRegistry(opts: RegistryOptions): Promise<Registry> {
  const dir = mkdtempSync(join(tmpdir(), 'pa-wasm-reg-'));
  const port = opts.port ?? (await freePort());
  const lines = ['version: 0.1', 'log:', '  level: error', '  accesslog:', '    disabled: true', 'storage:', '  filesystem:', `    rootdirectory: ${opts.storage}`];
  if (opts.readOnly) lines.push('  maintenance:', '    readonly:', '      enabled: true');
  lines.push('http:', `  addr: 127.0.0.1:${port}`);
  if (opts.tls) lines.push('  tls:', `    certificate: ${opts.tls.cert}`, `    key: ${opts.tls.key}`);
  if (opts.users) {
    const htpasswd = join(dir, 'htpasswd');
    const entries: string[] = [];
    for (const [u, p] of Object.entries(opts.users)) entries.push((await run('htpasswd', ['-nbB', u, p])).stdout.trim());
    writeFileSync(htpasswd, entries.join('\n') + '\n');
    lines.push('auth:', '  htpasswd:', '    realm: basic-realm', `    path: ${htpasswd}`);
  } else if (opts.token) {
    lines.push('auth:', '  token:', `    realm: ${opts.token.realm}`, `    service: ${opts.token.service}`, `    issuer: ${opts.token.issuer}`, `    rootcertbundle: ${opts.token.rootCertBundle}`);
  }
  const config = join(dir, 'config.yml');
  writeFileSync(config, lines.join('\n') + '\n');
  const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  registries.add(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await Promise.race([waitForPort(port), exited.then(() => Promise.reject(new Error(`docker-registry exited: ${stderr}`)))]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    port,
    address: `127.0.0.1:${port}`,
    process: child,
    dir,
    kill: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
      registries.delete(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type Layout = 'docker' | 'oci' | 'artifact' | 'artifact-1layer' | 'unknown';

/**
 * Writes an OCI image layout holding `wasm` in the given layout under `tag`. `docker` is written as
 * an OCI image and converted by skopeo (--format v2s2) when pushed.
 */
export function writeOciLayout(dir: string, tag: string, layout: Layout, wasm: Buffer): void {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blob = (b: Buffer): { digest: string; size: number } => {
    const h = sha256(b);
    writeFileSync(join(dir, 'blobs', 'sha256', h), b);
    return { digest: `sha256:${h}`, size: b.length };
  };
  let config: { mediaType: string; digest: string; size: number };
  let layers: { mediaType: string; digest: string; size: number }[];
  if (layout === 'docker' || layout === 'oci') {
    const tgz = gzipSync(tarOf([{ name: 'plugin.wasm', data: wasm }]));
    const layer = blob(tgz);
    const diffId = `sha256:${sha256(tarOf([{ name: 'plugin.wasm', data: wasm }]))}`;
    const cfg = blob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } })));
    config = { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg };
    layers = [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }];
  } else if (layout === 'artifact' || layout === 'artifact-1layer') {
    const cfgJson = Buffer.from(JSON.stringify({ type: 'envoy_proxy', abiVersions: ['v0-097b7f2e4cc1fb490cc1943d0d633655ac3c522f'], config: { rootIds: ['root'] } }));
    config = { mediaType: 'application/vnd.module.wasm.config.v1+json', ...blob(cfgJson) };
    layers = [{ mediaType: 'application/vnd.module.wasm.content.layer.v1+wasm', ...blob(wasm) }];
    if (layout === 'artifact') layers.push({ mediaType: 'application/vnd.module.wasm.config.v1+json', ...blob(cfgJson) });
  } else {
    config = { mediaType: 'application/vnd.oci.image.config.v1+json', ...blob(Buffer.from('{}')) };
    layers = [{ mediaType: 'application/vnd.example.unknown.layer.v1', ...blob(wasm) }];
  }
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers }));
  const m = blob(manifest);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
}

/** Pushes an OCI layout to `registry/repo:tag` with skopeo; returns the pushed manifest's digest (hex). */
export async function pushImage(layoutDir: string, tag: string, dest: string, opts: { docker?: boolean; creds?: string; certDir?: string } = {}): Promise<string> {
  const digestFile = join(layoutDir, `${tag}.digest`);
  const args = ['copy', '--quiet', '--dest-tls-verify=false', '--digestfile', digestFile];
  if (opts.docker) args.push('--format', 'v2s2');
  if (opts.creds) args.push('--dest-creds', opts.creds);
  args.push(`oci:${layoutDir}:${tag}`, `docker://${dest}`);
  await run('skopeo', args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: layoutDir } });
  return readFileSync(digestFile, 'utf8').trim().replace(/^sha256:/, '');
}

/** Builds and pushes `wasm` as `repo:tag` in the given layout; returns the manifest digest (hex). */
export async function pushModule(registry: string, repo: string, tag: string, layout: Layout, wasm: Buffer, opts: { creds?: string } = {}): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'pa-wasm-layout-'));
  try {
    writeOciLayout(dir, tag, layout, wasm);
    return await pushImage(dir, tag, `${registry}/${repo}:${tag}`, { docker: layout === 'docker', ...opts });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Token server for the registry's token auth (JWT RS256/ES256 signed by a key whose cert is in the
// registry's rootcertbundle, x5c header)

export interface TokenServer {
  readonly port: number;
  readonly requests: { authorization: string | undefined; query: string }[];
  /** Tokens handed out. */
  readonly issued: string[];
  close(): Promise<void>;
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

export async function startTokenServer(opts: { certPem: string; keyPem: string; issuer: string; service: string; users: Record<string, string> }): Promise<TokenServer> {
  const requests: TokenServer['requests'] = [];
  const issued: string[] = [];
  const der = Buffer.from(opts.certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const server = createHttpServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    requests.push({ authorization: req.headers.authorization, query: u.search });
    const auth = req.headers.authorization ?? '';
    const [user, pass] = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString().split(':') : [];
    if (!user || opts.users[user] !== pass) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
      return;
    }
    const scope = u.searchParams.get('scope') ?? '';
    const [type, name, actions] = scope.split(':');
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'ES256', typ: 'JWT', x5c: [der.toString('base64')] };
    const claims = { iss: opts.issuer, sub: user, aud: opts.service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access: type ? [{ type, name, actions: (actions ?? '').split(',') }] : [] };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('SHA256').update(input).sign({ key: opts.keyPem, dsaEncoding: 'ieee-p1363' });
    const token = `${input}.${b64url(sig)}`;
    issued.push(token);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    requests,
    issued,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that can slow traffic down (to kill the upstream mid-transfer)

export interface Proxy {
  readonly port: number;
  /** Bytes sent downstream so far. */
  readonly sent: () => number;
  close(): Promise<void>;
}

export async function startThrottlingProxy(target: number, bytesPerTick: number, tickMs = 10): Promise<Proxy> {
  let sent = 0;
  const sockets = new Set<Socket>();
  const server: NetServer = createNetServer((down) => {
    const up = connect(target, '127.0.0.1');
    sockets.add(down);
    sockets.add(up);
    down.pipe(up);
    up.on('data', (chunk: Buffer) => {
      up.pause();
      let off = 0;
      const pump = (): void => {
        if (down.destroyed) return;
        const piece = chunk.subarray(off, off + bytesPerTick);
        off += piece.length;
        sent += piece.length;
        down.write(piece);
        if (off < chunk.length) setTimeout(pump, tickMs);
        else up.resume();
      };
      pump();
    });
    const end = (): void => {
      up.destroy();
      down.destroy();
    };
    up.on('close', end);
    up.on('error', end);
    down.on('close', end);
    down.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    sent: () => sent,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// An HTTP forward proxy (what HTTPS_PROXY / HTTP_PROXY point at): CONNECT tunnels for https targets,
// absolute-form requests for http ones, with the test's own name map (a proxy resolves names itself)

export interface ForwardProxy {
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** What was asked of it, in order: `CONNECT host:port` or `GET http://host:port/path`. */
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startForwardProxy(names: Record<string, string> = {}): Promise<ForwardProxy> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const resolveHost = (host: string): string => names[host] ?? host;
  const server: Server = createHttpServer((req, res) => {
    // absolute-form: GET http://host:port/path
    requests.push(`${req.method} ${req.url}`);
    let target: URL;
    try {
      target = new URL(req.url ?? '');
    } catch {
      res.writeHead(400).end('absolute-form request expected');
      return;
    }
    const headers = { ...req.headers };
    delete headers['proxy-connection'];
    const up = httpRequest({ host: resolveHost(target.hostname), port: Number(target.port || 80), method: req.method, path: `${target.pathname}${target.search}`, headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', (err) => res.writeHead(502).end(err.message));
    req.pipe(up);
  });
  server.on('connect', (req: IncomingMessage, down: Socket, head: Buffer) => {
    requests.push(`CONNECT ${req.url}`);
    sockets.add(down);
    const idx = (req.url ?? '').lastIndexOf(':');
    const host = (req.url ?? '').slice(0, idx).replace(/^\[|\]$/g, '');
    const up = connect(Number((req.url ?? '').slice(idx + 1)), resolveHost(host), () => {
      down.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(down);
      down.pipe(up);
    });
    sockets.add(up);
    const end = (): void => {
      up.destroy();
      down.destroy();
    };
    up.on('error', () => {
      if (!down.destroyed) down.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      end();
    });
    down.on('error', end);
    down.on('close', end);
    up.on('close', end);
  });
  const port = await listenTracking(server, sockets);
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
