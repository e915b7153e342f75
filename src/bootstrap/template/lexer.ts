/**
 * Lexer for Go text/template syntax (default delimiters `{{` `}}`).
 *
 * Produces the whole token list up front; lexing stops at the first error, which
 * is returned as an `Error` token (the parser reports it). Trim markers follow Go:
 * `{{- ` trims the whitespace before the action and ` -}}` the whitespace after it;
 * the marker must be separated from the action body by a space, tab or newline.
 */

export enum T {
  Error,
  Bool,
  Char,
  CharConstant,
  Comment,
  Complex,
  Assign,
  Declare,
  EOF,
  Field,
  Identifier,
  LeftDelim,
  LeftParen,
  Number,
  Pipe,
  RawString,
  RightDelim,
  RightParen,
  Space,
  String,
  Text,
  Variable,
  // keywords (String() prints them as <word>)
  Keyword,
  Block,
  Break,
  Continue,
  Dot,
  Define,
  Else,
  End,
  If,
  Nil,
  Range,
  Template,
  With,
}

export interface Token {
  typ: T;
  pos: number; // offset (UTF-16 index) in the template text
  val: string;
}

const keywords: Record<string, T> = {
  '.': T.Dot,
  block: T.Block,
  break: T.Break,
  continue: T.Continue,
  define: T.Define,
  else: T.Else,
  end: T.End,
  if: T.If,
  range: T.Range,
  nil: T.Nil,
  template: T.Template,
  with: T.With,
};

const LEFT = '{{';
const RIGHT = '}}';

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

const alnumRe = /[\p{L}\p{Nd}_]/u;

function isAlphaNumeric(c: string | undefined): boolean {
  if (c === undefined) return false;
  const code = c.charCodeAt(0);
  if (code < 0x80) {
    return (
      code === 0x5f || (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a)
    );
  }
  return alnumRe.test(c);
}

function trimRightLen(s: string, start: number, end: number): number {
  let i = end;
  while (i > start && isSpace(s[i - 1])) i--;
  return end - i;
}

/** Formats a code point as Go's %#U does: U+007D '}'. */
export function goUnicode(c: string): string {
  const cp = c.codePointAt(0) ?? 0;
  return `U+${cp.toString(16).toUpperCase().padStart(4, '0')} '${c}'`;
}

export interface LexOptions {
  breakOK: boolean;
  continueOK: boolean;
}

export function lex(input: string, opts: LexOptions): Token[] {
  const tokens: Token[] = [];
  let pos = 0;
  const n = input.length;

  const emit = (typ: T, start: number, end: number): void => {
    tokens.push({ typ, pos: start, val: input.slice(start, end) });
  };
  const fail = (start: number, msg: string): Token[] => {
    tokens.push({ typ: T.Error, pos: start, val: msg });
    return tokens;
  };
  const hasLeftTrim = (at: number): boolean => input[at] === '-' && isSpace(input[at + 1]);
  const hasRightTrim = (at: number): boolean => isSpace(input[at]) && input[at + 1] === '-';
  // Is there a right delimiter at `at`, possibly preceded by a trim marker?
  const atRightDelim = (at: number): [boolean, boolean] => {
    if (hasRightTrim(at) && input.startsWith(RIGHT, at + 2)) return [true, true];
    if (input.startsWith(RIGHT, at)) return [true, false];
    return [false, false];
  };
  const skipSpaces = (at: number): number => {
    while (at < n && isSpace(input[at])) at++;
    return at;
  };
  const atTerminator = (at: number): boolean => {
    const c = input[at];
    if (c === undefined || isSpace(c)) return true;
    switch (c) {
      case '.':
      case ',':
      case '|':
      case ':':
      case ')':
      case '(':
        return true;
    }
    return input.startsWith(RIGHT, at);
  };

  for (;;) {
    // ---- text
    const x = input.indexOf(LEFT, pos);
    if (x < 0) {
      if (pos < n) emit(T.Text, pos, n);
      tokens.push({ typ: T.EOF, pos: n, val: '' });
      return tokens;
    }
    const trimLeft = hasLeftTrim(x + LEFT.length);
    const textEnd = trimLeft ? x - trimRightLen(input, pos, x) : x;
    if (textEnd > pos) emit(T.Text, pos, textEnd);
    const afterMarker = trimLeft ? 2 : 0;
    const bodyStart = x + LEFT.length + afterMarker;
    // ---- comment
    if (input.startsWith('/*', bodyStart)) {
      const close = input.indexOf('*/', bodyStart + 2);
      if (close < 0) return fail(x, 'unclosed comment');
      const after = close + 2;
      const [delim, trim] = atRightDelim(after);
      if (!delim) return fail(x, 'comment ends before closing delimiter');
      tokens.push({ typ: T.Comment, pos: bodyStart, val: input.slice(bodyStart, after) });
      pos = after + (trim ? 2 : 0) + RIGHT.length;
      if (trim) pos = skipSpaces(pos);
      continue;
    }
    emit(T.LeftDelim, x, x + LEFT.length);
    pos = bodyStart;
    // ---- inside action
    let parenDepth = 0;
    for (;;) {
      const [delim, trim] = atRightDelim(pos);
      if (delim) {
        if (parenDepth !== 0) return fail(pos, 'unclosed left paren');
        if (trim) pos += 2;
        emit(T.RightDelim, pos, pos + RIGHT.length);
        pos += RIGHT.length;
        if (trim) pos = skipSpaces(pos);
        break;
      }
      const start = pos;
      const c = input[pos];
      if (c === undefined) return fail(start, 'unclosed action');
      if (isSpace(c)) {
        let end = pos;
        while (isSpace(input[end])) end++;
        // A trim-marked right delimiter starts with a space: leave it for the delimiter.
        if (hasRightTrim(end - 1) && input.startsWith(RIGHT, end + 1)) {
          end--;
          if (end === start) {
            pos = end;
            continue;
          }
        }
        emit(T.Space, start, end);
        pos = end;
        continue;
      }
      pos++;
      switch (c) {
        case '=':
          emit(T.Assign, start, pos);
          continue;
        case ':':
          if (input[pos] !== '=') return fail(start, 'expected :=');
          pos++;
          emit(T.Declare, start, pos);
          continue;
        case '|':
          emit(T.Pipe, start, pos);
          continue;
        case '"': {
          for (;;) {
            const d = input[pos++];
            if (d === '\\') {
              const e = input[pos];
              if (e !== undefined && e !== '\n') {
                pos++;
                continue;
              }
              return fail(start, 'unterminated quoted string');
            }
            if (d === undefined || d === '\n') return fail(start, 'unterminated quoted string');
            if (d === '"') break;
          }
          emit(T.String, start, pos);
          continue;
        }
        case '`': {
          const close = input.indexOf('`', pos);
          if (close < 0) return fail(start, 'unterminated raw quoted string');
          pos = close + 1;
          emit(T.RawString, start, pos);
          continue;
        }
        case "'": {
          for (;;) {
            const d = input[pos++];
            if (d === '\\') {
              const e = input[pos];
              if (e !== undefined && e !== '\n') {
                pos++;
                continue;
              }
              return fail(start, 'unterminated character constant');
            }
            if (d === undefined || d === '\n') return fail(start, 'unterminated character constant');
            if (d === "'") break;
          }
          emit(T.CharConstant, start, pos);
          continue;
        }
        case '$':
        case '.': {
          if (c === '.') {
            const d = input[pos];
            if (d !== undefined && d >= '0' && d <= '9') {
              // a number like .5
              pos = start;
              const r = lexNumber();
              if (r) return r;
              continue;
            }
          }
          if (atTerminator(pos)) {
            emit(c === '$' ? T.Variable : T.Dot, start, pos);
            continue;
          }
          while (isAlphaNumeric(input[pos])) pos++;
          if (!atTerminator(pos)) return fail(start, `bad character ${goUnicode(charAt(pos))}`);
          emit(c === '$' ? T.Variable : T.Field, start, pos);
          continue;
        }
        case '(':
          emit(T.LeftParen, start, pos);
          parenDepth++;
          continue;
        case ')':
          emit(T.RightParen, start, pos);
          parenDepth--;
          if (parenDepth < 0) return fail(start, `unexpected right paren ${goUnicode(c)}`);
          continue;
      }
      if (c === '+' || c === '-' || (c >= '0' && c <= '9')) {
        pos = start;
        const r = lexNumber();
        if (r) return r;
        continue;
      }
      if (isAlphaNumeric(c)) {
        while (isAlphaNumeric(input[pos])) pos++;
        const word = input.slice(start, pos);
        if (!atTerminator(pos)) return fail(start, `bad character ${goUnicode(charAt(pos))}`);
        const kw = keywords[word];
        if (kw !== undefined && kw > T.Keyword) {
          if ((kw === T.Break && !opts.breakOK) || (kw === T.Continue && !opts.continueOK)) {
            emit(T.Identifier, start, pos);
          } else {
            emit(kw, start, pos);
          }
        } else if (word === 'true' || word === 'false') {
          emit(T.Bool, start, pos);
        } else {
          emit(T.Identifier, start, pos);
        }
        continue;
      }
      const code = c.charCodeAt(0);
      if (code >= 0x20 && code < 0x7f) {
        emit(T.Char, start, pos);
        continue;
      }
      return fail(start, `unrecognized character in action: ${goUnicode(charAt(start))}`);
    }
  }

  function charAt(at: number): string {
    const cp = input.codePointAt(at);
    return cp === undefined ? '' : String.fromCodePoint(cp);
  }

  /** Scans a number at pos; returns the token list on error, undefined on success. */
  function lexNumber(): Token[] | undefined {
    const start = pos;
    if (!scanNumber()) return fail(start, `bad number syntax: ${JSON.stringify(input.slice(start, pos))}`);
    const sign = input[pos];
    if (sign === '+' || sign === '-') {
      // complex: 1+2i
      if (!scanNumber() || input[pos - 1] !== 'i') {
        return fail(start, `bad number syntax: ${JSON.stringify(input.slice(start, pos))}`);
      }
      emit(T.Complex, start, pos);
    } else {
      emit(T.Number, start, pos);
    }
    return undefined;
  }

  function accept(valid: string): boolean {
    const c = input[pos];
    if (c !== undefined && valid.includes(c)) {
      pos++;
      return true;
    }
    return false;
  }

  function acceptRun(valid: string): void {
    while (pos < n && valid.includes(input[pos]!)) pos++;
  }

  function scanNumber(): boolean {
    accept('+-');
    let digits = '0123456789_';
    if (accept('0')) {
      if (accept('xX')) digits = '0123456789abcdefABCDEF_';
      else if (accept('oO')) digits = '01234567_';
      else if (accept('bB')) digits = '01_';
    }
    acceptRun(digits);
    if (accept('.')) acceptRun(digits);
    if (digits.length === 11 && accept('eE')) {
      accept('+-');
      acceptRun('0123456789_');
    }
    if (digits.length === 23 && accept('pP')) {
      accept('+-');
      acceptRun('0123456789_');
    }
    accept('i');
    if (isAlphaNumeric(input[pos])) {
      pos++;
      return false;
    }
    return true;
  }
}
