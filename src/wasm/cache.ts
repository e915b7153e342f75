// The local Wasm module cache (Istio's LocalFileCache): modules downloaded over http(s) or pulled
// from OCI registries are stored as `<dir>/<sha256(module name)>/<checksum>.wasm` and looked up by
// (module name, checksum). The module name is the URL, or for oci:// the repository without tag
// or digest; the checksum is the sha256 of the module (http) or of the image manifest (oci).
//
// Pull policy (Istio's): IfNotPresent reuses what is cached whatever the resource version;
// Always pulls again when the WasmPlugin's resource version changed; unspecified is IfNotPresent,
// except for oci:// URLs ending in `:latest`, which behave as Always.
//
// Beyond Istio:
//   - concurrent requests for one module share one download (keyed by URL, checksum and secret);
//   - files are written to a temp file and renamed, so a module path never shows a partial file;
//   - modules survive a restart: files already on disk are adopted instead of downloaded again
//     (an oci:// tag costs one manifest request to learn its digest; an http URL without a sha256
//     adopts the newest file for that URL, verifying it against its name);
//   - files found on disk but never claimed are purged like unused entries, and stale temp files
//     from a crash are removed at start.

import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync, rmdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { makeDir, makeDirSync } from '../util/make-dir.js';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';
import { logger } from '../util/logger.js';
import { describeError, displayUrl, WasmFetchError, WasmHttpClient } from './http-client.js';
import { fetchHttpModule } from './http-fetcher.js';
import { FetchResult, wasmMetrics } from './metrics.js';
import { AddressPolicy } from './net-guard.js';
import { parseReference, prepareImageFetch, repositoryName, type ModuleFile, type PreparedImage } from './oci.js';
import { DEFAULTS, sanitize, type WasmOptions } from './options.js';
import { isWasmBinary } from './unbox.js';
import { isoUtc } from '../util/time.js';
import { deadline } from '../util/deadline.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('wasm');

export type PullPolicy = 'Unspecified' | 'IfNotPresent' | 'Always';

/** ISTIO_META_WASM_IMAGE_PULL_POLICY values; anything else is Unspecified. */
export const PULL_POLICY_VALUES: Readonly<Record<string, PullPolicy>> = {
  UNSPECIFIED_POLICY: 'Unspecified',
  IfNotPresent: 'IfNotPresent',
  Always: 'Always',
};

export interface GetOptions {
  /** Expected checksum (hex sha256 of the module, or of the manifest for oci://); empty = unknown. */
  readonly checksum?: string;
  /** Fully-qualified WasmPlugin resource name (the ECDS resource name). */
  readonly resourceName: string;
  readonly resourceVersion: string;
  /** Timeout of the whole fetch. */
  readonly requestTimeoutMs: number;
  /** dockerconfigjson for oci:// pulls. */
  readonly pullSecret?: Uint8Array;
  readonly pullPolicy: PullPolicy;
}

export interface WasmModuleSummary {
  /** Module name: the URL, or `oci://registry/repository`. */
  readonly module: string;
  readonly checksum: string;
  readonly path: string;
  readonly sizeBytes: number;
  readonly lastUsed: string;
  /** URLs that resolved to this module (tags and plain URLs). */
  readonly urls: readonly string[];
}

interface Key {
  readonly url: string;
  readonly name: string;
  checksum: string;
  readonly resourceName: string;
  readonly resourceVersion: string;
}

interface Entry {
  readonly name: string;
  readonly checksum: string;
  readonly path: string;
  readonly size: number;
  last: number;
  readonly urls: Set<string>;
}

interface ChecksumEntry {
  checksum: string;
  readonly versionByResource: Map<string, string>;
}

interface Flight {
  readonly entry: Entry;
  /** Whether this flight downloaded the module (the others found it in memory or on disk). */
  readonly downloaded: boolean;
}

const OCI_PREFIX = 'oci://';
const HEX64 = /^[0-9a-f]{64}$/;

export function moduleNameFromUrl(url: string): string {
  if (url.startsWith(OCI_PREFIX)) {
    try {
      return OCI_PREFIX + repositoryName(parseReference(url.slice(OCI_PREFIX.length)));
    } catch {
      /* not a valid reference: the URL itself */
    }
  }
  return url;
}

function shouldIgnoreResourceVersion(policy: PullPolicy, u: URL): boolean {
  if (policy === 'Always') return false;
  if (policy === 'IfNotPresent') return true;
  return u.protocol !== 'oci:' || !u.pathname.endsWith(':latest');
}

function sha256Hex(s: string | Uint8Array): string {
  return createHash('sha256').update(s).digest('hex');
}

const mk = (name: string, checksum: string): string => `${name}\0${checksum}`;

/** Beside an OCI module `<manifest digest>.wasm`: the sha256 of the module itself. */
const digestFileOf = (modulePath: string): string => `${modulePath}.sha256`;

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function fileHead(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export class WasmModuleCache {
  readonly options: WasmOptions;
  private readonly modules = new Map<string, Entry>();
  private readonly checksums = new Map<string, ChecksumEntry>();
  private readonly inflight = new Map<string, Promise<Flight>>();
  /** Module files found on disk at start and not claimed yet: path -> last use (start time). */
  private readonly orphans = new Map<string, number>();
  /** Module directories with a fetch writing into them: path -> fetches. */
  private readonly activeDirs = new Map<string, number>();
  private readonly client: WasmHttpClient;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Module downloads started (http GETs of a module, OCI layer pulls); for tests and the bench. */
  downloads = 0;

  constructor(options: Partial<WasmOptions> & { dir: string }) {
    this.options = sanitize(options);
    const policy = new AddressPolicy(this.options.blockedCidrs, (m) => log.warn(m));
    this.client = new WasmHttpClient({
      policy,
      ...(this.options.lookup ? { lookup: this.options.lookup } : {}),
      ...(this.options.extraCaCerts ? { extraCaCerts: this.options.extraCaCerts } : {}),
      ...(this.options.proxy ? { proxy: this.options.proxy } : {}),
      ...(this.options.tlsRestrictions ? { restrictions: this.options.tlsRestrictions } : {}),
    });
    const proxy = this.options.proxy;
    if (proxy && (proxy.httpProxy || proxy.httpsProxy)) {
      const show = (u: string): string => (u ? displayUrl(u) : 'none');
      log.info(`Wasm fetches use proxies: https ${show(proxy.httpsProxy)}, http ${show(proxy.httpProxy)}; NO_PROXY ${JSON.stringify(proxy.noProxy)}`);
    }
    this.scanDisk();
    wasmMetrics.cacheEntries.set(this.modules.size);
  }

  private now(): number {
    return this.options.now ? this.options.now() : Date.now();
  }

  /** Starts the periodic purge (every WASM_PURGE_INTERVAL). */
  startPurging(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => this.purge(), timerDelay(this.options.purgeIntervalMs));
    this.timer.unref();
  }

  /** Stops purging, aborts downloads in flight and closes connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.abort.abort(new WasmFetchError('wasm module cache closed'));
    await this.client.close();
  }

  private allowInsecure(host: string): boolean {
    const list = this.options.insecureRegistries;
    return list.includes('*') || list.includes(host);
  }

  private modulePath(name: string, checksum: string): string {
    return join(this.options.dir, sha256Hex(name), `${checksum}.wasm`);
  }

  /** Returns the local path of the module at `url`, downloading it when needed. */
  async get(url: string, opts: GetOptions): Promise<string> {
    if (this.closed) throw new WasmFetchError('wasm module cache closed');
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new WasmFetchError(`fail to parse Wasm module fetch url: ${displayUrl(url)}`);
    }
    const key: Key = { url, name: moduleNameFromUrl(url), checksum: opts.checksum ?? '', resourceName: opts.resourceName, resourceVersion: opts.resourceVersion };
    const found = this.lookup(key, shouldIgnoreResourceVersion(opts.pullPolicy, u));
    if (found) {
      wasmMetrics.cacheLookups.inc({ hit: 'true' });
      return found.path;
    }
    const secretId = opts.pullSecret ? sha256Hex(opts.pullSecret).slice(0, 16) : '';
    const flightKey = [url, key.checksum, secretId].join('\0');
    let flight = this.inflight.get(flightKey);
    if (!flight) {
      flight = this.resolve({ ...key }, opts, u).finally(() => this.inflight.delete(flightKey));
      this.inflight.set(flightKey, flight);
    }
    let result: Flight;
    try {
      result = await flight;
    } catch (err) {
      wasmMetrics.cacheLookups.inc({ hit: 'false' });
      throw err;
    }
    wasmMetrics.cacheLookups.inc({ hit: String(!result.downloaded) });
    // every requester records its own resource, as if it had fetched
    this.updateChecksum({ ...key, checksum: result.entry.checksum });
    result.entry.last = this.now();
    return result.entry.path;
  }

  /**
   * Istio's getEntry: the entry for (name, checksum), where an unknown checksum is taken from an
   * OCI digest URL or from the last pull of this URL (when the resource version allows). Fills in
   * `key.checksum` when it learns it.
   */
  private lookup(key: Key, ignoreResourceVersion: boolean): Entry | undefined {
    if (!key.checksum && key.url.startsWith(OCI_PREFIX)) {
      try {
        const digest = parseReference(key.url.slice(OCI_PREFIX.length)).digest;
        if (digest) key.checksum = digest.slice('sha256:'.length);
      } catch {
        /* reported by the fetch */
      }
    }
    if (!key.checksum) {
      const ce = this.checksums.get(key.url);
      if (ce) {
        if (ignoreResourceVersion || key.resourceVersion === ce.versionByResource.get(key.resourceName)) key.checksum = ce.checksum;
        ce.versionByResource.set(key.resourceName, key.resourceVersion);
      }
    }
    const entry = this.modules.get(mk(key.name, key.checksum));
    if (!entry) return undefined;
    entry.last = this.now();
    this.updateChecksum(key);
    return entry;
  }

  /** Remembers which checksum a tag/plain URL resolved to, and the resource version asking. */
  private updateChecksum(key: Key): boolean {
    const needed = !key.url.startsWith(OCI_PREFIX) || !key.url.includes('@');
    if (!needed) return false;
    let ce = this.checksums.get(key.url);
    if (!ce) {
      ce = { checksum: key.checksum, versionByResource: new Map() };
      this.checksums.set(key.url, ce);
    }
    ce.checksum = key.checksum;
    ce.versionByResource.set(key.resourceName, key.resourceVersion);
    this.modules.get(mk(key.name, key.checksum))?.urls.add(key.url);
    return true;
  }

  /** One shared resolution of a miss: the disk, else the network. */
  private async resolve(key: Key, opts: GetOptions, u: URL): Promise<Flight> {
    const onDisk = await this.fromDisk(key, shouldIgnoreResourceVersion(opts.pullPolicy, u));
    if (onDisk) return { entry: onDisk, downloaded: false };
    return this.fetch(key, opts, u);
  }

  /** A module file left by an earlier run, adopted into the cache (content checked first). */
  private async fromDisk(key: Key, ignoreResourceVersion: boolean): Promise<Entry | undefined> {
    let path: string | undefined;
    let checksum = key.checksum;
    if (checksum) {
      if (!HEX64.test(checksum)) return undefined;
      path = this.modulePath(key.name, checksum);
    } else if (!key.url.startsWith(OCI_PREFIX) && ignoreResourceVersion) {
      // a plain URL without sha256 (IfNotPresent): its newest file
      const dir = join(this.options.dir, sha256Hex(key.name));
      let newest: { path: string; mtime: number; checksum: string } | undefined;
      try {
        for (const f of readdirSync(dir)) {
          const m = /^([0-9a-f]{64})\.wasm$/.exec(f);
          if (!m) continue;
          const p = join(dir, f);
          const mtime = statSync(p).mtimeMs;
          if (!newest || mtime > newest.mtime) newest = { path: p, mtime, checksum: m[1]! };
        }
      } catch {
        return undefined;
      }
      if (!newest) return undefined;
      path = newest.path;
      checksum = newest.checksum;
    }
    if (!path) return undefined;
    try {
      const st = await stat(path);
      if (!st.isFile()) return undefined;
      if (key.url.startsWith(OCI_PREFIX)) {
        // an OCI module is named by its manifest's digest, not its own: its own is in the digest
        // file written beside it once it was whole (a module cut short by a crash or a full disk
        // passed the magic-number check alone, and Envoy was pointed at it)
        let want: string;
        try {
          want = readFileSync(digestFileOf(path), 'utf8').trim();
        } catch {
          throw new Error('no record of its own digest (downloaded again)');
        }
        if (!isWasmBinary(await fileHead(path, 8)) || (await fileSha256(path)) !== want) throw new Error('content does not match the digest recorded for it');
      } else if ((await fileSha256(path)) !== checksum) {
        throw new Error('content does not match its checksum');
      }
      const existing = this.modules.get(mk(key.name, checksum));
      if (existing) return existing;
      const entry: Entry = { name: key.name, checksum, path, size: st.size, last: this.now(), urls: new Set() };
      this.modules.set(mk(key.name, checksum), entry);
      this.orphans.delete(path);
      key.checksum = checksum;
      this.updateChecksum(key);
      wasmMetrics.cacheEntries.set(this.modules.size);
      log.info(`reusing Wasm module ${displayUrl(key.url)} from ${path}`);
      return entry;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      log.warn(`ignoring cached Wasm module file ${path}: ${describeError(err)}`);
      rmSync(path, { force: true });
      rmSync(digestFileOf(path), { force: true });
      this.orphans.delete(path);
      return undefined;
    }
  }

  private async fetch(key: Key, opts: GetOptions, u: URL): Promise<Flight> {
    // the module's directory must not be removed by a purge while this fetch writes into it
    const moduleDir = join(this.options.dir, sha256Hex(key.name));
    this.activeDirs.set(moduleDir, (this.activeDirs.get(moduleDir) ?? 0) + 1);
    try {
      return await this.fetchUnguarded(key, opts, u);
    } finally {
      const n = this.activeDirs.get(moduleDir)! - 1;
      if (n) this.activeDirs.set(moduleDir, n);
      else this.activeDirs.delete(moduleDir);
    }
  }

  private async fetchUnguarded(key: Key, opts: GetOptions, u: URL): Promise<Flight> {
    // the whole fetch's deadline (util/deadline.ts: an AbortSignal.timeout combined with any() is
    // lost to a garbage collection on Node 20, and the fetch then outlived it)
    const limit = deadline(opts.requestTimeoutMs > 0 ? opts.requestTimeoutMs : DEFAULTS.fetchTimeoutMs, this.abort.signal);
    try {
      return await this.fetchWithin(key, opts, u, limit.signal);
    } finally {
      limit.clear();
    }
  }

  private async fetchWithin(key: Key, opts: GetOptions, u: URL, signal: AbortSignal): Promise<Flight> {
    const o = this.options;
    const insecure = this.allowInsecure(u.host);
    const common = { client: this.client, insecure, maxBinarySizeBytes: o.maxBinarySizeBytes, attempts: o.httpRequestMaxRetries, initialBackoffMs: o.initialBackoffMs ?? DEFAULTS.initialBackoffMs, signal };
    let bytes: Buffer | undefined;
    let prepared: PreparedImage | undefined;
    let dChecksum: string;
    switch (u.protocol) {
      case 'http:':
      case 'https:':
        this.downloads++;
        try {
          bytes = await fetchHttpModule(key.url, { ...common, requestTimeoutMs: o.httpRequestTimeoutMs });
        } catch (err) {
          wasmMetrics.remoteFetches.inc({ result: FetchResult.downloadFailure });
          throw err;
        }
        dChecksum = sha256Hex(bytes);
        break;
      case 'oci:':
        log.debug(`fetching oci image ${displayUrl(key.url)} (insecure: ${insecure}, pull secret: ${opts.pullSecret ? '<redacted>' : 'none'})`);
        try {
          prepared = await prepareImageFetch(u.host + u.pathname, {
            ...common,
            requestTimeoutMs: o.httpRequestTimeoutMs,
            ...(opts.pullSecret ? { pullSecret: opts.pullSecret } : {}),
            onBlobDownload: () => this.downloads++,
          });
        } catch (err) {
          wasmMetrics.remoteFetches.inc({ result: FetchResult.manifestFailure });
          throw new WasmFetchError(`could not fetch Wasm OCI image: ${describeError(err, signal)}`);
        }
        dChecksum = prepared.digest;
        break;
      default:
        throw new WasmFetchError(`unsupported Wasm module downloading URL scheme: ${u.protocol.replace(/:$/, '')}`);
    }

    if (!key.checksum) {
      key.checksum = dChecksum;
      const cached = this.modules.get(mk(key.name, dChecksum)) ?? (await this.fromDisk(key, true));
      if (cached) {
        cached.last = this.now();
        this.updateChecksum(key);
        return { entry: cached, downloaded: false };
      }
    } else if (dChecksum !== key.checksum) {
      wasmMetrics.remoteFetches.inc({ result: FetchResult.checksumMismatch });
      throw new WasmFetchError(`module downloaded from ${displayUrl(key.url)} has checksum ${dChecksum}, which does not match: ${key.checksum}`);
    }

    let file: ModuleFile | undefined;
    if (prepared) {
      try {
        const moduleDir = dirname(this.modulePath(key.name, dChecksum));
        await makeDir(moduleDir, { mode: 0o755 });
        const got = await prepared.fetchBinary({ tempDir: moduleDir });
        if (Buffer.isBuffer(got)) bytes = got;
        else file = got;
      } catch (err) {
        wasmMetrics.remoteFetches.inc({ result: FetchResult.downloadFailure });
        throw new WasmFetchError(`could not fetch Wasm binary: ${describeError(err, signal)}`);
      }
    }
    if (file ? !isWasmBinary(file.head) : !bytes || !isWasmBinary(bytes)) {
      if (file) await rm(file.tempPath, { force: true });
      wasmMetrics.remoteFetches.inc({ result: FetchResult.invalidModule });
      throw new WasmFetchError(`fetched Wasm binary from ${displayUrl(key.url)} is invalid`);
    }
    wasmMetrics.remoteFetches.inc({ result: FetchResult.success });
    key.checksum = dChecksum;
    return { entry: await this.addEntry(key, file ?? bytes!), downloaded: true };
  }

  /** Stores the module (bytes, or a verified temp file renamed into place) and registers it. */
  private async addEntry(key: Key, module: Buffer | ModuleFile): Promise<Entry> {
    this.updateChecksum(key);
    const id = mk(key.name, key.checksum);
    const existing = this.modules.get(id);
    const size = Buffer.isBuffer(module) ? module.length : module.size;
    if (existing) {
      if (!Buffer.isBuffer(module)) await rm(module.tempPath, { force: true });
      existing.last = this.now();
      return existing;
    }
    const path = this.modulePath(key.name, key.checksum);
    await makeDir(dirname(path), { mode: 0o755 });
    if (Buffer.isBuffer(module)) {
      await writeFileAtomic(path, module);
    } else {
      try {
        await rename(module.tempPath, path);
      } catch (err) {
        await rm(module.tempPath, { force: true });
        throw err;
      }
    }
    // what a restart checks before reusing an OCI module (see lookupOnDisk); a crash before this
    // only costs a download
    if (key.url.startsWith(OCI_PREFIX)) await writeFileAtomic(digestFileOf(path), Buffer.from(`${Buffer.isBuffer(module) ? sha256Hex(module) : await fileSha256(path)}\n`));
    const entry: Entry = this.modules.get(id) ?? { name: key.name, checksum: key.checksum, path, size, last: this.now(), urls: new Set() };
    if (!key.url.startsWith(OCI_PREFIX) || !key.url.includes('@')) entry.urls.add(key.url);
    this.modules.set(id, entry);
    this.orphans.delete(path);
    wasmMetrics.cacheEntries.set(this.modules.size);
    log.info(`fetched Wasm module ${displayUrl(key.url)} (${size} bytes) to ${path}`);
    return entry;
  }

  /** Removes modules unused for WASM_MODULE_EXPIRY (run by the timer; callable directly). Returns how many went. */
  purge(): number {
    const now = this.now();
    const expiry = this.options.moduleExpiryMs;
    let removed = 0;
    const remove = (path: string): boolean => {
      rmSync(digestFileOf(path), { force: true });
      try {
        unlinkSync(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          log.error(`failed to purge Wasm module ${path}: ${(err as Error).message}`);
          return false;
        }
      }
      try {
        if (!this.activeDirs.has(dirname(path))) rmdirSync(dirname(path)); // only succeeds once the module's directory is empty
      } catch {
        /* other checksums of the module remain */
      }
      removed++;
      return true;
    };
    for (const [id, e] of this.modules) {
      if (now - e.last <= expiry) continue;
      if (!remove(e.path)) continue;
      for (const url of e.urls) this.checksums.delete(url);
      this.modules.delete(id);
      log.debug(`successfully removed stale Wasm module ${e.path}`);
    }
    for (const [path, last] of this.orphans) {
      if (now - last > expiry && remove(path)) this.orphans.delete(path);
    }
    wasmMetrics.cacheEntries.set(this.modules.size);
    return removed;
  }

  /** The cached modules, for /debug/wasm. */
  summaries(): WasmModuleSummary[] {
    return [...this.modules.values()]
      .map((e) => ({ module: e.name, checksum: e.checksum, path: e.path, sizeBytes: e.size, lastUsed: isoUtc(e.last), urls: [...e.urls].sort() }))
      .sort((a, b) => a.module.localeCompare(b.module) || a.checksum.localeCompare(b.checksum));
  }

  /** Downloads in flight now. */
  get pending(): number {
    return this.inflight.size;
  }

  /** Files of an earlier run: registered for purging, stale temp files removed. */
  private scanDisk(): void {
    const dir = this.options.dir;
    let subdirs: string[];
    try {
      subdirs = readdirSync(dir);
    } catch {
      return; // created on the first download
    }
    const now = this.now();
    for (const sub of subdirs) {
      if (!HEX64.test(sub)) continue;
      let files: string[];
      try {
        files = readdirSync(join(dir, sub));
      } catch {
        continue;
      }
      for (const f of files) {
        const p = join(dir, sub, f);
        if (f.startsWith('.') && f.endsWith('.tmp')) rmSync(p, { force: true });
        else if (/^[0-9a-f]{64}\.wasm$/.test(f)) this.orphans.set(p, now);
        else if (/^[0-9a-f]{64}\.wasm\.sha256$/.test(f) && !files.includes(f.slice(0, -'.sha256'.length))) rmSync(p, { force: true });
      }
    }
    if (this.orphans.size) log.info(`found ${this.orphans.size} Wasm module file(s) from an earlier run in ${dir}`);
    try {
      makeDirSync(dir);
    } catch {
      /* reported on the first download */
    }
  }
}
