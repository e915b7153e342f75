import { afterEach, describe, expect, it } from 'vitest';
import { stubCommands, type StubCommands } from '../../test/support/stub-commands.js';
import { configureLogging, parseOutputLevels } from '../util/logger.js';
import { RealXtables } from './xtables.js';

const stubs: StubCommands[] = [];
afterEach(() => {
  for (const s of stubs.splice(0)) s.remove();
  configureLogging({ outputLevels: parseOutputLevels('default:info'), write: (l) => process.stdout.write(l) });
});

/** Detects the IPv4 backend with only `scripts` on PATH; the warn lines it logged. */
function detectWith(scripts: Record<string, string>): { iptables: string; warnings: string[] } {
  const lines: string[] = [];
  configureLogging({ outputLevels: parseOutputLevels('default:info'), asJson: false, write: (l) => void lines.push(l) });
  const stub = stubCommands(scripts);
  stubs.push(stub);
  const variant = new RealXtables({ forceBinary: '', env: { PATH: stub.dir } }).detect(4);
  return { iptables: variant.iptables, warnings: lines.filter((l) => l.includes('\twarn\t')) };
}

const NFT = {
  'iptables-nft-save': 'if [ "$1" = --version ]; then echo "iptables-nft-save v1.8.9 (nf_tables)"; fi',
  'iptables-nft': 'exit 0',
};

describe('RealXtables.detect', () => {
  it('says at warn when the legacy backend, which holds the rules, cannot be used for the xtables lock, and takes nft', () => {
    const r = detectWith({
      // legacy holds rules (the node chose it), but another process holds the xtables lock past the probe's wait
      'iptables-legacy-save': 'if [ "$1" = --version ]; then echo "iptables-legacy-save v1.8.9 (legacy)"; else printf "*nat\\n-A PREROUTING -j RETURN\\nCOMMIT\\n"; fi',
      'iptables-legacy': 'echo "Another app is currently holding the xtables lock. Stopped waiting after 30s." >&2; exit 4',
      ...NFT,
    });
    expect(r.iptables).toBe('iptables-nft');
    expect(r.warnings).toEqual([
      expect.stringContaining('cannot use iptables-legacy, trying the next iptables backend: iptables-legacy has no loaded kernel support and cannot be used: Another app is currently holding the xtables lock'),
    ]);
  });

  it('passes over a backend that is not installed quietly', () => {
    const r = detectWith(NFT);
    expect(r.iptables).toBe('iptables-nft');
    expect(r.warnings).toEqual([]);
  });
});
