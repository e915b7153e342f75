import { describe, expect, it } from 'vitest';
import { httpDate, isoUtc } from './time.js';

const MIN = new Date(0).setUTCFullYear(0, 0, 1); // Date.UTC reads years 0-99 as 1900-1999
const MAX = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

// instants that exercise every field's padding and the calendar's edges
const INSTANTS = [
  MIN, MAX, 0, 1, 999, 1000, -1, -86_400_000, Date.UTC(1999, 11, 31, 23, 59, 59, 999), Date.UTC(2000, 1, 29, 12, 0, 0, 5),
  Date.UTC(2026, 11, 6, 2, 55, 5, 123), Date.UTC(2038, 0, 19, 3, 14, 8, 0), new Date(0).setUTCFullYear(100, 0, 1),
];

/** `n` pseudo-random instants between MIN and MAX (seeded). */
function randomInstants(n: number, seed: number): number[] {
  let s = seed;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    out.push(MIN + Math.floor((s / 2 ** 31) * (MAX - MIN)));
  }
  return out;
}

describe('isoUtc', () => {
  it('gives the text toISOString gives, for every instant of years 0000-9999 tried', () => {
    for (const t of [...INSTANTS, ...randomInstants(5000, 7)]) expect(isoUtc(t), String(t)).toBe(new Date(t).toISOString());
  });

  it('hands years outside 0000-9999 to toISOString (six-digit years), and rejects an invalid date as it does', () => {
    const far = Date.UTC(10000, 0, 1);
    expect(isoUtc(far)).toBe('+010000-01-01T00:00:00.000Z');
    expect(isoUtc(Date.UTC(-1, 0, 1))).toBe(new Date(Date.UTC(-1, 0, 1)).toISOString());
    expect(() => isoUtc(Number.NaN)).toThrow(RangeError);
  });
});

describe('httpDate', () => {
  it('gives the IMF-fixdate text toUTCString gives, for every instant of years 1000-9999 tried', () => {
    const valid = [...INSTANTS, ...randomInstants(5000, 11)].filter((t) => new Date(t).getUTCFullYear() >= 1000);
    expect(valid.length).toBeGreaterThan(2000);
    for (const t of valid) expect(httpDate(t), String(t)).toBe(new Date(t).toUTCString());
    expect(httpDate(Date.UTC(2026, 11, 6, 2, 55, 5))).toBe('Sun, 06 Dec 2026 02:55:05 GMT');
  });
});
