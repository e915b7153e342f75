import { describe, expect, it } from 'vitest';
import { MemoryGovernor, memoryLimitFrom } from './memory-governor.js';

describe('memory limit', () => {
  it('GOMEMLIMIT wins over the cgroup limit; a cgroup "limit" of ~2^63 is none', () => {
    expect(memoryLimitFrom(256 * 2 ** 20, 512 * 2 ** 20)).toEqual({ bytes: 256 * 2 ** 20, source: 'GOMEMLIMIT' });
    expect(memoryLimitFrom(0, 512 * 2 ** 20)).toEqual({ bytes: 512 * 2 ** 20, source: 'cgroup' });
    expect(memoryLimitFrom(0, 9223372036854771712)).toEqual({ bytes: undefined, source: 'none' });
    expect(memoryLimitFrom(0, 0)).toEqual({ bytes: undefined, source: 'none' });
  });

  it('under pressure drops the registered caches and collects; without a limit does nothing', () => {
    const dropped: string[] = [];
    const tight = new MemoryGovernor({ bytes: 1024 * 1024, source: 'GOMEMLIMIT' });
    tight.onPressure(() => dropped.push('dns'));
    tight.onPressure(() => {
      throw new Error('a dropper that fails does not stop the others');
    });
    tight.onPressure(() => dropped.push('xds'));
    expect(tight.check()).toBe(true);
    expect(dropped).toEqual(['dns', 'xds']);
    expect(tight.view()).toMatchObject({ limitBytes: 1024 * 1024, source: 'GOMEMLIMIT', heapLimitBytes: 786432, pressureEpisodes: 1 });
    const none = new MemoryGovernor({ bytes: undefined, source: 'none' });
    none.onPressure(() => dropped.push('never'));
    expect(none.check()).toBe(false);
    expect(dropped).not.toContain('never');
  });
});
