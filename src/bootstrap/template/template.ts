/**
 * The Template type: parse once, execute many times.
 */
import type { Tree } from './ast.js';
import { builtinFuncs } from './builtins.js';
import { TemplateError } from './errors.js';
import { State, type MissingKeyMode } from './exec.js';
import { quote } from './fmt.js';
import { resolveFuncMap, type FuncMap, type ResolvedFunc } from './funcs.js';
import { parseTrees } from './parser.js';

export interface TemplateOptions {
  /**
   * Go's Option("missingkey=..."): what a missing map key yields.
   * 'default' (Go's default/"invalid"): no value, printed `<no value>`;
   * 'zero': the zero value of interface{} (nil, printed `<no value>` too);
   * 'error': execution stops with "map has no entry for key".
   */
  missingKey?: MissingKeyMode | 'invalid';
  /** Maximum nesting of {{template}} calls (Go uses 100000; default here 1000). */
  maxDepth?: number;
}

export class Template {
  private readonly funcs: Map<string, ResolvedFunc>;
  private readonly trees: Map<string, Tree>;
  private readonly missingKey: MissingKeyMode;
  private readonly maxDepth: number;

  /** Use {@link parseTemplate} (or {@link templateFromTrees} with trees parsed before). */
  constructor(
    readonly name: string,
    text: string,
    funcs: FuncMap | undefined,
    options: TemplateOptions = {},
    parsed?: Map<string, Tree>,
  ) {
    this.funcs = resolveFuncMap(funcs);
    const mk = options.missingKey ?? 'default';
    this.missingKey = mk === 'invalid' ? 'default' : mk;
    this.maxDepth = options.maxDepth ?? 1000;
    const userFuncs = this.funcs;
    this.trees =
      parsed ??
      parseTrees(name, text, {
        hasFunction: (n) => userFuncs.has(n) || builtinFuncs.has(n),
      });
  }

  private readonly lookupFunc = (n: string): ResolvedFunc | undefined => this.funcs.get(n) ?? builtinFuncs.get(n);

  /** Renders the template with `data` as dot. Throws TemplateError on failure. */
  execute(data?: unknown): string {
    return this.executeTemplate(this.name, data);
  }

  /** Renders the associated template `name` (defined with {{define}} or {{block}}). */
  executeTemplate(name: string, data?: unknown): string {
    const tree = this.trees.get(name);
    if (!tree) {
      const msg = `no template ${quote(name)} associated with template ${quote(this.name)}`;
      throw new TemplateError(`template: ${msg}`, 'exec', this.name, 0, 0, msg);
    }
    const state = new State(
      { trees: this.trees, lookupFunc: this.lookupFunc, missingKey: this.missingKey, maxDepth: this.maxDepth },
      tree,
      data,
    );
    return state.run(data);
  }

  /** The parse trees (this template's and those it defines), for parse-cache.ts. */
  parsedTrees(): ReadonlyMap<string, Tree> {
    return this.trees;
  }

  /** Names of this template and every template it defines. */
  templateNames(): string[] {
    return [...this.trees.keys()];
  }

  /** Whether a template of that name is defined. */
  has(name: string): boolean {
    return this.trees.has(name);
  }
}

/**
 * Parses Go text/template source. `name` names the template in error messages
 * (use the template file's name). Functions in `funcs` are added to (and override)
 * Go's builtins, as template.New(name).Funcs(funcs).Parse(text) would.
 */
export function parseTemplate(name: string, text: string, funcs?: FuncMap, options?: TemplateOptions): Template {
  return new Template(name, text, funcs, options);
}

/**
 * A template from trees parseTrees made earlier for the same name, text and functions (see
 * parse-cache.ts): what parseTemplate would return, without parsing.
 */
export function templateFromTrees(name: string, trees: Map<string, Tree>, funcs?: FuncMap, options?: TemplateOptions): Template {
  return new Template(name, trees.get(name)?.text ?? '', funcs, options, trees);
}
