// The one home of YAML (the maintained `yaml` package: YAML 1.2 and 1.1, precise errors,
// duplicate-key detection), loaded only when a text is not JSON or YAML is written. Istio's
// configuration texts are read as Istio reads them (parseIstioYaml); others strictly (parseYaml). Istio's own inputs are
// mostly JSON (the injector writes PROXY_CONFIG as JSON), and evaluating the YAML library costs
// ~25 ms of CPU before Envoy can be spawned, so JSON takes JSON.parse's path and the library is
// loaded synchronously on first real use.
//
// Why the literal `require('yaml')`: it is synchronous, so the parse functions stay synchronous,
// and it runs on first call. Bundled (scripts/bundle.mjs), the bundle's `require` finds the
// library's one-file build in dist/bundle/node_modules/; unbundled (tsc output, tests), an ES
// module has no `require` and Node's createRequire finds the installed package.

import { createRequire } from 'node:module';
import type { ParseOptions, DocumentOptions, SchemaOptions, ToJSOptions, ToStringOptions, CreateNodeOptions } from 'yaml';

type Yaml = typeof import('yaml');

let loaded: Yaml | undefined;

function yamlLibrary(): Yaml {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- see the header: lazy and bundleable
  loaded ??= (typeof require === 'function' ? require('yaml') : createRequire(import.meta.url)('yaml')) as Yaml;
  return loaded;
}

type YamlParseOptions = ParseOptions & DocumentOptions & SchemaOptions & ToJSOptions;

/** A JSON text is its own YAML document: skip the YAML parser for anything that looks like JSON. */
function looksLikeJson(text: string): boolean {
  const first = /\S/.exec(text)?.[0];
  return first === '{' || first === '[' || first === '"';
}

/**
 * Whether a valid JSON text repeats a key within one object. JSON.parse keeps the last value
 * silently; the YAML parser rejects the repeat (its `uniqueKeys` default). A text with a repeat
 * goes to the YAML parser, or for Istio's lenient reading (parseIstioYaml) is warned about.
 */
function hasRepeatedKey(json: string): boolean {
  const open: Set<string>[] = [];
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '{') open.push(new Set());
    else if (c === '}') open.pop();
    else if (c === '"') {
      const start = i;
      for (i++; json[i] !== '"'; i++) if (json[i] === '\\') i++;
      let j = i + 1;
      while (j < json.length && /\s/.test(json[j]!)) j++;
      if (json[j] !== ':') continue;
      // decoded, so that "a" and "\u0061" are the same key
      const key = JSON.parse(json.slice(start, i + 1)) as string;
      const keys = open[open.length - 1]!;
      if (keys.has(key)) return true;
      keys.add(key);
    }
  }
  return false;
}

/**
 * Parses YAML (JSON included) to plain values. JSON goes through JSON.parse unless a key repeats;
 * anything else goes to the YAML parser, whose errors are the precise ones.
 */
export function parseYaml(text: string, options?: YamlParseOptions): unknown {
  if (looksLikeJson(text)) {
    let value: unknown;
    try {
      value = JSON.parse(text) as unknown;
    } catch {
      value = undefined; // not JSON after all (flow-style YAML, a typo): the YAML parser decides and explains
    }
    if (value !== undefined && (options?.uniqueKeys === false || !hasRepeatedKey(text))) return value;
  }
  return yamlLibrary().parse(text, options);
}

/**
 * yaml.v2's reading of YAML 1.1, which Istio's configuration goes through (sigs.k8s.io/yaml):
 * yes/no/on/off/y/n are booleans, 010 is octal, 0b11 binary, `<<` merges; but sexagesimal numbers
 * (1:20) and timestamps stay strings, as yaml.v2 leaves them when decoding into plain values.
 */
const ISTIO_YAML_OPTIONS: YamlParseOptions = {
  version: '1.1',
  customTags: (tags) => tags.filter((t) => !(typeof t === 'object' && (t.format === 'TIME' || t.tag === 'tag:yaml.org,2002:timestamp'))),
};

/**
 * Parses a configuration text as Istio reads ProxyConfig annotations, PROXY_CONFIG and the mesh
 * file (sigs.k8s.io/yaml's YAMLToJSON over yaml.v2, non-strict): YAML 1.1 scalars, the last value
 * of a key given twice, the first document only. Pods with such texts pass Istio's injector and run
 * under Istio's agent, so refusing them would crash-loop them here. `repeatedKeys` says a key was
 * given twice, for a warning. Throws on a text that is not YAML.
 */
export function parseIstioYaml(text: string): { value: unknown; repeatedKeys: boolean } {
  if (looksLikeJson(text)) {
    try {
      const value = JSON.parse(text) as unknown;
      return { value, repeatedKeys: hasRepeatedKey(text) };
    } catch {
      // flow-style YAML or a typo: the YAML parser decides and explains
    }
  }
  const lib = yamlLibrary();
  let [doc] = lib.parseAllDocuments(text, { ...ISTIO_YAML_OPTIONS, uniqueKeys: true, prettyErrors: true }) as unknown as import('yaml').Document[];
  if (!doc) return { value: null, repeatedKeys: false };
  const repeatedKeys = doc.errors.some((e) => e.code === 'DUPLICATE_KEY');
  if (repeatedKeys) [doc] = lib.parseAllDocuments(text, { ...ISTIO_YAML_OPTIONS, uniqueKeys: false, prettyErrors: true }) as unknown as import('yaml').Document[];
  const error = doc!.errors[0];
  if (error) throw error;
  return { value: doc!.toJS({ maxAliasCount: 100 }) as unknown, repeatedKeys };
}

/** Writes a value as YAML (the effective-config log line, `version -o yaml`). */
export function toYaml(value: unknown, options?: DocumentOptions & SchemaOptions & ParseOptions & CreateNodeOptions & ToStringOptions): string {
  return yamlLibrary().stringify(value, options);
}
