import { describe, expect, it } from 'vitest';
import { parseYaml, toYaml } from './yaml.js';

describe('parseYaml', () => {
  it('reads JSON as JSON, and YAML (block and flow style) as YAML', () => {
    expect(parseYaml('{"a": 1, "b": [true, null, "x"], "c": {"d": 1.5}}')).toEqual({ a: 1, b: [true, null, 'x'], c: { d: 1.5 } });
    expect(parseYaml('a: 1\nb:\n  - x\n')).toEqual({ a: 1, b: ['x'] });
    // flow-style YAML looks like JSON but is not: the YAML parser takes it
    expect(parseYaml('{a: 1, b: [x, y]}')).toEqual({ a: 1, b: ['x', 'y'] });
    expect(parseYaml('  \n')).toBeNull();
  });

  it('rejects a repeated key in JSON as the YAML parser does, wherever it is', () => {
    expect(() => parseYaml('{"a": 1, "a": 2}')).toThrow(/Map keys must be unique/);
    expect(() => parseYaml('{"outer": {"k": 1, "x": {"k": 2}, "k": 3}}')).toThrow(/Map keys must be unique/);
    // the same key spelled with an escape is the same key
    expect(() => parseYaml('{"ab": 1, "\\u0061b": 2}')).toThrow(/Map keys must be unique/);
    // the same name in sibling objects, or as a value, is no repeat
    expect(parseYaml('{"a": {"k": 1}, "b": {"k": "k"}, "k": ["k"]}')).toEqual({ a: { k: 1 }, b: { k: 'k' }, k: ['k'] });
    // keys holding quotes, colons and braces do not confuse the scan
    expect(parseYaml('{"x\\": {": 1, "y": "}{:"}')).toEqual({ 'x": {': 1, y: '}{:' });
  });

  it('keeps the last value of a repeated key when uniqueKeys is off', () => {
    expect(parseYaml('{"a": 1, "a": 2}', { uniqueKeys: false })).toEqual({ a: 2 });
  });

  it("reports bad input with the YAML parser's message", () => {
    expect(() => parseYaml('{"a": 1', { prettyErrors: true })).toThrow(/flow/i);
  });
});

describe('toYaml', () => {
  it('writes YAML', () => {
    expect(toYaml({ a: 1, b: ['x'] })).toBe('a: 1\nb:\n  - x\n');
  });
});
