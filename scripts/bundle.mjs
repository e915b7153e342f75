// Bundles the compiled CLI (dist/cli/main.js) with its runtime dependencies into dist/bundle/.
// Why: Node resolves, reads and compiles each ES module and CommonJS file on its own; unbundled,
// the agent loads ~140 of its own modules and a few hundred from node_modules before it can spawn
// Envoy, and that file traffic was most of its start-up. Code splitting keeps the `await import()`
// boundaries of src/ (so `pilot-agent wait` still loads little), whitespace and syntax are
// minified (less for V8 to scan) while names are kept (stack traces stay readable), and
// dependencies are inlined, so the bundle needs no node_modules at run time.
//
// `node scripts/bundle.mjs` builds the agent; benches import bundleModules() to measure other
// entry points bundled exactly as the agent is.

import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * Bundles `entryPoints` (name -> compiled .js path, relative to the package root or absolute) into
 * `outdir`; returns esbuild's metafile (what each output imports, bundled or external).
 */
export async function bundleModules(entryPoints, outdir) {
  rmSync(new URL(outdir, `file://${root}/`), { recursive: true, force: true });
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
    // CommonJS dependencies (node-forge, ...) call require() for Node's built-ins, which an ES
    // module does not have: give each chunk one
    banner: { js: "import { createRequire as __paCreateRequire } from 'node:module'; const require = __paCreateRequire(import.meta.url);" },
    chunkNames: 'chunks/[name]-[hash]',
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
  });
  return result.metafile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await bundleModules({ main: 'dist/cli/main.js' }, 'dist/bundle');
