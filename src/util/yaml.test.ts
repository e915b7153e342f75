import { describe, expect, it } from 'vitest';
import { parseIstioYaml, parseYaml, toYaml } from './yaml.js';

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

describe('parseIstioYaml (yaml.v2 through sigs.k8s.io/yaml, as Istio reads its configuration)', () => {
  it('takes YAML 1.1 scalars as yaml.v2 does, but leaves sexagesimals and timestamps strings', () => {
    expect(parseIstioYaml('a: yes\nb: Off\nc: on\nd: N\ne: 010\nf: 0b11\ng: 1:20\nh: 2001-12-14\ni: "yes"\n').value).toEqual({
      a: true, b: false, c: true, d: false, e: 8, f: 3, g: '1:20', h: '2001-12-14', i: 'yes',
    });
    expect(parseIstioYaml('base: &b {x: 1}\nm:\n  <<: *b\n  z: 2\n').value).toEqual({ base: { x: 1 }, m: { x: 1, z: 2 } });
  });

  it('keeps the last value of a repeated key, in YAML and JSON, and says a key repeated', () => {
    expect(parseIstioYaml('a: 1\nb: 2\na: 3\n')).toEqual({ value: { a: 3, b: 2 }, repeatedKeys: true });
    expect(parseIstioYaml('{"a": 1, "a": 2}')).toEqual({ value: { a: 2 }, repeatedKeys: true });
    expect(parseIstioYaml('a: 1\nb: 2\n')).toEqual({ value: { a: 1, b: 2 }, repeatedKeys: false });
  });

  it('reads the first document only, and still refuses what is not YAML, saying where', () => {
    expect(parseIstioYaml('a: 1\n---\nb: 2\n').value).toEqual({ a: 1 });
    expect(parseIstioYaml('a: 1\n---\n').value).toEqual({ a: 1 });
    expect(() => parseIstioYaml('a: [1, 2\nb: 3\n')).toThrow(/line \d+, column \d+/);
    expect(() => parseIstioYaml(`a: &x [${'1,'.repeat(10)}1]\n${Array.from({ length: 200 }, (_, i) => `k${i}: *x`).join('\n')}\n`)).toThrow(/alias/i);
  });
});

describe('toYaml', () => {
  it('writes YAML', () => {
    expect(toYaml({ a: 1, b: ['x'] })).toBe('a: 1\nb:\n  - x\n');
  });
});
