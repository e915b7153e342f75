// Creating a directory and its missing parents, reporting why it failed. Node's recursive mkdir
// reports ENOENT for any failure to create a missing parent (nodejs/node#47098): a read-only
// filesystem (readOnlyRootFilesystem, a read-only volume) or a permission problem read as "no such
// file or directory", naming the wrong path. On ENOENT the first missing parent is created alone,
// which fails with the real reason and names the directory that could not be made.

import { existsSync, mkdirSync, type MakeDirectoryOptions } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

type Options = Omit<MakeDirectoryOptions, 'recursive'>;

/** Why `path` could not be made; undefined when making its parents one by one made it after all (a race). */
function realReason(path: string, err: unknown, mode: MakeDirectoryOptions['mode']): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return err;
  const missing: string[] = [];
  for (let dir = resolve(path); !existsSync(dir); ) {
    missing.unshift(dir);
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  for (const dir of missing) {
    try {
      mkdirSync(dir, { mode });
    } catch (inner) {
      if ((inner as NodeJS.ErrnoException).code !== 'EEXIST') return inner;
    }
  }
  // a parent removed while the first attempt ran (another process cleaning up): made now
  return existsSync(path) ? undefined : err;
}

/** mkdir -p, throwing the real reason (EROFS, EACCES, ENOTDIR...) with the directory it concerns. */
export function makeDirSync(path: string, options: Options = {}): void {
  try {
    mkdirSync(path, { ...options, recursive: true });
  } catch (err) {
    const reason = realReason(path, err, options.mode);
    if (reason !== undefined) throw reason;
  }
}

/** The asynchronous makeDirSync. */
export async function makeDir(path: string, options: Options = {}): Promise<void> {
  try {
    await mkdir(path, { ...options, recursive: true });
  } catch (err) {
    const reason = realReason(path, err, options.mode);
    if (reason !== undefined) throw reason;
  }
}
