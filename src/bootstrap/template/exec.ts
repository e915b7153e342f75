/**
 * Executor: walks a parsed tree against JavaScript data with Go text/template semantics.
 *
 * Data model (see values.ts): objects are Go maps, so `.missing` yields "no value"
 * (printed `<no value>`, false in conditions) and a chain through a missing key keeps
 * yielding no value, as Go does for map[string]interface{}. A `null` stored in the
 * data is a nil interface{}: evaluating a field on it is Go's error
 * "nil pointer evaluating interface {}.X".
 */
import {
  nodeString,
  type ArgNode,
  type BranchNode,
  type ChainNode,
  type CommandNode,
  type FieldNode,
  type IdentifierNode,
  type Node,
  type NumberNode,
  type PipeNode,
  type RangeNode,
  type TemplateNode,
  type Tree,
  type VariableNode,
} from './ast.js';
import { TemplateError, locate } from './errors.js';
import { formatValue, quote } from './fmt.js';
import { canBeNil, paramTypeName, type ParamType, type ResolvedFunc } from './funcs.js';
import {
  findMethod,
  isTrue,
  kindOf,
  mapGet,
  sortedMapKeys,
  typeName,
  unbox,
} from './values.js';

export type MissingKeyMode = 'default' | 'zero' | 'error';

export interface ExecContext {
  trees: ReadonlyMap<string, Tree>;
  lookupFunc: (name: string) => ResolvedFunc | undefined;
  missingKey: MissingKeyMode;
  maxDepth: number;
}

/** The absence of a previous pipeline value ("final" argument). */
const MISSING: unique symbol = Symbol('missing');
type Final = unknown;

const enum Flow {
  Normal = 0,
  Break = 1,
  Continue = 2,
}

interface Variable {
  name: string;
  value: unknown;
}

export class State {
  out = '';
  private node: Node | null = null;
  private vars: Variable[];
  private tree: Tree;
  private depth = 0;

  constructor(
    private readonly ctx: ExecContext,
    tree: Tree,
    dot: unknown,
  ) {
    this.tree = tree;
    // Go: reflect.ValueOf(nil) is the invalid value ("no value"), not a nil interface.
    this.vars = [{ name: '$', value: dot === null ? undefined : dot }];
  }

  run(dot: unknown): string {
    if (dot === null) dot = undefined;
    try {
      this.walk(dot, this.tree.root);
    } catch (e) {
      if (e instanceof TemplateError) throw e;
      if (e instanceof RangeError && /call stack/i.test(e.message)) {
        this.errorf(`exceeded maximum template depth (call stack exhausted)`);
      }
      throw e;
    }
    return this.out;
  }

  // ---- errors

  private errorf(msg: string, cause?: unknown): never {
    const name = this.tree.name;
    const parseName = this.tree.parseName;
    if (this.node === null) {
      throw new TemplateError(`template: ${name}: ${msg}`, 'exec', parseName, 0, 0, msg, { cause });
    }
    const { line, column } = locate(this.tree.text, this.node.pos);
    const context = nodeString(this.node);
    throw new TemplateError(
      `template: ${parseName}:${line}:${column}: executing ${quote(name)} at <${context}>: ${msg}`,
      'exec',
      parseName,
      line,
      column,
      msg,
      { cause },
    );
  }

  // ---- variables

  private varValue(name: string): unknown {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      const v = this.vars[i]!;
      if (v.name === name) return v.value;
    }
    this.errorf(`undefined variable: ${name}`);
  }

  private setVar(name: string, value: unknown): void {
    for (let i = this.vars.length - 1; i >= 0; i--) {
      const v = this.vars[i]!;
      if (v.name === name) {
        v.value = value;
        return;
      }
    }
    this.errorf(`undefined variable: ${name}`);
  }

  // ---- walking

  private walk(dot: unknown, node: Node): Flow {
    this.node = node;
    switch (node.type) {
      case 'text':
        this.out += node.text;
        return Flow.Normal;
      case 'action': {
        const val = this.evalPipeline(dot, node.pipe);
        if (node.pipe.decl.length === 0) this.printValue(node, val);
        return Flow.Normal;
      }
      case 'list': {
        const nodes = node.nodes;
        for (let i = 0; i < nodes.length; i++) {
          const r = this.walk(dot, nodes[i]!);
          if (r !== Flow.Normal) return r;
        }
        return Flow.Normal;
      }
      case 'if':
        return this.walkIfOrWith(false, dot, node);
      case 'with':
        return this.walkIfOrWith(true, dot, node);
      case 'range':
        return this.walkRange(dot, node);
      case 'template':
        this.walkTemplate(dot, node);
        return Flow.Normal;
      case 'break':
        return Flow.Break;
      case 'continue':
        return Flow.Continue;
      case 'comment':
        return Flow.Normal;
      default:
        this.errorf(`unknown node: ${nodeString(node)}`);
    }
  }

  private walkIfOrWith(isWith: boolean, dot: unknown, node: BranchNode): Flow {
    const mark = this.vars.length;
    const val = this.evalPipeline(dot, node.pipe);
    let r = Flow.Normal;
    if (isTrue(val)) r = this.walk(isWith ? val : dot, node.list);
    else if (node.elseList) r = this.walk(dot, node.elseList);
    this.vars.length = mark;
    return r;
  }

  private walkRange(dot: unknown, r: RangeNode): Flow {
    this.node = r;
    const mark = this.vars.length;
    const val = this.evalPipeline(dot, r.pipe);
    const bodyMark = this.vars.length;
    const ndecl = r.pipe.decl.length;
    // Returns true when the loop must stop ({{break}}).
    const one = (index: unknown, elem: unknown): boolean => {
      if (ndecl > 0) this.vars[bodyMark - 1]!.value = elem;
      if (ndecl > 1) this.vars[bodyMark - 2]!.value = index;
      const flow = this.walk(elem, r.list);
      this.vars.length = bodyMark;
      return flow === Flow.Break;
    };
    let ran = false;
    switch (kindOf(val)) {
      case 'slice':
      case 'bytes': {
        const a = val as ArrayLike<unknown>;
        for (let i = 0; i < a.length; i++) {
          ran = true;
          if (one(i, a[i])) break;
        }
        break;
      }
      case 'map': {
        const m = val as object;
        for (const k of sortedMapKeys(m)) {
          ran = true;
          if (one(k, mapGet(m, k))) break;
        }
        break;
      }
      case 'int': {
        if (ndecl > 1) this.errorf(`can't use ${formatValue(val)} to iterate over more than one variable`);
        const n = Number(val as number | bigint);
        for (let i = 0; i < n; i++) {
          ran = true;
          if (one(i, i)) break;
        }
        break;
      }
      case 'invalid':
      case 'nil':
        break; // acts like an empty map
      default:
        this.errorf(`range can't iterate over ${formatValue(val)}`);
    }
    if (!ran && r.elseList) this.walk(dot, r.elseList);
    this.vars.length = mark;
    return Flow.Normal;
  }

  private walkTemplate(dot: unknown, t: TemplateNode): void {
    this.node = t;
    const tree = this.ctx.trees.get(t.name);
    if (!tree) this.errorf(`template ${quote(t.name)} not defined`);
    if (this.depth >= this.ctx.maxDepth) this.errorf(`exceeded maximum template depth (${this.ctx.maxDepth})`);
    // Variables declared by the pipeline persist.
    const newDot = t.pipe ? this.evalPipeline(dot, t.pipe) : undefined;
    const savedVars = this.vars;
    const savedTree = this.tree;
    this.vars = [{ name: '$', value: newDot }];
    this.tree = tree;
    this.depth++;
    this.walk(newDot, tree.root);
    this.depth--;
    this.tree = savedTree;
    this.vars = savedVars;
  }

  private printValue(node: Node, v: unknown): void {
    this.node = node;
    if (v === undefined || v === null) {
      this.out += '<no value>';
      return;
    }
    if (typeof v === 'string') {
      this.out += v;
      return;
    }
    if (typeof v === 'function') this.errorf(`can't print ${nodeString(node)} of type ${typeName(v)}`);
    this.out += formatValue(v);
  }

  // ---- evaluation

  private evalPipeline(dot: unknown, pipe: PipeNode): unknown {
    this.node = pipe;
    let value: Final = MISSING;
    const cmds = pipe.cmds;
    for (let i = 0; i < cmds.length; i++) {
      value = this.evalCommand(dot, cmds[i]!, value);
      // An interface{} holding nil is "no value".
      if (value === null) value = undefined;
    }
    const decl = pipe.decl;
    for (let i = 0; i < decl.length; i++) {
      const name = decl[i]!.ident[0]!;
      if (pipe.isAssign) this.setVar(name, value);
      else this.vars.push({ name, value });
    }
    return value;
  }

  private notAFunction(args: ArgNode[], final: Final): void {
    if (args.length > 1 || final !== MISSING) this.errorf(`can't give argument to non-function ${nodeString(args[0]!)}`);
  }

  private evalCommand(dot: unknown, cmd: CommandNode, final: Final): unknown {
    const first = cmd.args[0]!;
    switch (first.type) {
      case 'field':
        return this.evalFieldNode(dot, first, cmd.args, final);
      case 'chain':
        return this.evalChainNode(dot, first, cmd.args, final);
      case 'identifier':
        return this.evalFunction(dot, first, cmd, cmd.args, final);
      case 'pipe':
        this.notAFunction(cmd.args, final);
        return this.evalPipeline(dot, first);
      case 'variable':
        return this.evalVariableNode(dot, first, cmd.args, final);
    }
    this.node = first;
    this.notAFunction(cmd.args, final);
    switch (first.type) {
      case 'bool':
        return first.value;
      case 'dot':
        return dot;
      case 'nil':
        this.errorf('nil is not a command');
      // falls through (errorf never returns)
      case 'number':
        return this.idealConstant(first);
      case 'string':
        return first.text;
    }
  }

  private idealConstant(n: NumberNode): unknown {
    this.node = n;
    if (n.ideal === undefined) this.errorf(`${n.text} overflows int`);
    return n.ideal;
  }

  private evalFieldNode(dot: unknown, field: FieldNode, args: ArgNode[] | null, final: Final): unknown {
    this.node = field;
    return this.evalFieldChain(dot, dot, field, field.ident, args, final);
  }

  private evalChainNode(dot: unknown, chain: ChainNode, args: ArgNode[] | null, final: Final): unknown {
    this.node = chain;
    if (chain.node.type === 'nil') this.errorf(`indirection through explicit nil in ${nodeString(chain)}`);
    const pipe = this.evalArg(dot, null, chain.node);
    return this.evalFieldChain(dot, pipe, chain, chain.field, args, final);
  }

  private evalVariableNode(dot: unknown, v: VariableNode, args: ArgNode[] | null, final: Final): unknown {
    this.node = v;
    const value = this.varValue(v.ident[0]!);
    if (v.ident.length === 1) {
      if (args) this.notAFunction(args, final);
      return value;
    }
    return this.evalFieldChain(dot, value, v, v.ident.slice(1), args, final);
  }

  private evalFieldChain(
    dot: unknown,
    receiver: unknown,
    node: Node,
    ident: string[],
    args: ArgNode[] | null,
    final: Final,
  ): unknown {
    const n = ident.length;
    for (let i = 0; i < n - 1; i++) receiver = this.evalField(dot, ident[i]!, node, null, MISSING, receiver, i > 0);
    return this.evalField(dot, ident[n - 1]!, node, args, final, receiver, n > 1);
  }

  private evalField(
    dot: unknown,
    fieldName: string,
    node: Node,
    args: ArgNode[] | null,
    final: Final,
    receiver: unknown,
    fromContainer: boolean,
  ): unknown {
    if (receiver === undefined) {
      if (this.ctx.missingKey === 'error') this.errorf(`nil data; no entry for key ${quote(fieldName)}`);
      return undefined;
    }
    if (receiver === null) this.errorf(`nil pointer evaluating interface {}.${fieldName}`);
    const hasArgs = (args !== null && args.length > 1) || final !== MISSING;
    if (typeof receiver === 'object') {
      const method = findMethod(receiver, fieldName);
      if (method) {
        const fn: ResolvedFunc = {
          name: fieldName,
          fn: (...a: unknown[]) => method.apply(receiver, a),
          params: null,
          variadic: null,
          raw: false,
          special: null,
        };
        return this.evalCall(dot, fn, node, fieldName, args, final);
      }
      const k = kindOf(receiver);
      if (k === 'map') {
        if (hasArgs) this.errorf(`${fieldName} is not a method but has arguments`);
        const result = mapGet(receiver, fieldName);
        if (result === undefined) {
          if (this.ctx.missingKey === 'error') this.errorf(`map has no entry for key ${quote(fieldName)}`);
          if (this.ctx.missingKey === 'zero') return null;
        }
        return result;
      }
      if (k === 'struct' && fieldName in receiver) {
        if (hasArgs) this.errorf(`${fieldName} has arguments but cannot be invoked as function`);
        return (receiver as Record<string, unknown>)[fieldName];
      }
    }
    this.errorf(`can't evaluate field ${fieldName} in type ${fromContainer ? 'interface {}' : typeName(receiver)}`);
  }

  private evalFunction(dot: unknown, node: IdentifierNode, cmd: Node, args: ArgNode[] | null, final: Final): unknown {
    this.node = node;
    const name = node.ident;
    const fn = this.ctx.lookupFunc(name);
    if (!fn) this.errorf(`${quote(name)} is not a defined function`);
    return this.evalCall(dot, fn, cmd, name, args, final);
  }

  /** Calls a function or method; `args` (if any) includes the function's own node at [0]. */
  private evalCall(
    dot: unknown,
    fn: ResolvedFunc,
    node: Node,
    name: string,
    argNodes: ArgNode[] | null,
    final: Final,
  ): unknown {
    const args = argNodes ? argNodes.slice(1) : [];
    const hasFinal = final !== MISSING;
    const numIn = args.length + (hasFinal ? 1 : 0);
    const params = fn.params;
    const numFixed = params ? params.length : 0;
    if (params) {
      if (fn.variadic) {
        if (numIn < numFixed) {
          this.errorf(`wrong number of args for ${name}: want at least ${numFixed} got ${args.length}`);
        }
      } else if (numIn !== numFixed) {
        this.errorf(`wrong number of args for ${name}: want ${numFixed} got ${numIn}`);
      }
    }
    if (fn.special) {
      // and/or short-circuit: the deciding argument is the result.
      const wantTruth = fn.special === 'or';
      let v: unknown = undefined;
      for (const arg of args) {
        v = this.evalArg(dot, 'value', arg);
        if (isTrue(v) === wantTruth) return v;
      }
      if (hasFinal) v = final;
      return v;
    }
    const raw = fn.raw;
    const argv: unknown[] = new Array<unknown>(numIn);
    let i = 0;
    if (params) {
      for (; i < numFixed && i < args.length; i++) argv[i] = this.evalArg(dot, params[i]!, args[i]!, raw);
      const vt = fn.variadic;
      if (vt) for (; i < args.length; i++) argv[i] = this.evalArg(dot, vt, args[i]!, raw);
    } else {
      for (; i < args.length; i++) argv[i] = this.evalArg(dot, 'any', args[i]!, raw);
    }
    if (hasFinal) {
      let t: ParamType = 'any';
      if (params) t = fn.variadic && numIn - 1 >= numFixed ? fn.variadic : params[numIn - 1]!;
      argv[i] = this.validateType(final, t, raw);
    }
    let result: unknown;
    try {
      result = fn.fn(...argv);
    } catch (e) {
      this.node = node;
      const msg = e instanceof Error ? e.message : String(e);
      this.errorf(`error calling ${name}: ${msg}`, e);
    }
    return result;
  }

  /** Evaluates an argument for a parameter of type t (null: untyped, as for a chain's receiver). */
  private evalArg(dot: unknown, t: ParamType | null, n: ArgNode, raw = true): unknown {
    this.node = n;
    switch (n.type) {
      case 'dot':
        return this.validateType(dot, t, raw);
      case 'nil':
        if (t === null) return undefined;
        if (canBeNil(t)) return t === 'value' ? undefined : null;
        this.errorf(`cannot assign nil to ${paramTypeName(t)}`);
      // falls through (errorf never returns)
      case 'field':
        return this.validateType(this.evalFieldNode(dot, n, [n], MISSING), t, raw);
      case 'variable':
        return this.validateType(this.evalVariableNode(dot, n, null, MISSING), t, raw);
      case 'pipe':
        return this.validateType(this.evalPipeline(dot, n), t, raw);
      case 'identifier':
        return this.validateType(this.evalFunction(dot, n, n, null, MISSING), t, raw);
      case 'chain':
        return this.validateType(this.evalChainNode(dot, n, null, MISSING), t, raw);
    }
    // literals
    switch (t) {
      case 'bool':
        if (n.type === 'bool') return n.value;
        this.errorf(`expected bool; found ${nodeString(n)}`);
      // falls through
      case 'string':
        if (n.type === 'string') return n.text;
        this.errorf(`expected string; found ${nodeString(n)}`);
      // falls through
      case 'int':
        if (n.type === 'number' && n.isInt) return Number.isSafeInteger(Number(n.int)) ? Number(n.int) : n.int;
        this.errorf(`expected integer; found ${nodeString(n)}`);
      // falls through
      case 'float64':
        if (n.type === 'number' && n.isFloat) return n.float;
        this.errorf(`expected float; found ${nodeString(n)}`);
      // falls through
      case 'map':
      case 'list':
        this.errorf(`can't handle ${nodeString(n)} for arg of type ${paramTypeName(t)}`);
      // falls through
      default: {
        // interface{} / reflect.Value / untyped
        let v: unknown;
        if (n.type === 'bool') v = n.value;
        else if (n.type === 'string') v = n.text;
        else v = this.idealConstant(n);
        return raw ? v : unbox(v);
      }
    }
  }

  /** Go's validateType: checks that a computed value is assignable to the parameter type. */
  private validateType(value: unknown, t: ParamType | null, raw = true): unknown {
    if (t === null) return value;
    if (value === undefined) {
      if (canBeNil(t)) return t === 'value' ? undefined : null;
      this.errorf(`invalid value; expected ${paramTypeName(t)}`);
    }
    switch (t) {
      case 'value':
        return value;
      case 'any':
        return raw ? value : unbox(value);
      default:
        break;
    }
    const k = kindOf(value);
    let ok: boolean;
    switch (t) {
      case 'string':
        ok = k === 'string';
        break;
      case 'int':
        ok = k === 'int';
        break;
      case 'float64':
        ok = k === 'float';
        break;
      case 'bool':
        ok = k === 'bool';
        break;
      case 'map':
        ok = k === 'map';
        break;
      case 'list':
        ok = k === 'slice';
        break;
    }
    if (!ok) {
      const got = value === null ? 'interface {}' : typeName(value);
      this.errorf(`wrong type for value; expected ${paramTypeName(t)}; got ${got}`);
    }
    if (t === 'float64') return unbox(value);
    if (t === 'int' && typeof value === 'bigint' && Number.isSafeInteger(Number(value))) return Number(value);
    return value;
  }
}
