/**
 * Sprig (github.com/Masterminds/sprig/v3) template functions, as installed by
 * sprig.GenericFuncMap() / TxtFuncMap(). Signatures (argument order, Go parameter
 * types) follow sprig v3.3.0 so that argument checking behaves as in Go.
 *
 * Not implemented (calls fail with "not supported" at execution time, but templates
 * that merely mention them still parse): the date functions other than `duration`,
 * semver/semverCompare, getHostByName, and the crypto helpers (bcrypt, htpasswd,
 * genPrivateKey, derivePassword, buildCustomCert, genCA*, genSelfSignedCert*,
 * genSignedCert*, encryptAES, decryptAES).
 */
import { posix as pathPosix } from 'node:path';
import { lazyBuiltin } from '../../util/builtin.js';

import { formatValue, quote as goQuote, sprint } from './fmt.js';
import type { FuncMap, FuncSpec, ParamType } from './funcs.js';
import { JSONMarshalError, marshal, unmarshal } from './json.js';
import { parseGoInt } from './literals.js';
import {
  GoFloat,
  isPlainObject,
  kindOf,
  mapGet,
  mapKeys,
  sortedMapKeys,
  stringerOf,
  toNumber,
  typeName,
  utf8Bytes,
  utf8String,
} from './values.js';

export interface SprigOptions {
  /** Backs `env` and `expandenv` (Go: os.Getenv). Defaults to an empty environment. */
  getenv?: (name: string) => string | undefined;
}

type Dict = Record<string, unknown>;

// ---------------------------------------------------------------------------
// conversions (spf13/cast semantics, errors ignored as sprig does)

/** sprig's strval: strings as-is, []byte decoded, Stringers/errors via their method, else %v. */
export function strval(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return utf8String(v);
  const s = stringerOf(v);
  if (s !== undefined) return s;
  return formatValue(v === undefined ? null : v);
}

function trimZeroDecimal(s: string): string {
  let foundZero = false;
  for (let i = s.length; i > 0; i--) {
    switch (s[i - 1]) {
      case '.':
        return foundZero ? s.slice(0, i - 1) : s;
      case '0':
        foundZero = true;
        break;
      default:
        return s;
    }
  }
  return s;
}

const I64 = (x: bigint): bigint => BigInt.asIntN(64, x);

function toInt64Big(v: unknown): bigint {
  switch (kindOf(v)) {
    case 'int':
      return BigInt(v as number | bigint);
    case 'float': {
      const n = toNumber(v);
      return Number.isFinite(n) ? I64(BigInt(Math.trunc(n))) : 0n;
    }
    case 'bool':
      return v ? 1n : 0n;
    case 'string': {
      const r = parseGoInt(trimZeroDecimal(v as string));
      return r ?? 0n;
    }
    default:
      return 0n;
  }
}

function intResult(b: bigint): number | bigint {
  const n = Number(b);
  return Number.isSafeInteger(n) ? n : b;
}

function toInt64(v: unknown): number | bigint {
  return intResult(toInt64Big(v));
}

function toFloat64(v: unknown): number {
  switch (kindOf(v)) {
    case 'int':
    case 'float':
      return toNumber(v);
    case 'bool':
      return v ? 1 : 0;
    case 'string': {
      const s = (v as string).trim() === v ? (v as string) : '';
      if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s) || /^[+-]?(inf|infinity|nan)$/i.test(s)) {
        const n = Number(s.replace(/^([+-]?)inf(inity)?$/i, '$1Infinity').replace(/^[+-]?nan$/i, 'NaN'));
        return n;
      }
      return 0;
    }
    default:
      return 0;
  }
}

/** A float64 result: integral values stay float64 (e.g. `ceil 1.5` prints 2 but %T is float64). */
function floatResult(n: number): number | GoFloat {
  return Number.isInteger(n) ? new GoFloat(n) : n;
}

function asList(v: unknown, what: string): unknown[] {
  const k = kindOf(v);
  if (k === 'slice') return v as unknown[];
  if (k === 'bytes') return Array.from(v as Uint8Array);
  if (v === null || v === undefined) throw new Error('runtime error: invalid memory address or nil pointer dereference');
  throw new Error(`${what} ${goKind(v)}`);
}

/** reflect.Kind names. */
function goKind(v: unknown): string {
  switch (kindOf(v)) {
    case 'invalid':
    case 'nil':
      return 'invalid';
    case 'bool':
      return 'bool';
    case 'int':
      return 'int';
    case 'float':
      return 'float64';
    case 'string':
      return 'string';
    case 'slice':
    case 'bytes':
      return 'slice';
    case 'map':
      return 'map';
    case 'struct':
      return 'struct';
    case 'func':
      return 'func';
  }
}

/** sprig's empty(): the zero value of its type. */
export function empty(v: unknown): boolean {
  switch (kindOf(v)) {
    case 'invalid':
    case 'nil':
      return true;
    case 'bool':
      return !v;
    case 'int':
    case 'float':
      return toNumber(v) === 0;
    case 'string':
      return (v as string).length === 0;
    case 'slice':
    case 'bytes':
      return (v as unknown[]).length === 0;
    case 'map':
      return v instanceof Map ? v.size === 0 : mapKeys(v as object).length === 0;
    default:
      return false;
  }
}

/** reflect.DeepEqual over the value model. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  const ka = kindOf(a);
  if (ka !== kindOf(b)) return false;
  switch (ka) {
    case 'int':
    case 'float':
      return typeName(a) === typeName(b) && toNumber(a) === toNumber(b);
    case 'slice':
    case 'bytes': {
      const x = a as ArrayLike<unknown>;
      const y = b as ArrayLike<unknown>;
      if (x.length !== y.length) return false;
      for (let i = 0; i < x.length; i++) if (!deepEqual(x[i], y[i])) return false;
      return true;
    }
    case 'map': {
      const kx = sortedMapKeys(a as object);
      const ky = sortedMapKeys(b as object);
      if (kx.length !== ky.length) return false;
      return kx.every((k, i) => k === ky[i] && deepEqual(mapGet(a as object, k), mapGet(b as object, k)));
    }
    case 'struct': {
      if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
      const ea = Object.entries(a as object);
      const eb = Object.entries(b as object);
      return ea.length === eb.length && ea.every(([k, v], i) => eb[i]![0] === k && deepEqual(v, eb[i]![1]));
    }
    default:
      return false;
  }
}

function deepCopy(v: unknown): unknown {
  switch (kindOf(v)) {
    case 'slice':
      return (v as unknown[]).map(deepCopy);
    case 'bytes':
      return new Uint8Array(v as Uint8Array);
    case 'map':
      if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, deepCopy(x)]));
      return Object.fromEntries(mapKeys(v as object).map((k) => [k, deepCopy((v as Dict)[k])]));
    default:
      return v;
  }
}

function dictOf(m: unknown): Dict | Map<unknown, unknown> | null {
  return m as Dict | Map<unknown, unknown> | null;
}

function dictGet(m: Dict | Map<unknown, unknown> | null, k: string): unknown {
  if (m === null) return undefined;
  return mapGet(m, k);
}

function dictHas(m: Dict | Map<unknown, unknown> | null, k: string): boolean {
  if (m === null) return false;
  if (m instanceof Map) return m.has(k);
  return Object.prototype.hasOwnProperty.call(m, k) && m[k] !== undefined;
}

function dictKeys(m: Dict | Map<unknown, unknown> | null): string[] {
  if (m === null) return [];
  return sortedMapKeys(m).map((k) => String(k));
}

function newDict(): Dict {
  return {};
}

/** mergo.Merge / MergeWithOverwrite on map[string]interface{} (deep for nested maps). */
function mergeInto(dst: Dict, src: Dict | Map<unknown, unknown> | null, overwrite: boolean): void {
  for (const k of dictKeys(src)) {
    const sv = dictGet(src, k);
    const dv = dst[k];
    if (kindOf(dv) === 'map' && kindOf(sv) === 'map' && isPlainObject(dv as object)) {
      mergeInto(dv as Dict, dictOf(sv), overwrite);
    } else if (!(k in dst) || dv === undefined || (overwrite ? !empty(sv) : empty(dv))) {
      dst[k] = sv;
    }
  }
}

// ---------------------------------------------------------------------------
// strings

function byteSlice(s: string, start: number, end?: number): string {
  const b = utf8Bytes(s);
  const e = end ?? b.length;
  if (start < 0 || e > b.length || start > e) {
    throw new Error(`runtime error: slice bounds out of range [${start}:${e}]`);
  }
  if (b.length === s.length) return s.slice(start, e);
  return utf8String(b.slice(start, e));
}

function substring(start: number, end: number, s: string): string {
  if (start < 0) return byteSlice(s, 0, end);
  const len = utf8Bytes(s).length;
  if (end < 0 || end > len) return byteSlice(s, start);
  return byteSlice(s, start, end);
}

function trunc(c: number, s: string): string {
  const len = utf8Bytes(s).length;
  if (c < 0 && len + c > 0) return byteSlice(s, len + c);
  if (c >= 0 && len > c) return byteSlice(s, 0, c);
  return s;
}

function goTrim(s: string, cutset: string): string {
  const set = new Set(Array.from(cutset));
  const chars = Array.from(s);
  let i = 0;
  let j = chars.length;
  while (i < j && set.has(chars[i]!)) i++;
  while (j > i && set.has(chars[j - 1]!)) j--;
  return chars.slice(i, j).join('');
}

const goSpaceRe = /[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]/u;

function goTrimSpace(s: string): string {
  let i = 0;
  let j = s.length;
  while (i < j && goSpaceRe.test(s[i]!)) i++;
  while (j > i && goSpaceRe.test(s[j - 1]!)) j--;
  return s.slice(i, j);
}

/** strings.Title: upper-case the first letter of each word. */
function title(s: string): string {
  let prev = ' ';
  let out = '';
  for (const ch of s) {
    const isSep = /^[\p{L}\p{Nd}_]$/u.test(prev) ? false : /^[A-Za-z0-9_]$/.test(prev) ? false : true;
    out += isSep ? ch.toUpperCase() : ch;
    prev = ch;
  }
  return out;
}

function mapWords(s: string, fn: (w: string) => string): string {
  return s.replace(/[^\s]+/gu, fn);
}

function untitle(s: string): string {
  return mapWords(s, (w) => w.charAt(0).toLowerCase() + w.slice(1));
}

function initials(s: string): string {
  return (s.match(/[^\s]+/gu) ?? []).map((w) => Array.from(w)[0]).join('');
}

function swapcase(s: string): string {
  let out = '';
  for (const ch of s) {
    const up = ch.toUpperCase();
    const low = ch.toLowerCase();
    if (ch === up && ch !== low) out += low;
    else if (ch === low && ch !== up) out += up;
    else out += ch;
  }
  return out;
}

/** Splits identifiers into words (approximating huandu/xstrings). */
function words(s: string): string[] {
  const out: string[] = [];
  for (const part of s.split(/[^\p{L}\p{Nd}]+/u)) {
    if (!part) continue;
    const re = /\p{Lu}+(?=\p{Lu}\p{Ll})|\p{Lu}?\p{Ll}+\p{Nd}*|\p{Lu}+\p{Nd}*|\p{Nd}+\p{Ll}*|./gu;
    for (const m of part.match(re) ?? []) out.push(m);
  }
  return out;
}

function delimitedCase(s: string, sep: string): string {
  return words(s)
    .map((w) => w.toLowerCase())
    .join(sep);
}

function pascalCase(s: string): string {
  return s
    .split(/[_\s-]+/u)
    .map((w) => (w ? w.charAt(0).toUpperCase() + w.slice(1).toLowerCase() : ''))
    .join('');
}

/** goutils.WrapCustom. */
function wrapCustom(str: string, wrapLength: number, newLine: string, wrapLong: boolean): string {
  if (str === '') return '';
  if (newLine === '') newLine = '\n';
  if (wrapLength < 1) wrapLength = 1;
  const len = str.length;
  let offset = 0;
  let out = '';
  while (len - offset > wrapLength) {
    if (str[offset] === ' ') {
      offset++;
      continue;
    }
    const end = wrapLength + offset + 1;
    const spaceAt = str.slice(offset, end).lastIndexOf(' ') + offset;
    if (spaceAt >= offset) {
      out += str.slice(offset, spaceAt) + newLine;
      offset = spaceAt + 1;
    } else if (wrapLong) {
      out += str.slice(offset, wrapLength + offset) + newLine;
      offset += wrapLength;
    } else {
      const e = wrapLength + offset;
      const idx = str.slice(e).indexOf(' ');
      if (idx === -1) {
        out += str.slice(offset);
        offset = len;
      } else {
        const at = idx + e;
        out += str.slice(offset, at) + newLine;
        offset = at + 1;
      }
    }
  }
  return out + str.slice(offset);
}

function abbrev(width: number, s: string): string {
  if (width < 4) return s;
  if (s.length <= width) return s;
  return s.slice(0, width - 3) + '...';
}

function abbrevboth(left: number, right: number, s: string): string {
  if (right < 4 || (left > 0 && right < 7)) return s;
  if (s.length <= right) return s;
  let offset = left;
  if (offset > s.length) offset = s.length;
  if (s.length - offset < right - 3) offset = s.length - (right - 3);
  if (offset <= 4) return s.slice(0, right - 3) + '...';
  if (offset + right - 3 < s.length) return '...' + abbrev(right - 3, s.slice(offset));
  return '...' + s.slice(s.length - (right - 3));
}

function randomString(count: number, alphabet: string): string {
  if (count < 0) throw new Error(`count must be non-negative`);
  let out = '';
  for (let i = 0; i < count; i++) out += alphabet[lazyBuiltin.crypto().randomInt(alphabet.length)];
  return out;
}

const ALPHA = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const DIGITS = '0123456789';
let ASCII = '';
for (let c = 32; c < 127; c++) ASCII += String.fromCharCode(c);

function strslice(v: unknown): string[] {
  const k = kindOf(v);
  if (k === 'slice' || k === 'bytes') {
    return Array.from(v as ArrayLike<unknown>)
      .filter((x) => x !== null && x !== undefined)
      .map(strval);
  }
  if (v === null || v === undefined) return [];
  return [strval(v)];
}

function splitMap(parts: string[]): Dict {
  const out: Dict = {};
  parts.forEach((p, i) => {
    out['_' + i] = p;
  });
  return out;
}

/** strings.SplitN. */
function splitN(s: string, sep: string, n: number): string[] {
  if (n === 0) return [];
  if (sep === '') {
    const chars = Array.from(s);
    if (n < 0 || n >= chars.length) return chars;
    return [...chars.slice(0, n - 1), chars.slice(n - 1).join('')];
  }
  const parts = s.split(sep);
  if (n < 0 || parts.length <= n) return parts;
  return [...parts.slice(0, n - 1), parts.slice(n - 1).join(sep)];
}

function adler32(s: string): number {
  let a = 1;
  let b = 0;
  for (const byte of utf8Bytes(s)) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32Encode(s: string): string {
  const bytes = utf8Bytes(s);
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

function base32Decode(s: string): string {
  const clean = s.replace(/=+$/, '');
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (let i = 0; i < clean.length; i++) {
    const idx = B32.indexOf(clean[i]!);
    if (idx < 0) return `illegal base32 data at input byte ${i}`;
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return utf8String(Uint8Array.from(bytes));
}

function base64Decode(s: string): string {
  // StdEncoding: strict alphabet and padding
  const m = /[^A-Za-z0-9+/=]/.exec(s);
  if (m) return `illegal base64 data at input byte ${m.index}`;
  if (s.length % 4 !== 0) return `illegal base64 data at input byte ${s.length - (s.length % 4)}`;
  const pad = s.indexOf('=');
  if (pad >= 0 && (pad < s.length - 2 || /[^=]/.test(s.slice(pad)))) return `illegal base64 data at input byte ${pad}`;
  return utf8String(Buffer.from(s, 'base64'));
}

/** os.Expand with shell-like $var / ${var} syntax. */
function expand(s: string, mapping: (name: string) => string): string {
  const isSpecial = (c: string | undefined): boolean => c !== undefined && '*#$@!?-0123456789'.includes(c);
  const isAlnum = (c: string | undefined): boolean => c !== undefined && /[A-Za-z0-9_]/.test(c);
  let out = '';
  let i = 0;
  for (let j = 0; j < s.length; j++) {
    if (s[j] === '$' && j + 1 < s.length) {
      out += s.slice(i, j);
      const rest = s.slice(j + 1);
      let name = '';
      let w = 0;
      if (rest[0] === '{') {
        if (rest.length > 2 && isSpecial(rest[1]) && rest[2] === '}') {
          name = rest[1]!;
          w = 3;
        } else {
          const close = rest.indexOf('}', 1);
          if (close === 1) w = 2;
          else if (close < 0) w = 1;
          else {
            name = rest.slice(1, close);
            w = close + 1;
          }
        }
      } else if (isSpecial(rest[0])) {
        name = rest[0]!;
        w = 1;
      } else {
        while (w < rest.length && isAlnum(rest[w])) w++;
        name = rest.slice(0, w);
      }
      if (name === '' && w > 0) {
        // invalid syntax: eaten
      } else if (name === '') {
        out += '$';
      } else {
        out += mapping(name);
      }
      j += w;
      i = j + 1;
    }
  }
  return out + s.slice(i);
}

/** Go's path.Clean. */
export function pathClean(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
      else if (!rooted) parts.push('..');
      continue;
    }
    parts.push(seg);
  }
  const out = (rooted ? '/' : '') + parts.join('/');
  return out === '' ? '.' : out;
}

function pathBase(p: string): string {
  if (p === '') return '.';
  p = p.replace(/\/+$/, '');
  if (p === '') return '/';
  const i = p.lastIndexOf('/');
  return i >= 0 ? p.slice(i + 1) : p;
}

function pathDir(p: string): string {
  const i = p.lastIndexOf('/');
  return pathClean(p.slice(0, i + 1));
}

function pathExt(p: string): string {
  for (let i = p.length - 1; i >= 0 && p[i] !== '/'; i--) {
    if (p[i] === '.') return p.slice(i);
  }
  return '';
}

// ---------------------------------------------------------------------------
// regular expressions (Go RE2 syntax translated to JavaScript where they differ)

function compileRegex(expr: string, global: boolean): RegExp {
  let src = expr;
  let flags = global ? 'g' : '';
  const m = /^\(\?([imsU]+)\)/.exec(src);
  if (m) {
    src = src.slice(m[0].length);
    for (const f of m[1]!) if (f !== 'U' && !flags.includes(f)) flags += f;
  }
  src = src
    .replace(/\(\?P</g, '(?<')
    .replace(/\\A/g, '^')
    .replace(/\\z/g, '$(?![\\s\\S])')
    .replace(/\[:alpha:\]/g, 'A-Za-z')
    .replace(/\[:digit:\]/g, '0-9')
    .replace(/\[:alnum:\]/g, 'A-Za-z0-9')
    .replace(/\[:space:\]/g, '\\t\\n\\v\\f\\r ')
    .replace(/\[:upper:\]/g, 'A-Z')
    .replace(/\[:lower:\]/g, 'a-z')
    .replace(/\[:punct:\]/g, '!-\\/:-@\\[-`{-~')
    .replace(/\[:xdigit:\]/g, '0-9A-Fa-f')
    .replace(/\[:word:\]/g, '\\w');
  if (/\\[pP]/.test(src)) flags += 'u';
  try {
    return new RegExp(src, flags);
  } catch (e) {
    throw new Error(`error parsing regexp: ${e instanceof Error ? e.message : String(e)}: \`${expr}\``);
  }
}

/** Go's FindAll*Index: empty matches abutting a preceding match are ignored. */
function findAllIndex(re: RegExp, s: string, n: number): [number, number, RegExpExecArray][] {
  const out: [number, number, RegExpExecArray][] = [];
  if (n === 0) return out;
  re.lastIndex = 0;
  let prevEnd = -1;
  for (;;) {
    if (n > 0 && out.length >= n) break;
    const m = re.exec(s);
    if (!m) break;
    const start = m.index;
    const end = start + m[0].length;
    if (m[0].length === 0) {
      re.lastIndex = end + 1;
      if (start === prevEnd) {
        if (re.lastIndex > s.length) break;
        continue;
      }
    }
    out.push([start, end, m]);
    prevEnd = end;
    if (re.lastIndex > s.length) break;
  }
  return out;
}

/** Regexp.Expand template: $1, ${1}, $name, ${name}, $$. */
function expandTemplate(tmpl: string, m: RegExpExecArray): string {
  let out = '';
  for (let i = 0; i < tmpl.length; i++) {
    const c = tmpl[i]!;
    if (c !== '$' || i + 1 >= tmpl.length) {
      out += c;
      continue;
    }
    if (tmpl[i + 1] === '$') {
      out += '$';
      i++;
      continue;
    }
    let name: string;
    let end: number;
    if (tmpl[i + 1] === '{') {
      const close = tmpl.indexOf('}', i + 2);
      name = close < 0 ? '' : tmpl.slice(i + 2, close);
      if (close < 0 || !/^\w+$/.test(name)) {
        out += c;
        continue;
      }
      end = close;
    } else {
      const mm = /^\w+/.exec(tmpl.slice(i + 1));
      if (!mm) {
        out += c;
        continue;
      }
      name = mm[0];
      end = i + name.length;
    }
    if (/^\d+$/.test(name)) out += m[Number(name)] ?? '';
    else out += m.groups?.[name] ?? '';
    i = end;
  }
  return out;
}

function regexReplace(regex: string, s: string, repl: string, literal: boolean): string {
  const re = compileRegex(regex, true);
  let out = '';
  let last = 0;
  for (const [start, end, m] of findAllIndex(re, s, -1)) {
    out += s.slice(last, start) + (literal ? repl : expandTemplate(repl, m));
    last = end;
  }
  return out + s.slice(last);
}

function regexSplit(regex: string, s: string, n: number): string[] {
  if (n === 0) return [];
  if (regex.length > 0 && s.length === 0) return [''];
  const re = compileRegex(regex, true);
  const out: string[] = [];
  let beg = 0;
  let end = 0;
  for (const [ms, me] of findAllIndex(re, s, n)) {
    if (n > 0 && out.length === n - 1) break;
    end = ms;
    if (me !== 0) out.push(s.slice(beg, end));
    beg = me;
  }
  if (end !== s.length) out.push(s.slice(beg));
  return out;
}

// ---------------------------------------------------------------------------
// decimal arithmetic for addf/subf/mulf/divf (shopspring/decimal semantics)

interface Dec {
  v: bigint;
  scale: number;
}

function toDec(x: number): Dec {
  if (!Number.isFinite(x)) throw new Error(`Cannot create a Decimal from ${x}`);
  const s = String(x);
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(s);
  if (!m) return { v: 0n, scale: 0 };
  const frac = m[3] ?? '';
  let v = BigInt((m[1] ?? '') + m[2]! + frac);
  let scale = frac.length - Number(m[4] ?? 0);
  if (scale < 0) {
    v *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { v, scale };
}

function rescale(d: Dec, scale: number): bigint {
  return d.v * 10n ** BigInt(scale - d.scale);
}

function decToNumber(d: Dec): number {
  const neg = d.v < 0n;
  let s = (neg ? -d.v : d.v).toString();
  if (d.scale > 0) {
    s = s.padStart(d.scale + 1, '0');
    s = s.slice(0, s.length - d.scale) + '.' + s.slice(s.length - d.scale);
  }
  return Number((neg ? '-' : '') + s);
}

function decOp(a: unknown, rest: unknown[], op: '+' | '-' | '*' | '/'): number | GoFloat {
  let acc = toDec(toFloat64(a));
  for (const x of rest) {
    const d = toDec(toFloat64(x));
    if (op === '+' || op === '-') {
      const scale = Math.max(acc.scale, d.scale);
      const av = rescale(acc, scale);
      const dv = rescale(d, scale);
      acc = { v: op === '+' ? av + dv : av - dv, scale };
    } else if (op === '*') {
      acc = { v: acc.v * d.v, scale: acc.scale + d.scale };
    } else {
      if (d.v === 0n) throw new Error('decimal division by zero');
      // DivRound to 16 decimal places, half away from zero
      const prec = 16;
      const num = acc.v * 10n ** BigInt(prec + d.scale - acc.scale + 1);
      let q = num / d.v;
      const neg = q < 0n;
      if (neg) q = -q;
      q = (q + 5n) / 10n;
      acc = { v: neg ? -q : q, scale: prec };
    }
  }
  return floatResult(decToNumber(acc));
}

// ---------------------------------------------------------------------------
// duration

function durationString(d: bigint): string {
  if (d === 0n) return '0s';
  const neg = d < 0n;
  let u = neg ? -d : d;
  let out: string;
  if (u < 1000000000n) {
    let unit: string;
    let scale: bigint;
    if (u < 1000n) return (neg ? '-' : '') + u.toString() + 'ns';
    if (u < 1000000n) {
      unit = 'µs';
      scale = 1000n;
    } else {
      unit = 'ms';
      scale = 1000000n;
    }
    out = fracString(u, scale) + unit;
  } else {
    const secs = u % 60000000000n;
    u /= 60000000000n;
    out = fracString(secs, 1000000000n) + 's';
    if (u > 0n) {
      out = (u % 60n).toString() + 'm' + out;
      u /= 60n;
      if (u > 0n) out = u.toString() + 'h' + out;
    }
  }
  return (neg ? '-' : '') + out;
}

function fracString(v: bigint, scale: bigint): string {
  const whole = v / scale;
  let frac = (v % scale).toString().padStart(scale.toString().length - 1, '0').replace(/0+$/, '');
  if (frac) frac = '.' + frac;
  return whole.toString() + frac;
}

// ---------------------------------------------------------------------------
// URLs

function urlParse(v: string): Dict {
  const m = /^(?:([A-Za-z][A-Za-z0-9+.-]*):)?(?:\/\/([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$/.exec(v);
  if (!m) throw new Error(`unable to parse url: ${v}`);
  const scheme = m[1] ?? '';
  const authority = m[2];
  let path = m[3] ?? '';
  let opaque = '';
  if (scheme && authority === undefined && !path.startsWith('/')) {
    opaque = path;
    path = '';
  }
  let userinfo = '';
  let host = authority ?? '';
  const at = host.lastIndexOf('@');
  if (at >= 0) {
    userinfo = host.slice(0, at);
    host = host.slice(at + 1);
  }
  const hostname = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '');
  const dec = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  return {
    scheme,
    host,
    hostname,
    path: dec(path),
    query: m[4] ?? '',
    opaque,
    fragment: dec(m[5] ?? ''),
    userinfo,
  };
}

function urlJoin(d: Dict | Map<unknown, unknown> | null): string {
  const g = (k: string): string => {
    const v = dictGet(d, k);
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') throw new Error(`unable to parse ${k} field: ${formatValue(v)}`);
    return v;
  };
  const scheme = g('scheme');
  const userinfo = g('userinfo');
  const host = g('host');
  const path = g('path');
  const query = g('query');
  const fragment = g('fragment');
  const opaque = g('opaque');
  let out = scheme ? scheme + ':' : '';
  if (opaque) out += opaque;
  else {
    if (host || userinfo) out += '//' + (userinfo ? userinfo + '@' : '') + host;
    if (path && host && !path.startsWith('/')) out += '/';
    out += encodeURI(path);
  }
  if (query) out += '?' + query;
  if (fragment) out += '#' + encodeURIComponent(fragment);
  return out;
}

// ---------------------------------------------------------------------------
// the function map

function spec(fn: (...a: never[]) => unknown, params: ParamType[], variadic?: ParamType): FuncSpec {
  return variadic === undefined ? { fn, params, raw: true } : { fn, params, variadic, raw: true };
}

function must<A extends unknown[], R>(f: (...a: A) => R): (...a: A) => R {
  return f;
}

function jsonSafe(f: () => string, fallback: string): string {
  try {
    return f();
  } catch (e) {
    if (e instanceof JSONMarshalError) return fallback;
    throw e;
  }
}

const unsupported = [
  'ago',
  'date',
  'date_in_zone',
  'date_modify',
  'dateInZone',
  'dateModify',
  'durationRound',
  'htmlDate',
  'htmlDateInZone',
  'must_date_modify',
  'mustDateModify',
  'mustToDate',
  'now',
  'toDate',
  'unixEpoch',
  'getHostByName',
  'bcrypt',
  'htpasswd',
  'genPrivateKey',
  'derivePassword',
  'buildCustomCert',
  'genCA',
  'genCAWithKey',
  'genSelfSignedCert',
  'genSelfSignedCertWithKey',
  'genSignedCert',
  'genSignedCertWithKey',
  'encryptAES',
  'decryptAES',
  'semver',
  'semverCompare',
];

/** Sprig's GenericFuncMap (the map sprig.TxtFuncMap() returns). */
export function sprigFuncs(options: SprigOptions = {}): FuncMap {
  const getenv = (name: string): string => options.getenv?.(name) ?? '';

  const listFn = (...v: unknown[]): unknown[] => v;
  const push = (list: unknown, v: unknown): unknown[] => [...asList(list, 'Cannot push on type'), v];
  const prepend = (list: unknown, v: unknown): unknown[] => [v, ...asList(list, 'Cannot prepend on type')];
  const first = (list: unknown): unknown => {
    const l = asList(list, 'Cannot find first on type');
    return l.length === 0 ? null : l[0];
  };
  const last = (list: unknown): unknown => {
    const l = asList(list, 'Cannot find last on type');
    return l.length === 0 ? null : l[l.length - 1];
  };
  const rest = (list: unknown): unknown => {
    const l = asList(list, 'Cannot find rest on type');
    return l.length === 0 ? null : l.slice(1);
  };
  const initial = (list: unknown): unknown => {
    const l = asList(list, 'Cannot find initial on type');
    return l.length === 0 ? null : l.slice(0, -1);
  };
  const reverse = (list: unknown): unknown[] => [...asList(list, 'Cannot find reverse on type')].reverse();
  const compact = (list: unknown): unknown[] => asList(list, 'Cannot compact on type').filter((x) => !empty(x));
  const uniq = (list: unknown): unknown[] => {
    const out: unknown[] = [];
    for (const x of asList(list, 'Cannot find uniq on type')) if (!out.some((y) => deepEqual(x, y))) out.push(x);
    return out;
  };
  const without = (list: unknown, ...omit: unknown[]): unknown[] =>
    asList(list, 'Cannot find without on type').filter((x) => !omit.some((o) => deepEqual(x, o)));
  const has = (needle: unknown, haystack: unknown): boolean => {
    if (haystack === null || haystack === undefined) return false;
    return asList(haystack, 'Cannot find has on type').some((x) => deepEqual(needle, x));
  };
  const sliceFn = (list: unknown, ...indices: unknown[]): unknown => {
    const l = asList(list, 'list should be type of slice or array but');
    if (l.length === 0) return null;
    const start = indices.length > 0 ? Number(toInt64Big(indices[0])) : 0;
    const end = indices.length < 2 ? l.length : Number(toInt64Big(indices[1]));
    if (start < 0 || end > l.length || start > end) {
      throw new Error(`reflect: slice index out of range`);
    }
    return l.slice(start, end);
  };
  const chunk = (size: number, list: unknown): unknown[][] => {
    const l = asList(list, 'Cannot chunk type');
    if (size <= 0) throw new Error('runtime error: integer divide by zero');
    const out: unknown[][] = [];
    for (let i = 0; i < l.length; i += size) out.push(l.slice(i, i + size));
    return out;
  };
  const concat = (...lists: unknown[]): unknown => {
    let res: unknown[] | null = null;
    for (const l of lists) {
      const items = asList(l, 'Cannot concat type');
      res = [...(res ?? []), ...items];
    }
    return res;
  };
  const dict = (...v: unknown[]): Dict => {
    const d = newDict();
    for (let i = 0; i < v.length; i += 2) d[strval(v[i])] = i + 1 >= v.length ? '' : v[i + 1];
    return d;
  };
  const setFn = (d: unknown, key: string, value: unknown): unknown => {
    if (d === null) throw new Error('assignment to entry in nil map');
    if (d instanceof Map) d.set(key, value);
    else (d as Dict)[key] = value;
    return d;
  };
  const unsetFn = (d: unknown, key: string): unknown => {
    if (d instanceof Map) d.delete(key);
    else if (d !== null) delete (d as Dict)[key];
    return d;
  };
  const pick = (d: unknown, ...keys: string[]): Dict => {
    const m = dictOf(d);
    const res = newDict();
    for (const k of keys) if (dictHas(m, k)) res[k] = dictGet(m, k);
    return res;
  };
  const omit = (d: unknown, ...keys: string[]): Dict => {
    const m = dictOf(d);
    const res = newDict();
    for (const k of dictKeys(m)) if (!keys.includes(k)) res[k] = dictGet(m, k);
    return res;
  };
  const merge =
    (overwrite: boolean) =>
    (dst: unknown, ...srcs: unknown[]): unknown => {
      const d = (dst ?? newDict()) as Dict;
      for (const s of srcs) mergeInto(d, dictOf(s), overwrite);
      return d;
    };
  const dig = (...ps: unknown[]): unknown => {
    if (ps.length < 3) throw new Error('dig needs at least three arguments');
    let d = ps[ps.length - 1];
    const def = ps[ps.length - 2];
    const ks = ps.slice(0, -2);
    for (let i = 0; i < ks.length; i++) {
      if (kindOf(d) !== 'map') {
        throw new Error(`interface conversion: interface {} is ${typeName(d)}, not map[string]interface {}`);
      }
      const k = ks[i];
      if (typeof k !== 'string') throw new Error(`interface conversion: interface {} is ${typeName(k)}, not string`);
      if (!dictHas(dictOf(d), k)) return def;
      d = dictGet(dictOf(d), k);
    }
    return d;
  };
  const toJson = (v: unknown): string => marshal(v);
  const toPrettyJson = (v: unknown): string => marshal(v, { indent: '  ' });
  const toRawJson = (v: unknown): string => marshal(v, { escapeHTML: false });
  const fromJson = (v: string): unknown => unmarshal(v);

  const intOp = (f: (a: bigint, b: bigint) => bigint) => (a: unknown, b: unknown) =>
    intResult(I64(f(toInt64Big(a), toInt64Big(b))));
  const divide = (a: bigint, b: bigint): bigint => {
    if (b === 0n) throw new Error('runtime error: integer divide by zero');
    return a / b;
  };
  const modulo = (a: bigint, b: bigint): bigint => {
    if (b === 0n) throw new Error('runtime error: integer divide by zero');
    return a % b;
  };
  const maxFn = (a: unknown, ...i: unknown[]): number | bigint => {
    let aa = toInt64Big(a);
    for (const b of i) {
      const bb = toInt64Big(b);
      if (bb > aa) aa = bb;
    }
    return intResult(aa);
  };
  const minFn = (a: unknown, ...i: unknown[]): number | bigint => {
    let aa = toInt64Big(a);
    for (const b of i) {
      const bb = toInt64Big(b);
      if (bb < aa) aa = bb;
    }
    return intResult(aa);
  };
  const untilStep = (start: number, stop: number, step: number): number[] => {
    const v: number[] = [];
    if (stop < start) {
      if (step >= 0) return v;
      for (let i = start; i > stop; i += step) v.push(i);
      return v;
    }
    if (step <= 0) return v;
    for (let i = start; i < stop; i += step) v.push(i);
    return v;
  };
  const seq = (...params: number[]): string => {
    let inc = 1;
    let r: number[];
    switch (params.length) {
      case 1: {
        const start = 1;
        const end = params[0]!;
        if (end < start) inc = -1;
        r = untilStep(start, end + inc, inc);
        break;
      }
      case 2: {
        const [start, end] = params as [number, number];
        const step = end < start ? -1 : 1;
        r = untilStep(start, end + step, step);
        break;
      }
      case 3: {
        const [start, step, end] = params as [number, number, number];
        if (end < start) {
          inc = -1;
          if (step > 0) return '';
        }
        r = untilStep(start, end + inc, step);
        break;
      }
      default:
        return '';
    }
    return r.join(' ');
  };
  const regexMatch = (regex: string, s: string): boolean => compileRegex(regex, false).test(s);
  const regexFindAll = (regex: string, s: string, n: number): string[] =>
    findAllIndex(compileRegex(regex, true), s, n).map(([a, b]) => s.slice(a, b));
  const regexFind = (regex: string, s: string): string => {
    const m = compileRegex(regex, false).exec(s);
    return m ? m[0] : '';
  };
  const kindIs = (target: string, src: unknown): boolean => target === goKind(src);
  const typeOf = (src: unknown): string => typeName(src);

  const m: Record<string, FuncSpec> = {
    hello: spec(() => 'Hello!', []),

    // strings
    abbrev: spec(abbrev, ['int', 'string']),
    abbrevboth: spec(abbrevboth, ['int', 'int', 'string']),
    trunc: spec(trunc, ['int', 'string']),
    trim: spec(goTrimSpace, ['string']),
    upper: spec((s: string) => s.toUpperCase(), ['string']),
    lower: spec((s: string) => s.toLowerCase(), ['string']),
    title: spec(title, ['string']),
    untitle: spec(untitle, ['string']),
    substr: spec(substring, ['int', 'int', 'string']),
    repeat: spec((count: number, s: string) => {
      if (count < 0) throw new Error('strings: negative Repeat count');
      return s.repeat(count);
    }, ['int', 'string']),
    trimall: spec((a: string, b: string) => goTrim(b, a), ['string', 'string']),
    trimAll: spec((a: string, b: string) => goTrim(b, a), ['string', 'string']),
    trimSuffix: spec((a: string, b: string) => (a !== '' && b.endsWith(a) ? b.slice(0, b.length - a.length) : b), [
      'string',
      'string',
    ]),
    trimPrefix: spec((a: string, b: string) => (b.startsWith(a) ? b.slice(a.length) : b), ['string', 'string']),
    nospace: spec((s: string) => s.replace(/\s+/gu, ''), ['string']),
    initials: spec(initials, ['string']),
    randAlphaNum: spec((n: number) => randomString(n, ALPHA + DIGITS), ['int']),
    randAlpha: spec((n: number) => randomString(n, ALPHA), ['int']),
    randAscii: spec((n: number) => randomString(n, ASCII), ['int']),
    randNumeric: spec((n: number) => randomString(n, DIGITS), ['int']),
    swapcase: spec(swapcase, ['string']),
    shuffle: spec((s: string) => {
      const c = Array.from(s);
      for (let i = c.length - 1; i > 0; i--) {
        const j = lazyBuiltin.crypto().randomInt(i + 1);
        [c[i], c[j]] = [c[j]!, c[i]!];
      }
      return c.join('');
    }, ['string']),
    snakecase: spec((s: string) => delimitedCase(s, '_'), ['string']),
    camelcase: spec(pascalCase, ['string']),
    kebabcase: spec((s: string) => delimitedCase(s, '-'), ['string']),
    wrap: spec((l: number, s: string) => wrapCustom(s, l, '', false), ['int', 'string']),
    wrapWith: spec((l: number, sep: string, s: string) => wrapCustom(s, l, sep, true), ['int', 'string', 'string']),
    contains: spec((sub: string, s: string) => s.includes(sub), ['string', 'string']),
    hasPrefix: spec((pre: string, s: string) => s.startsWith(pre), ['string', 'string']),
    hasSuffix: spec((suf: string, s: string) => s.endsWith(suf), ['string', 'string']),
    quote: spec(
      (...v: unknown[]) =>
        v
          .filter((x) => x !== null && x !== undefined)
          .map((x) => goQuote(strval(x)))
          .join(' '),
      [],
      'any',
    ),
    squote: spec(
      (...v: unknown[]) =>
        v
          .filter((x) => x !== null && x !== undefined)
          .map((x) => `'${formatValue(x)}'`)
          .join(' '),
      [],
      'any',
    ),
    cat: spec((...v: unknown[]) => v.filter((x) => x !== null && x !== undefined).map((x) => formatValue(x)).join(' '), [], 'any'),
    indent: spec((n: number, s: string) => ' '.repeat(Math.max(n, 0)) + s.replace(/\n/g, '\n' + ' '.repeat(Math.max(n, 0))), [
      'int',
      'string',
    ]),
    nindent: spec(
      (n: number, s: string) => '\n' + ' '.repeat(Math.max(n, 0)) + s.replace(/\n/g, '\n' + ' '.repeat(Math.max(n, 0))),
      ['int', 'string'],
    ),
    replace: spec((o: string, n: string, src: string) => (o === '' ? goReplaceEmpty(src, n) : src.split(o).join(n)), [
      'string',
      'string',
      'string',
    ]),
    plural: spec((one: string, many: string, count: number) => (count === 1 ? one : many), ['string', 'string', 'int']),
    sha1sum: spec((s: string) => lazyBuiltin.crypto().createHash('sha1').update(s, 'utf8').digest('hex'), ['string']),
    sha256sum: spec((s: string) => lazyBuiltin.crypto().createHash('sha256').update(s, 'utf8').digest('hex'), ['string']),
    sha512sum: spec((s: string) => lazyBuiltin.crypto().createHash('sha512').update(s, 'utf8').digest('hex'), ['string']),
    adler32sum: spec((s: string) => String(adler32(s)), ['string']),
    toString: spec(strval, ['any']),

    // conversions and math
    atoi: spec((s: string) => {
      if (!/^[+-]?\d+$/.test(s)) return 0;
      const r = parseGoInt(s.replace(/^\+/, ''));
      return r === undefined ? 0 : intResult(r);
    }, ['string']),
    int64: spec(toInt64, ['any']),
    int: spec(toInt64, ['any']),
    float64: spec((v: unknown) => floatResult(toFloat64(v)), ['any']),
    seq: spec(seq, [], 'int'),
    toDecimal: spec((v: unknown) => {
      const s = sprint([v]);
      if (!/^[+-]?[0-7]+$/.test(s)) return 0;
      const r = BigInt.asIntN(64, BigInt('0o' + s.replace(/^[+-]/, '')));
      return intResult(s.startsWith('-') ? -r : r);
    }, ['any']),
    split: spec((sep: string, orig: string) => splitMap(splitN(orig, sep, -1)), ['string', 'string']),
    splitList: spec((sep: string, orig: string) => splitN(orig, sep, -1), ['string', 'string']),
    splitn: spec((sep: string, n: number, orig: string) => splitMap(splitN(orig, sep, n)), ['string', 'int', 'string']),
    toStrings: spec(strslice, ['any']),
    until: spec((count: number) => untilStep(0, count, count < 0 ? -1 : 1), ['int']),
    untilStep: spec(untilStep, ['int', 'int', 'int']),
    add1: spec((i: unknown) => intResult(I64(toInt64Big(i) + 1n)), ['any']),
    add: spec((...i: unknown[]) => intResult(I64(i.reduce<bigint>((a, b) => a + toInt64Big(b), 0n))), [], 'any'),
    sub: spec(intOp((a, b) => a - b), ['any', 'any']),
    div: spec(intOp(divide), ['any', 'any']),
    mod: spec(intOp(modulo), ['any', 'any']),
    mul: spec((a: unknown, ...v: unknown[]) => intResult(v.reduce<bigint>((acc, b) => I64(acc * toInt64Big(b)), toInt64Big(a))), [
      'any',
    ], 'any'),
    randInt: spec((min: number, max: number) => {
      if (max - min <= 0) throw new Error('invalid argument to Intn');
      return min + lazyBuiltin.crypto().randomInt(max - min);
    }, ['int', 'int']),
    add1f: spec((i: unknown) => decOp(i, [1], '+'), ['any']),
    addf: spec((...i: unknown[]) => decOp(0, i, '+'), [], 'any'),
    subf: spec((a: unknown, ...v: unknown[]) => decOp(a, v, '-'), ['any'], 'any'),
    divf: spec((a: unknown, ...v: unknown[]) => decOp(a, v, '/'), ['any'], 'any'),
    mulf: spec((a: unknown, ...v: unknown[]) => decOp(a, v, '*'), ['any'], 'any'),
    biggest: spec(maxFn, ['any'], 'any'),
    max: spec(maxFn, ['any'], 'any'),
    min: spec(minFn, ['any'], 'any'),
    maxf: spec((a: unknown, ...i: unknown[]) => floatResult(Math.max(toFloat64(a), ...i.map(toFloat64))), ['any'], 'any'),
    minf: spec((a: unknown, ...i: unknown[]) => floatResult(Math.min(toFloat64(a), ...i.map(toFloat64))), ['any'], 'any'),
    ceil: spec((a: unknown) => floatResult(Math.ceil(toFloat64(a))), ['any']),
    floor: spec((a: unknown) => floatResult(Math.floor(toFloat64(a))), ['any']),
    round: spec((a: unknown, p: number, ...rOpt: number[]) => {
      const roundOn = rOpt.length > 0 ? rOpt[0]! : 0.5;
      const pow = 10 ** p;
      const digit = pow * toFloat64(a);
      const div = digit - Math.trunc(digit);
      return floatResult((div >= roundOn ? Math.ceil(digit) : Math.floor(digit)) / pow);
    }, ['any', 'int'], 'float64'),

    // string lists
    join: spec((sep: string, v: unknown) => strslice(v).join(sep), ['string', 'any']),
    sortAlpha: spec((list: unknown) => {
      const k = kindOf(list);
      if (k === 'slice' || k === 'bytes') return strslice(list).sort();
      return [strval(list)];
    }, ['any']),

    // defaults
    default: spec((d: unknown, ...given: unknown[]) => (given.length === 0 || empty(given[0]) ? d : given[0]), ['any'], 'any'),
    empty: spec(empty, ['any']),
    coalesce: spec((...v: unknown[]) => v.find((x) => !empty(x)) ?? null, [], 'any'),
    all: spec((...v: unknown[]) => v.every((x) => !empty(x)), [], 'any'),
    any: spec((...v: unknown[]) => v.some((x) => !empty(x)), [], 'any'),
    compact: spec(compact, ['any']),
    mustCompact: spec(must(compact), ['any']),
    fromJson: spec((v: string) => {
      try {
        return fromJson(v);
      } catch {
        return null;
      }
    }, ['string']),
    mustFromJson: spec(fromJson, ['string']),
    toJson: spec((v: unknown) => jsonSafe(() => toJson(v), ''), ['any']),
    mustToJson: spec(toJson, ['any']),
    toPrettyJson: spec((v: unknown) => jsonSafe(() => toPrettyJson(v), ''), ['any']),
    mustToPrettyJson: spec(toPrettyJson, ['any']),
    toRawJson: spec(toRawJson, ['any']),
    mustToRawJson: spec(toRawJson, ['any']),
    ternary: spec((vt: unknown, vf: unknown, v: boolean) => (v ? vt : vf), ['any', 'any', 'bool']),
    deepCopy: spec(deepCopy, ['any']),
    mustDeepCopy: spec(deepCopy, ['any']),

    // reflection
    typeOf: spec(typeOf, ['any']),
    typeIs: spec((target: string, src: unknown) => target === typeOf(src), ['string', 'any']),
    typeIsLike: spec((target: string, src: unknown) => target === typeOf(src) || target === '*' + typeOf(src), [
      'string',
      'any',
    ]),
    kindOf: spec(goKind, ['any']),
    kindIs: spec(kindIs, ['string', 'any']),
    deepEqual: spec(deepEqual, ['any', 'any']),

    // OS
    env: spec((name: string) => getenv(name), ['string']),
    expandenv: spec((s: string) => expand(s, getenv), ['string']),

    // paths (filepath on Linux behaves like path)
    base: spec(pathBase, ['string']),
    dir: spec(pathDir, ['string']),
    clean: spec(pathClean, ['string']),
    ext: spec(pathExt, ['string']),
    isAbs: spec((p: string) => pathPosix.isAbsolute(p), ['string']),
    osBase: spec(pathBase, ['string']),
    osClean: spec(pathClean, ['string']),
    osDir: spec(pathDir, ['string']),
    osExt: spec(pathExt, ['string']),
    osIsAbs: spec((p: string) => pathPosix.isAbsolute(p), ['string']),

    // encoding
    b64enc: spec((s: string) => Buffer.from(s, 'utf8').toString('base64'), ['string']),
    b64dec: spec(base64Decode, ['string']),
    b32enc: spec(base32Encode, ['string']),
    b32dec: spec(base32Decode, ['string']),

    // data structures
    tuple: spec(listFn, [], 'any'),
    list: spec(listFn, [], 'any'),
    dict: spec(dict, [], 'any'),
    get: spec((d: unknown, key: string) => {
      const m2 = dictOf(d);
      return dictHas(m2, key) ? dictGet(m2, key) : '';
    }, ['map', 'string']),
    set: spec(setFn, ['map', 'string', 'any']),
    unset: spec(unsetFn, ['map', 'string']),
    hasKey: spec((d: unknown, key: string) => dictHas(dictOf(d), key), ['map', 'string']),
    pluck: spec((key: string, ...ds: unknown[]) => ds.filter((d) => dictHas(dictOf(d), key)).map((d) => dictGet(dictOf(d), key)), [
      'string',
    ], 'map'),
    keys: spec((...ds: unknown[]) => ds.flatMap((d) => dictKeys(dictOf(d))), [], 'map'),
    pick: spec(pick, ['map'], 'string'),
    omit: spec(omit, ['map'], 'string'),
    merge: spec(merge(false), ['map'], 'map'),
    mergeOverwrite: spec(merge(true), ['map'], 'map'),
    mustMerge: spec(merge(false), ['map'], 'map'),
    mustMergeOverwrite: spec(merge(true), ['map'], 'map'),
    values: spec((d: unknown) => dictKeys(dictOf(d)).map((k) => dictGet(dictOf(d), k)), ['map']),
    append: spec(push, ['any', 'any']),
    push: spec(push, ['any', 'any']),
    mustAppend: spec(push, ['any', 'any']),
    mustPush: spec(push, ['any', 'any']),
    prepend: spec(prepend, ['any', 'any']),
    mustPrepend: spec(prepend, ['any', 'any']),
    first: spec(first, ['any']),
    mustFirst: spec(first, ['any']),
    rest: spec(rest, ['any']),
    mustRest: spec(rest, ['any']),
    last: spec(last, ['any']),
    mustLast: spec(last, ['any']),
    initial: spec(initial, ['any']),
    mustInitial: spec(initial, ['any']),
    reverse: spec(reverse, ['any']),
    mustReverse: spec(reverse, ['any']),
    uniq: spec(uniq, ['any']),
    mustUniq: spec(uniq, ['any']),
    without: spec(without, ['any'], 'any'),
    mustWithout: spec(without, ['any'], 'any'),
    has: spec(has, ['any', 'any']),
    mustHas: spec(has, ['any', 'any']),
    slice: spec(sliceFn, ['any'], 'any'),
    mustSlice: spec(sliceFn, ['any'], 'any'),
    concat: spec(concat, [], 'any'),
    dig: spec(dig, [], 'any'),
    chunk: spec(chunk, ['int', 'any']),
    mustChunk: spec(chunk, ['int', 'any']),

    // flow control
    fail: spec((msg: string) => {
      throw new Error(msg);
    }, ['string']),

    // regular expressions
    regexMatch: spec(regexMatch, ['string', 'string']),
    mustRegexMatch: spec(regexMatch, ['string', 'string']),
    regexFindAll: spec(regexFindAll, ['string', 'string', 'int']),
    mustRegexFindAll: spec(regexFindAll, ['string', 'string', 'int']),
    regexFind: spec(regexFind, ['string', 'string']),
    mustRegexFind: spec(regexFind, ['string', 'string']),
    regexReplaceAll: spec((r: string, s: string, repl: string) => regexReplace(r, s, repl, false), ['string', 'string', 'string']),
    mustRegexReplaceAll: spec((r: string, s: string, repl: string) => regexReplace(r, s, repl, false), [
      'string',
      'string',
      'string',
    ]),
    regexReplaceAllLiteral: spec((r: string, s: string, repl: string) => regexReplace(r, s, repl, true), [
      'string',
      'string',
      'string',
    ]),
    mustRegexReplaceAllLiteral: spec((r: string, s: string, repl: string) => regexReplace(r, s, repl, true), [
      'string',
      'string',
      'string',
    ]),
    regexSplit: spec(regexSplit, ['string', 'string', 'int']),
    mustRegexSplit: spec(regexSplit, ['string', 'string', 'int']),
    regexQuoteMeta: spec((s: string) => s.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&'), ['string']),

    // URLs
    urlParse: spec(urlParse, ['string']),
    urlJoin: spec((d: unknown) => urlJoin(dictOf(d)), ['map']),

    // time
    duration: spec((sec: unknown) => {
      const s = toInt64Big(sec);
      return durationString(I64(s * 1000000000n));
    }, ['any']),

    // misc
    randBytes: spec((n: number) => lazyBuiltin.crypto().randomBytes(n).toString('base64'), ['int']),
    uuidv4: spec(() => lazyBuiltin.crypto().randomUUID(), []),
  };
  for (const name of unsupported) {
    m[name] = {
      fn: () => {
        throw new Error(`function ${JSON.stringify(name)} is not supported by this template engine`);
      },
    };
  }
  return m;
}

/** strings.Replace(s, "", new, -1): inserts `new` around every rune. */
function goReplaceEmpty(s: string, n: string): string {
  const chars = Array.from(s);
  return n + chars.map((c) => c + n).join('');
}
