/**
 * A subset of Go's fmt package (Sprint, Sprintln, Sprintf) over the value model of
 * values.ts, plus the strconv helpers it needs (Quote, QuoteRune, float formatting).
 *
 * Supported verbs: %v %+v %#v %T %% %t %d %b %o %O %x %X %c %q %U %e %E %f %F %g %G %s,
 * flags `+ - # 0 space`, width, precision, `*` and explicit argument indexes `[n]`.
 * Error forms follow Go: %!d(string=x), %!d(MISSING), %!(EXTRA int=1), %!(NOVERB) ...
 */
import {
  GoFloat,
  isGoInt,
  kindOf,
  mapGet,
  sortedMapKeys,
  stringerOf,
  structFields,
  typeName,
  utf8Bytes,
  utf8String,
} from './values.js';

// ---------------------------------------------------------------------------
// strconv: quoting

const printableRe = /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u;

/** Go's unicode.IsPrint. */
export function isPrint(cp: number): boolean {
  if (cp < 0x20) return false;
  if (cp < 0x7f) return true;
  if (cp === 0x7f) return false;
  if (cp >= 0xd800 && cp <= 0xdfff) return false;
  return printableRe.test(String.fromCodePoint(cp));
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

function escapeRune(cp: number, quote: number, asciiOnly: boolean): string {
  if (cp === quote || cp === 0x5c) return '\\' + String.fromCodePoint(cp);
  if (asciiOnly) {
    if (cp < 0x80 && isPrint(cp)) return String.fromCodePoint(cp);
  } else if (isPrint(cp)) {
    return String.fromCodePoint(cp);
  }
  switch (cp) {
    case 0x07:
      return '\\a';
    case 0x08:
      return '\\b';
    case 0x0c:
      return '\\f';
    case 0x0a:
      return '\\n';
    case 0x0d:
      return '\\r';
    case 0x09:
      return '\\t';
    case 0x0b:
      return '\\v';
  }
  if (cp < 0x20 || cp === 0x7f) return '\\x' + hex(cp, 2);
  if (cp >= 0xd800 && cp <= 0xdfff) return '\\ufffd';
  if (cp < 0x10000) return '\\u' + hex(cp, 4);
  return '\\U' + hex(cp, 8);
}

/** strconv.Quote (or QuoteToASCII when asciiOnly). */
export function quote(s: string, asciiOnly = false): string {
  let out = '"';
  for (const ch of s) out += escapeRune(ch.codePointAt(0)!, 0x22, asciiOnly);
  return out + '"';
}

/** strconv.QuoteRune. */
export function quoteRune(cp: number, asciiOnly = false): string {
  if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) cp = 0xfffd;
  return "'" + escapeRune(cp, 0x27, asciiOnly) + "'";
}

/** strconv.CanBackquote. */
export function canBackquote(s: string): boolean {
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0x60 || cp === 0xfeff) return false;
    if ((cp < 0x20 && cp !== 0x09) || cp === 0x7f) return false;
    if (cp >= 0xd800 && cp <= 0xdfff) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// strconv: floats. Digits are exact (BigInt) and rounded half-to-even, as Go does.

interface Digits {
  d: string; // significant digits without leading/trailing zeros ('' for zero)
  dp: number; // value = 0.d × 10^dp
}

function exactDigits(x: number): Digits {
  if (x === 0) return { d: '', dp: 0 };
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  let exp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (exp === 0) exp = 1;
  else mant |= 1n << 52n;
  const e2 = exp - 1075;
  let s: string;
  let dp: number;
  if (e2 >= 0) {
    s = (mant << BigInt(e2)).toString();
    dp = s.length;
  } else {
    s = (mant * 5n ** BigInt(-e2)).toString();
    dp = s.length + e2;
  }
  return { d: s.replace(/0+$/, ''), dp };
}

function shortestDigits(x: number): Digits {
  if (x === 0) return { d: '', dp: 0 };
  const e = x.toExponential();
  const i = e.indexOf('e');
  const d = e.slice(0, i).replace('.', '').replace(/0+$/, '');
  return { d, dp: Number(e.slice(i + 1)) + 1 };
}

function roundDigits(g: Digits, nd: number): Digits {
  const { d, dp } = g;
  if (nd >= d.length) return g;
  if (nd < 0) return { d: '', dp: 0 };
  let up: boolean;
  const c = d.charCodeAt(nd);
  if (c > 0x35) up = true;
  else if (c < 0x35) up = false;
  else if (nd + 1 < d.length) up = true; // more nonzero digits follow (d has no trailing zeros)
  else up = nd > 0 && (d.charCodeAt(nd - 1) - 0x30) % 2 === 1;
  if (!up) return { d: d.slice(0, nd).replace(/0+$/, ''), dp: nd === 0 ? 0 : dp };
  let i = nd - 1;
  while (i >= 0 && d[i] === '9') i--;
  if (i < 0) return { d: '1', dp: dp + 1 };
  return { d: d.slice(0, i) + String.fromCharCode(d.charCodeAt(i) + 1), dp };
}

function digitAt(g: Digits, i: number): string {
  return i >= 0 && i < g.d.length ? g.d[i]! : '0';
}

function fmtE(g: Digits, prec: number, e: string): string {
  let s = g.d.length === 0 ? '0' : g.d[0]!;
  if (prec > 0) {
    s += '.';
    for (let i = 1; i <= prec; i++) s += digitAt(g, i);
  }
  const exp = g.d.length === 0 ? 0 : g.dp - 1;
  const ae = Math.abs(exp);
  return s + e + (exp < 0 ? '-' : '+') + (ae < 10 ? '0' : '') + String(ae);
}

function fmtF(g: Digits, prec: number): string {
  let s = '';
  if (g.dp > 0) {
    for (let i = 0; i < g.dp; i++) s += digitAt(g, i);
  } else {
    s = '0';
  }
  if (prec > 0) {
    s += '.';
    for (let i = 0; i < prec; i++) s += digitAt(g, g.dp + i);
  }
  return s;
}

/** strconv.FormatFloat(x, fmt, prec, 64) for fmt in e E f F g G (prec -1 = shortest). */
export function formatFloat(x: number, fmt: string, prec: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  const neg = x < 0 || Object.is(x, -0);
  const ax = Math.abs(x);
  const shortest = prec < 0;
  let body: string;
  switch (fmt) {
    case 'e':
    case 'E': {
      const g = shortest ? shortestDigits(ax) : roundDigits(exactDigits(ax), prec + 1);
      body = fmtE(g, shortest ? Math.max(g.d.length - 1, 0) : prec, fmt);
      break;
    }
    case 'f':
    case 'F': {
      if (shortest) {
        const g = shortestDigits(ax);
        body = fmtF(g, Math.max(g.d.length - g.dp, 0));
      } else {
        const ex = exactDigits(ax);
        body = fmtF(roundDigits(ex, ex.dp + prec), prec);
      }
      break;
    }
    default: {
      // g, G
      let p = prec;
      let g: Digits;
      if (shortest) {
        g = shortestDigits(ax);
        p = g.d.length;
      } else {
        if (p === 0) p = 1;
        g = roundDigits(exactDigits(ax), p);
      }
      let eprec = p;
      if (eprec > g.d.length && g.d.length >= g.dp) eprec = g.d.length;
      if (shortest) eprec = 6;
      const exp = g.dp - 1;
      if (g.d.length !== 0 && (exp < -4 || exp >= eprec)) {
        if (p > g.d.length) p = g.d.length;
        body = fmtE(g, p - 1, fmt === 'G' ? 'E' : 'e');
      } else {
        if (p > g.dp) p = g.d.length;
        body = fmtF(g, Math.max(p - g.dp, 0));
      }
    }
  }
  return (neg ? '-' : '') + body;
}

// ---------------------------------------------------------------------------
// The printer

interface Flags {
  plus: boolean;
  minus: boolean;
  sharp: boolean;
  space: boolean;
  zero: boolean;
  plusV: boolean;
  sharpV: boolean;
  wid: number;
  widPresent: boolean;
  prec: number;
  precPresent: boolean;
}

function newFlags(): Flags {
  return {
    plus: false,
    minus: false,
    sharp: false,
    space: false,
    zero: false,
    plusV: false,
    sharpV: false,
    wid: 0,
    widPresent: false,
    prec: 0,
    precPresent: false,
  };
}

function runeCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++;
  }
  return n;
}

class Printer {
  buf = '';
  f: Flags = newFlags();

  private padding(n: number, zero: boolean): string {
    return n > 0 ? (zero ? '0' : ' ').repeat(n) : '';
  }

  pad(s: string): void {
    const f = this.f;
    if (!f.widPresent || f.wid === 0) {
      this.buf += s;
      return;
    }
    const n = f.wid - runeCount(s);
    if (n <= 0) this.buf += s;
    else if (f.minus) this.buf += s + this.padding(n, false);
    else this.buf += this.padding(n, f.zero) + s;
  }

  fmtBool(v: boolean, verb: string, arg: unknown): void {
    if (verb === 't' || verb === 'v') this.pad(v ? 'true' : 'false');
    else this.badVerb(verb, arg);
  }

  fmtInteger(v: bigint, verb: string, arg: unknown): void {
    switch (verb) {
      case 'v':
      case 'd':
        this.intBase(v, 10, 'd');
        return;
      case 'b':
        this.intBase(v, 2, verb);
        return;
      case 'o':
      case 'O':
        this.intBase(v, 8, verb);
        return;
      case 'x':
      case 'X':
        this.intBase(v, 16, verb);
        return;
      case 'c':
        this.pad(runeString(v));
        return;
      case 'q':
        this.fmtQc(v);
        return;
      case 'U':
        this.fmtUnicode(v);
        return;
      default:
        this.badVerb(verb, arg);
    }
  }

  private intBase(v: bigint, base: number, verb: string): void {
    const f = this.f;
    const negative = v < 0n;
    const u = negative ? -v : v;
    let prec = -1;
    if (f.precPresent) {
      prec = f.prec;
      if (prec === 0 && u === 0n) {
        const oldZero = f.zero;
        f.zero = false;
        this.buf += this.padding(f.wid, false);
        f.zero = oldZero;
        return;
      }
    } else if (f.zero && f.widPresent && !f.minus) {
      prec = f.wid;
      if (negative || f.plus || f.space) prec--;
    }
    let digits = u.toString(base);
    if (verb === 'X') digits = digits.toUpperCase();
    if (prec > digits.length) digits = '0'.repeat(prec - digits.length) + digits;
    if (f.sharp) {
      if (base === 2) digits = '0b' + digits;
      else if (base === 8 && digits[0] !== '0') digits = '0' + digits;
      else if (base === 16) digits = (verb === 'X' ? '0X' : '0x') + digits;
    }
    if (verb === 'O') digits = '0o' + digits;
    if (negative) digits = '-' + digits;
    else if (f.plus) digits = '+' + digits;
    else if (f.space) digits = ' ' + digits;
    const oldZero = f.zero;
    f.zero = false;
    this.pad(digits);
    f.zero = oldZero;
  }

  private fmtQc(v: bigint): void {
    const cp = v < 0n || v > 0x10ffffn ? 0xfffd : Number(v);
    const f = this.f;
    if (f.sharp && cp !== 0x60 && canBackquote(String.fromCodePoint(cp)) && isPrint(cp)) {
      this.pad('`' + String.fromCodePoint(cp) + '`');
    } else {
      this.pad(quoteRune(cp, f.plus));
    }
  }

  private fmtUnicode(v: bigint): void {
    const f = this.f;
    let s = 'U+' + (v < 0n ? (-v).toString(16) : v.toString(16)).toUpperCase();
    const digits = s.length - 2;
    let prec = 4;
    if (f.precPresent && f.prec > 4) prec = f.prec;
    if (digits < prec) s = 'U+' + '0'.repeat(prec - digits) + s.slice(2);
    if (f.sharp && v >= 0n && v <= 0x10ffffn && isPrint(Number(v))) s += " '" + String.fromCodePoint(Number(v)) + "'";
    const oldZero = f.zero;
    f.zero = false;
    this.pad(s);
    f.zero = oldZero;
  }

  fmtFloat(v: number, verb: string, arg: unknown): void {
    const f = this.f;
    let prec: number;
    let fmtc: string;
    switch (verb) {
      case 'v':
        fmtc = 'g';
        prec = -1;
        break;
      case 'g':
      case 'G':
        fmtc = verb;
        prec = -1;
        break;
      case 'e':
      case 'E':
      case 'f':
        fmtc = verb;
        prec = 6;
        break;
      case 'F':
        fmtc = 'f';
        prec = 6;
        break;
      default:
        this.badVerb(verb, arg);
        return;
    }
    if (f.precPresent) prec = f.prec;
    let num = formatFloat(v, fmtc, prec);
    if (f.sharp && !f.sharpV) num = sharpFloat(num, fmtc, prec);
    let sign = '+';
    if (num[0] === '-' || num[0] === '+') {
      sign = num[0];
      num = num.slice(1);
    }
    if (f.space && sign === '+' && !f.plus) sign = ' ';
    if (num === 'Inf' || num === 'NaN') {
      const oldZero = f.zero;
      f.zero = false;
      if (num === 'NaN' && !f.space && !f.plus) this.pad(num);
      else this.pad(sign + num);
      f.zero = oldZero;
      return;
    }
    if (f.plus || sign !== '+') {
      const full = sign + num;
      if (f.zero && !f.minus && f.widPresent && f.wid > full.length) {
        this.buf += sign + '0'.repeat(f.wid - full.length) + num;
        return;
      }
      this.pad(full);
      return;
    }
    if (f.zero && !f.minus && f.widPresent && f.wid > num.length) {
      this.buf += '0'.repeat(f.wid - num.length) + num;
      return;
    }
    this.pad(num);
  }

  fmtString(s: string, verb: string, arg: unknown): void {
    const f = this.f;
    switch (verb) {
      case 'v':
        if (f.sharpV) this.fmtQ(s);
        else this.fmtS(s);
        return;
      case 's':
        this.fmtS(s);
        return;
      case 'x':
      case 'X':
        this.fmtSx(utf8Bytes(s), verb);
        return;
      case 'q':
        this.fmtQ(s);
        return;
      default:
        this.badVerb(verb, arg);
    }
  }

  private truncate(s: string): string {
    const f = this.f;
    if (f.precPresent) {
      const chars = Array.from(s);
      if (chars.length > f.prec) return chars.slice(0, Math.max(f.prec, 0)).join('');
    }
    return s;
  }

  fmtS(s: string): void {
    this.pad(this.truncate(s));
  }

  fmtQ(s: string): void {
    const f = this.f;
    s = this.truncate(s);
    if (f.sharp && canBackquote(s)) this.pad('`' + s + '`');
    else this.pad(quote(s, f.plus));
  }

  fmtSx(b: Uint8Array, verb: string): void {
    const f = this.f;
    let length = b.length;
    if (f.precPresent && f.prec < length) length = f.prec;
    let s = '';
    for (let i = 0; i < length; i++) {
      if (f.space && i > 0) s += ' ';
      if (f.sharp && (f.space || i === 0)) s += verb === 'X' ? '0X' : '0x';
      const h = hex(b[i]!, 2);
      s += verb === 'X' ? h.toUpperCase() : h;
    }
    this.pad(s);
  }

  badVerb(verb: string, arg: unknown): void {
    this.buf += '%!' + verb + '(';
    if (arg === undefined || arg === null) {
      this.buf += '<nil>';
    } else {
      this.buf += typeName(arg) + '=';
      this.printArg(arg, 'v');
    }
    this.buf += ')';
  }

  /** Top-level argument (fmt's printArg). */
  printArg(arg: unknown, verb: string): void {
    if (arg === undefined || arg === null) {
      if (verb === 'T' || verb === 'v') this.pad('<nil>');
      else this.badVerb(verb, arg);
      return;
    }
    if (verb === 'T') {
      this.fmtS(typeName(arg));
      return;
    }
    if (verb === 'p') {
      this.badVerb(verb, arg);
      return;
    }
    this.printValue(arg, verb, 0);
  }

  printValue(v: unknown, verb: string, depth: number): void {
    const f = this.f;
    switch (kindOf(v)) {
      case 'invalid':
      case 'nil':
        // only reachable for elements of containers (printArg handles top-level nil)
        if (f.sharpV) this.buf += 'interface {}(nil)';
        else this.pad('<nil>');
        return;
      case 'bool':
        this.fmtBool(v as boolean, verb, v);
        return;
      case 'int':
        this.fmtInteger(BigInt(v as number | bigint), verb, v);
        return;
      case 'float':
        this.fmtFloat(v instanceof GoFloat ? v.value : (v as number), verb, v);
        return;
      case 'string':
        this.fmtString(v as string, verb, v);
        return;
      case 'bytes': {
        const b = v as Uint8Array;
        if (verb === 's' || verb === 'q' || verb === 'x' || verb === 'X') {
          if (verb === 'x' || verb === 'X') this.fmtSx(b, verb);
          else this.fmtString(utf8String(b), verb, v);
          return;
        }
        if (f.sharpV) {
          this.buf += '[]byte{';
          b.forEach((x, i) => {
            this.buf += (i > 0 ? ', ' : '') + '0x' + x.toString(16);
          });
          this.buf += '}';
          return;
        }
        this.buf += '[';
        b.forEach((x, i) => {
          if (i > 0) this.buf += ' ';
          this.fmtInteger(BigInt(x), verb, x);
        });
        this.buf += ']';
        return;
      }
      case 'slice': {
        const a = v as unknown[];
        if (f.sharpV) {
          this.buf += typeName(v) + '{';
          a.forEach((x, i) => {
            if (i > 0) this.buf += ', ';
            this.printValue(x, verb, depth + 1);
          });
          this.buf += '}';
          return;
        }
        this.buf += '[';
        a.forEach((x, i) => {
          if (i > 0) this.buf += ' ';
          this.printValue(x, verb, depth + 1);
        });
        this.buf += ']';
        return;
      }
      case 'map': {
        const m = v as object;
        const keys = sortedMapKeys(m);
        this.buf += f.sharpV ? typeName(v) + '{' : 'map[';
        keys.forEach((k, i) => {
          if (i > 0) this.buf += f.sharpV ? ', ' : ' ';
          this.printValue(k, verb, depth + 1);
          this.buf += ':';
          this.printValue(mapGet(m, k), verb, depth + 1);
        });
        this.buf += f.sharpV ? '}' : ']';
        return;
      }
      case 'struct': {
        if (!f.sharpV && (verb === 'v' || verb === 's' || verb === 'q' || verb === 'x' || verb === 'X')) {
          const s = stringerOf(v);
          if (s !== undefined) {
            this.fmtString(s, verb, v);
            return;
          }
        }
        const fields = structFields(v as object);
        if (f.sharpV) this.buf += typeName(v);
        this.buf += '{';
        fields.forEach(([name, x], i) => {
          if (i > 0) this.buf += f.sharpV ? ', ' : ' ';
          if (f.plusV || f.sharpV) this.buf += name + ':';
          this.printValue(x, verb, depth + 1);
        });
        this.buf += '}';
        return;
      }
      case 'func':
        if (verb === 'v' || verb === 'p') this.pad('0x0');
        else this.badVerb(verb, v);
        return;
    }
  }
}

function runeString(v: bigint): string {
  if (v < 0n || v > 0x10ffffn || (v >= 0xd800n && v <= 0xdfffn)) return '\ufffd';
  return String.fromCodePoint(Number(v));
}

function sharpFloat(num: string, fmtc: string, prec: number): string {
  // The # flag: always print a decimal point; for %g also keep trailing zeros.
  if (num.includes('Inf') || num.includes('NaN')) return num;
  let digits = 0;
  if (fmtc === 'g' || fmtc === 'G') digits = prec < 0 ? 6 : prec;
  const eIdx = num.search(/[eE]/);
  let mant = eIdx >= 0 ? num.slice(0, eIdx) : num;
  const tail = eIdx >= 0 ? num.slice(eIdx) : '';
  let sawNonzero = false;
  let hasPoint = false;
  for (const c of mant) {
    if (c === '.') hasPoint = true;
    else if (c >= '0' && c <= '9') {
      if (c !== '0') sawNonzero = true;
      if (sawNonzero) digits--;
    }
  }
  if (!hasPoint) {
    if (mant.replace(/^[-+]/, '') === '0') digits--;
    mant += '.';
  }
  if (digits > 0) mant += '0'.repeat(digits);
  return mant + tail;
}

function parseNum(s: string, start: number): [number, boolean, number] {
  let n = 0;
  let ok = false;
  let i = start;
  while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) {
    if (n > 1e6) return [0, false, s.length]; // overflow guard
    n = n * 10 + (s.charCodeAt(i) - 0x30);
    ok = true;
    i++;
  }
  return [n, ok, i];
}

function intFromArg(a: unknown): number | undefined {
  const k = kindOf(a);
  if (k === 'int') {
    const n = Number(a as number | bigint);
    if (Math.abs(n) > 1e6) return undefined;
    return n;
  }
  return undefined;
}

/** fmt.Sprintf. */
export function sprintf(format: string, args: unknown[]): string {
  const p = new Printer();
  let argNum = 0;
  let afterIndex = false;
  let reordered = false;
  const end = format.length;
  let i = 0;

  let goodArgNum = true;
  // Parses an explicit argument index "[n]" at idx: returns [argNum, newIdx, found].
  const argNumber = (idx: number): [number, number, boolean] => {
    if (idx >= end || format[idx] !== '[') return [argNum, idx, false];
    reordered = true;
    let index = 0;
    let wid = 1;
    let ok = false;
    if (end - idx >= 3) {
      for (let j = idx + 1; j < end; j++) {
        if (format[j] === ']') {
          const [w, numOk, newi] = parseNum(format, idx + 1);
          wid = j + 1 - idx;
          if (numOk && newi === j) {
            index = w - 1;
            ok = true;
          }
          break;
        }
      }
    }
    if (ok && index >= 0 && index < args.length) return [index, idx + wid, true];
    goodArgNum = false;
    return [argNum, idx + wid, ok];
  };

  while (i < end) {
    const lasti = i;
    while (i < end && format[i] !== '%') i++;
    if (i > lasti) p.buf += format.slice(lasti, i);
    if (i >= end) break;
    i++; // skip %
    goodArgNum = true;
    const f = (p.f = newFlags());
    // flags
    flags: for (; i < end; i++) {
      switch (format[i]) {
        case '#':
          f.sharp = true;
          break;
        case '0':
          f.zero = !f.minus;
          break;
        case '+':
          f.plus = true;
          break;
        case '-':
          f.minus = true;
          f.zero = false;
          break;
        case ' ':
          f.space = true;
          break;
        default:
          break flags;
      }
    }
    // argument index and width
    [argNum, i, afterIndex] = argNumber(i);
    if (i < end && format[i] === '*') {
      i++;
      const w = argNum < args.length ? intFromArg(args[argNum]) : undefined;
      if (w === undefined) {
        p.buf += '%!(BADWIDTH)';
      } else {
        f.wid = w;
        f.widPresent = true;
        if (w < 0) {
          f.minus = true;
          f.zero = false;
          f.wid = -w;
        }
      }
      argNum++;
      afterIndex = false;
    } else {
      const [w, ok, ni] = parseNum(format, i);
      f.wid = w;
      f.widPresent = ok;
      i = ni;
      if (afterIndex && f.widPresent) goodArgNum = false; // "%[3]2d"
    }
    // precision
    if (i + 1 < end && format[i] === '.') {
      i++;
      if (afterIndex) goodArgNum = false; // "%[3].2d"
      [argNum, i, afterIndex] = argNumber(i);
      if (i < end && format[i] === '*') {
        i++;
        const pr = argNum < args.length ? intFromArg(args[argNum]) : undefined;
        if (pr === undefined || pr < 0) {
          f.precPresent = false;
          p.buf += '%!(BADPREC)';
        } else {
          f.prec = pr;
          f.precPresent = true;
        }
        argNum++;
        afterIndex = false;
      } else {
        const [pr, , ni] = parseNum(format, i);
        f.prec = pr;
        f.precPresent = true;
        i = ni;
      }
    }
    if (!afterIndex) [argNum, i, afterIndex] = argNumber(i);
    if (i >= end) {
      p.buf += '%!(NOVERB)';
      break;
    }
    const cp = format.codePointAt(i)!;
    const verb = String.fromCodePoint(cp);
    i += verb.length;
    if (verb === '%') {
      p.buf += '%';
      continue;
    }
    if (!goodArgNum) {
      p.buf += '%!' + verb + '(BADINDEX)';
      continue;
    }
    if (argNum >= args.length) {
      p.buf += '%!' + verb + '(MISSING)';
      continue;
    }
    if (verb === 'w') {
      p.badVerb(verb, args[argNum]);
      argNum++;
      continue;
    }
    if (verb === 'v') {
      if (f.sharp) {
        f.sharp = false;
        f.sharpV = true;
      }
      if (f.plus) {
        f.plus = false;
        f.plusV = true;
      }
    }
    p.printArg(args[argNum], verb);
    argNum++;
  }
  if (!reordered && argNum < args.length) {
    p.f = newFlags();
    p.buf += '%!(EXTRA ';
    for (let j = argNum; j < args.length; j++) {
      if (j > argNum) p.buf += ', ';
      const a = args[j];
      if (a === undefined || a === null) p.buf += '<nil>';
      else {
        p.buf += typeName(a) + '=';
        p.printArg(a, 'v');
      }
    }
    p.buf += ')';
  }
  return p.buf;
}

/** fmt.Sprint: spaces between operands when neither is a string. */
export function sprint(args: unknown[]): string {
  const p = new Printer();
  let prevString = false;
  args.forEach((a, i) => {
    const isString = typeof a === 'string';
    if (i > 0 && !isString && !prevString) p.buf += ' ';
    p.f = newFlags();
    p.printArg(a, 'v');
    prevString = isString;
  });
  return p.buf;
}

/** fmt.Sprintln: always spaces between operands, newline appended. */
export function sprintln(args: unknown[]): string {
  const p = new Printer();
  args.forEach((a, i) => {
    if (i > 0) p.buf += ' ';
    p.f = newFlags();
    p.printArg(a, 'v');
  });
  return p.buf + '\n';
}

/** fmt.Sprint of a single value with %v (the fast path used for template output). */
export function formatValue(v: unknown): string {
  switch (typeof v) {
    case 'string':
      return v;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (Number.isSafeInteger(v)) return String(v);
      if (isGoInt(v)) return BigInt(v).toString();
      return formatFloat(v, 'g', -1);
    case 'bigint':
      return v.toString();
    default: {
      const p = new Printer();
      p.printArg(v, 'v');
      return p.buf;
    }
  }
}
