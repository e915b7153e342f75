// The last-known-good xDS store (PROXY_XDS_LAST_KNOWN_GOOD): what Envoy (or a proxyless client)
// ACKed, per type URL, persisted so that a pod (re)started while istiod is unreachable can still be
// configured (Istio cannot: istio/istio#35569). Beyond Istio, and opt-in.
//
// Layout: <dir>/<hash of the node id>/<protocol>-<hash of the type URL>.xds, mode 0600, each file
// one header line of JSON (format, node id, type URL, protocol, version, payload length and
// sha256, saved-at) followed by the payload:
//   SotW:  the DiscoveryResponse Envoy ACKed, as received (SotW responses carry the whole state of
//          their subscription);
//   Delta: one DeltaDiscoveryResponse holding every resource Envoy holds after the ACKed responses
//          (each added resource's bytes kept as received; removals applied).
// Files are written atomically (temp + fsync + rename): a crash leaves the old file or the new,
// never half of one. On load a file is served only if its header names this node and protocol and
// its payload has the stated length and digest; anything else is logged once and ignored. The
// total is bounded: a write that would take the store past `maxBytes` is skipped (logged once per
// type).

import { closeSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { makeDirSync } from '../util/make-dir.js';
import { join, resolve } from 'node:path';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import type { AgentConfig } from '../config/load.js';
import { writeFileAtomicSync } from '../util/atomic-write.js';
import { logger } from '../util/logger.js';
import { forEachField, XdsField } from './wire.js';
import { isoUtc } from '../util/time.js';
import { lazyBuiltin } from '../util/builtin.js';

const log = logger('xdsproxy');

const FORMAT = 1;
const WIRE_LEN = WireType.LengthDelimited;
/** DiscoveryResponse and DeltaDiscoveryResponse share the nonce's field number. */
const NONCE_FIELD = XdsField.DiscoveryResponse.nonce;
const DELTA = XdsField.DeltaDiscoveryResponse;

export type LkgProtocol = 'sotw' | 'delta';

export interface LkgEntry {
  readonly typeUrl: string;
  readonly protocol: LkgProtocol;
  readonly version: string;
  readonly savedAt: string;
  /** The response to serve, without a nonce of its own (see `withNonce`). */
  readonly payload: Buffer;
}

interface Header {
  format: number;
  nodeId: string;
  typeUrl: string;
  protocol: LkgProtocol;
  version: string;
  bytes: number;
  sha256: string;
  savedAt: string;
}

const sha256 = (b: Uint8Array | string): string => lazyBuiltin.crypto().createHash('sha256').update(b).digest('hex');

/** A response re-sent from the store gets a fresh nonce: a field written last wins in protobuf. */
export function withNonce(payload: Buffer, nonce: string): Buffer {
  return Buffer.concat([payload, new BinaryWriter().tag(NONCE_FIELD, WIRE_LEN).string(nonce).finish()]);
}

export interface LastKnownGoodOptions {
  /** The xds directory (./var/lib/istio/data/xds under the agent's root). */
  readonly dir: string;
  readonly nodeId: string;
  /** Bound on the whole store for this node. */
  readonly maxBytes: number;
}

/** The store of the configured agent: ./var/lib/istio/data/xds under its root, keyed by its node id. */
export function lastKnownGoodStore(config: AgentConfig): LastKnownGood {
  return new LastKnownGood({
    dir: resolve(config.paths.cwd, './var/lib/istio/data/xds'),
    nodeId: config.node.id,
    maxBytes: config.env.PROXY_XDS_LAST_KNOWN_GOOD_MAX_BYTES,
  });
}

export class LastKnownGood {
  private readonly nodeDir: string;
  /** Delta: the resources held per type (name -> raw Resource bytes), loaded on first use. */
  private readonly deltaState = new Map<string, { version: string; resources: Map<string, Buffer> }>();
  private readonly warned = new Set<string>();

  /** Types whose last save failed: logged when saving starts failing and when it works again. */
  private readonly failing = new Set<string>();

  constructor(private readonly options: LastKnownGoodOptions) {
    this.nodeDir = join(options.dir, sha256(options.nodeId).slice(0, 16));
    removeLeftSpools(this.nodeDir);
  }

  get directory(): string {
    return this.nodeDir;
  }

  private fileFor(protocol: LkgProtocol, typeUrl: string): string {
    return join(this.nodeDir, `${protocol}-${sha256(typeUrl).slice(0, 16)}.xds`);
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    log.warn(message);
  }

  /** Every valid entry for this node and protocol; invalid files are logged once and skipped. */
  load(protocol: LkgProtocol): Map<string, LkgEntry> {
    const out = new Map<string, LkgEntry>();
    let names: string[];
    try {
      names = readdirSync(this.nodeDir);
    } catch {
      return out;
    }
    for (const name of names) {
      if (!name.startsWith(`${protocol}-`) || !name.endsWith('.xds')) continue;
      const path = join(this.nodeDir, name);
      const entry = this.readEntry(path, protocol);
      if (entry) out.set(entry.typeUrl, entry);
    }
    return out;
  }

  private readEntry(path: string, protocol: LkgProtocol): LkgEntry | undefined {
    const bad = (why: string): undefined => {
      this.warnOnce(`load:${path}`, `last-known-good xDS file ${path} is not served: ${why}`);
      return undefined;
    };
    let raw: Buffer;
    try {
      // the bound is checked before a byte is read: a file larger than the whole store is not ours
      const size = statSync(path).size;
      if (size > this.options.maxBytes) return bad(`${size} bytes, more than the store's ${this.options.maxBytes}-byte bound`);
      raw = readFileSync(path);
    } catch (err) {
      return bad((err as Error).message);
    }
    const nl = raw.indexOf(0x0a);
    if (nl < 0) return bad('no header line');
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.subarray(0, nl).toString('utf8'));
    } catch {
      return bad('the header is not JSON');
    }
    if (!isHeader(parsed)) return bad(`the header is not a header: ${raw.subarray(0, Math.min(nl, 200)).toString('utf8')}`);
    const h = parsed;
    if (h.format !== FORMAT) return bad(`format ${String(h.format)} (expected ${FORMAT})`);
    if (h.nodeId !== this.options.nodeId) return bad(`written for node ${JSON.stringify(h.nodeId)}, not ${JSON.stringify(this.options.nodeId)}`);
    if (h.protocol !== protocol || path !== this.fileFor(protocol, h.typeUrl)) return bad('the header does not match the file name');
    const payload = raw.subarray(nl + 1);
    if (payload.length !== h.bytes) return bad(`truncated: ${payload.length} of ${h.bytes} bytes`);
    if (sha256(payload) !== h.sha256) return bad('the payload does not match its digest');
    return { typeUrl: h.typeUrl, protocol, version: h.version, savedAt: h.savedAt, payload };
  }

  /** Bytes the other files of this node take (the bound applies to the whole store). */
  private usedBytesExcept(path: string): number {
    let total = 0;
    try {
      for (const name of readdirSync(this.nodeDir)) {
        const p = join(this.nodeDir, name);
        if (p !== path && name.endsWith('.xds')) total += statSync(p).size;
      }
    } catch {
      /* no directory yet */
    }
    return total;
  }

  /** Writes one type's file: the payload given as bytes, or as a spooled file copied in chunks (never read whole). */
  private write(protocol: LkgProtocol, typeUrl: string, version: string, payload: Buffer | SpooledBytes): void {
    const path = this.fileFor(protocol, typeUrl);
    const size = Buffer.isBuffer(payload) ? payload.length : payload.size;
    const digest = Buffer.isBuffer(payload) ? sha256(payload) : fileSha256(payload.file);
    const header: Header = { format: FORMAT, nodeId: this.options.nodeId, typeUrl, protocol, version, bytes: size, sha256: digest, savedAt: isoUtc(Date.now()) };
    const head = Buffer.from(`${JSON.stringify(header)}\n`);
    if (this.usedBytesExcept(path) + head.length + size > this.options.maxBytes) {
      this.warnOnce(`size:${typeUrl}`, `last-known-good xDS: ${typeUrl} version ${version} (${size} bytes) is not saved: the store would exceed its ${this.options.maxBytes}-byte bound`);
      return;
    }
    makeDirSync(this.nodeDir, { mode: 0o700 });
    writeFileAtomicSync(path, [head, Buffer.isBuffer(payload) ? payload : { copyOf: payload.file }], 0o600);
  }

  /**
   * SotW: the response Envoy ACKed becomes the type's last-known-good state. A spooled (large)
   * one is hashed and copied from its spool file in chunks: it is never whole in memory again.
   */
  saveSotw(typeUrl: string, version: string, response: Buffer | LkgSpool): void {
    this.guard(typeUrl, () => {
      if (Buffer.isBuffer(response)) return this.write('sotw', typeUrl, version, response);
      try {
        const spooled = response.finish();
        if (spooled) this.write('sotw', typeUrl, version, spooled);
      } finally {
        response.discard();
      }
    });
  }

  /** Delta: applies an ACKed response to the type's held resources and saves the result. */
  applyDelta(typeUrl: string, response: Buffer): void {
    this.guard(typeUrl, () => {
      let state = this.deltaState.get(typeUrl);
      if (!state) {
        const held = this.load('delta').get(typeUrl);
        state = { version: '', resources: held ? deltaResourceMap(held.payload) : new Map() };
        this.deltaState.set(typeUrl, state);
      }
      const { version, resources, removed } = readDeltaResponse(response);
      for (const [name, bytes] of resources) state.resources.set(name, bytes);
      for (const name of removed) state.resources.delete(name);
      state.version = version;
      this.write('delta', typeUrl, version, encodeDeltaState(typeUrl, version, state.resources));
    });
  }

  /** Memory pressure: the Delta state is re-read from the files on the next ACK. */
  dropCaches(): void {
    this.deltaState.clear();
  }

  /**
   * A failure to persist never disturbs the proxy. It is logged when saving a type starts failing
   * and when it works again: the store then holds an older version of that type than of others.
   */
  private guard(typeUrl: string, save: () => void): void {
    try {
      save();
    } catch (err) {
      if (!this.failing.has(typeUrl)) log.warn(`last-known-good xDS: cannot save ${typeUrl}; the store keeps its previous version until a save works: ${(err as Error).message}`);
      this.failing.add(typeUrl);
      return;
    }
    if (this.failing.delete(typeUrl)) log.info(`last-known-good xDS: ${typeUrl} is saved again`);
  }
}

const SPOOL_PREFIX = '.spool-';

/** A spooled response: its file and length. */
export interface SpooledBytes {
  readonly file: string;
  readonly size: number;
}

/** sha256 of a file, read in chunks. */
function fileSha256(path: string): string {
  const hash = lazyBuiltin.crypto().createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(1024 * 1024);
    for (let n = readSync(fd, chunk, 0, chunk.length, null); n > 0; n = readSync(fd, chunk, 0, chunk.length, null)) hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Spools a killed agent left behind (none is in use at start: the directory is this node's, and one agent serves it). */
function removeLeftSpools(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) if (name.startsWith(SPOOL_PREFIX) && name.endsWith('.tmp')) rmSync(join(dir, name), { force: true });
}

function isHeader(h: unknown): h is Header {
  if (typeof h !== 'object' || h === null) return false;
  const o = h as Record<string, unknown>;
  return (
    typeof o.format === 'number' &&
    typeof o.nodeId === 'string' &&
    typeof o.typeUrl === 'string' &&
    (o.protocol === 'sotw' || o.protocol === 'delta') &&
    typeof o.version === 'string' &&
    typeof o.bytes === 'number' &&
    typeof o.sha256 === 'string' &&
    typeof o.savedAt === 'string'
  );
}

/** Streams a large response into a temp file as it is forwarded, so it can be saved on ACK without being held. */
export class LkgSpool {
  private fd: number | undefined;
  readonly path: string;
  private failed = false;
  private size = 0;

  constructor(dir: string, tag: string) {
    this.path = join(dir, `${SPOOL_PREFIX}${process.pid}-${tag}.tmp`);
    try {
      makeDirSync(dir, { mode: 0o700 });
      this.fd = openSync(this.path, 'w', 0o600);
    } catch (err) {
      // no room (ENOSPC, no inodes) or the directory replaced: this push is not saved, and goes on
      this.failed = true;
      log.warn(`last-known-good xDS: cannot spool a response to ${this.path}: ${(err as Error).message}`);
    }
  }

  append(chunk: Buffer): void {
    if (this.fd === undefined || this.failed) return;
    try {
      let off = 0;
      while (off < chunk.length) off += writeSync(this.fd, chunk, off, chunk.length - off);
      this.size += chunk.length;
    } catch {
      this.failed = true; // a full disk loses the spool, never the push
    }
  }

  /** Stops writing: the spool's file and size (undefined when writing failed). The file stays until discard(). */
  finish(): SpooledBytes | undefined {
    this.close();
    return this.failed ? undefined : { file: this.path, size: this.size };
  }

  /** The spooled bytes (undefined when writing failed); the spool is removed either way. */
  take(): Buffer | undefined {
    this.close();
    try {
      return this.failed ? undefined : readFileSync(this.path);
    } catch {
      return undefined;
    } finally {
      this.remove();
    }
  }

  discard(): void {
    this.close();
    this.remove();
  }

  private remove(): void {
    try {
      rmSync(this.path, { force: true });
    } catch {
      // never created (its directory is not one): nothing to remove
    }
  }

  private close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Reads the top level of a DeltaDiscoveryResponse: version, resources by name (raw bytes), removals. */
function readDeltaResponse(buf: Buffer): { version: string; resources: Map<string, Buffer>; removed: string[] } {
  const resources = new Map<string, Buffer>();
  const removed: string[] = [];
  let version = '';
  forEachField(buf, (field, wire, _start, payload, end) => {
    if (wire !== WIRE_LEN) return;
    const bytes = buf.subarray(payload, end);
    if (field === DELTA.system_version_info) version = bytes.toString('utf8');
    else if (field === DELTA.removed_resources) removed.push(bytes.toString('utf8'));
    else if (field === DELTA.resources) resources.set(resourceName(bytes), Buffer.from(bytes));
  });
  return { version, resources, removed };
}

function deltaResourceMap(payload: Buffer): Map<string, Buffer> {
  return readDeltaResponse(payload).resources;
}

function resourceName(resource: Buffer): string {
  let name = '';
  forEachField(resource, (field, wire, _start, payload, end) => {
    if (field === XdsField.Resource.name && wire === WIRE_LEN) name = resource.toString('utf8', payload, end); // the last one wins, as in any decoder
  });
  return name;
}

function encodeDeltaState(typeUrl: string, version: string, resources: ReadonlyMap<string, Buffer>): Buffer {
  const w = new BinaryWriter();
  if (version) w.tag(DELTA.system_version_info, WIRE_LEN).string(version);
  for (const bytes of resources.values()) w.tag(DELTA.resources, WIRE_LEN).bytes(bytes);
  w.tag(DELTA.type_url, WIRE_LEN).string(typeUrl);
  return Buffer.from(w.finish());
}

/** Names of the resources in a stored Delta payload (to answer a named subscription). */
export function deltaPayloadFor(payload: Buffer, typeUrl: string, names: ReadonlySet<string> | undefined): Buffer {
  if (!names) return payload;
  const { version, resources } = readDeltaResponse(payload);
  const picked = new Map([...resources].filter(([name]) => names.has(name)));
  return encodeDeltaState(typeUrl, version, picked);
}
