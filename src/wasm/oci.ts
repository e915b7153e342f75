// Fetching a Wasm module from an OCI registry (distribution v2 API), in two steps as Istio does:
// `prepare` resolves the reference to a manifest and returns its digest (the module's checksum),
// so the cache can be consulted before anything large is downloaded; `fetchBinary` then pulls
// the layer and unpacks it. Three layouts are understood (solo-io's Wasm image spec):
//   - Docker image (manifest v2 schema 2): last layer application/vnd.docker.image.rootfs.diff.tar.gzip
//     holding `plugin.wasm`;
//   - OCI image: last layer application/vnd.oci.image.layer.v1.tar+gzip holding `plugin.wasm`;
//   - OCI artifact: a layer application/vnd.module.wasm.content.layer.v1+wasm that is the module.
// Image indexes / manifest lists resolve to their linux/amd64 (or only) entry.
//
// Auth: anonymous, Basic, or Bearer tokens from the challenge's realm, with credentials from the
// pull secret. A Bearer realm is validated before any credential is sent to it. Registries listed
// in WASM_INSECURE_REGISTRIES are tried over HTTPS without verification, then plain HTTP.
// Every blob is checked against its descriptor's size and digest.

import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import { credentialsFor, DOCKER_HUB_REGISTRY, type RegistryCredentials } from './docker-config.js';
import {
  describeError,
  discard,
  HttpStatusError,
  readCapped,
  RetryableError,
  retryableStatus,
  send,
  TooLargeError,
  WasmFetchError,
  withRetries,
  type WasmHttpClient,
} from './http-client.js';
import { isBlockedAddressError, validateRealm } from './net-guard.js';
import { GzipTarFile } from './unbox.js';

export const MediaType = {
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  WasmLayer: 'application/vnd.module.wasm.content.layer.v1+wasm',
} as const;

const MANIFEST_ACCEPT = [MediaType.OciManifest, MediaType.DockerManifest, MediaType.OciIndex, MediaType.DockerManifestList].join(', ');
const MANIFEST_LIMIT = 4 * 1024 * 1024;
const TOKEN_LIMIT = 1024 * 1024;
const WASM_PLUGIN_FILE = 'plugin.wasm';

export interface ImageReference {
  /** host[:port]; `index.docker.io` for Docker Hub. */
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  /** `sha256:<hex>` */
  readonly digest?: string;
}

const TAG_RE = /^[\w][\w.-]{0,127}$/;
const REPO_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/** Parses `registry/repo[:tag][@sha256:...]` as go-containerregistry's name.ParseReference does. */
export function parseReference(ref: string): ImageReference {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw new WasmFetchError(`could not parse reference ${ref}: invalid digest`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw new WasmFetchError(`could not parse reference ${ref}: invalid tag`);
  }
  let registry = DOCKER_HUB_REGISTRY;
  let repository = rest;
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  if (first && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first === 'docker.io' ? DOCKER_HUB_REGISTRY : first;
    repository = rest.slice(slash + 1);
  }
  if (registry === DOCKER_HUB_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;
  if (!repository || !repository.split('/').every((c) => REPO_COMPONENT_RE.test(c))) {
    throw new WasmFetchError(`could not parse reference ${ref}: invalid repository "${repository}"`);
  }
  return { registry, repository, ...(digest ? { digest } : tag ? { tag } : { tag: 'latest' }) };
}

/** The cache's module name: the repository without tag or digest (ggcr's Context().Name()). */
export function repositoryName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  platform?: { os?: string; architecture?: string };
}

interface Manifest {
  mediaType?: string;
  schemaVersion?: number;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

export interface ImageFetchOptions {
  readonly client: WasmHttpClient;
  readonly pullSecret?: Uint8Array;
  readonly insecure: boolean;
  readonly maxBinarySizeBytes: number;
  readonly requestTimeoutMs: number;
  readonly attempts: number;
  readonly initialBackoffMs: number;
  readonly signal?: AbortSignal;
  /** Called when a blob download starts (counts downloads for tests/bench). */
  readonly onBlobDownload?: () => void;
}

/** A module streamed to a temp file (never a module path until the caller renames it). */
export interface ModuleFile {
  readonly tempPath: string;
  readonly size: number;
  /** The first bytes, for the magic check. */
  readonly head: Buffer;
}

export interface PreparedImage {
  /** Hex sha256 of the image manifest: the module's checksum. */
  readonly digest: string;
  /**
   * Pulls and unpacks the module. With `tempDir`, a raw Wasm layer (OCI artifact) is streamed to a
   * temp file there while it downloads - digest checked and fsynced - instead of held in memory.
   */
  fetchBinary(opts?: { tempDir?: string }): Promise<Buffer | ModuleFile>;
}

interface Challenge {
  readonly scheme: string;
  readonly params: Record<string, string>;
}

/** Parses `WWW-Authenticate` values: `Bearer realm="...",service="..."`, `Basic realm="..."`. */
export function parseChallenges(values: readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of values) {
    const re = /([A-Za-z][\w-]*)\s+((?:[\w-]+\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?\s*)*)/g;
    for (const m of value.matchAll(re)) {
      const params: Record<string, string> = {};
      for (const p of m[2]!.matchAll(/([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
        params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
      }
      out.push({ scheme: m[1]!.toLowerCase(), params });
    }
  }
  return out;
}

function headerValues(h: Dispatcher.ResponseData['headers'][string]): string[] {
  return h === undefined ? [] : Array.isArray(h) ? h : [h];
}

function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** One registry conversation: scheme, credentials and the token in use. */
class RegistrySession {
  private scheme: 'https' | 'http' | undefined;
  private authorization: string | undefined;
  private readonly creds: RegistryCredentials | undefined;

  constructor(
    private readonly ref: ImageReference,
    private readonly opts: ImageFetchOptions,
  ) {
    this.creds = opts.pullSecret ? credentialsFor(opts.pullSecret, ref.registry) : undefined;
  }

  private url(scheme: string, path: string): string {
    return `${scheme}://${this.ref.registry}${path}`;
  }

  /** One attempt at `path`, choosing the scheme on first use (insecure registries may fall back to HTTP). */
  private async sendOnce(path: string, headers: Record<string, string>): Promise<Dispatcher.ResponseData> {
    const hdrs = { ...headers, ...(this.authorization ? { authorization: this.authorization } : {}) };
    const base = { headers: hdrs, idleTimeoutMs: this.opts.requestTimeoutMs, ...(this.opts.signal ? { signal: this.opts.signal } : {}) };
    if (this.scheme) return send(this.opts.client, this.url(this.scheme, path), this.opts.insecure, base);
    try {
      const res = await send(this.opts.client, this.url('https', path), this.opts.insecure, base);
      this.scheme = 'https';
      return res;
    } catch (err) {
      if (!this.opts.insecure || this.opts.signal?.aborted || isBlockedAddressError(err)) throw err;
      // an insecure registry that does not speak TLS: plain HTTP (go-containerregistry does the same)
      const res = await send(this.opts.client, this.url('http', path), this.opts.insecure, base);
      this.scheme = 'http';
      return res;
    }
  }

  /** GET with retries and one round of authentication on 401. Returns a 2xx response. */
  async get(path: string, headers: Record<string, string>, what: string): Promise<Dispatcher.ResponseData> {
    return withRetries(what, this.retry(), () => this.getOnce(path, headers, what));
  }

  retry(): { attempts: number; initialBackoffMs: number; signal?: AbortSignal } {
    return { attempts: this.opts.attempts, initialBackoffMs: this.opts.initialBackoffMs, ...(this.opts.signal ? { signal: this.opts.signal } : {}) };
  }

  /** One attempt (plus one authenticated retry after a 401 challenge). */
  async getOnce(path: string, headers: Record<string, string>, what: string): Promise<Dispatcher.ResponseData> {
    let res = await this.sendOnce(path, headers);
    if (res.statusCode === 401 && !this.authorization) {
      const challenges = parseChallenges(headerValues(res.headers['www-authenticate']));
      await discard(res);
      await this.authenticate(challenges);
      res = await this.sendOnce(path, headers);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res;
    await discard(res);
    const msg = `${what}: unexpected status code ${res.statusCode}`;
    if (retryableStatus(res.statusCode) || res.statusCode === 429 || res.statusCode === 408) throw new RetryableError(msg);
    throw new HttpStatusError(res.statusCode, res.statusCode === 401 ? `${msg} (unauthorized)` : msg);
  }

  private async authenticate(challenges: Challenge[]): Promise<void> {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    const c = this.creds;
    if (bearer) {
      if (c?.registryToken) {
        this.authorization = `Bearer ${c.registryToken}`;
        return;
      }
      this.authorization = `Bearer ${await this.fetchToken(bearer)}`;
      return;
    }
    if (basic) {
      if (!c?.username && !c?.password) throw new HttpStatusError(401, 'registry requires credentials (Basic auth) and the pull secret has none for it');
      this.authorization = `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`;
      return;
    }
    throw new HttpStatusError(401, 'registry answered 401 without a supported authentication challenge');
  }

  private async fetchToken(ch: Challenge): Promise<string> {
    const realm = ch.params.realm ?? '';
    const bad = validateRealm(realm, this.scheme);
    if (bad) throw new WasmFetchError(`rejected unsafe bearer realm: ${bad}`);
    const scope = ch.params.scope ?? `repository:${this.ref.repository}:pull`;
    const service = ch.params.service;
    const u = new URL(realm);
    const c = this.creds;
    const common = { idleTimeoutMs: this.opts.requestTimeoutMs, ...(this.opts.signal ? { signal: this.opts.signal } : {}) };
    let res: Dispatcher.ResponseData;
    if (c?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: c.identityToken, scope, client_id: 'pilot-agent', ...(service ? { service } : {}) });
      res = await send(this.opts.client, u.toString(), this.opts.insecure, {
        ...common,
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
    } else {
      if (service) u.searchParams.set('service', service);
      u.searchParams.set('scope', scope);
      const headers: Record<string, string> = {};
      if (c?.username || c?.password) headers.authorization = `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`;
      res = await send(this.opts.client, u.toString(), this.opts.insecure, { ...common, headers });
    }
    if (res.statusCode !== 200) {
      await discard(res);
      const msg = `token request to ${u.origin}${u.pathname} failed with status code ${res.statusCode}`;
      if (retryableStatus(res.statusCode)) throw new RetryableError(msg);
      throw new HttpStatusError(res.statusCode, msg);
    }
    const body = await readCapped(res, TOKEN_LIMIT, 'token response');
    let token: unknown;
    try {
      const json = JSON.parse(body.toString('utf8')) as { token?: unknown; access_token?: unknown };
      token = json.token ?? json.access_token;
    } catch {
      throw new WasmFetchError('token response is not JSON');
    }
    if (typeof token !== 'string' || token === '') throw new WasmFetchError('token response has no token');
    return token;
  }

  async manifest(reference: string): Promise<{ bytes: Buffer; contentType: string; digest: string }> {
    const what = `fetching manifest ${this.ref.registry}/${this.ref.repository}:${reference}`;
    const res = await this.get(`/v2/${this.ref.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, what);
    const bytes = await readCapped(res, MANIFEST_LIMIT, 'manifest');
    const contentType = String(headerValues(res.headers['content-type'])[0] ?? '').split(';')[0]!.trim();
    return { bytes, contentType, digest: `sha256:${sha256Hex(bytes)}` };
  }

  /** Downloads a blob (with retries) and hands the 2xx response to `consume`, which reads it. */
  async withBlob<T>(desc: Descriptor, cap: number, consume: (res: Dispatcher.ResponseData, limit: number) => Promise<T>): Promise<T> {
    const digest = desc.digest ?? '';
    if (!DIGEST_RE.test(digest)) throw new WasmFetchError(`layer has an unsupported digest "${digest}"`);
    if (typeof desc.size === 'number' && desc.size > cap) throw new WasmFetchError(`layer is ${desc.size} bytes, more than the limit of ${cap} bytes`);
    this.opts.onBlobDownload?.();
    const what = `downloading layer ${digest}`;
    const limit = typeof desc.size === 'number' ? Math.min(desc.size, cap) : cap;
    return withRetries(what, this.retry(), async () => consume(await this.getOnce(`/v2/${this.ref.repository}/blobs/${digest}`, {}, what), limit));
  }

  /** A blob in memory, size and digest checked. */
  async blob(desc: Descriptor, cap: number): Promise<Buffer> {
    const digest = desc.digest ?? '';
    return this.withBlob(desc, cap, async (res, limit) => {
      const hash = createHash('sha256');
      const body = await readCapped(res, limit, 'layer', (chunk) => hash.update(chunk));
      if (typeof desc.size === 'number' && body.length !== desc.size) throw new RetryableError(`layer ${digest} is ${body.length} bytes, expected ${desc.size}`);
      if (`sha256:${hash.digest('hex')}` !== digest) throw new WasmFetchError(`layer ${digest} does not match its digest`);
      return body;
    });
  }
}

/** Streams a blob into `file` (created exclusively), hashing as it goes; verified and fsynced. */
async function streamBlob(session: RegistrySession, desc: Descriptor, cap: number, tempDir: string): Promise<ModuleFile> {
  const digest = desc.digest ?? '';
  const tempPath = join(tempDir, `.${digest.replace(/^sha256:/, '')}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  return session.withBlob(desc, cap, async (res, limit) => {
    const hash = createHash('sha256');
    let size = 0;
    let head = Buffer.alloc(0);
    const out = createWriteStream(tempPath, { flags: 'wx', mode: 0o644 });
    try {
      await pipeline(
        res.body,
        new Transform({
          transform(chunk: Buffer, _enc, done) {
            size += chunk.length;
            if (size > limit) return done(new TooLargeError(`layer exceeds the limit of ${limit} bytes`));
            if (head.length < 8) head = Buffer.concat([head, chunk.subarray(0, 8 - head.length)]);
            hash.update(chunk);
            done(null, chunk);
          },
        }),
        out,
      );
      if (typeof desc.size === 'number' && size !== desc.size) throw new RetryableError(`layer ${digest} is ${size} bytes, expected ${desc.size}`);
      if (`sha256:${hash.digest('hex')}` !== digest) throw new WasmFetchError(`layer ${digest} does not match its digest`);
      const fh = await open(tempPath, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      return { tempPath, size, head };
    } catch (err) {
      out.destroy();
      await rm(tempPath, { force: true });
      throw err;
    }
  });
}

function parseManifest(bytes: Buffer): Manifest {
  try {
    const m = JSON.parse(bytes.toString('utf8')) as unknown;
    if (m && typeof m === 'object' && !Array.isArray(m)) return m as Manifest;
  } catch {
    /* fall through */
  }
  throw new WasmFetchError('manifest is not a JSON object');
}

function isIndex(mediaType: string | undefined): boolean {
  return mediaType === MediaType.OciIndex || mediaType === MediaType.DockerManifestList;
}

function pickFromIndex(index: Manifest): Descriptor {
  const entries = index.manifests ?? [];
  const match = entries.find((d) => d.platform?.os === 'linux' && d.platform.architecture === 'amd64');
  if (match) return match;
  if (entries.length === 1) return entries[0]!;
  throw new WasmFetchError(`image index has no linux/amd64 image (${entries.length} entries)`);
}

/** Resolves `refString` to a manifest; the returned fetcher pulls and unpacks the module. */
export async function prepareImageFetch(refString: string, opts: ImageFetchOptions): Promise<PreparedImage> {
  const ref = parseReference(refString);
  const session = new RegistrySession(ref, opts);
  let m = await session.manifest(ref.digest ?? ref.tag ?? 'latest');
  if (ref.digest && m.digest !== ref.digest) throw new WasmFetchError(`manifest digest ${m.digest} does not match the reference ${ref.digest}`);
  let manifest = parseManifest(m.bytes);
  let mediaType = manifest.mediaType ?? m.contentType;
  if (isIndex(mediaType)) {
    const child = pickFromIndex(manifest);
    if (!child.digest || !DIGEST_RE.test(child.digest)) throw new WasmFetchError('image index entry has no usable digest');
    m = await session.manifest(child.digest);
    if (m.digest !== child.digest) throw new WasmFetchError(`manifest digest ${m.digest} does not match the index entry ${child.digest}`);
    manifest = parseManifest(m.bytes);
    mediaType = manifest.mediaType ?? m.contentType;
  }
  const layers = Array.isArray(manifest.layers) ? manifest.layers : [];
  const cap = opts.maxBinarySizeBytes;
  return {
    digest: m.digest.slice('sha256:'.length),
    fetchBinary: async (fetchOpts = {}) => {
      if (mediaType === MediaType.DockerManifest) {
        return extractCompat(session, layers, MediaType.DockerLayer, cap).catch((err: unknown) => {
          throw new WasmFetchError(`could not extract Wasm file from the image as Docker container: ${describeError(err)}`);
        });
      }
      const errors: string[] = [];
      try {
        return await extractCompat(session, layers, MediaType.OciLayer, cap);
      } catch (err) {
        if (!(err instanceof LayoutError)) throw err;
        errors.push(`could not parse as compat variant: ${err.message}`);
      }
      try {
        return await extractArtifact(session, layers, cap, fetchOpts.tempDir);
      } catch (err) {
        if (!(err instanceof LayoutError)) throw err;
        errors.push(`could not parse as oci variant: ${err.message}`);
      }
      throw new WasmFetchError(`the given image is in invalid format as an OCI image: ${errors.join('; ')}`);
    },
  };
}

/** The manifest does not have this layout (try the next one). */
class LayoutError extends WasmFetchError {
  override readonly code = 'WASM_OCI_LAYOUT';
}

async function extractCompat(session: RegistrySession, layers: Descriptor[], layerType: string, cap: number): Promise<Buffer> {
  if (layers.length === 0) throw new LayoutError('number of layers must be greater than zero');
  const last = layers[layers.length - 1]!;
  if (last.mediaType !== layerType) throw new LayoutError(`invalid media type ${last.mediaType ?? '(none)'} (expect ${layerType})`);
  const digest = last.digest ?? '';
  // streamed: the layer is hashed and unpacked as it arrives, and only plugin.wasm is kept (the
  // layer, the tar and the module were all held at once before: ~3x the module at the peak)
  return session.withBlob(last, cap, async (res, limit) => {
    const hash = createHash('sha256');
    const unpack = new GzipTarFile(WASM_PLUGIN_FILE, cap, 'layer');
    try {
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > limit) throw new TooLargeError(`layer exceeds the limit of ${limit} bytes`);
        hash.update(chunk);
        await unpack.write(chunk);
      }
      // the download is checked first: a short or altered layer is reported as such, whatever
      // the unpacking made of it
      if (typeof last.size === 'number' && size !== last.size) throw new RetryableError(`layer ${digest} is ${size} bytes, expected ${last.size}`);
      if (`sha256:${hash.digest('hex')}` !== digest) throw new WasmFetchError(`layer ${digest} does not match its digest`);
      return await unpack.result();
    } finally {
      unpack.destroy();
    }
  });
}

async function extractArtifact(session: RegistrySession, layers: Descriptor[], cap: number, tempDir: string | undefined): Promise<Buffer | ModuleFile> {
  const wasmLayers = layers.filter((l) => l.mediaType === MediaType.WasmLayer);
  if (wasmLayers.length !== 1 || layers.length > 2) {
    throw new LayoutError(`want one ${MediaType.WasmLayer} layer (of at most 2 layers), got ${wasmLayers.length} of ${layers.length}`);
  }
  return tempDir ? streamBlob(session, wasmLayers[0]!, cap, tempDir) : session.blob(wasmLayers[0]!, cap);
}
