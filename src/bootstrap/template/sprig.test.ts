import { describe, expect, it } from 'vitest';

import { parseTemplate, sprigFuncs } from './index.js';

const funcs = sprigFuncs({ getenv: (n) => ({ HOME: '/root', POD: 'p1' })[n] });

function render(text: string, data: unknown = {}): string {
  return parseTemplate('t', text, funcs).execute(data);
}

function fails(text: string, data: unknown = {}): string {
  try {
    render(text, data);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected failure');
}

describe('sprig: defaults and flow', () => {
  it('default / empty / coalesce / ternary / all / any', () => {
    expect(render('{{ .x | default "d" }}|{{ .y | default "d" }}|{{ default 5 0 }}|{{ default 5 }}', { y: 'v' })).toBe(
      'd|v|5|5',
    );
    expect(render('{{ empty "" }} {{ empty 0 }} {{ empty .m }} {{ empty .x }} {{ empty list }} {{ empty "a" }}', { m: {} })).toBe(
      'true true true true true false',
    );
    expect(render('{{ coalesce 0 "" .x "z" }}|{{ coalesce 0 }}')).toBe('z|<no value>');
    expect(render('{{ ternary "y" "n" true }}|{{ ternary "y" "n" .f }}', { f: false })).toBe('y|n');
    expect(render('{{ all 1 "a" }} {{ all 1 0 }} {{ any 0 "" 1 }} {{ any }}')).toBe('true false true false');
  });

  it('checks argument types like Go', () => {
    expect(fails('{{ ternary "a" "b" "notbool" }}')).toContain('expected bool; found "notbool"');
    expect(fails('{{ ternary "a" "b" .s }}', { s: 'x' })).toContain('wrong type for value; expected bool; got string');
    expect(fails('{{ hasKey "str" "a" }}')).toContain(`can't handle "str" for arg of type map[string]interface {}`);
    expect(fails('{{ repeat "x" "y" }}')).toContain('expected integer; found "x"');
    expect(fails('{{ trim }}')).toContain('wrong number of args for trim: want 1 got 0');
  });

  it('fail and unsupported functions raise execution errors', () => {
    expect(fails('{{ fail "custom failure" }}')).toBe(
      'template: t:1:3: executing "t" at <fail "custom failure">: error calling fail: custom failure',
    );
    // mentioned but not executed: parses and renders
    expect(render('{{ if false }}{{ now }}{{ end }}ok')).toBe('ok');
    expect(fails('{{ semverCompare ">1" "2" }}')).toContain('function "semverCompare" is not supported');
  });
});

describe('sprig: strings', () => {
  it('basic string functions', () => {
    expect(
      render(
        '{{ trim "  a b  " }}|{{ lower "ABC" }}|{{ upper "abc" }}|{{ replace "a" "b" "banana" }}|' +
          '{{ contains "an" "banana" }}|{{ hasPrefix "ba" "banana" }}|{{ hasSuffix "na" "banana" }}',
      ),
    ).toBe('a b|abc|ABC|bbnbnb|true|true|true');
    expect(render('{{ "banana" | contains "nan" }} {{ "x-y" | replace "-" "_" }}')).toBe('true x_y');
  });

  it('quote / squote / cat / toString', () => {
    expect(render('{{ quote "a\\"b" 1 .missing }}|{{ squote "a" 2 }}|{{ cat "a" 1 nil "b" }}')).toBe(
      '"a\\"b" "1"|\'a\' \'2\'|a 1 b',
    );
    expect(render('{{ toString 1.5 }}|{{ toString .b }}|{{ toString .l }}', { b: true, l: [1, 'x'] })).toBe('1.5|true|[1 x]');
  });

  it('join / split / splitList / splitn', () => {
    expect(render('{{ join "," .l }}|{{ join "-" (list 1 "a" nil 2) }}', { l: ['x', 'y'] })).toBe('x,y|1-a-2');
    expect(render('{{ split "." "a.b.c" }}|{{ (split "." "a.b")._1 }}|{{ splitList "," "a,b" }}')).toBe(
      'map[_0:a _1:b _2:c]|b|[a b]',
    );
    expect(render('{{ splitn "." 2 "a.b.c" }}')).toBe('map[_0:a _1:b.c]');
  });

  it('formatting helpers', () => {
    expect(render('{{ indent 2 "a\\nb" }}|{{ nindent 2 "x" }}|{{ repeat 3 "ab" }}')).toBe('  a\n  b|\n  x|ababab');
    expect(render('{{ substr 1 3 "hello" }}|{{ trunc 3 "hello" }}|{{ trunc -2 "hello" }}')).toBe('el|hel|lo');
    expect(render('{{ title "hello world" }}|{{ untitle "Hello World" }}|{{ abbrev 5 "hello world" }}')).toBe(
      'Hello World|hello world|he...',
    );
    expect(render('{{ initials "John Doe" }}|{{ nospace " a b " }}|{{ plural "one" "many" 2 }}')).toBe('JD|ab|many');
    expect(render('{{ snakecase "FirstName" }}|{{ camelcase "http_server" }}|{{ kebabcase "MyHTTPServer" }}')).toBe(
      'first_name|HttpServer|my-http-server',
    );
    expect(render('{{ swapcase "Hello World" }}|{{ wrap 5 "hello world foo" }}')).toBe('hELLO wORLD|hello\nworld\nfoo');
    expect(render('{{ trimAll "$" "$5.00$" }}|{{ trimPrefix "-" "-x" }}|{{ trimSuffix "-" "x-" }}')).toBe('5.00|x|x');
  });

  it('encodings and hashes', () => {
    expect(render('{{ b64enc "hello" }}|{{ b64dec "aGVsbG8=" }}|{{ b64dec "!!" }}')).toBe(
      'aGVsbG8=|hello|illegal base64 data at input byte 0',
    );
    expect(render('{{ b32enc "hi" }}|{{ b32dec "NBUQ====" }}')).toBe('NBUQ====|hi');
    expect(render('{{ sha256sum "hello" }}')).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    expect(render('{{ sha1sum "a" }}|{{ adler32sum "hello" }}')).toBe('86f7e437faa5a7fce15d1ddcb9eaeaea377667b8|103547413');
  });

  it('regular expressions', () => {
    expect(render('{{ regexMatch "^a.c$" "abc" }}|{{ regexFind "[0-9]+" "ab123cd45" }}|{{ regexFindAll "[0-9]" "a1b2c3" -1 }}')).toBe(
      'true|123|[1 2 3]',
    );
    expect(render('{{ regexFindAll "[0-9]" "a1b2c3" 2 }}|{{ regexSplit "z+" "pizza" -1 }}|{{ regexQuoteMeta "1.5+2" }}')).toBe(
      '[1 2]|[pi a]|1\\.5\\+2',
    );
    expect(render('{{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }}|{{ regexReplaceAllLiteral "a(x*)b" "-ab-axxb-" "${1}" }}')).toBe(
      '-W-xxW-|-${1}-${1}-',
    );
    expect(render('{{ regexReplaceAll "a(?P<x>x*)b" "axxb" "<$x>" }}|{{ regexReplaceAll "a(x*)b" "axb" "$1W" }}')).toBe('<xx>|');
  });
});

describe('sprig: numbers and conversions', () => {
  it('integer math (int64) and conversions', () => {
    expect(render('{{ add 1 2 3 }}|{{ sub 5 3 }}|{{ mul 2 3 4 }}|{{ div 7 2 }}|{{ mod 7 3 }}|{{ max 1 5 3 }}|{{ min 4 2 }}|{{ add1 "4" }}')).toBe(
      '6|2|24|3|1|5|2|5',
    );
    expect(render('{{ int "12" }}|{{ int 3.9 }}|{{ int "0x10" }}|{{ int "1.0" }}|{{ int64 "abc" }}|{{ atoi "42" }}|{{ atoi "x" }}')).toBe(
      '12|3|16|1|0|42|0',
    );
    expect(render('{{ float64 "1.5" }}|{{ toDecimal "0777" }}|{{ printf "%T" (int "3") }}')).toBe('1.5|511|int');
    expect(fails('{{ div 1 0 }}')).toContain('error calling div: runtime error: integer divide by zero');
  });

  it('float math uses decimal arithmetic like shopspring/decimal', () => {
    expect(render('{{ addf 0.1 0.2 }}|{{ divf 1 3 }}|{{ mulf 1.1 3 }}|{{ subf 1 0.9 }}')).toBe('0.3|0.3333333333333333|3.3|0.1');
    expect(render('{{ floor 1.5 }}|{{ ceil 1.2 }}|{{ round 2.345 2 }}|{{ printf "%T" (ceil 1.2) }}')).toBe('1|2|2.35|float64');
  });

  it('sequences', () => {
    expect(render('{{ until 3 }}|{{ untilStep 0 10 3 }}|{{ seq 3 }}|{{ seq 5 1 }}|{{ seq 1 2 7 }}')).toBe(
      '[0 1 2]|[0 3 6 9]|1 2 3|5 4 3 2 1|1 3 5 7',
    );
  });

  it('duration formats seconds as a Go time.Duration', () => {
    expect(render('{{ duration 95 }}|{{ duration "3600" }}|{{ duration 0 }}')).toBe('1m35s|1h0m0s|0s');
  });
});

describe('sprig: lists and dicts', () => {
  it('list functions', () => {
    const d = { l: [1, 2, 3] };
    expect(render('{{ list 1 "a" }}|{{ first .l }}|{{ last .l }}|{{ rest .l }}|{{ initial .l }}|{{ reverse .l }}', d)).toBe(
      '[1 a]|1|3|[2 3]|[1 2]|[3 2 1]',
    );
    expect(render('{{ append .l 4 }}|{{ prepend .l 0 }}|{{ uniq (list 1 1 2) }}|{{ without .l 2 }}|{{ has 2 .l }}', d)).toBe(
      '[1 2 3 4]|[0 1 2 3]|[1 2]|[1 3]|true',
    );
    expect(render('{{ slice .l 1 }}|{{ slice .l 0 2 }}|{{ concat .l (list 9) }}|{{ compact (list 0 1 "" 2) }}|{{ chunk 2 .l }}', d)).toBe(
      '[2 3]|[1 2]|[1 2 3 9]|[1 2]|[[1 2] [3]]',
    );
    expect(render('{{ sortAlpha (list "b" "a" 3) }}|{{ first (list) }}')).toBe('[3 a b]|<no value>');
    expect(fails('{{ first "str" }}')).toContain('error calling first: Cannot find first on type string');
  });

  it('dict functions', () => {
    const d = { a: 1, b: 2, n: { m: 'deep' } };
    expect(render('{{ dict "a" 1 "b" }}|{{ keys . | sortAlpha }}|{{ values . }}', d)).toBe('map[a:1 b:]|[a b n]|[1 2 map[m:deep]]');
    expect(render('{{ pick . "a" }}|{{ omit . "a" }}|{{ get . "a" }}|{{ get . "z" }}', d)).toBe('map[a:1]|map[b:2 n:map[m:deep]]|1|');
    expect(render('{{ hasKey . "a" }} {{ hasKey . "z" }} {{ hasKey .nil "a" }}', d)).toBe('true false false');
    expect(render('{{ dig "n" "m" "def" . }}|{{ dig "n" "q" "def" . }}', d)).toBe('deep|def');
    expect(render('{{ $_ := set . "c" 3 }}{{ .c }}{{ $_ := unset . "c" }}{{ .c }}', { ...d })).toBe('3<no value>');
    expect(
      render('{{ merge .d .s | toJson }}|{{ mergeOverwrite (dict "a" 1 "n" (dict "x" 1)) (dict "a" 2 "n" (dict "y" 2)) | toJson }}', {
        d: { a: 1, n: { x: 1 } },
        s: { a: 2, b: 3, n: { y: 2 } },
      }),
    ).toBe('{"a":1,"b":3,"n":{"x":1,"y":2}}|{"a":2,"n":{"x":1,"y":2}}');
  });
});

describe('sprig: JSON', () => {
  it('toJson escapes HTML and sorts map keys; toRawJson does not escape', () => {
    const d = { b: '<&>', a: [1, 2.5, null], c: {} };
    expect(render('{{ toJson . }}', d)).toBe('{"a":[1,2.5,null],"b":"\\u003c\\u0026\\u003e","c":{}}');
    expect(render('{{ toRawJson . }}', d)).toBe('{"a":[1,2.5,null],"b":"<&>","c":{}}');
    expect(render('{{ toJson .missing }}|{{ toJson "\\u2028\\t" }}')).toBe('null|"\\u2028\\t"');
    expect(render('{{ toJson .f }}', { f: () => 1 })).toBe('');
    expect(fails('{{ mustToJson .f }}', { f: () => 1 })).toContain('json: unsupported type');
  });

  it('toPrettyJson indents with two spaces', () => {
    expect(render('{{ toPrettyJson . }}', { b: { x: [1, { y: 2 }], e: [] }, a: 1 })).toBe(
      '{\n  "a": 1,\n  "b": {\n    "e": [],\n    "x": [\n      1,\n      {\n        "y": 2\n      }\n    ]\n  }\n}',
    );
  });

  it('fromJson decodes, yielding nil on error', () => {
    expect(render('{{ fromJson "{\\"a\\":[1,2]}" }}|{{ (fromJson "{\\"a\\":1}").a }}|{{ fromJson "bad" }}')).toBe(
      'map[a:[1 2]]|1|<no value>',
    );
    expect(fails('{{ mustFromJson "bad" }}')).toContain('error calling mustFromJson');
  });
});

describe('sprig: reflection, OS, paths, URLs', () => {
  it('typeOf / kindOf / kindIs / typeIs / deepEqual', () => {
    expect(
      render('{{ typeOf 1 }} {{ typeOf 1.5 }} {{ typeOf "s" }} {{ typeOf .l }} {{ typeOf .m }} {{ kindOf .l }} {{ kindIs "map" .m }}', {
        l: [1],
        m: {},
      }),
    ).toBe('int float64 string []interface {} map[string]interface {} slice true');
    expect(render('{{ typeIs "int" 2 }} {{ deepEqual .l (list 1) }} {{ deepEqual .l (list 2) }}', { l: [1] })).toBe('true true false');
  });

  it('env / expandenv use the injected environment', () => {
    expect(render('{{ env "HOME" }}|{{ env "NOPE" }}|{{ expandenv "home=$HOME pod=${POD} x=$NOPE $" }}')).toBe(
      '/root||home=/root pod=p1 x= $',
    );
    expect(parseTemplate('t', '[{{ env "HOME" }}]', sprigFuncs()).execute()).toBe('[]');
  });

  it('paths', () => {
    expect(render('{{ base "/a/b.txt" }}|{{ dir "/a/b.txt" }}|{{ ext "x.tar.gz" }}|{{ clean "a//b/../c/." }}|{{ isAbs "/x" }}')).toBe(
      'b.txt|/a|.gz|a/c|true',
    );
    expect(render('{{ base "" }}|{{ base "/" }}|{{ dir "x" }}|{{ clean "/../a" }}')).toBe('.|/|.|/a');
  });

  it('urlParse / urlJoin', () => {
    expect(render('{{ urlParse "https://u:p@host:8080/p/a?q=1#frag" | toJson }}')).toBe(
      '{"fragment":"frag","host":"host:8080","hostname":"host","opaque":"","path":"/p/a","query":"q=1","scheme":"https","userinfo":"u:p"}',
    );
    expect(render('{{ urlJoin (dict "scheme" "http" "host" "h:1" "path" "/x" "query" "a=b") }}')).toBe('http://h:1/x?a=b');
  });
});
