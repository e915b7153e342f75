// src/gen/ is committed so a build needs no code generation; this keeps it honest: it is generated
// again from proto/ with the pinned buf and protoc-gen-es, and must come out byte for byte the same.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/paths.js';

const run = promisify(execFile);

function listFiles(dir: string, base = dir): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? listFiles(full, base) : [path.relative(base, full)];
  });
}

describe('generated protobuf code', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'protos-gen-'));
  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  it('src/gen/ is what buf.gen.yaml generates from proto/ (else run npm run protos:generate)', async () => {
    const bin = path.join(repoRoot, 'node_modules', '.bin');
    await run(path.join(bin, 'buf'), ['generate', '--output', out], {
      cwd: repoRoot,
      env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}` },
      timeout: 120_000,
    });
    const fresh = path.join(out, 'src', 'gen');
    const committed = path.join(repoRoot, 'src', 'gen');
    const freshFiles = listFiles(fresh).sort();
    expect(listFiles(committed).sort()).toEqual(freshFiles);
    expect(freshFiles.length).toBeGreaterThan(0);
    const differing = freshFiles.filter((f) => !fs.readFileSync(path.join(fresh, f)).equals(fs.readFileSync(path.join(committed, f))));
    expect(differing).toEqual([]);
  }, 180_000);
});
