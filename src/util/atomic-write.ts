// Writes a file so that readers see the old content or the new, never a partial one: the bytes go
// to a temp file in the same directory (same filesystem), are fsynced, then renamed over the target.
// The fsync is what makes the new content survive a power loss or a node crash, not only a process
// crash (the rename alone covers that); files the agent writes anew at every start (the Envoy and
// gRPC bootstraps) skip it with `durable: false`: nothing would read a stale copy after a reboot,
// and on a disk-backed emptyDir an fsync can cost milliseconds on the way to Envoy's spawn.

import { mkdirSync, openSync, closeSync, writeSync, fsyncSync, renameSync, rmSync, chmodSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export function writeFileAtomicSync(path: string, data: string | Uint8Array, mode = 0o644, options: { readonly durable?: boolean } = {}): void {
  try {
    writeAtomic(path, data, mode, options.durable ?? true);
  } catch (err) {
    // a write's error names no file ("ENOSPC: no space left on device, write"): the target is
    // named, as Go's PathError names it in Istio's messages; the code stays
    const e = err as NodeJS.ErrnoException;
    e.message = `cannot write ${path}: ${e.message}`;
    throw e;
  }
}

function writeAtomic(path: string, data: string | Uint8Array, mode: number, durable: boolean): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  // unique enough among writers of one directory (the pid tells processes apart, the random part
  // writes within one); not node:crypto's randomness, which costs ~8 ms to load before Envoy's spawn
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  const fd = openSync(tmp, 'w', mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
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
