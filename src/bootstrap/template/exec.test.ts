import { describe, expect, it } from 'vitest';

import { TemplateError, defineFunc, goFloat, parseTemplate, type FuncMap } from './index.js';

function render(text: string, data?: unknown, funcs?: FuncMap): string {
  return parseTemplate('t', text, funcs).execute(data);
}

function execError(text: string, data?: unknown, funcs?: FuncMap): TemplateError {
  const t = parseTemplate('t', text, funcs);
  try {
    t.execute(data);
  } catch (e) {
    expect(e).toBeInstanceOf(TemplateError);
    return e as TemplateError;
  }
  throw new Error('expected an execution error');
}

function parseError(text: string, funcs?: FuncMap, name = 't'): TemplateError {
  try {
    parseTemplate(name, text, funcs);
  } catch (e) {
    expect(e).toBeInstanceOf(TemplateError);
    return e as TemplateError;
  }
  throw new Error('expected a parse error');
}

describe('text and actions', () => {
  it('copies text and prints pipeline values', () => {
    expect(render('Hello, {{.name}}!', { name: 'world' })).toBe('Hello, world!');
    expect(render('{{.}}', 'dot')).toBe('dot');
    expect(render('')).toBe('');
    expect(render('no actions at all\n')).toBe('no actions at all\n');
  });

  it('prints values as Go fmt %v', () => {
    expect(render('{{.}}', { b: [1, 'x', null, 2.5], a: { z: true } })).toBe('map[a:map[z:true] b:[1 x <nil> 2.5]]');
    expect(render('{{.}}', [])).toBe('[]');
    expect(render('{{.}}', {})).toBe('map[]');
    expect(render('{{.a}} {{.b}} {{.c}}', { a: 1e21, b: 1e-7, c: 123456789 })).toBe('1e+21 1e-07 123456789');
    expect(render('{{.}}', 2n ** 62n)).toBe('4611686018427387904');
    expect(render('{{.}}', new Uint8Array([1, 2]))).toBe('[1 2]');
    expect(render('{{.}}', new Map<unknown, unknown>([[2, 'b'], [1, 'a']]))).toBe('map[1:a 2:b]');
  });

  it('keeps float literals as float64', () => {
    expect(render('{{1e6}} {{1.0}} {{printf "%.1f" 3.0}} {{printf "%T" 2.0}}')).toBe('1e+06 1 3.0 float64');
    expect(render('{{.}}', goFloat(1e6))).toBe('1e+06');
  });

  it('cannot print functions', () => {
    expect(execError('{{.f}}', { f: () => 1 }).reason).toBe("can't print {{.f}} of type func(...interface {}) interface {}");
  });
});

describe('trim markers and comments', () => {
  it('trims surrounding whitespace, including newlines', () => {
    expect(render('{{23 -}} < {{- 45}}')).toBe('23<45');
    expect(render('a \n\t {{- "x" -}} \r\n b')).toBe('axb');
    expect(render('a\n  {{- /* comment */}}\n  b')).toBe('a\n  b');
    expect(render('a {{- /* c */ -}} b')).toBe('ab');
  });

  it('needs a space (or tab/newline) next to the marker', () => {
    expect(render('a {{-3}} b')).toBe('a -3 b');
    expect(render('a {{-\n3\n-}} b')).toBe('a3b');
    expect(parseError('{{3-}}').reason).toBe('bad number syntax: "3-"');
  });

  it('rejects malformed comments', () => {
    expect(parseError('{{/* c */ }}').reason).toBe('comment ends before closing delimiter');
    expect(parseError('x {{/* c').reason).toBe('unclosed comment');
  });
});

describe('data access', () => {
  it('treats objects as Go maps: missing keys yield no value', () => {
    expect(render('{{.missing}}|{{.a.b.c}}|{{if .missing}}y{{else}}n{{end}}', {})).toBe('<no value>|<no value>|n');
    expect(render('{{.a.b}}', { a: { b: null } })).toBe('<no value>');
    expect(render('{{.x}}', null)).toBe('<no value>');
  });

  it('errors on a field of nil, like a nil interface{} in Go', () => {
    const e = execError('{{.a.b}}', { a: null });
    expect(e.message).toBe('template: t:1:4: executing "t" at <.a.b>: nil pointer evaluating interface {}.b');
    expect(e.phase).toBe('exec');
    expect(e.line).toBe(1);
    expect(e.column).toBe(4);
  });

  it('errors on a field of a non-map', () => {
    expect(execError('{{.a.b}}', { a: 'str' }).reason).toBe("can't evaluate field b in type interface {}");
    expect(execError('{{$x := .a}}{{$x.b}}', { a: 5 }).reason).toBe("can't evaluate field b in type int");
  });

  it('supports $ and variables with fields', () => {
    expect(render('{{with .b}}{{$.a}}{{.}}{{end}}', { a: 1, b: 2 })).toBe('12');
    expect(render('{{$m := .m}}{{$m.x.y}}', { m: { x: { y: 'z' } } })).toBe('z');
    expect(render('{{(index .a 0).b}}', { a: [{ b: 5 }] })).toBe('5');
  });

  it('treats class instances as structs with fields and methods', () => {
    class Greeter {
      constructor(readonly Name: string) {}
      Hello(greeting: string): string {
        return `${greeting}, ${this.Name}`;
      }
      Fail(): string {
        throw new Error('boom');
      }
    }
    const g = new Greeter('Ann');
    expect(render('{{.Name}} {{.Hello "hi"}} {{"yo" | .Hello}}', g)).toBe('Ann hi, Ann yo, Ann');
    expect(execError('{{.Nope}}', g).reason).toBe("can't evaluate field Nope in type Greeter");
    expect(execError('{{.Name 1}}', g).reason).toBe('Name has arguments but cannot be invoked as function');
    expect(execError('{{.Fail}}', g).reason).toBe('error calling Fail: boom');
    expect(render('{{.}}', g)).toBe('{Ann}');
    expect(render('{{printf "%+v" .}}', g)).toBe('{Name:Ann}');
  });

  it('prints Stringers via their String method', () => {
    class Duration {
      constructor(private readonly s: number) {}
      String(): string {
        return `${this.s}s`;
      }
    }
    expect(render('{{.d}} {{printf "%v|%s" .d .d}}', { d: new Duration(5) })).toBe('5s 5s|5s');
  });

  it('reports map keys used with arguments', () => {
    expect(execError('{{.a 1}}', { a: 1 }).reason).toBe('a is not a method but has arguments');
  });

  it('honours missingkey=error', () => {
    const t = parseTemplate('t', '{{.a}}', undefined, { missingKey: 'error' });
    expect(() => t.execute({})).toThrow('map has no entry for key "a"');
    expect(t.execute({ a: 1 })).toBe('1');
  });
});

describe('control structures', () => {
  it('if / else if / else', () => {
    const t = parseTemplate('t', '{{if .a}}A{{else if .b}}B{{else if .c}}C{{else}}D{{end}}');
    expect(t.execute({ a: 1 })).toBe('A');
    expect(t.execute({ b: 'x' })).toBe('B');
    expect(t.execute({ c: [1] })).toBe('C');
    expect(t.execute({ a: 0, b: '', c: [] })).toBe('D');
  });

  it('uses Go truthiness', () => {
    const t = parseTemplate('t', '{{if .}}T{{else}}F{{end}}');
    for (const v of [false, 0, 0n, '', [], {}, new Map(), null, undefined]) expect(t.execute(v)).toBe('F');
    for (const v of [true, 1, -1, 'x', [0], { a: 0 }, new (class S {})()]) expect(t.execute(v)).toBe('T');
  });

  it('with / else with / else (Go 1.23)', () => {
    const t = parseTemplate('t', '{{with $v := .a}}a={{$v}}{{else with .b}}b={{.}}{{else}}none{{end}}');
    expect(t.execute({ a: 1 })).toBe('a=1');
    expect(t.execute({ b: 7 })).toBe('b=7');
    expect(t.execute({})).toBe('none');
  });

  it('range over slices, maps (sorted keys) and integers (Go 1.22)', () => {
    expect(render('{{range $i, $e := .}}{{if $i}}, {{end}}{{$e}}{{end}}', ['a', 'b', 'c'])).toBe('a, b, c');
    expect(render('{{range $k, $v := .}}{{$k}}={{$v}};{{end}}', { z: 1, b: 2, a: 3 })).toBe('a=3;b=2;z=1;');
    expect(render('{{range $k, $v := .}}{{$k}}={{$v}};{{end}}', new Map([[10, 'x'], [9, 'y']]))).toBe('9=y;10=x;');
    expect(render('{{range 3}}{{.}}{{end}}|{{range $i := 2}}{{$i}}{{end}}')).toBe('012|01');
    expect(render('{{range 0}}x{{else}}empty{{end}}')).toBe('empty');
    expect(execError('{{range $i, $v := 3}}{{end}}').reason).toBe("can't use 3 to iterate over more than one variable");
    expect(execError('{{range .}}{{end}}', 'abc').reason).toBe("range can't iterate over abc");
  });

  it('range else, break and continue', () => {
    expect(render('{{range .}}x{{else}}empty{{end}}', [])).toBe('empty');
    expect(render('{{range .missing}}x{{else}}empty{{end}}', {})).toBe('empty');
    expect(render('{{range .}}{{if eq . 3}}{{break}}{{end}}{{if eq . 1}}{{continue}}{{end}}{{.}}{{end}}', [0, 1, 2, 3, 4])).toBe(
      '02',
    );
    expect(render('{{range $x := .}}{{range $x}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}};{{end}}', [[1, 2, 3], [4, 2]])).toBe(
      '1;4;',
    );
  });

  it('variables: declaration, assignment and scope', () => {
    expect(render('{{$x := 1}}{{range .}}{{$x = .}}{{end}}{{$x}}', [5, 6])).toBe('6');
    expect(render('{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}')).toBe('21');
    expect(render('{{$x := 1}}{{$x := 2}}{{$x}}')).toBe('2');
    expect(parseError('{{if .}}{{$y := 1}}{{end}}{{$y}}').reason).toBe('undefined variable "$y"');
  });

  it('define, template and block', () => {
    expect(
      render('{{define "T1"}}ONE{{end}}{{define "T2"}}TWO {{template "T1"}}{{end}}{{template "T2"}} {{template "T1" .}}'),
    ).toBe('TWO ONE ONE');
    expect(render('{{define "list"}}{{range .}}[{{.}}]{{end}}{{end}}{{template "list" .a}}', { a: [1, 2] })).toBe('[1][2]');
    expect(render('{{block "B" .a}}[{{.}}]{{end}}', { a: 9 })).toBe('[9]');
    expect(render('{{define "r"}}{{if .}}{{.}}{{template "r" (slice . 1)}}{{end}}{{end}}{{template "r" "abc"}}')).toBe('abcbcc');
    // a template call does not see the caller's variables, only its own dot as $
    expect(render('{{$x := 5}}{{define "v"}}{{$}}{{end}}{{template "v" $x}}')).toBe('5');
    expect(execError('{{template "nope"}}').message).toBe(
      'template: t:1:11: executing "t" at <{{template "nope"}}>: template "nope" not defined',
    );
    expect(parseError('{{define "a"}}x{{end}}{{define "a"}}y{{end}}').reason).toBe(
      'template: multiple definition of template "a"',
    );
    expect(render('{{define "a"}}{{end}}{{define "a"}}y{{end}}{{template "a"}}')).toBe('y');
  });

  it('executes associated templates by name', () => {
    const t = parseTemplate('main', '{{define "sub"}}sub:{{.}}{{end}}main');
    expect(t.execute()).toBe('main');
    expect(t.executeTemplate('sub', 1)).toBe('sub:1');
    expect(t.templateNames().sort()).toEqual(['main', 'sub']);
    expect(t.has('sub')).toBe(true);
    expect(() => t.executeTemplate('nope')).toThrow('template: no template "nope" associated with template "main"');
  });

  it('bounds template recursion', () => {
    const t = parseTemplate('t', '{{define "loop"}}{{template "loop" .}}{{end}}{{template "loop"}}', undefined, {
      maxDepth: 50,
    });
    expect(() => t.execute()).toThrow('exceeded maximum template depth (50)');
  });
});

describe('functions', () => {
  it('and / or short-circuit and return the deciding value', () => {
    expect(render('{{and 1 0 2}} {{or 0 "" 3}} {{and 1 2}} {{or 0 ""}}')).toBe('0 3 2 ');
    expect(render('{{or 1 .x.y}}', { x: null })).toBe('1');
    expect(render('{{and 0 .x.y}}', { x: null })).toBe('0');
    expect(render('{{.a | and .b}}', { a: 1, b: 2 })).toBe('1');
  });

  it('compares numbers numerically regardless of int/float (documented deviation)', () => {
    // Go reports "incompatible types for comparison" for int vs float64; JavaScript
    // numbers carry no such distinction, so they compare by value.
    expect(render('{{eq 1 1.0}} {{lt 1 1.5}} {{eq .i .f}}', { i: 2, f: 2.0 })).toBe('true true true');
    expect(execError('{{eq .a "x"}}', { a: 1 }).reason).toBe('error calling eq: incompatible types for comparison');
  });

  it('calls user functions with Go-like argument checking', () => {
    const funcs: FuncMap = {
      join2: defineFunc((a: string, b: string) => `${a}-${b}`, ['string', 'string']),
      sum: defineFunc((...n: number[]) => n.reduce((x, y) => x + y, 0), [], 'int'),
      loose: (...a: unknown[]) => a.length,
      boom: () => {
        throw new Error('kaput');
      },
    };
    expect(render('{{join2 "a" "b"}} {{"z" | join2 "y"}} {{sum 1 2 3}} {{loose 1 2 .x}}', {}, funcs)).toBe('a-b y-z 6 3');
    expect(execError('{{join2 "a"}}', {}, funcs).reason).toBe('wrong number of args for join2: want 2 got 1');
    expect(execError('{{join2 "a" 1}}', {}, funcs).reason).toBe('expected string; found 1');
    expect(execError('{{join2 "a" .n}}', { n: 1 }, funcs).reason).toBe('wrong type for value; expected string; got int');
    expect(execError('{{join2 "a" .missing}}', {}, funcs).reason).toBe('invalid value; expected string');
    expect(execError('{{sum 1 "x"}}', {}, funcs).reason).toBe('expected integer; found "x"');
    const e = execError('\n  {{boom}}', {}, funcs);
    expect(e.message).toBe('template: t:2:4: executing "t" at <boom>: error calling boom: kaput');
    expect(e.cause).toBeInstanceOf(Error);
  });

  it('lets user functions override builtins', () => {
    expect(render('{{len "abc"}}', {}, { len: () => 'mine' })).toBe('mine');
    // an overriding "and" is an ordinary function: no short-circuit
    expect(render('{{and 0 1}}', {}, { and: (...a: unknown[]) => a.join('+') })).toBe('0+1');
  });

  it('call invokes function values', () => {
    expect(render('{{call .f 2 3}}', { f: (a: number, b: number) => a * b })).toBe('6');
    expect(execError('{{call .f}}', { f: 1 }).reason).toBe('error calling call: non-function of type int');
    expect(execError('{{call .f}}', {}).reason).toBe('error calling call: call of nil');
  });

  it('rejects invalid function names', () => {
    expect(() => parseTemplate('t', 'x', { 'not-ident': () => 1 })).toThrow('not a valid identifier');
  });
});

describe('errors', () => {
  it('report the template name, line and column', () => {
    const e = parseError('line1\n  {{ .a | }}{{ end }}', undefined, 'envoy_bootstrap.json');
    expect(e.message).toBe('template: envoy_bootstrap.json:2:19: unexpected {{end}}');
    expect(e).toMatchObject({ phase: 'parse', templateName: 'envoy_bootstrap.json', line: 2, column: 19 });
    expect(parseError('{\n  "a": {{ .x }\n}', undefined, 'b.json').message).toBe(
      'template: b.json:2:13: unexpected "}" in operand',
    );
  });

  it('unclosed action / unexpected EOF', () => {
    expect(parseError('{{ .a').reason).toBe('unclosed action');
    expect(parseError('{{ .a\n\n').reason).toBe('unclosed action started at t:1');
    expect(parseError('{{if .a}}x').reason).toBe('unexpected EOF');
    expect(parseError('{{range .a}}x{{else}}').reason).toBe('unexpected EOF');
  });

  it('undefined function / variable', () => {
    expect(parseError('{{nofunc 1}}').message).toBe('template: t:1:2: function "nofunc" not defined');
    expect(parseError('{{$nov}}').message).toBe('template: t:1:2: undefined variable "$nov"');
    expect(execError('{{$x = 1}}').reason).toBe('undefined variable: $x');
  });

  it('wrong argument counts', () => {
    expect(execError('{{len}}').message).toBe(
      'template: t:1:2: executing "t" at <len>: wrong number of args for len: want 1 got 0',
    );
    expect(execError('{{eq}}').reason).toBe('wrong number of args for eq: want at least 1 got 0');
    expect(execError('{{1 | len 2}}').reason).toBe('wrong number of args for len: want 1 got 2');
    expect(execError('{{.x | printf}}', { x: 1 }).reason).toBe('wrong type for value; expected string; got int');
  });

  it('break/continue outside range', () => {
    expect(parseError('{{break}}').reason).toBe('{{break}} outside {{range}}');
    expect(parseError('{{continue}}').reason).toBe('{{continue}} outside {{range}}');
    // with a function named break, the word is an identifier (as in Go)
    expect(render('{{break}}', {}, { break: () => 'b' })).toBe('b');
  });

  it('complex constants are rejected (documented gap)', () => {
    expect(parseError('{{1i}}').reason).toBe('complex constants are not supported: "1i"');
  });
});

// Speed is measured by bench `bootstrap` (warm_render_ms), not asserted here: timing assertions in
// tests fail on a loaded machine and say nothing about the engine.
describe('large templates', () => {
  it('renders a ~30 KB template, parsed once, to the same valid JSON every time', () => {
    const block =
      '  "cluster_{{.i}}": {\n' +
      '    "name": "{{ .name }}",{{ if .tls }}\n    "tls": {{ toJSON .tls }},{{ end }}\n' +
      '    "ports": [{{ range $i, $p := .ports }}{{ if $i }}, {{ end }}{{ $p }}{{ end }}],\n' +
      '    "addr": "{{ printf "%s:%d" .host .port }}",\n' +
      '    "labels": {{ toJSON .labels }}\n  },\n';
    let text = '{\n';
    let i = 0;
    while (text.length < 30_000) text += block.replace('{{.i}}', String(i++));
    text += '  "end": true\n}\n';
    const t = parseTemplate('perf.json', text, {
      toJSON: (v: unknown) => JSON.stringify(v),
    });
    const data = {
      name: 'outbound|80||svc.ns.svc.cluster.local',
      tls: { mode: 'ISTIO_MUTUAL' },
      ports: [80, 443, 15021],
      host: '10.0.0.1',
      port: 8080,
      labels: { app: 'x', version: 'v1' },
    };
    const first = t.execute(data);
    const doc = JSON.parse(first) as Record<string, { addr: string; ports: number[] }>;
    expect(doc.cluster_0!.addr).toBe('10.0.0.1:8080');
    expect(doc.cluster_0!.ports).toEqual([80, 443, 15021]);
    expect(Object.keys(doc).length).toBe(i + 1);
    for (let k = 0; k < 50; k++) expect(t.execute(data)).toBe(first);
  });
});
