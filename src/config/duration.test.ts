import { describe, expect, it } from 'vitest';
import { formatGoDuration, formatProtoDuration, GoDuration, parseAnyDuration, parseGoDuration, parseGoDurationNs } from './duration.js';

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

  it('parses exactly to the nanosecond, with Go\'s int64 range', () => {
    expect(parseGoDurationNs('1.000000001s')).toBe(1_000_000_001n);
    expect(parseGoDurationNs('+2m.5s')).toBe(120_500_000_000n);
    expect(parseGoDurationNs('9223372036854775807ns')).toBe(9_223_372_036_854_775_807n);
    expect(parseGoDurationNs('9223372036854775808ns')).toBeUndefined();
    expect(parseGoDurationNs('-9223372036854775808ns')).toBe(-9_223_372_036_854_775_808n);
    expect(parseGoDurationNs('1µs1μs1us')).toBe(3000n);
    expect(parseGoDurationNs(' 5s')).toBeUndefined(); // Go does not trim; parseGoDuration (env values) does
    expect(parseGoDuration(' 5s ')).toBe(5000);
    expect(parseGoDuration('1.5ns')).toBe(1e-6); // Go drops what is below a nanosecond
    expect(new GoDuration(parseGoDurationNs('1m0.25s')!).String()).toBe('60.25s');
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
