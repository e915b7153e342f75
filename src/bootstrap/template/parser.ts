/**
 * Parser for Go text/template: tokens (lexer.ts) → trees of nodes (ast.ts).
 * Grammar, error texts and the treatment of {{define}}/{{block}} follow Go's
 * text/template/parse (including the Go 1.23 `{{else with}}` form).
 */
import {
  isEmptyTree,
  nodeString,
  type ArgNode,
  type BranchNode,
  type CommandNode,
  type ListNode,
  type Node,
  type NumberNode,
  type PipeNode,
  type TemplateNode,
  type Tree,
  type VariableNode,
} from './ast.js';
import { TemplateError, locate } from './errors.js';
import { quote } from './fmt.js';
import { T, lex, type Token } from './lexer.js';
import { SyntaxError_, parseGoFloat, parseGoInt, parseGoUint, unquote, unquoteChar } from './literals.js';
import { GoFloat } from './values.js';

const operandStart = new Set<T>([
  T.Bool,
  T.CharConstant,
  T.Complex,
  T.Dot,
  T.Field,
  T.Identifier,
  T.Number,
  T.Nil,
  T.RawString,
  T.String,
  T.Variable,
  T.LeftParen,
]);

/** Go's item.String(), used in "unexpected X in Y" messages. */
function tokenString(tok: Token): string {
  if (tok.typ === T.EOF) return 'EOF';
  if (tok.typ === T.Error) return tok.val;
  if (tok.typ > T.Keyword) return `<${tok.val}>`;
  const chars = Array.from(tok.val);
  if (chars.length > 10) return quote(chars.slice(0, 10).join('')) + '...';
  return quote(tok.val);
}

interface TreeState {
  vars: string[];
  rangeDepth: number;
}

class Parser {
  private i = 0;
  private last: Token;
  private actionPos = -1;
  private state: TreeState = { vars: ['$'], rangeDepth: 0 };

  constructor(
    private readonly parseName: string,
    private readonly text: string,
    private readonly tokens: Token[],
    private readonly hasFunction: (name: string) => boolean,
    readonly treeSet: Map<string, Tree>,
  ) {
    this.last = tokens[0]!;
  }

  // ---- token stream

  private next(): Token {
    const tok = this.tokens[this.i] ?? this.tokens[this.tokens.length - 1]!;
    if (this.i < this.tokens.length) this.i++;
    this.last = tok;
    return tok;
  }

  private backup(): void {
    this.i--;
  }

  private peek(): Token {
    return this.tokens[this.i] ?? this.tokens[this.tokens.length - 1]!;
  }

  private nextNonSpace(): Token {
    let tok = this.next();
    while (tok.typ === T.Space) tok = this.next();
    return tok;
  }

  private peekNonSpace(): Token {
    const tok = this.nextNonSpace();
    this.backup();
    return tok;
  }

  // ---- errors

  private errorf(msg: string, at: Token = this.last): never {
    const { line, column } = locate(this.text, at.pos);
    throw new TemplateError(
      `template: ${this.parseName}:${line}:${column}: ${msg}`,
      'parse',
      this.parseName,
      line,
      column,
      msg,
    );
  }

  private unexpected(tok: Token, context: string): never {
    if (tok.typ === T.Error) {
      let extra = '';
      if (this.actionPos >= 0) {
        const started = locate(this.text, this.actionPos).line;
        if (started !== locate(this.text, tok.pos).line) {
          extra = ` in action started at ${this.parseName}:${started}`;
          if (tok.val.endsWith(' action')) extra = extra.slice(' in action'.length);
        }
      }
      this.errorf(tok.val + extra, tok);
    }
    this.errorf(`unexpected ${tokenString(tok)} in ${context}`, tok);
  }

  private expect(typ: T, context: string): Token {
    const tok = this.nextNonSpace();
    if (tok.typ !== typ) this.unexpected(tok, context);
    return tok;
  }

  // ---- trees

  private add(tree: Tree): void {
    const existing = this.treeSet.get(tree.name);
    if (!existing || isEmptyTree(existing.root)) {
      this.treeSet.set(tree.name, tree);
      return;
    }
    if (!isEmptyTree(tree.root)) this.errorf(`template: multiple definition of template ${quote(tree.name)}`);
  }

  private newTree(name: string, root: ListNode): Tree {
    return { name, parseName: this.parseName, text: this.text, root };
  }

  /** Parse a nested tree body ({{define}} / {{block}}) with fresh variable scope. */
  private withFreshState<R>(fn: () => R): R {
    const saved = this.state;
    this.state = { vars: ['$'], rangeDepth: 0 };
    try {
      return fn();
    } finally {
      this.state = saved;
    }
  }

  parseTop(name: string): void {
    const root: ListNode = { type: 'list', pos: this.peek().pos, nodes: [] };
    while (this.peek().typ !== T.EOF) {
      if (this.peek().typ === T.LeftDelim) {
        const save = this.i;
        this.next();
        if (this.nextNonSpace().typ === T.Define) {
          this.parseDefinition();
          continue;
        }
        this.i = save;
      }
      const n = this.textOrAction();
      if (n.type === 'end' || n.type === 'else') this.errorf(`unexpected ${nodeString(n)}`);
      root.nodes.push(n);
    }
    this.add(this.newTree(name, root));
  }

  private parseDefinition(): void {
    const context = 'define clause';
    const tok = this.nextNonSpace();
    if (tok.typ !== T.String && tok.typ !== T.RawString) this.unexpected(tok, context);
    const name = this.unquoteOrFail(tok.val);
    this.expect(T.RightDelim, context);
    const [root, end] = this.withFreshState(() => this.itemList());
    if (end.type !== 'end') this.errorf(`unexpected ${nodeString(end)} in ${context}`);
    this.add(this.newTree(name, root));
  }

  private itemList(): [ListNode, Node] {
    const list: ListNode = { type: 'list', pos: this.peekNonSpace().pos, nodes: [] };
    while (this.peekNonSpace().typ !== T.EOF) {
      const n = this.textOrAction();
      if (n.type === 'end' || n.type === 'else') return [list, n];
      list.nodes.push(n);
    }
    this.errorf('unexpected EOF');
  }

  private textOrAction(): Node {
    const tok = this.nextNonSpace();
    switch (tok.typ) {
      case T.Text:
        return { type: 'text', pos: tok.pos, text: tok.val };
      case T.LeftDelim: {
        const saved = this.actionPos;
        this.actionPos = tok.pos;
        try {
          return this.action();
        } finally {
          this.actionPos = saved;
        }
      }
      case T.Comment:
        return { type: 'comment', pos: tok.pos, text: tok.val };
      default:
        this.unexpected(tok, 'input');
    }
  }

  private action(): Node {
    const tok = this.nextNonSpace();
    switch (tok.typ) {
      case T.Block:
        return this.blockControl();
      case T.Break:
      case T.Continue: {
        const word = tok.typ === T.Break ? 'break' : 'continue';
        const t2 = this.nextNonSpace();
        if (t2.typ !== T.RightDelim) this.unexpected(t2, `{{${word}}}`);
        if (this.state.rangeDepth === 0) this.errorf(`{{${word}}} outside {{range}}`);
        return { type: word, pos: tok.pos };
      }
      case T.Else:
        return this.elseControl();
      case T.End:
        return { type: 'end', pos: this.expect(T.RightDelim, 'end').pos };
      case T.If:
        return { type: 'if', ...this.parseControl('if') };
      case T.Range:
        return { type: 'range', ...this.parseControl('range') };
      case T.Template:
        return this.templateControl();
      case T.With:
        return { type: 'with', ...this.parseControl('with') };
    }
    this.backup();
    const first = this.peek();
    return { type: 'action', pos: first.pos, pipe: this.pipeline('command', T.RightDelim) };
  }

  private elseControl(): Node {
    const peek = this.peekNonSpace();
    // "{{else if ...}}" and "{{else with ...}}" leave the keyword pending for parseControl.
    if (peek.typ === T.If || peek.typ === T.With) return { type: 'else', pos: peek.pos };
    const tok = this.expect(T.RightDelim, 'else');
    return { type: 'else', pos: tok.pos };
  }

  private parseControl(context: 'if' | 'range' | 'with'): BranchNode {
    const st = this.state;
    const nvars = st.vars.length;
    try {
      const pipe = this.pipeline(context, T.RightDelim);
      if (context === 'range') st.rangeDepth++;
      const [list, firstEnd] = this.itemList();
      let next = firstEnd;
      if (context === 'range') st.rangeDepth--;
      let elseList: ListNode | null = null;
      if (next.type === 'else') {
        const kw = this.peek().typ;
        if ((context === 'if' && kw === T.If) || (context === 'with' && kw === T.With)) {
          this.next();
          elseList = { type: 'list', pos: next.pos, nodes: [] };
          const nested = this.parseControl(context);
          elseList.nodes.push({ type: context, ...nested });
        } else {
          [elseList, next] = this.itemList();
          if (next.type !== 'end') this.errorf(`expected end; found ${nodeString(next)}`);
        }
      }
      return { pos: pipe.pos, pipe, list, elseList };
    } finally {
      st.vars.length = nvars;
    }
  }

  private blockControl(): TemplateNode {
    const context = 'block clause';
    const tok = this.nextNonSpace();
    const name = this.parseTemplateName(tok, context);
    const pipe = this.pipeline(context, T.RightDelim);
    const [root, end] = this.withFreshState(() => this.itemList());
    if (end.type !== 'end') this.errorf(`unexpected ${nodeString(end)} in ${context}`);
    this.add(this.newTree(name, root));
    return { type: 'template', pos: tok.pos, name, pipe };
  }

  private templateControl(): TemplateNode {
    const context = 'template clause';
    const tok = this.nextNonSpace();
    const name = this.parseTemplateName(tok, context);
    let pipe: PipeNode | null = null;
    if (this.nextNonSpace().typ !== T.RightDelim) {
      this.backup();
      pipe = this.pipeline(context, T.RightDelim);
    }
    return { type: 'template', pos: tok.pos, name, pipe };
  }

  private parseTemplateName(tok: Token, context: string): string {
    if (tok.typ === T.String || tok.typ === T.RawString) return this.unquoteOrFail(tok.val);
    this.unexpected(tok, context);
  }

  private unquoteOrFail(lit: string): string {
    try {
      return unquote(lit);
    } catch (e) {
      if (e instanceof SyntaxError_) this.errorf(e.message);
      throw e;
    }
  }

  // ---- pipelines

  private pipeline(context: string, end: T): PipeNode {
    const pipe: PipeNode = { type: 'pipe', pos: this.peekNonSpace().pos, isAssign: false, decl: [], cmds: [] };
    const vars = this.state.vars;
    decls: for (;;) {
      const v = this.peekNonSpace();
      if (v.typ !== T.Variable) break;
      const save = this.i;
      this.next();
      const next = this.peekNonSpace();
      if (next.typ === T.Assign || next.typ === T.Declare) {
        pipe.isAssign = next.typ === T.Assign;
        this.nextNonSpace();
        pipe.decl.push(this.newVariable(v.pos, v.val));
        vars.push(v.val);
      } else if (next.typ === T.Char && next.val === ',') {
        this.nextNonSpace();
        pipe.decl.push(this.newVariable(v.pos, v.val));
        vars.push(v.val);
        if (context === 'range' && pipe.decl.length < 2) {
          const t = this.peekNonSpace().typ;
          if (t === T.Variable || t === T.RightDelim || t === T.RightParen) continue decls;
          this.errorf('range can only initialize variables');
        }
        this.errorf(`too many declarations in ${context}`);
      } else {
        this.i = save;
      }
      break;
    }
    for (;;) {
      const tok = this.nextNonSpace();
      if (tok.typ === end) {
        this.checkPipeline(pipe, context);
        return pipe;
      }
      if (operandStart.has(tok.typ)) {
        this.backup();
        pipe.cmds.push(this.command());
        continue;
      }
      this.unexpected(tok, context);
    }
  }

  private checkPipeline(pipe: PipeNode, context: string): void {
    if (pipe.cmds.length === 0) this.errorf(`missing value for ${context}`);
    for (let i = 1; i < pipe.cmds.length; i++) {
      switch (pipe.cmds[i]!.args[0]!.type) {
        case 'bool':
        case 'dot':
        case 'nil':
        case 'number':
        case 'string':
          this.errorf(`non executable command in pipeline stage ${i + 1}`);
      }
    }
  }

  private command(): CommandNode {
    const cmd: CommandNode = { type: 'command', pos: this.peekNonSpace().pos, args: [] };
    for (;;) {
      this.peekNonSpace();
      const operand = this.operand();
      if (operand) cmd.args.push(operand);
      const tok = this.next();
      if (tok.typ === T.Space) continue;
      if (tok.typ === T.RightDelim || tok.typ === T.RightParen) this.backup();
      else if (tok.typ !== T.Pipe) this.unexpected(tok, 'operand');
      break;
    }
    if (cmd.args.length === 0) this.errorf('empty command');
    return cmd;
  }

  private operand(): ArgNode | null {
    const node = this.term();
    if (!node) return null;
    if (this.peek().typ !== T.Field) return node;
    const pos = this.peek().pos;
    const fields: string[] = [];
    while (this.peek().typ === T.Field) fields.push(this.next().val.slice(1));
    switch (node.type) {
      case 'field':
        return { type: 'field', pos, ident: [...node.ident, ...fields] };
      case 'variable':
        return { type: 'variable', pos, ident: [...node.ident, ...fields] };
      case 'bool':
      case 'string':
      case 'number':
      case 'nil':
      case 'dot':
        this.errorf(`unexpected . after term ${quote(nodeString(node))}`);
      // falls through (errorf never returns)
      default:
        return { type: 'chain', pos, node, field: fields };
    }
  }

  private term(): ArgNode | null {
    const tok = this.nextNonSpace();
    switch (tok.typ) {
      case T.Identifier:
        if (!this.hasFunction(tok.val)) this.errorf(`function ${quote(tok.val)} not defined`);
        return { type: 'identifier', pos: tok.pos, ident: tok.val };
      case T.Dot:
        return { type: 'dot', pos: tok.pos };
      case T.Nil:
        return { type: 'nil', pos: tok.pos };
      case T.Variable:
        return this.useVar(tok);
      case T.Field:
        return { type: 'field', pos: tok.pos, ident: [tok.val.slice(1)] };
      case T.Bool:
        return { type: 'bool', pos: tok.pos, value: tok.val === 'true' };
      case T.CharConstant:
      case T.Complex:
      case T.Number:
        return this.newNumber(tok);
      case T.LeftParen:
        return this.pipeline('parenthesized pipeline', T.RightParen);
      case T.String:
      case T.RawString:
        return { type: 'string', pos: tok.pos, quoted: tok.val, text: this.unquoteOrFail(tok.val) };
    }
    this.backup();
    return null;
  }

  private newVariable(pos: number, name: string): VariableNode {
    return { type: 'variable', pos, ident: name.split('.') };
  }

  private useVar(tok: Token): VariableNode {
    const v = this.newVariable(tok.pos, tok.val);
    if (this.state.vars.includes(v.ident[0]!)) return v;
    this.errorf(`undefined variable ${quote(v.ident[0]!)}`);
  }

  private newNumber(tok: Token): NumberNode {
    const text = tok.val;
    const n: NumberNode = {
      type: 'number',
      pos: tok.pos,
      text,
      isInt: false,
      isFloat: false,
      isComplex: false,
      int: 0n,
      float: 0,
      ideal: undefined,
    };
    if (tok.typ === T.CharConstant) {
      let r: [number, boolean, number];
      try {
        r = unquoteChar(text, 1, "'");
      } catch (e) {
        if (e instanceof SyntaxError_) this.errorf(e.message);
        throw e;
      }
      if (text.slice(r[2]) !== "'") this.errorf(`malformed character constant: ${text}`);
      n.isInt = n.isFloat = true;
      n.int = BigInt(r[0]);
      n.float = r[0];
      n.ideal = r[0];
      return n;
    }
    if (tok.typ === T.Complex || text.endsWith('i')) {
      this.errorf(`complex constants are not supported: ${quote(text)}`);
    }
    const u = parseGoUint(text);
    const i = parseGoInt(text);
    let isUint = u !== undefined;
    if (i !== undefined) {
      n.isInt = true;
      n.int = i;
      n.isFloat = true;
      n.float = Number(i);
    } else if (u !== undefined) {
      n.isFloat = true;
      n.float = Number(u);
    } else {
      const f = parseGoFloat(text);
      if (f !== undefined) {
        if (!/[.eEpP]/.test(text)) this.errorf(`integer overflow: ${quote(text)}`);
        n.isFloat = true;
        n.float = f;
        if (Number.isInteger(f) && Math.abs(f) < 2 ** 63) {
          n.isInt = true;
          n.int = BigInt(f);
        }
        if (Number.isInteger(f) && f >= 0 && f < 2 ** 64) isUint = true;
      }
    }
    if (!n.isInt && !isUint && !n.isFloat) this.errorf(`illegal number syntax: ${quote(text)}`);
    // Go's idealConstant: the syntax decides between int and float64.
    const isHexInt = /^0[xX]/.test(text) && !/[pP]/.test(text);
    if (n.isFloat && !isHexInt && /[.eEpP]/.test(text)) {
      n.ideal = Number.isInteger(n.float) ? new GoFloat(n.float) : n.float;
    } else if (n.isInt) {
      n.ideal = Number.isSafeInteger(Number(n.int)) ? Number(n.int) : n.int;
    } else {
      n.ideal = undefined; // overflows int
    }
    return n;
  }
}

export interface ParseOptions {
  /** Function names known to the template (user funcs and builtins). */
  hasFunction: (name: string) => boolean;
}

/** Parses `text` into its tree set: the main tree under `name` plus every {{define}}/{{block}}. */
export function parseTrees(name: string, text: string, opts: ParseOptions): Map<string, Tree> {
  const tokens = lex(text, { breakOK: !opts.hasFunction('break'), continueOK: !opts.hasFunction('continue') });
  const treeSet = new Map<string, Tree>();
  const p = new Parser(name, text, tokens, opts.hasFunction, treeSet);
  p.parseTop(name);
  return treeSet;
}
