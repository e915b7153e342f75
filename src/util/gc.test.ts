import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { describe, expect, it, vi } from 'vitest';
import { collectAll, collectYoung, GcPacer } from './gc.js';

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('GcPacer', () => {
  it('asks for one collection per threshold crossed, on the next turn of the event loop, and counts again from zero', async () => {
    let collections = 0;
    const pacer = new GcPacer(1000, () => collections++);
    pacer.note(600);
    await nextTurn();
    expect(collections).toBe(0);
    pacer.note(400);
    // not in the caller's turn: its buffers are still live there
    expect(collections).toBe(0);
    // more bytes before the collection runs do not ask for a second one
    pacer.note(5000);
    await nextTurn();
    expect(collections).toBe(1);
    pacer.note(999);
    await nextTurn();
    expect(collections).toBe(1);
    pacer.note(1);
    await nextTurn();
    expect(collections).toBe(2);
  });
});

/** Collections of `kind` seen while `run` is observed, with their start and end times. */
async function observingCollections<T>(kind: number, run: (seen: { start: number; end: number }[]) => Promise<T>): Promise<T> {
  const seen: { start: number; end: number }[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === kind) seen.push({ start: e.startTime, end: e.startTime + e.duration });
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  try {
    return await run(seen);
  } finally {
    observer.disconnect();
  }
}

/** Waits until a collection that began and ended within [t0, t1] has been reported. */
async function expectCollectionWithin(seen: readonly { start: number; end: number }[], t0: number, t1: number): Promise<void> {
  await vi.waitFor(() => expect(seen.some((g) => g.start >= t0 && g.end <= t1)).toBe(true), { timeout: 2000, interval: 10 });
}

describe('collectYoung', () => {
  it('runs a young-generation collection in this process, inside the call', async () => {
    collectYoung(); // the first call also sets up V8's gc function
    await observingCollections(constants.NODE_PERFORMANCE_GC_MINOR, async (minor) => {
      const t0 = performance.now();
      collectYoung();
      const t1 = performance.now();
      await expectCollectionWithin(minor, t0, t1);
    });
  });
});

describe('collectAll', () => {
  it('runs a full collection inside the call, freeing what reached the old generation', async () => {
    collectAll(); // sets up V8's gc function
    await observingCollections(constants.NODE_PERFORMANCE_GC_MAJOR, async (major) => {
      const holder: { old?: object[] } = { old: Array.from({ length: 300_000 }, (_, i) => ({ i })) };
      collectAll(); // survivors of two collections are in the old generation
      collectAll();
      const held = process.memoryUsage().heapUsed;
      delete holder.old;
      const t0 = performance.now();
      collectAll();
      const t1 = performance.now();
      expect(held - process.memoryUsage().heapUsed).toBeGreaterThan(5 * 1024 * 1024);
      await expectCollectionWithin(major, t0, t1);
    });
  });
});
