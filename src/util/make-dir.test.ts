import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { makeDir, makeDirSync } from './make-dir.js';

// under the repository, not /tmp: a private mount namespace here does not see /tmp's files
const work = mkdtempSync(join(import.meta.dirname, '..', '..', 'tmp-make-dir-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('makeDirSync / makeDir', () => {
  it('creates missing parents, and is quiet when the directory exists', async () => {
    makeDirSync(join(work, 'a/b/c'), { mode: 0o700 });
    expect(existsSync(join(work, 'a/b/c'))).toBe(true);
    makeDirSync(join(work, 'a/b/c'));
    await makeDir(join(work, 'x/y'));
    expect(existsSync(join(work, 'x/y'))).toBe(true);
  });

  it('names a parent that is a file', async () => {
    writeFileSync(join(work, 'file'), '');
    expect(() => makeDirSync(join(work, 'file/sub/dir'))).toThrow(/ENOTDIR/);
    await expect(makeDir(join(work, 'file/sub'))).rejects.toThrow(/ENOTDIR/);
  });

  it('says "read-only file system" for a read-only mount, where Node says "no such file or directory"', () => {
    const ro = join(work, 'ro');
    mkdirSync(ro);
    // the child (its own mount namespace) runs the build of this module (npm test builds first)
    const moduleUrl = pathToFileURL(join(import.meta.dirname, '..', '..', 'dist', 'util', 'make-dir.js')).href;
    const script = [
      `mount --bind '${ro}' '${ro}' && mount -o remount,bind,ro '${ro}' &&`,
      `node -e "`,
      `const fs = require('node:fs');`,
      `try { fs.mkdirSync('${ro}/p/q', { recursive: true }); } catch (e) { console.log('node:', e.code); }`,
      `import('${moduleUrl}').then((m) => { try { m.makeDirSync('${ro}/p/q'); } catch (e) { console.log('ours:', e.code, e.message); } });`,
      `"`,
    ].join(' ');
    const r = spawnSync('unshare', ['-m', 'sh', '-c', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stdout, r.stderr).toContain('node: ENOENT');
    expect(r.stdout).toContain(`ours: EROFS EROFS: read-only file system, mkdir '${ro}/p'`);
  });
});
