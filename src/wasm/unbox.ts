// Getting the Wasm binary out of what was downloaded: gzip (decompressed with a hard output cap, so
// a small bomb cannot expand past ISTIO_WASM_MAX_BINARY_SIZE_BYTES), tar (a small reader for
// ustar/GNU/pax archives held in memory), and the `\0asm` magic check.

import { createGunzip, gunzip } from 'node:zlib';
import { TooLargeError, WasmFetchError } from './http-client.js';

const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d]);

/** A Wasm binary starts with `\0asm` and a 4-byte version (8 bytes of header). */
export function isWasmBinary(b: Uint8Array): boolean {
  return b.length >= 8 && Buffer.from(b.buffer, b.byteOffset, 4).equals(WASM_MAGIC);
}

export function isGzip(b: Uint8Array): boolean {
  return b.length > 2 && b[0] === 0x1f && b[1] === 0x8b;
}

/** POSIX (ustar) tar: "ustar" at offset 257 of the first header. */
export function isTar(b: Uint8Array): boolean {
  return b.length > 262 && Buffer.from(b.buffer, b.byteOffset + 257, 5).toString('latin1') === 'ustar';
}

export function gunzipCapped(b: Uint8Array, cap: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    gunzip(b, { maxOutputLength: cap }, (err, out) => {
      if (!err) return resolve(out);
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        return reject(new TooLargeError(`${what} decompresses to more than the limit of ${cap} bytes`));
      }
      reject(new WasmFetchError(`${what} is not valid gzip: ${err.message}`));
    });
  });
}

export interface TarEntry {
  readonly name: string;
  /** Typeflag: '0' regular file, '5' directory, ... */
  readonly type: string;
  readonly data: Buffer;
}

function field(h: Buffer, off: number, len: number): string {
  const end = h.indexOf(0, off);
  return h.toString('utf8', off, end >= 0 && end < off + len ? end : off + len);
}

function numeric(h: Buffer, off: number, len: number): number {
  if (h[off]! & 0x80) {
    // GNU base-256: big-endian, high bit set
    let v = h[off]! & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + h[off + i]!;
    return v;
  }
  const s = h.toString('latin1', off, off + len).replace(/[\0 ]+$/g, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new WasmFetchError(`invalid tar header: bad number "${s}"`);
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  const want = numeric(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === want;
}

function paxPath(data: Buffer): string | undefined {
  let path: string | undefined;
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp < 0) break;
    const len = parseInt(data.toString('latin1', i, sp), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const rec = data.toString('utf8', sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0 && rec.slice(0, eq) === 'path') path = rec.slice(eq + 1);
    i += len;
  }
  return path;
}

/** One 512-byte tar header, read: its entry's type, data size and name (before a long name applies). */
interface TarHeader {
  readonly type: string;
  readonly size: number;
  readonly name: string;
}

/** Reads a header block; undefined for the all-zero end marker. */
function readTarHeader(h: Buffer): TarHeader | undefined {
  if (h.every((x) => x === 0)) return undefined;
  if (!checksumOk(h)) throw new WasmFetchError('invalid tar header: checksum mismatch');
  const size = numeric(h, 124, 12);
  const type = String.fromCharCode(h[156]!) || '0';
  let name = field(h, 0, 100);
  if (h.toString('latin1', 257, 263) === 'ustar\0') {
    const prefix = field(h, 345, 155);
    if (prefix) name = `${prefix}/${name}`;
  }
  return { type: type === '\0' ? '0' : type, size, name };
}

/** Padding after `size` bytes of entry data, to the next 512-byte block. */
const tarPadding = (size: number): number => (512 - (size % 512)) % 512;

/** The long name a GNU 'L' or pax 'x' entry gives the entry after it (undefined: keep the one before). */
function longNameFrom(type: string, data: Buffer, before: string | undefined): string | undefined {
  return type === 'L' ? field(data, 0, data.length) : (paxPath(data) ?? before);
}

const isMeta = (type: string): boolean => type === 'L' || type === 'x';

/** The entries of an in-memory tar archive (data are views into `b`). Stops at the end marker. */
export function* tarEntries(b: Buffer): Generator<TarEntry> {
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= b.length) {
    const h = readTarHeader(b.subarray(off, off + 512));
    if (!h) return; // end of archive
    const start = off + 512;
    const end = start + h.size;
    if (end > b.length) throw new WasmFetchError('truncated tar archive');
    const data = b.subarray(start, end);
    off = end + tarPadding(h.size);
    if (isMeta(h.type)) {
      longName = longNameFrom(h.type, data, longName);
      continue;
    }
    if (h.type === 'g') continue;
    const name = longName ?? h.name;
    longName = undefined;
    yield { name, type: h.type, data };
  }
}

/** A long name or pax record larger than this is refused (a real one is a path). */
const MAX_TAR_META_BYTES = 1024 * 1024;

/**
 * Finds the first regular file whose base name is `base` in a tar archive fed to it in chunks of
 * any size, keeping that file's data only (Istio's extractWasmPluginBinary streams gzip -> tar the
 * same way): a compat-variant image's layer is never whole in memory, decompressed or not.
 */
export class TarFileFinder {
  private header: Buffer = Buffer.alloc(0);
  private entry: { readonly h: TarHeader; readonly keep: 'file' | 'meta' | 'skip'; remaining: number; padding: number; readonly parts: Buffer[]; readonly into?: Buffer } | undefined;
  private longName: string | undefined;
  private ended = false;
  /** The file, once found; nothing more is read after it. */
  file: Buffer | undefined;

  constructor(
    private readonly base: string,
    private readonly cap: number,
  ) {}

  /** Whether the file was found or the archive ended: the rest of the input can be dropped. */
  get done(): boolean {
    return this.file !== undefined || this.ended;
  }

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && !this.done) {
      const e = this.entry;
      if (!e) {
        const take = Math.min(512 - this.header.length, chunk.length - off);
        this.header = this.header.length ? Buffer.concat([this.header, chunk.subarray(off, off + take)]) : chunk.subarray(off, off + take);
        off += take;
        if (this.header.length === 512) this.startEntry(Buffer.from(this.header));
        continue;
      }
      if (e.remaining > 0) {
        const take = Math.min(e.remaining, chunk.length - off);
        // the file is copied into its own buffer as it comes (its size is known): never twice in memory
        if (e.into) chunk.copy(e.into, e.h.size - e.remaining, off, off + take);
        else if (e.keep === 'meta') e.parts.push(chunk.subarray(off, off + take));
        e.remaining -= take;
        off += take;
      } else {
        const take = Math.min(e.padding, chunk.length - off);
        e.padding -= take;
        off += take;
      }
      if (e.remaining === 0 && e.padding === 0) this.endEntry(e);
    }
  }

  /** The input ended: a file cut short, or an archive without an end marker after a cut entry, is an error. */
  finish(): void {
    if (this.file !== undefined) return;
    if (this.entry || this.header.length > 0) throw new WasmFetchError('truncated tar archive');
  }

  private startEntry(block: Buffer): void {
    this.header = Buffer.alloc(0);
    const h = readTarHeader(block);
    if (!h) {
      this.ended = true;
      return;
    }
    let keep: 'file' | 'meta' | 'skip' = 'skip';
    if (isMeta(h.type)) {
      if (h.size > MAX_TAR_META_BYTES) throw new WasmFetchError(`invalid tar archive: a ${h.size}-byte long name`);
      keep = 'meta';
    } else if ((h.type === '0' || h.type === '7') && (this.longName ?? h.name).replace(/\/+$/, '').split('/').pop() === this.base) {
      if (h.size > this.cap) throw new TooLargeError(`${this.base} is ${h.size} bytes, more than the limit of ${this.cap} bytes`);
      keep = 'file';
    }
    this.entry = { h, keep, remaining: h.size, padding: tarPadding(h.size), parts: [], ...(keep === 'file' ? { into: Buffer.allocUnsafe(h.size) } : {}) };
    if (h.size === 0) this.endEntry(this.entry);
  }

  private endEntry(e: NonNullable<TarFileFinder['entry']>): void {
    this.entry = undefined;
    if (e.keep === 'meta') {
      this.longName = longNameFrom(e.h.type, Buffer.concat(e.parts), this.longName);
      return;
    }
    if (e.h.type === 'g') return;
    this.longName = undefined;
    if (e.into) this.file = e.into;
  }
}

function isRegular(e: TarEntry): boolean {
  return e.type === '0' || e.type === '7';
}

/** The first regular file of a tar archive (what Istio's HTTP fetcher takes). */
export function firstTarFile(b: Buffer): Buffer | undefined {
  for (const e of tarEntries(b)) if (isRegular(e)) return e.data;
  return undefined;
}

/**
 * A gzip-compressed tar archive fed in chunks, decompressed as it comes and searched by a
 * TarFileFinder: what it keeps is the file, never the archive. Decompression stops at the file,
 * or past `cap` bytes of output (a gzip bomb); a failure is kept and reported by result(), so
 * the caller can still read the rest of the download (to check its digest first).
 */
export class GzipTarFile {
  private readonly gunzip = createGunzip();
  private readonly finder: TarFileFinder;
  private failure: Error | undefined;
  private decompressed = 0;
  private readonly closed: Promise<void>;

  constructor(
    private readonly base: string,
    cap: number,
    what: string,
  ) {
    this.finder = new TarFileFinder(base, cap);
    this.closed = new Promise((resolve) => this.gunzip.once('close', () => resolve()));
    this.gunzip.on('data', (d: Buffer) => {
      if (this.failure || this.finder.done) return;
      this.decompressed += d.length;
      if (this.decompressed > cap) return this.fail(new TooLargeError(`${what} decompresses to more than the limit of ${cap} bytes`));
      try {
        this.finder.push(d);
      } catch (err) {
        return this.fail(err as Error);
      }
      if (this.finder.done) this.gunzip.destroy(); // what is needed is there
    });
    this.gunzip.on('error', (err) => this.fail(new WasmFetchError(`${what} is not valid gzip: ${err.message}`)));
  }

  /** Feeds compressed bytes, waiting while decompression is behind; never throws. */
  async write(chunk: Buffer): Promise<void> {
    if (this.gunzip.destroyed || this.gunzip.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const go = (): void => {
        this.gunzip.off('drain', go);
        this.gunzip.off('close', go);
        resolve();
      };
      this.gunzip.on('drain', go);
      this.gunzip.on('close', go);
    });
  }

  /** The input has ended: the file, or why there is none. */
  async result(): Promise<Buffer> {
    if (!this.gunzip.destroyed) this.gunzip.end();
    await this.closed;
    if (this.failure) throw this.failure;
    if (this.finder.file) return this.finder.file;
    this.finder.finish();
    throw new WasmFetchError(`${this.base} not found in the archive`);
  }

  destroy(): void {
    this.gunzip.destroy();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.gunzip.destroy();
  }
}

/**
 * Istio's HTTP unboxing: while the bytes are gzip or tar, unwrap them (tar: first file); stop at a
 * Wasm binary. Anything unrecognised is returned as is (the magic check rejects it later). Size
 * caps apply to every layer; exceeding one is an error, not a truncation.
 */
export async function unboxIfPossible(origin: Buffer, cap: number): Promise<Buffer> {
  let b = origin;
  for (let depth = 0; depth < 8; depth++) {
    if (isWasmBinary(b)) return b;
    if (isGzip(b)) {
      try {
        b = await gunzipCapped(b, cap, 'module');
      } catch (err) {
        if (err instanceof TooLargeError) throw err;
        return origin;
      }
    } else if (isTar(b)) {
      let next: Buffer | undefined;
      try {
        next = firstTarFile(b);
      } catch {
        return origin;
      }
      if (!next) return origin;
      b = next;
    } else {
      return origin;
    }
  }
  return origin;
}
