import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { configureLogging, parseOutputLevels } from '../util/logger.js';
import { RealXtables } from './xtables.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A PATH holding stand-ins for the xtables binaries: name -> shell script body. */
function binaries(scripts: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'pa-xtables-'));
  dirs.push(dir);
  for (const [name, body] of Object.entries(scripts)) {
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  }
  return dir;
}

describe('RealXtables.detect', () => {
  it('says at warn when the legacy backend, which holds the rules, cannot be used for the xtables lock, and takes nft', () => {
    const lines: string[] = [];
    configureLogging({ outputLevels: parseOutputLevels('default:info'), asJson: false, write: (l) => void lines.push(l) });
    const path = binaries({
      // legacy holds rules (the node chose it), but another process holds the xtables lock past the probe's wait
      'iptables-legacy-save': 'if [ "$1" = --version ]; then echo "iptables-legacy-save v1.8.9 (legacy)"; else printf "*nat\\n-A PREROUTING -j RETURN\\nCOMMIT\\n"; fi',
      'iptables-legacy': 'echo "Another app is currently holding the xtables lock. Stopped waiting after 30s." >&2; exit 4',
      'iptables-nft-save': 'if [ "$1" = --version ]; then echo "iptables-nft-save v1.8.9 (nf_tables)"; fi',
      'iptables-nft': 'exit 0',
    });
    try {
      const variant = new RealXtables({ forceBinary: '', env: { PATH: path } }).detect(4);
      expect(variant.iptables).toBe('iptables-nft');
      expect(lines.filter((l) => l.includes('\twarn\t'))).toEqual([
        expect.stringContaining('cannot use iptables-legacy, trying the next iptables backend: iptables-legacy has no loaded kernel support and cannot be used: Another app is currently holding the xtables lock'),
      ]);
    } finally {
      configureLogging({ outputLevels: parseOutputLevels('default:info'), write: (l) => process.stdout.write(l) });
    }
  });

  it('passes over a backend that is not installed quietly', () => {
    const lines: string[] = [];
    configureLogging({ outputLevels: parseOutputLevels('default:info'), asJson: false, write: (l) => void lines.push(l) });
    const path = binaries({
      'iptables-nft-save': 'if [ "$1" = --version ]; then echo "iptables-nft-save v1.8.9 (nf_tables)"; fi',
      'iptables-nft': 'exit 0',
    });
    try {
      expect(new RealXtables({ forceBinary: '', env: { PATH: path } }).detect(4).iptables).toBe('iptables-nft');
      expect(lines.filter((l) => l.includes('\twarn\t'))).toEqual([]);
    } finally {
      configureLogging({ outputLevels: parseOutputLevels('default:info'), write: (l) => process.stdout.write(l) });
    }
  });
});
