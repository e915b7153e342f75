/**
 * Go literal syntax used by templates: strconv.Unquote / UnquoteChar for string and
 * character constants, and strconv.ParseInt/ParseUint (base 0) / ParseFloat for numbers.
 */
import { utf8Bytes, utf8String } from './values.js';

export class SyntaxError_ extends Error {
  readonly code = 'TEMPLATE_LITERAL_SYNTAX';
}

const INVALID = 'invalid syntax';

function hexVal(c: string | undefined): number {
  if (c === undefined) return -1;
  const code = c.charCodeAt(0);
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  if (code >= 0x41 && code <= 0x46) return code - 0x41 + 10;
  return -1;
}

/**
 * strconv.UnquoteChar: decodes one (possibly escaped) character of s at i.
 * Returns [value, isByte, next index]; isByte means value is a raw byte (\x, octal).
 */
export function unquoteChar(s: string, i: number, quoteChar: string): [number, boolean, number] {
  const c = s[i];
  if (c === undefined) throw new SyntaxError_(INVALID);
  if (c === quoteChar && (quoteChar === "'" || quoteChar === '"')) throw new SyntaxError_(INVALID);
  if (c !== '\\') {
    const cp = s.codePointAt(i)!;
    return [cp, false, i + (cp > 0xffff ? 2 : 1)];
  }
  const e = s[i + 1];
  i += 2;
  switch (e) {
    case 'a':
      return [7, false, i];
    case 'b':
      return [8, false, i];
    case 'f':
      return [12, false, i];
    case 'n':
      return [10, false, i];
    case 'r':
      return [13, false, i];
    case 't':
      return [9, false, i];
    case 'v':
      return [11, false, i];
    case '\\':
      return [0x5c, false, i];
    case "'":
    case '"':
      if (e !== quoteChar) throw new SyntaxError_(INVALID);
      return [e.charCodeAt(0), false, i];
    case 'x':
    case 'u':
    case 'U': {
      const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      let v = 0;
      for (let j = 0; j < n; j++) {
        const h = hexVal(s[i + j]);
        if (h < 0) throw new SyntaxError_(INVALID);
        v = v * 16 + h;
      }
      i += n;
      if (e === 'x') return [v, true, i];
      if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) throw new SyntaxError_(INVALID);
      return [v, false, i];
    }
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7': {
      let v = e.charCodeAt(0) - 0x30;
      for (let j = 0; j < 2; j++) {
        const d = s.charCodeAt(i + j) - 0x30;
        if (!(d >= 0 && d <= 7)) throw new SyntaxError_(INVALID);
        v = v * 8 + d;
      }
      i += 2;
      if (v > 255) throw new SyntaxError_(INVALID);
      return [v, true, i];
    }
    default:
      throw new SyntaxError_(INVALID);
  }
}

/** strconv.Unquote for "..." and `...` literals. Throws SyntaxError_ on bad syntax. */
export function unquote(lit: string): string {
  const q = lit[0];
  if (lit.length < 2 || lit[lit.length - 1] !== q) throw new SyntaxError_(INVALID);
  const body = lit.slice(1, -1);
  if (q === '`') {
    if (body.includes('`')) throw new SyntaxError_(INVALID);
    return body.includes('\r') ? body.replace(/\r/g, '') : body;
  }
  if (q !== '"') throw new SyntaxError_(INVALID);
  if (!body.includes('\\')) {
    if (body.includes('"') || body.includes('\n')) throw new SyntaxError_(INVALID);
    return body;
  }
  const bytes: number[] = [];
  let i = 0;
  while (i < body.length) {
    if (body[i] === '\n') throw new SyntaxError_(INVALID);
    const [v, isByte, next] = unquoteChar(body, i, '"');
    if (isByte) bytes.push(v);
    else for (const b of utf8Bytes(String.fromCodePoint(v))) bytes.push(b);
    i = next;
  }
  return utf8String(Uint8Array.from(bytes));
}

// ---------------------------------------------------------------------------
// numbers

/** Go's underscoreOK: underscores only between digits or between a base prefix and a digit. */
function underscoreOK(s: string): boolean {
  // saw: '^' beginning, '0' digit or base prefix, '_' underscore, '!' other
  let saw = '^';
  let i = 0;
  if (s.length >= 1 && (s[0] === '-' || s[0] === '+')) s = s.slice(1);
  let hexa = false;
  if (s.length >= 2 && s[0] === '0' && 'bBoOxX'.includes(s[1]!)) {
    i = 2;
    saw = '0';
    hexa = s[1] === 'x' || s[1] === 'X';
  }
  for (; i < s.length; i++) {
    const c = s[i]!;
    if ((c >= '0' && c <= '9') || (hexa && hexVal(c) >= 0)) {
      saw = '0';
      continue;
    }
    if (c === '_') {
      if (saw !== '0') return false;
      saw = '_';
      continue;
    }
    if (saw === '_') return false;
    saw = '!';
  }
  return saw !== '_';
}

const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

function parseBase0(text: string, signed: boolean): bigint | undefined {
  let s = text;
  let neg = false;
  if (s[0] === '+' || s[0] === '-') {
    if (!signed) return undefined;
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s.length === 0) return undefined;
  let base = 10;
  let digits = s;
  if (s[0] === '0') {
    if (s.length >= 3 && (s[1] === 'x' || s[1] === 'X')) {
      base = 16;
      digits = s.slice(2);
    } else if (s.length >= 3 && (s[1] === 'o' || s[1] === 'O')) {
      base = 8;
      digits = s.slice(2);
    } else if (s.length >= 3 && (s[1] === 'b' || s[1] === 'B')) {
      base = 2;
      digits = s.slice(2);
    } else if (s.length > 1) {
      base = 8;
      digits = s.slice(1);
    }
  }
  if (digits.includes('_')) {
    if (!underscoreOK(text)) return undefined;
    digits = digits.replace(/_/g, '');
  }
  if (digits.length === 0) return undefined;
  let v = 0n;
  const b = BigInt(base);
  for (const c of digits) {
    const d = hexVal(c);
    if (d < 0 || d >= base) return undefined;
    v = v * b + BigInt(d);
    if (v > UINT64_MAX) return undefined;
  }
  if (neg) v = -v;
  if (signed) {
    if (v > INT64_MAX || v < -INT64_MAX - 1n) return undefined;
  }
  return v;
}

/** strconv.ParseInt(text, 0, 64). */
export function parseGoInt(text: string): bigint | undefined {
  return parseBase0(text, true);
}

/** strconv.ParseUint(text, 0, 64). */
export function parseGoUint(text: string): bigint | undefined {
  return parseBase0(text, false);
}

const decFloatRe = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const hexFloatRe = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?[pP]([+-]?\d+)$/;

/** strconv.ParseFloat(text, 64); undefined on syntax or range error. */
export function parseGoFloat(text: string): number | undefined {
  let s = text;
  if (s.includes('_')) {
    if (!underscoreOK(s)) return undefined;
    s = s.replace(/_/g, '');
  }
  if (decFloatRe.test(s)) {
    const v = Number(s);
    return Number.isFinite(v) ? v : undefined;
  }
  const m = hexFloatRe.exec(s);
  if (m) {
    const intPart = m[2] ?? '';
    const frac = m[3] ?? '';
    if (intPart.length + frac.length === 0) return undefined;
    const mant = BigInt('0x' + (intPart + frac || '0'));
    const exp = Number(m[4]) - 4 * frac.length;
    const v = Number(mant) * 2 ** exp;
    if (!Number.isFinite(v)) return undefined;
    return m[1] === '-' ? -v : v;
  }
  return undefined;
}
