import { describe, expect, it } from 'vitest';
import { formatGoDuration, formatProtoDuration, parseAnyDuration, parseGoDuration } from './duration.js';

describe('durations', () => {
  it("parses Go's time.ParseDuration syntax", () => {
    expect(parseGoDuration('5s')).toBe(5000);
    expect(parseGoDuration('1h30m')).toBe(5_400_000);
    expect(parseGoDuration('100ms')).toBe(100);
    expect(parseGoDuration('1.5h')).toBe(5_400_000);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('-2s')).toBe(-2000);
    expect(parseGoDuration('10')).toBeUndefined();
    expect(parseGoDuration('s')).toBeUndefined();
    expect(parseGoDuration('5 s')).toBeUndefined();
    expect(parseGoDuration('5d')).toBeUndefined();
  });

  it('formats and parses proto3 JSON durations', () => {
    expect(formatProtoDuration(2000)).toBe('2s');
    expect(formatProtoDuration(100)).toBe('0.100s');
    expect(formatProtoDuration(1.5)).toBe('0.001500s');
    expect(parseAnyDuration('0.100s')).toBe(100);
    expect(parseAnyDuration('90s')).toBe(90_000);
    expect(parseAnyDuration('1m')).toBe(60_000);
    expect(parseAnyDuration('soon')).toBeUndefined();
  });

  it("prints like Go's Duration.String()", () => {
    expect(formatGoDuration(5000)).toBe('5s');
    expect(formatGoDuration(5_400_000)).toBe('1h30m0s');
    expect(formatGoDuration(250)).toBe('250ms');
  });
});
