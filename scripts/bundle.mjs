// Bundles the compiled CLI (dist/cli/main.js) with its runtime dependencies into dist/bundle/.
// Why: Node resolves, reads and compiles each ES module and CommonJS file on its own; unbundled,
// the agent loads ~140 of its own modules and a few hundred from node_modules before it can spawn
// Envoy, and that file traffic was most of its start-up. Code splitting keeps the `await import()`
// boundaries of src/ (so `pilot-agent wait` still loads little), whitespace and syntax are
// minified (less for V8 to scan) while names are kept (stack traces stay readable), and
// dependencies are inlined, so the bundle needs no node_modules at run time.
//
// Two CommonJS libraries the agent loads on first use through a literal `require()` (yaml, in
// util/yaml.ts; prom-client, in metrics/registry.ts) stay out of the chunks: each is built into
// one file under dist/bundle/node_modules/, where Node's own lookup finds it from any chunk.
// Inlined, V8 would still scan their ~430 KB with the chunk that needs them before Envoy's spawn.
//
// `node scripts/bundle.mjs` builds the agent; benches import bundleModules() to measure other
// entry points bundled exactly as the agent is.

import { build } from 'esbuild';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Loaded with require() on first use; shipped as one file each beside the chunks. */
const ON_FIRST_USE = ['yaml', 'prom-client'];

const minify = { minifyWhitespace: true, minifySyntax: true };

/** Leaves `require('<lib>')` of the ON_FIRST_USE libraries to Node at run time. */
const requiredOnFirstUse = {
  name: 'required-on-first-use',
  setup(b) {
    const filter = new RegExp(`^(${ON_FIRST_USE.join('|')})$`);
    b.onResolve({ filter }, (args) => (args.kind === 'require-call' ? { path: args.path, external: true } : undefined));
  },
};

/** Builds each ON_FIRST_USE library into `<outdir>/node_modules/<lib>/index.js` (CommonJS, one file). */
async function bundleLibraries(outdir) {
  for (const lib of ON_FIRST_USE) {
    const dir = join(outdir, 'node_modules', lib);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: lib, main: 'index.js', private: true })}\n`);
    await build({ absWorkingDir: root, nodePaths: [join(root, 'node_modules')], stdin: { contents: `module.exports = require(${JSON.stringify(lib)});`, resolveDir: root }, outfile: join(dir, 'index.js'), bundle: true, format: 'cjs', platform: 'node', target: 'node20', ...minify, legalComments: 'linked', logLevel: 'warning' });
  }
}

/**
 * Bundles `entryPoints` (name -> compiled .js path, relative to the package root or absolute) into
 * `outdir`; returns esbuild's metafile (what each output imports, bundled or external).
 */
export async function bundleModules(entryPoints, outdir) {
  const out = fileURLToPath(new URL(outdir, `file://${root}/`));
  rmSync(out, { recursive: true, force: true });
  await bundleLibraries(out);
  const result = await build({
    absWorkingDir: root,
    // packages come from this checkout's install, also for compiled files built elsewhere
    nodePaths: [join(root, 'node_modules')],
    entryPoints,
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // CommonJS dependencies (undici, ...) call require() for Node's built-ins, which an ES
    // module does not have: give each chunk one
    banner: { js: "import { createRequire as __paCreateRequire } from 'node:module'; const require = __paCreateRequire(import.meta.url);" },
    chunkNames: 'chunks/[name]-[hash]',
    plugins: [requiredOnFirstUse],
    ...minify,
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
  });
  return result.metafile;
}

/**
 * Saves the parse trees of the shipped bootstrap templates to `<outdir>/template-parse-cache.json`
 * (src/bootstrap/template/parse-cache.ts), parsed by the compiled code under `compiledDist` with the
 * functions the agent renders with, so the agent does not parse them at every start.
 */
export async function writeTemplateParseCache(outdir, compiledDist = 'dist') {
  const { istioBootstrapFuncs, parseTemplate, saveTrees, stringifyParseCache, templateTextKey } = await import(pathToFileURL(resolve(root, compiledDist, 'bootstrap/template/index.js')).href);
  const entries = {};
  const dir = join(root, 'bootstrap-templates');
  for (const file of readdirSync(dir).filter((f) => /\.(json|yaml|tmpl)$/.test(f)).sort()) {
    const text = readFileSync(join(dir, file), 'utf8');
    const template = parseTemplate(file, text, istioBootstrapFuncs());
    entries[templateTextKey(text)] = saveTrees(template.parsedTrees(), file, text);
  }
  writeFileSync(resolve(root, outdir, 'template-parse-cache.json'), stringifyParseCache(entries));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await bundleModules({ main: 'dist/cli/main.js' }, 'dist/bundle');
  await writeTemplateParseCache('dist/bundle');
}
