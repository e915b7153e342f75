/**
 * Function maps. A template function is either a plain JavaScript function (called
 * with every argument as a Go `interface{}` value, no arity check) or a {@link FuncSpec}
 * that declares Go-like parameter types, so that argument count and types are checked
 * the way Go's reflection-based calls check them:
 *
 *   wrong number of args for X: want 2 got 1
 *   wrong type for value; expected string; got int
 *   expected integer; found "x"
 *
 * A function signals an error by throwing; the executor reports it as
 * `error calling NAME: MESSAGE`.
 */

/** Go parameter types understood by the executor. */
export type ParamType =
  /** interface{}: anything; a missing value arrives as null. */
  | 'any'
  /** reflect.Value: the raw value; a missing value arrives as undefined. */
  | 'value'
  | 'string'
  | 'int'
  | 'float64'
  | 'bool'
  /** map[string]interface{} (plain object or Map); nil arrives as null. */
  | 'map'
  /** []interface{} (Array); nil arrives as null. */
  | 'list';

// Any function at all can be assigned to this type.
export type GoFunction = (...args: never[]) => unknown;

export interface FuncSpec {
  fn: GoFunction;
  /** Fixed parameters. When omitted the function is variadic over 'any' and unchecked. */
  params?: ParamType[];
  /** Type of trailing variadic parameters, if the function is variadic. */
  variadic?: ParamType;
  /**
   * Internal functions only: receive values unmodified (integral float literals stay
   * boxed as GoFloat) instead of plain numbers.
   */
  raw?: boolean;
}

export type FuncMap = Record<string, GoFunction | FuncSpec>;

export interface ResolvedFunc {
  name: string;
  fn: (...args: unknown[]) => unknown;
  params: ParamType[] | null;
  variadic: ParamType | null;
  raw: boolean;
  /** 'and' / 'or' builtins short-circuit and are evaluated by the executor. */
  special: 'and' | 'or' | null;
}

export function defineFunc(fn: GoFunction, params: ParamType[], variadic?: ParamType): FuncSpec {
  return variadic === undefined ? { fn, params } : { fn, params, variadic };
}

const identRe = /^[\p{L}_][\p{L}\p{Nd}_]*$/u;

export function resolveFunc(name: string, f: GoFunction | FuncSpec, special: 'and' | 'or' | null = null): ResolvedFunc {
  if (!identRe.test(name)) throw new Error(`function name ${JSON.stringify(name)} is not a valid identifier`);
  if (typeof f === 'function') {
    return { name, fn: f as (...args: unknown[]) => unknown, params: null, variadic: null, raw: false, special };
  }
  if (typeof f !== 'object' || f === null || typeof f.fn !== 'function') {
    throw new Error(`value for ${name} not a function`);
  }
  return {
    name,
    fn: f.fn as (...args: unknown[]) => unknown,
    params: f.params ?? null,
    variadic: f.params ? (f.variadic ?? null) : null,
    raw: f.raw === true,
    special,
  };
}

export function resolveFuncMap(m: FuncMap | undefined): Map<string, ResolvedFunc> {
  const out = new Map<string, ResolvedFunc>();
  if (!m) return out;
  for (const [name, f] of Object.entries(m)) out.set(name, resolveFunc(name, f));
  return out;
}

/** Go's spelling of a parameter type in error messages. */
export function paramTypeName(t: ParamType): string {
  switch (t) {
    case 'any':
      return 'interface {}';
    case 'value':
      return 'reflect.Value';
    case 'map':
      return 'map[string]interface {}';
    case 'list':
      return '[]interface {}';
    default:
      return t;
  }
}

/** Whether an untyped nil can be assigned to the type. */
export function canBeNil(t: ParamType): boolean {
  return t === 'any' || t === 'value' || t === 'map' || t === 'list';
}
