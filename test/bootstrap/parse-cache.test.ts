// The build's template parse cache (src/bootstrap/template/parse-cache.ts): the build saves the
// shipped template's trees, what is read back equals a fresh parse (and renders the same bytes),
// and anything else — an edited template, a corrupt or foreign cache entry — is parsed as before.

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TEMPLATE_PATH, loadBootstrapTemplate, PARSE_CACHE_PATH } from '../../src/bootstrap/envoy-bootstrap.js';
import {
  istioBootstrapFuncs,
  parseParseCache,
  parseTemplate,
  saveTrees,
  stringifyParseCache,
  templateFromTrees,
  templateTextKey,
  treesFromEntry,
} from '../../src/bootstrap/template/index.js';
import { repoRoot } from '../support/paths.js';

/** Saves `text`'s trees, writes and reads them as the cache file would, and revives them under `name`. */
function roundTrip(text: string, name: string): ReturnType<typeof treesFromEntry> {
  const parsed = parseTemplate('build-time-name', text, istioBootstrapFuncs());
  const json = stringifyParseCache({ [templateTextKey(text)]: saveTrees(parsed.parsedTrees(), 'build-time-name', text) });
  return treesFromEntry(parseParseCache(json)[templateTextKey(text)], name, text);
}

describe('template parse cache', () => {
  it('the build saved the trees of the shipped template, and they equal a fresh parse', () => {
    const text = fs.readFileSync(DEFAULT_TEMPLATE_PATH, 'utf8');
    const cache = parseParseCache(fs.readFileSync(PARSE_CACHE_PATH, 'utf8'));
    const trees = treesFromEntry(cache[templateTextKey(text)], DEFAULT_TEMPLATE_PATH, text);
    expect(trees, `no entry for ${DEFAULT_TEMPLATE_PATH} in ${PARSE_CACHE_PATH}`).toBeDefined();
    const fresh = parseTemplate(DEFAULT_TEMPLATE_PATH, text, istioBootstrapFuncs()).parsedTrees();
    expect(trees).toEqual(fresh);
    // and the agent's loader takes the saved trees
    expect(loadBootstrapTemplate(DEFAULT_TEMPLATE_PATH).parsedTrees()).toEqual(fresh);
  });

  it("Istio's own template and every kind of literal survive the round trip", () => {
    const istio = fs.readFileSync(path.join(repoRoot, 'test/fixtures/istio/envoy_bootstrap.json'), 'utf8');
    const literals = [
      '{{define "t"}}[{{.}}]{{end}}',
      '{{ 7 }} {{ -3 }} {{ 1.5 }} {{ 2.0 }} {{ 1e3 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_000 }}',
      '{{ 9223372036854775807 }} {{ 1e300 }} {{ -0.0 }} {{ \'a\' }} {{ "s\\n" }} {{ `raw` }} {{ true }} {{ nil | printf "%v" }}',
      '{{ $x := 1 }}{{ range $i, $v := . }}{{ $i }}{{ break }}{{ end }}{{ template "t" $x }}{{/* c */}}',
      '{{- with .a }}{{ .b.c }}{{ else }}{{ (len .) }}{{ end -}}',
    ].join('\n');
    for (const [name, text] of [
      ['istio.json', istio],
      ['literals.tmpl', literals],
    ]) {
      const fresh = parseTemplate(name!, text!, istioBootstrapFuncs());
      const trees = roundTrip(text!, name!);
      expect(trees).toEqual(fresh.parsedTrees());
      // execution sees the same trees: same output (or the same error) for the same data
      const run = (t: { execute(d: unknown): string }): string => {
        try {
          return t.execute({ a: { b: { c: 'C' } }, list: [1] });
        } catch (err) {
          return `error: ${(err as Error).message}`;
        }
      };
      expect(run(templateFromTrees(name!, trees!, istioBootstrapFuncs()))).toBe(run(fresh));
    }
  });

  it('an edited template is parsed, not served the saved trees of the original', () => {
    const text = fs.readFileSync(DEFAULT_TEMPLATE_PATH, 'utf8');
    const dir = fs.mkdtempSync(path.join(repoRoot, '.tmp-parse-cache-'));
    try {
      const edited = path.join(dir, 'envoy_bootstrap.json');
      fs.writeFileSync(edited, text.replace('"node": {', '"node": {{ "{" }}'));
      const t = loadBootstrapTemplate(edited);
      expect(t.parsedTrees()).toEqual(parseTemplate(edited, fs.readFileSync(edited, 'utf8'), istioBootstrapFuncs()).parsedTrees());
      expect(t.parsedTrees()).not.toEqual(parseTemplate(edited, text, istioBootstrapFuncs()).parsedTrees());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('entries of another version, of another text, of another shape or without the top-level tree are not used', () => {
    const text = '{{ .x }}';
    const entry = saveTrees(parseTemplate('n', text, istioBootstrapFuncs()).parsedTrees(), 'n', text);
    expect(treesFromEntry(entry, 'n', text)).toBeDefined();
    expect(treesFromEntry({ ...entry, version: entry.version + 1 }, 'n', text)).toBeUndefined();
    expect(treesFromEntry({ version: entry.version, text, trees: [{ name: null, root: { type: 'text' } }] }, 'n', text)).toBeUndefined();
    expect(treesFromEntry({ version: entry.version, text, trees: [{ name: 'other', root: entry.trees[0]!.root }] }, 'n', text)).toBeUndefined();
    // found under the same key (a hash collision, or a forged entry) but saved from another text
    expect(treesFromEntry({ ...entry, text: '{{ .y }}' }, 'n', text)).toBeUndefined();
    expect(treesFromEntry({ version: entry.version, trees: entry.trees }, 'n', text)).toBeUndefined();
    expect(treesFromEntry('garbage', 'n', text)).toBeUndefined();
    expect(treesFromEntry(undefined, 'n', text)).toBeUndefined();
    expect(() => parseParseCache('[1, 2]')).toThrow(/not a JSON object/);
    expect(() => parseParseCache('{"k": {"$pa": "weird", "v": 1}}')).toThrow(/unknown tag "weird"/);
  });
});
