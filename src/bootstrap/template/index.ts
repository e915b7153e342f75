/**
 * A Go text/template engine for rendering Envoy bootstrap templates.
 *
 *   const t = parseTemplate('envoy_bootstrap.json', text, istioBootstrapFuncs());
 *   const json = t.execute(params);
 */
export { parseTemplate, Template, templateFromTrees, type TemplateOptions } from './template.js';
export { parseParseCache, saveTrees, stringifyParseCache, templateTextKey, treesFromEntry } from './parse-cache.js';
export { TemplateError, type TemplateErrorPhase } from './errors.js';
export { defineFunc, type FuncMap, type FuncSpec, type GoFunction, type ParamType } from './funcs.js';
export { builtinNames } from './builtins.js';
export { goFloat, GoFloat } from './values.js';
export { sprintf, sprint, sprintln } from './fmt.js';
export { marshal as goJSONMarshal } from './json.js';
export { sprigFuncs, type SprigOptions } from './sprig.js';
export { istioBootstrapFuncs, istioToJSON } from './istio.js';
