import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readBearerToken } from './token.js';

const dir = mkdtempSync(join(tmpdir(), 'pa-token-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readBearerToken', () => {
  it('reads the token trimmed; empty is no token, silently; absent is no token, said (as Istio warns)', () => {
    const said: string[] = [];
    writeFileSync(join(dir, 'token'), '  abc.def \n');
    writeFileSync(join(dir, 'empty'), '\n');
    expect(readBearerToken(join(dir, 'token'), (r) => said.push(r))).toBe('abc.def');
    expect(readBearerToken(join(dir, 'empty'), (r) => said.push(r))).toBeUndefined();
    expect(said).toEqual([]);
    expect(readBearerToken(join(dir, 'absent'), (r) => said.push(r))).toBeUndefined();
    expect(said).toEqual([expect.stringMatching(new RegExp(`^cannot read the token file ${join(dir, 'absent')}: ENOENT`))]);
  });

  it('says why a file that is there cannot be read, and gives no token', () => {
    const said: string[] = [];
    mkdirSync(join(dir, 'a-directory'));
    expect(readBearerToken(join(dir, 'a-directory'), (r) => said.push(r))).toBeUndefined();
    expect(said).toEqual([expect.stringMatching(new RegExp(`^cannot read the token file ${join(dir, 'a-directory')}: EISDIR`))]);
  });
});
