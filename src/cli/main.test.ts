import { describe, expect, it } from 'vitest';
import { splitUnknown } from './main.js';

describe('splitUnknown', () => {
  it('strips unknown flags the way pflag does, keeping operands', () => {
    expect(splitUnknown(['sidecar', '--future=1', '--other', 'value', '--bool-flag', '--x'])).toEqual({
      operands: ['sidecar'],
      unknown: ['--future=1', '--other', 'value', '--bool-flag', '--x'],
    });
    expect(splitUnknown(['--unknown', 'router'])).toEqual({ operands: [], unknown: ['--unknown', 'router'] });
    expect(splitUnknown(['router', '--', '--not-a-flag'])).toEqual({ operands: ['router', '--not-a-flag'], unknown: [] });
  });
});
