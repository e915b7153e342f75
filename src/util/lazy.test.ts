import { describe, expect, it } from 'vitest';
import { lazy } from './lazy.js';

describe('lazy', () => {
  it('loads once and shares the result', async () => {
    let loads = 0;
    const get = lazy(async () => ++loads);
    expect(await Promise.all([get(), get(), get()])).toEqual([1, 1, 1]);
    expect(await get()).toBe(1);
  });

  it('forgets a failed load, so the next call tries again', async () => {
    let loads = 0;
    const get = lazy(async () => {
      loads++;
      if (loads === 1) throw new Error('transient');
      return 'loaded';
    });
    await expect(get()).rejects.toThrow('transient');
    expect(await get()).toBe('loaded');
    expect(loads).toBe(2);
  });
});
