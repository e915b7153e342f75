/**
 * The function map Istio installs for the Envoy bootstrap template.
 *
 * istio/istio pkg/bootstrap/instance.go, newTemplate():
 *
 *   funcMap := template.FuncMap{"toJSON": toJSON}
 *   return template.New("bootstrap").Funcs(funcMap).Funcs(sprig.GenericFuncMap()).Parse(string(cfgTmpl))
 *
 * i.e. Go's builtins, overridden/extended by Istio's own `toJSON` plus all of sprig's
 * generic functions (sprig's `slice` replaces the builtin `slice`). toJSON marshals
 * with encoding/json and yields "{}" for nil or on a marshalling error.
 */
import type { FuncMap, FuncSpec } from './funcs.js';
import { marshal } from './json.js';
import { sprigFuncs, type SprigOptions } from './sprig.js';

/** Istio's toJSON: json.Marshal, "{}" for nil input or when marshalling fails. */
export function istioToJSON(v: unknown): string {
  if (v === null || v === undefined) return '{}';
  try {
    return marshal(v);
  } catch {
    return '{}';
  }
}

const toJSONSpec: FuncSpec = { fn: istioToJSON, params: ['any'], raw: true };

/** Istio's bootstrap function map: {toJSON} followed by sprig.GenericFuncMap(). */
export function istioBootstrapFuncs(options: SprigOptions = {}): FuncMap {
  return { toJSON: toJSONSpec, ...sprigFuncs(options) };
}
