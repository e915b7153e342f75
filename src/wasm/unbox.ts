// Getting the Wasm binary out of what was downloaded: gzip (decompressed with a hard output cap, so
// a small bomb cannot expand past ISTIO_WASM_MAX_BINARY_SIZE_BYTES), tar (a small reader for
// ustar/GNU/pax archives held in memory), and the `\0asm` magic check.

import { gunzip } from 'node:zlib';
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

/** The entries of an in-memory tar archive (data are views into `b`). Stops at the end marker. */
export function* tarEntries(b: Buffer): Generator<TarEntry> {
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= b.length) {
    const h = b.subarray(off, off + 512);
    if (h.every((x) => x === 0)) return; // end of archive
    if (!checksumOk(h)) throw new WasmFetchError('invalid tar header: checksum mismatch');
    const size = numeric(h, 124, 12);
    const type = String.fromCharCode(h[156]!) || '0';
    const start = off + 512;
    const end = start + size;
    if (end > b.length) throw new WasmFetchError('truncated tar archive');
    const data = b.subarray(start, end);
    off = start + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = field(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      longName = paxPath(data) ?? longName;
      continue;
    }
    if (type === 'g') continue;
    let name = field(h, 0, 100);
    const magic = h.toString('latin1', 257, 263);
    if (magic === 'ustar\0') {
      const prefix = field(h, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    if (longName !== undefined) name = longName;
    longName = undefined;
    yield { name, type: type === '\0' ? '0' : type, data };
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

/** The file whose base name is `name` (`plugin.wasm` in compat-variant images). */
export function tarFileNamed(b: Buffer, name: string): Buffer | undefined {
  for (const e of tarEntries(b)) {
    if (!isRegular(e)) continue;
    const base = e.name.replace(/\/+$/, '').split('/').pop();
    if (base === name) return e.data;
  }
  return undefined;
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
