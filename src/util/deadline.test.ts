import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { deadline } from './deadline.js';
import { collectAll } from './gc.js';

describe('deadline', () => {
  it('aborts after its time with the reason AbortSignal.timeout gives', async () => {
    const d = deadline(50);
    expect(d.signal.aborted).toBe(false);
    await sleep(120);
    expect(d.signal.aborted).toBe(true);
    expect(d.expired).toBe(true);
    expect((d.signal.reason as DOMException).name).toBe('TimeoutError');
  });

  it('aborts with a parent, with its reason, and stops listening to the others', async () => {
    const a = new AbortController();
    const b = new AbortController();
    const d = deadline(50, a.signal, undefined, b.signal);
    a.abort(new Error('stopping'));
    expect(d.signal.aborted).toBe(true);
    expect((d.signal.reason as Error).message).toBe('stopping');
    await sleep(120);
    expect(d.expired).toBe(false);
    let heard = 0;
    d.signal.addEventListener('abort', () => heard++);
    b.abort();
    expect(heard).toBe(0);
  });

  it('is aborted at once when a parent already is', () => {
    const d = deadline(10_000, AbortSignal.abort('gone'));
    expect(d.signal.aborted).toBe(true);
    expect(d.signal.reason).toBe('gone');
    d.clear();
  });

  it('cleared, it never fires', async () => {
    const d = deadline(30);
    d.clear();
    await sleep(80);
    expect(d.signal.aborted).toBe(false);
  });

  it('still fires after a full collection when nothing but the caller holds its signal', async () => {
    const parent = new AbortController();
    const signal = deadline(100, parent.signal).signal;
    collectAll();
    await sleep(50);
    collectAll();
    await sleep(200);
    expect(signal.aborted).toBe(true);
  });
});
