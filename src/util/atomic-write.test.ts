// writeFileAtomicSync: the content arrives whole, and a failure names the target file (Node's own
// write errors name none: "ENOSPC: no space left on device, write"), keeps its code, and leaves no
// temp file behind.

import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeFileAtomic, writeFileAtomicSync } from './atomic-write.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), 'pa-atomic-'));
  dirs.push(d);
  return d;
}

describe('writeFileAtomicSync', () => {
  it('writes the content with the mode, replacing what was there, and leaves only the file', () => {
    const d = scratch();
    const target = join(d, 'sub', 'envoy-rev.json');
    writeFileAtomicSync(target, 'first');
    writeFileAtomicSync(target, '{"second":true}', 0o600);
    expect(readFileSync(target, 'utf8')).toBe('{"second":true}');
    expect(statSync(target).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(d, 'sub'))).toEqual(['envoy-rev.json']);
  });

  it('a failure names the target and keeps its code', () => {
    const d = scratch();
    writeFileSync(join(d, 'not-a-dir'), 'x');
    const target = join(d, 'not-a-dir', 'grpc-bootstrap.json');
    let err: NodeJS.ErrnoException | undefined;
    try {
      writeFileAtomicSync(target, '{}');
    } catch (e) {
      err = e as NodeJS.ErrnoException;
    }
    expect(err?.message.startsWith(`cannot write ${target}: EEXIST`), err?.message).toBe(true);
    expect(err?.code).toBe('EEXIST');
  });

  it('the asynchronous writer: the same content, mode, single file and named failures', async () => {
    const d = scratch();
    const target = join(d, 'module.wasm');
    await writeFileAtomic(target, Buffer.from('one'));
    await writeFileAtomic(target, Buffer.from('two'), 0o600);
    expect(readFileSync(target, 'utf8')).toBe('two');
    expect(statSync(target).mode & 0o777).toBe(0o600);
    expect(readdirSync(d)).toEqual(['module.wasm']);
    const missing = join(d, 'no-such-dir', 'module.wasm');
    await expect(writeFileAtomic(missing, Buffer.from('x'))).rejects.toMatchObject({ code: 'ENOENT', message: expect.stringMatching(new RegExp(`^cannot write ${missing.replace(/[.]/g, '\\.')}: ENOENT`)) });
  });
});
