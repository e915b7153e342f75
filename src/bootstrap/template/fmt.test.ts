import { describe, expect, it } from 'vitest';

import { formatFloat, formatValue, quote, quoteRune, sprint, sprintf, sprintln } from './fmt.js';
import { marshal } from './json.js';
import { GoFloat } from './values.js';

// Expected strings are Go's outputs (fmt / strconv / encoding/json).
describe('strconv.FormatFloat', () => {
  it('shortest %v / %g', () => {
    expect(formatFloat(1e6, 'g', -1)).toBe('1e+06');
    expect(formatFloat(123456, 'g', -1)).toBe('123456');
    expect(formatFloat(0.0001, 'g', -1)).toBe('0.0001');
    expect(formatFloat(0.00001, 'g', -1)).toBe('1e-05');
    expect(formatFloat(1e100, 'g', -1)).toBe('1e+100');
    expect(formatFloat(-0, 'g', -1)).toBe('-0');
    expect(formatFloat(NaN, 'g', -1)).toBe('NaN');
    expect(formatFloat(-Infinity, 'g', -1)).toBe('-Inf');
    expect(formatFloat(5e-324, 'g', -1)).toBe('5e-324');
  });

  it('rounds exactly, half to even', () => {
    expect(formatFloat(2.5, 'f', 0)).toBe('2');
    expect(formatFloat(3.5, 'f', 0)).toBe('4');
    expect(formatFloat(0.5, 'f', 0)).toBe('0');
    expect(formatFloat(1.005, 'f', 2)).toBe('1.00');
    expect(formatFloat(2.675, 'f', 2)).toBe('2.67');
    expect(formatFloat(0.1, 'f', 20)).toBe('0.10000000000000000555');
    expect(formatFloat(1e21, 'f', 6)).toBe('1000000000000000000000.000000');
    expect(formatFloat(123456.789, 'e', 6)).toBe('1.234568e+05');
    expect(formatFloat(123, 'g', 2)).toBe('1.2e+02');
    expect(formatFloat(0.1, 'g', 17)).toBe('0.10000000000000001');
  });
});

describe('quoting', () => {
  it('strconv.Quote / QuoteToASCII / QuoteRune', () => {
    expect(quote('hi\x00é☺"\\\n')).toBe('"hi\\x00é☺\\"\\\\\\n"');
    expect(quote('é☺', true)).toBe('"\\u00e9\\u263a"');
    expect(quote('\u{1F600}\u2028', true)).toBe('"\\U0001f600\\u2028"');
    expect(quoteRune(0x27)).toBe("'\\''");
    expect(quoteRune(0x263a)).toBe("'☺'");
  });
});

describe('Sprint / Sprintln / Sprintf', () => {
  it('Sprint adds spaces only between non-string operands', () => {
    expect(sprint([1, 2, 'a', 'b', 3, null])).toBe('1 2ab3 <nil>');
    expect(sprintln(['a', 1, null])).toBe('a 1 <nil>\n');
  });

  it('formats verbs, flags, widths and errors', () => {
    expect(sprintf('%d|%5d|%-5d|%05d|%+d|%x|%X|%#x|%o|%b|%c|%q|%U', [42, 42, 42, -42, 5, 255, 255, 255, 8, 5, 65, 65, 0x1f600])).toBe(
      '42|   42|42   |-0042|+5|ff|FF|0xff|10|101|A|\'A\'|U+1F600',
    );
    expect(sprintf('%s|%q|%v|%6.2f|%-8.3e|%g|%t|%%', ['s', 'q', [1, 'x'], Math.PI, 1234.5, 1e-7, true])).toBe(
      's|"q"|[1 x]|  3.14|1.234e+03|1e-07|true|%',
    );
    expect(sprintf('%d %s', ['x', 1])).toBe('%!d(string=x) %!s(int=1)');
    expect(sprintf('%d', [])).toBe('%!d(MISSING)');
    expect(sprintf('x', [1, 'y'])).toBe('x%!(EXTRA int=1, string=y)');
    expect(sprintf('%', [])).toBe('%!(NOVERB)');
    expect(sprintf('%z', [1])).toBe('%!z(int=1)');
    expect(sprintf('%[2]d %[1]d', [1, 2])).toBe('2 1');
    expect(sprintf('%*d|%.*f', [4, 7, 1, 2.25])).toBe('   7|2.2');
    expect(sprintf('%v|%+v|%#v', [{ b: 1, a: 'x' }, { a: [null] }, [1, 'x', null]])).toBe(
      'map[a:x b:1]|map[a:[<nil>]]|[]interface {}{1, "x", interface {}(nil)}',
    );
    expect(sprintf('%T %T %T %T', [1, 1.5, new GoFloat(2), 'x'])).toBe('int float64 float64 string');
  });

  it('formatValue prints like %v', () => {
    expect(formatValue(2 ** 60)).toBe('1152921504606846976');
    expect(formatValue(1e18)).toBe('1000000000000000000');
    expect(formatValue(1e20)).toBe('1e+20'); // beyond int64: float64
    expect(formatValue(new GoFloat(1e20))).toBe('1e+20');
    expect(formatValue(1e21)).toBe('1e+21');
  });
});

describe('encoding/json Marshal', () => {
  it('matches Go output', () => {
    expect(marshal({ b: [1, 1.5, 'x<y>&', null, true], a: {} })).toBe('{"a":{},"b":[1,1.5,"x\\u003cy\\u003e\\u0026",null,true]}');
    expect(marshal({ s: '\u2028\b\f\x01' })).toBe('{"s":"\\u2028\\b\\f\\u0001"}');
    expect(marshal(new Uint8Array([104, 105]))).toBe('"aGk="');
    expect(marshal([1e21, 1e-7, 0.000001, 2 ** 60])).toBe('[1e+21,1e-7,0.000001,1152921504606846976]');
    expect(() => marshal(NaN)).toThrow('json: unsupported value: NaN');
    expect(marshal({ a: [] }, { indent: '  ' })).toBe('{\n  "a": []\n}');
  });
});
