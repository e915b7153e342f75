import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EnvoyLaunch } from '../config/load.js';
import { buildEnvoyArgs, readBootstrapOverride, splitComponentLog } from './envoy-args.js';

// Istio's pkg/envoy TestEnvoyArgs: default ProxyConfig, concurrency 8, --config-yaml {"key":"value"}.
const base: EnvoyLaunch = {
  binaryPath: '/usr/local/bin/envoy',
  concurrency: 8,
  logLevel: 'trace',
  componentLogLevel: 'misc:error',
  drainDurationSeconds: 45,
  terminationDrainMs: 5000,
  minimumDrainMs: 5000,
  exitOnZeroActiveConnections: false,
  fileFlushIntervalMs: 1000,
  fileFlushMinSizeKb: 0,
  skipDeprecatedLogs: false,
  enableCoreDump: false,
  bootstrapOverride: '',
  adminPort: 15000,
};
const common = ['-c', 'test.json', '--drain-time-s', '45', '--drain-strategy', 'immediate', '--local-address-ip-version', 'v4'];

describe('buildEnvoyArgs', () => {
  const args = (launch: Partial<EnvoyLaunch>, ipv6 = false): string[] =>
    buildEnvoyArgs({ launch: { ...base, ...launch }, bootstrapPath: 'test.json', ipv6, configOverrideJson: '{"key":"value"}' });

  it('default case', () => {
    expect(args({})).toEqual([
      ...common, '--file-flush-interval-msec', '1000', '--disable-hot-restart', '--allow-unknown-static-fields',
      '-l', 'trace', '--component-log-level', 'misc:error', '--config-yaml', '{"key":"value"}', '--concurrency', '8',
    ]);
  });

  it('deprecated-logs case', () => {
    expect(args({ skipDeprecatedLogs: true })).toEqual([
      ...common, '--file-flush-interval-msec', '1000', '--disable-hot-restart', '--allow-unknown-static-fields',
      '-l', 'trace', '--component-log-level', 'misc:error', '--skip-deprecated-logs', '--config-yaml', '{"key":"value"}', '--concurrency', '8',
    ]);
  });

  it('file-flush case', () => {
    expect(args({ fileFlushMinSizeKb: 128, fileFlushIntervalMs: 10_000 })).toEqual([
      ...common, '--file-flush-interval-msec', '10000', '--disable-hot-restart', '--allow-unknown-static-fields',
      '--file-flush-min-size-kb', '128', '-l', 'trace', '--component-log-level', 'misc:error', '--config-yaml', '{"key":"value"}', '--concurrency', '8',
    ]);
  });

  it('takes component levels from proxyLogLevel over proxyComponentLogLevel, last bare level winning', () => {
    const a = args({ logLevel: 'debug,info,upstream:debug,misc:error', componentLogLevel: 'ignored:trace' });
    expect(a.slice(a.indexOf('-l'), a.indexOf('-l') + 4)).toEqual(['-l', 'info', '--component-log-level', 'upstream:debug,misc:error']);
    expect(a).not.toContain('ignored:trace');
  });

  it('omits concurrency 0 and the override when empty, uses v6 for an all-IPv6 node, adds core dumps', () => {
    const a = buildEnvoyArgs({ launch: { ...base, concurrency: 0, enableCoreDump: true }, bootstrapPath: 'b.json', ipv6: true, configOverrideJson: '' });
    expect(a).not.toContain('--concurrency');
    expect(a).not.toContain('--config-yaml');
    expect(a).toContain('--enable-core-dump');
    expect(a[a.indexOf('--local-address-ip-version') + 1]).toBe('v6');
  });

  it('splits levels and drops malformed items', () => {
    expect(splitComponentLog('warning,a:b:c,misc:error')).toEqual({ level: 'warning', components: ['misc:error'], dropped: ['a:b:c'] });
  });
});

describe('readBootstrapOverride', () => {
  it('converts YAML to JSON with $(HOST_IP) substituted, bracketing IPv6 once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pa-override-'));
    try {
      const f = join(dir, 'o.yaml');
      writeFileSync(f, 'key: value\nip: "[$(HOST_IP)]:8126"\nip2: "$(HOST_IP):8126"\n');
      expect(readBootstrapOverride(f, '169.254.169.254')).toBe('{"ip":"[169.254.169.254]:8126","ip2":"169.254.169.254:8126","key":"value"}');
      expect(readBootstrapOverride(f, 'fd00::1')).toBe('{"ip":"[fd00::1]:8126","ip2":"[fd00::1]:8126","key":"value"}');
      writeFileSync(f, 'key: [unclosed\n');
      expect(() => readBootstrapOverride(f, '')).toThrow(/ISTIO_BOOTSTRAP_OVERRIDE: .*o.yaml is not valid/);
      expect(() => readBootstrapOverride(join(dir, 'missing.yaml'), '')).toThrow(/cannot read .*missing.yaml/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
