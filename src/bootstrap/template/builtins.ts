/**
 * Go text/template's predefined functions: and, or, not, len, index, slice, print,
 * printf, println, html, js, urlquery, call, eq, ne, lt, le, gt, ge.
 * (and/or are evaluated lazily by the executor; the entries here declare their arity.)
 */
import { resolveFunc, type FuncSpec, type ResolvedFunc } from './funcs.js';
import { formatValue, isPrint, sprint, sprintf, sprintln } from './fmt.js';
import {
  byteLength,
  isTrue,
  kindOf,
  mapGet,
  mapLen,
  toNumber,
  typeName,
  unbox,
  utf8Bytes,
  utf8String,
} from './values.js';

// ---- comparison

type BasicKind = 'bool' | 'number' | 'string' | 'invalid' | 'other';

function basicKind(v: unknown): BasicKind {
  switch (kindOf(v)) {
    case 'bool':
      return 'bool';
    case 'int':
    case 'float':
      return 'number';
    case 'string':
      return 'string';
    case 'invalid':
    case 'nil':
      return 'invalid';
    default:
      return 'other';
  }
}

/** indirectInterface: a nil interface becomes "no value". */
function ind(v: unknown): unknown {
  return v === null ? undefined : v;
}

function numCompare(a: unknown, b: unknown): number {
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    const x = toNumber(a);
    const y = toNumber(b);
    if (Number.isInteger(x) && Number.isInteger(y)) {
      const bx = typeof a === 'bigint' ? a : BigInt(x);
      const by = typeof b === 'bigint' ? b : BigInt(y);
      return bx < by ? -1 : bx > by ? 1 : 0;
    }
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const x = toNumber(a);
  const y = toNumber(b);
  return x < y ? -1 : x > y ? 1 : x === y ? 0 : NaN;
}

function isComparable(v: unknown): boolean {
  const k = kindOf(v);
  return k !== 'map' && k !== 'slice' && k !== 'bytes' && k !== 'func';
}

export function eq(arg1: unknown, ...arg2: unknown[]): boolean {
  arg1 = ind(arg1);
  if (arg2.length === 0) throw new Error('missing argument for comparison');
  const k1 = basicKind(arg1);
  for (let arg of arg2) {
    arg = ind(arg);
    const k2 = basicKind(arg);
    let truth = false;
    if (k1 !== k2) {
      if (arg1 !== undefined && arg !== undefined) throw new Error('incompatible types for comparison');
    } else {
      switch (k1) {
        case 'bool':
        case 'string':
          truth = arg1 === arg;
          break;
        case 'number':
          truth = numCompare(arg1, arg) === 0;
          break;
        case 'invalid':
          truth = true; // both missing
          break;
        default:
          if (kindOf(arg1) !== kindOf(arg)) {
            throw new Error(`non-comparable types ${formatValue(arg1)}: ${typeName(arg1)}, ${typeName(arg)}: ${formatValue(arg)}`);
          }
          if (!isComparable(arg)) throw new Error(`non-comparable type ${formatValue(arg)}: ${typeName(arg)}`);
          truth = arg1 === arg;
      }
    }
    if (truth) return true;
  }
  return false;
}

export function lt(a: unknown, b: unknown): boolean {
  a = ind(a);
  b = ind(b);
  const k1 = basicKind(a);
  if (k1 === 'invalid' || k1 === 'other') throw new Error('invalid type for comparison');
  const k2 = basicKind(b);
  if (k2 === 'invalid' || k2 === 'other') throw new Error('invalid type for comparison');
  if (k1 !== k2) throw new Error('incompatible types for comparison');
  switch (k1) {
    case 'bool':
      throw new Error('invalid type for comparison');
    case 'number':
      return numCompare(a, b) < 0;
    default:
      return (a as string) < (b as string);
  }
}

function le(a: unknown, b: unknown): boolean {
  return lt(a, b) || eq(a, b);
}

// ---- indexing

function indexArg(index: unknown, cap: number): number {
  const k = kindOf(index);
  if (k === 'invalid' || k === 'nil') throw new Error('cannot index slice/array with nil');
  if (k !== 'int') throw new Error(`cannot index slice/array with type ${typeName(index)}`);
  const x = Number(index as number | bigint);
  if (x < 0 || x > cap) throw new Error(`index out of range: ${String(index)}`);
  return x;
}

export function index(item: unknown, ...indexes: unknown[]): unknown {
  item = ind(item);
  if (item === undefined) throw new Error('index of untyped nil');
  for (let idx of indexes) {
    idx = ind(idx);
    if (item === null || item === undefined) throw new Error('index of nil pointer');
    const k = kindOf(item);
    if (k === 'slice' || k === 'bytes' || k === 'string') {
      const len = k === 'string' ? byteLength(item as string) : (item as unknown[]).length;
      const x = indexArg(idx, len);
      if (x === len) throw new Error(`index out of range: ${x}`);
      if (k === 'string') item = utf8Bytes(item as string)[x];
      else item = (item as unknown[])[x];
    } else if (k === 'map') {
      if (!(item instanceof Map)) {
        if (idx === undefined) throw new Error('value is nil; should be of type string');
        if (typeof idx !== 'string') throw new Error(`value has type ${typeName(idx)}; should be string`);
      }
      const v = mapGet(item as object, idx);
      item = v === undefined ? null : v; // zero value of interface{}
    } else {
      throw new Error(`can't index item of type ${typeName(item)}`);
    }
  }
  return item;
}

export function slice(item: unknown, ...indexes: unknown[]): unknown {
  item = ind(item);
  if (item === undefined) throw new Error('slice of untyped nil');
  if (indexes.length > 3) throw new Error(`too many slice indexes: ${indexes.length}`);
  const k = kindOf(item);
  let len: number;
  if (k === 'string') {
    if (indexes.length === 3) throw new Error('cannot 3-index slice a string');
    len = byteLength(item as string);
  } else if (k === 'slice' || k === 'bytes') {
    len = (item as unknown[]).length;
  } else {
    throw new Error(`can't slice item of type ${typeName(item)}`);
  }
  const idx = [0, len, len];
  indexes.forEach((x, i) => {
    idx[i] = indexArg(ind(x), len);
  });
  if (idx[0]! > idx[1]!) throw new Error(`invalid slice index: ${idx[0]} > ${idx[1]}`);
  if (indexes.length === 3 && idx[1]! > idx[2]!) throw new Error(`invalid slice index: ${idx[1]} > ${idx[2]}`);
  if (k === 'string') {
    const s = item as string;
    if (byteLength(s) === s.length) return s.slice(idx[0], idx[1]);
    return utf8String(utf8Bytes(s).slice(idx[0], idx[1]));
  }
  return (item as unknown[]).slice(idx[0], idx[1]);
}

export function length(item: unknown): number {
  if (item === undefined || item === null) throw new Error('len of nil pointer');
  switch (kindOf(item)) {
    case 'string':
      return byteLength(item as string);
    case 'slice':
    case 'bytes':
      return (item as unknown[]).length;
    case 'map':
      return mapLen(item as object);
  }
  throw new Error(`len of type ${typeName(item)}`);
}

export function call(fn: unknown, ...args: unknown[]): unknown {
  fn = ind(fn);
  if (fn === undefined) throw new Error('call of nil');
  if (typeof fn !== 'function') throw new Error(`non-function of type ${typeName(fn)}`);
  return (fn as (...a: unknown[]) => unknown)(...args.map((a) => (a === undefined ? null : unbox(a))));
}

// ---- escaping

/** The textual form of the arguments, as Go's evalArgs (nil prints as <no value>). */
function evalArgs(args: unknown[]): string {
  if (args.length === 1 && typeof args[0] === 'string') return args[0];
  return sprint(args.map((a) => (a === null || a === undefined ? '<no value>' : a)));
}

export function htmlEscape(s: string): string {
  return s.replace(/["'&<>\0]/g, (c) => {
    switch (c) {
      case '"':
        return '&#34;';
      case "'":
        return '&#39;';
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      default:
        return '\ufffd';
    }
  });
}

export function jsEscape(s: string): string {
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '\\':
        out += '\\\\';
        continue;
      case "'":
        out += "\\'";
        continue;
      case '"':
        out += '\\"';
        continue;
      case '<':
        out += '\\u003C';
        continue;
      case '>':
        out += '\\u003E';
        continue;
      case '&':
        out += '\\u0026';
        continue;
      case '=':
        out += '\\u003D';
        continue;
    }
    if (cp < 0x20) out += '\\u00' + cp.toString(16).toUpperCase().padStart(2, '0');
    else if (cp < 0x80 || isPrint(cp)) out += ch;
    else out += '\\u' + cp.toString(16).toUpperCase().padStart(4, '0');
  }
  return out;
}

/** Go's url.QueryEscape. */
export function queryEscape(s: string): string {
  let out = '';
  for (const b of utf8Bytes(s)) {
    if (
      (b >= 0x30 && b <= 0x39) ||
      (b >= 0x41 && b <= 0x5a) ||
      (b >= 0x61 && b <= 0x7a) ||
      b === 0x2d ||
      b === 0x2e ||
      b === 0x5f ||
      b === 0x7e
    ) {
      out += String.fromCharCode(b);
    } else if (b === 0x20) {
      out += '+';
    } else {
      out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
    }
  }
  return out;
}

// ---- the map

const specs: Record<string, FuncSpec> = {
  and: { fn: () => undefined, params: ['value'], variadic: 'value', raw: true },
  or: { fn: () => undefined, params: ['value'], variadic: 'value', raw: true },
  not: { fn: (v: unknown) => !isTrue(v), params: ['value'], raw: true },
  len: { fn: length, params: ['value'], raw: true },
  index: { fn: index, params: ['value'], variadic: 'value', raw: true },
  slice: { fn: slice, params: ['value'], variadic: 'value', raw: true },
  call: { fn: call, params: ['value'], variadic: 'value', raw: true },
  print: { fn: (...a: unknown[]) => sprint(a), params: [], variadic: 'any', raw: true },
  printf: { fn: (f: string, ...a: unknown[]) => sprintf(f, a), params: ['string'], variadic: 'any', raw: true },
  println: { fn: (...a: unknown[]) => sprintln(a), params: [], variadic: 'any', raw: true },
  html: { fn: (...a: unknown[]) => htmlEscape(evalArgs(a)), params: [], variadic: 'any', raw: true },
  js: { fn: (...a: unknown[]) => jsEscape(evalArgs(a)), params: [], variadic: 'any', raw: true },
  urlquery: { fn: (...a: unknown[]) => queryEscape(evalArgs(a)), params: [], variadic: 'any', raw: true },
  eq: { fn: eq, params: ['value'], variadic: 'value', raw: true },
  ne: { fn: (a: unknown, b: unknown) => !eq(a, b), params: ['value', 'value'], raw: true },
  lt: { fn: lt, params: ['value', 'value'], raw: true },
  le: { fn: le, params: ['value', 'value'], raw: true },
  gt: { fn: (a: unknown, b: unknown) => !le(a, b), params: ['value', 'value'], raw: true },
  ge: { fn: (a: unknown, b: unknown) => !lt(a, b), params: ['value', 'value'], raw: true },
};

export const builtinFuncs: ReadonlyMap<string, ResolvedFunc> = new Map(
  Object.entries(specs).map(([name, spec]) => [
    name,
    resolveFunc(name, spec, name === 'and' || name === 'or' ? name : null),
  ]),
);

/** Names of Go's builtin template functions. */
export const builtinNames: readonly string[] = Object.keys(specs);
