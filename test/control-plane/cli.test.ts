import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseDurationSeconds, runCli } from './cli.js';
import { createCertificate, openSotw } from './clients.js';
import { generateCsr } from './ca.js';
import type { ControlPlane } from './control-plane.js';
import { TypeUrl } from './xds-protos.js';

function io() {
  const out = { stdout: '', stderr: '' };
  return { out, io: { stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t) } };
}

describe('control-plane CLI', () => {
  let dir: string;
  let cp: ControlPlane | undefined;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-cli-'));
  });

  afterEach(async () => {
    await cp?.close();
    cp = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('documents its options in --help', async () => {
    const { out, io: o } = io();
    expect(await runCli(['--help'], o)).toEqual({ exitCode: 0 });
    for (const flag of ['--listen', '--plaintext', '--root-cert-out', '--resources', '--token', '--ca-root-cert', '--ca-root-key', '--cert-ttl', '--intermediate']) {
      expect(out.stdout).toContain(flag);
    }
    expect(out.stdout).toContain('127.0.0.1:15012');
  });

  it('refuses bad arguments', async () => {
    const a = io();
    expect(await runCli(['--bogus'], a.io)).toEqual({ exitCode: 1 });
    expect(a.out.stderr).toMatch(/unknown option '--bogus'/);
    const b = io();
    expect(await runCli(['--cert-ttl', 'forever'], b.io)).toEqual({ exitCode: 2 });
    expect(b.out.stderr).toMatch(/invalid duration "forever"/);
    const c = io();
    expect(await runCli(['--ca-root-cert', '/nonexistent'], c.io)).toEqual({ exitCode: 2 });
    const d = io();
    expect(await runCli(['--listen', 'nonsense', '--plaintext'], d.io)).toEqual({ exitCode: 1 });
    expect(d.out.stderr).toMatch(/host:port/);
  });

  it('starts on a free port with TLS, a token, a resource directory and a root certificate file', async () => {
    fs.writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ '@type': TypeUrl.Cluster, name: 'from-file', connect_timeout: '1s' }));
    const rootOut = path.join(dir, 'out', 'root-cert.pem');
    const { out, io: o } = io();
    const outcome = await runCli(
      ['--listen', '127.0.0.1:0', '--token', 't0k', '--resources', dir, '--root-cert-out', rootOut, '--cert-ttl', '2h', '--ca-key-type', 'ecdsa', '--intermediate'],
      o,
    );
    expect('controlPlane' in outcome).toBe(true);
    cp = (outcome as { controlPlane: ControlPlane }).controlPlane;
    const m = /^listening on (127\.0\.0\.1:(\d+)) \(TLS\)\n/.exec(out.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBeGreaterThan(0);
    expect(m![1]).toBe(cp.address);
    const root = fs.readFileSync(rootOut, 'utf8');

    const target = { address: m![1]!, tls: true, rootCertPem: root };
    const c = openSotw(target, { token: 't0k' });
    try {
      c.request({ type_url: TypeUrl.Cluster });
      const res = await c.next();
      expect(res.resources).toHaveLength(1);
    } finally {
      c.close();
    }
    const { csrPem } = await generateCsr({ spiffeId: 'spiffe://cluster.local/ns/a/sa/b' });
    const chain = await createCertificate(target, { csr: csrPem, validitySeconds: 24 * 3600 }, { token: 't0k' });
    expect(chain).toHaveLength(3);
    expect(chain[2]).toBe(root);
    expect(cp.ca.requests().at(-1)!.ttlSeconds).toBe(7200);
    expect(out.stderr).toMatch(/ads: sotw-1 connected/);
  });

  it('parses durations', () => {
    expect(parseDurationSeconds('24h')).toBe(86400);
    expect(parseDurationSeconds('1h30m')).toBe(5400);
    expect(parseDurationSeconds('90')).toBe(90);
    expect(parseDurationSeconds('1500ms')).toBe(1.5);
    expect(() => parseDurationSeconds('1h 30m')).toThrow();
    expect(() => parseDurationSeconds('')).toThrow();
  });
});
