// Writes a file so that readers see the old content or the new, never a partial one: the bytes go
// to a temp file in the same directory (same filesystem), are fsynced, then renamed over the target.
// The fsync is what makes the new content survive a power loss or a node crash, not only a process
// crash (the rename alone covers that); files the agent writes anew at every start (the Envoy and
// gRPC bootstraps) skip it with `durable: false`: nothing would read a stale copy after a reboot,
// and on a disk-backed emptyDir an fsync can cost milliseconds on the way to Envoy's spawn.

import { openSync, closeSync, readSync, writeSync, fsyncSync, renameSync, rmSync, chmodSync } from 'node:fs';
import { makeDirSync } from './make-dir.js';
import { basename, dirname, join } from 'node:path';

/** What to write: bytes, or parts written one after the other, a part being bytes or a file copied in chunks (never read whole). */
export type AtomicContent = string | Uint8Array | readonly (Uint8Array | { readonly copyOf: string })[];

const COPY_CHUNK_BYTES = 1024 * 1024;

/**
 * A write's error names no file ("ENOSPC: no space left on device, write"): the target is named,
 * as Go's PathError names it in Istio's messages; the code stays.
 */
function namingTarget(path: string, err: unknown): NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException;
  e.message = `cannot write ${path}: ${e.message}`;
  return e;
}

/** unique enough among writers of one directory (the pid tells processes apart, the random part writes within one) */
function tempPathFor(path: string): string {
  // not node:crypto's randomness, which costs ~8 ms to load before Envoy's spawn
  return join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
}

export function writeFileAtomicSync(path: string, data: AtomicContent, mode = 0o644, options: { readonly durable?: boolean } = {}): void {
  try {
    writeAtomic(path, data, mode, options.durable ?? true);
  } catch (err) {
    throw namingTarget(path, err);
  }
}

/**
 * The same without blocking the event loop, always fsynced: for large files written while the
 * agent serves (Wasm modules), where a synchronous write would stall every stream.
 */
export async function writeFileAtomic(path: string, data: Uint8Array, mode = 0o644): Promise<void> {
  // loaded on first use: the synchronous writer runs before Envoy's spawn, this one never does
  const { open, rename, rm } = await import('node:fs/promises');
  const tmp = tempPathFor(path);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      let off = 0;
      while (off < data.length) off += (await fh.write(data, off, data.length - off)).bytesWritten;
      await fh.sync();
      await fh.chmod(mode); // the umask may have narrowed open's mode
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw namingTarget(path, err);
  }
}

function writeAll(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

function copyInto(fd: number, source: string): void {
  const src = openSync(source, 'r');
  try {
    const chunk = Buffer.allocUnsafe(COPY_CHUNK_BYTES);
    for (let n = readSync(src, chunk, 0, chunk.length, null); n > 0; n = readSync(src, chunk, 0, chunk.length, null)) writeAll(fd, chunk.subarray(0, n));
  } finally {
    closeSync(src);
  }
}

function writeAtomic(path: string, data: AtomicContent, mode: number, durable: boolean): void {
  makeDirSync(dirname(path));
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'w', mode);
  try {
    if (typeof data === 'string') writeAll(fd, Buffer.from(data));
    else if (data instanceof Uint8Array) writeAll(fd, data);
    else
      for (const part of data) {
        if (part instanceof Uint8Array) writeAll(fd, part);
        else copyInto(fd, part.copyOf);
      }
    if (durable) fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    chmodSync(tmp, mode); // the umask may have narrowed openSync's mode
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
