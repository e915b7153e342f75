// What the Dockerfile ships, built the same way: the agent compiled from src/ and bundled
// (scripts/bundle.mjs) into a fresh dir with the repository's package.json, launcher and bootstrap
// templates, and no node_modules at all: the bundle carries its runtime dependencies. It must run:
// `pilot-agent version`, then `pilot-agent proxy sidecar` (the hello pod) with the Envoy stand-in
// as its Envoy, through workload certificate (CA client), SDS, the xDS proxy and a gRPC health
// probe of the app, to readiness and a clean stop.
//
// Also the production install (`npm ci --omit=dev`), for running the unbundled build: it must stay
// small (node_modules <= 25 MB on disk), hold no development package and resolve every package
// the compiled agent imports (dynamic imports included).

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { isBuiltin } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildResourceSet, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { httpRequest } from '../support/envoy-stand-in-harness.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath, repoRoot } from '../support/paths.js';
import { freePort, isAlive, killStarted, runAgent, tempDir, type RunningProcess } from '../support/processes.js';
import { grpcHealthServer, type GrpcHealthServer } from '../status/support.js';

const run = promisify(execFile);

/** The part of esbuild's metafile read here: each output file's imports. */
interface Metafile {
  outputs: Record<string, { imports: { path: string; kind: string; external?: boolean }[] }>;
}
const MAX_NODE_MODULES_BYTES = 25_000_000;
const TOKEN = 'production-install-token';

/** The environment of a fresh shell: none of the npm_* settings of an `npm test` that runs us. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** Every package specifier (not node:, not relative) the compiled files import, statically or not. */
function importedPackages(dir: string): Set<string> {
  const specs = new Set<string>();
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.name.endsWith('.js')) {
        const text = fs.readFileSync(full, 'utf8');
        for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\(\s*)['"]([^'"]+)['"]/g)) {
          const spec = m[1]!;
          if (!spec.startsWith('.') && !spec.startsWith('/') && !spec.startsWith('node:')) specs.add(spec);
        }
      }
    }
  };
  walk(dir);
  return specs;
}

describe('the shipped agent (bundled, as the Dockerfile ships it) and the production install (npm ci --omit=dev)', () => {
  const work = tempDir('pa-prod-install-');
  const app = path.join(work.path, 'opt', 'pilot-agent');
  const prod = path.join(work.path, 'production-install');
  let metafile: Metafile;
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

  beforeAll(async () => {
    fs.mkdirSync(app, { recursive: true });
    fs.copyFileSync(path.join(repoRoot, 'package.json'), path.join(app, 'package.json'));
    for (const d of ['bin', 'bootstrap-templates']) fs.cpSync(path.join(repoRoot, d), path.join(app, d), { recursive: true });
    // the build stage: compiled from the sources, so nothing stale in the repository's dist/ is
    // shipped, then bundled; only the bundle is copied into the shipped layout
    const build = path.join(work.path, 'build');
    await run(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(repoRoot, 'tsconfig.json'), '--outDir', path.join(build, 'dist')], { cwd: repoRoot, timeout: 240_000 });
    const { bundleModules, writeTemplateParseCache } = (await import(path.join(repoRoot, 'scripts', 'bundle.mjs'))) as {
      bundleModules: (entries: Record<string, string>, outdir: string) => Promise<Metafile>;
      writeTemplateParseCache: (outdir: string, compiledDist: string) => Promise<void>;
    };
    metafile = await bundleModules({ main: path.join(build, 'dist', 'cli', 'main.js') }, path.join(app, 'dist', 'bundle'));
    await writeTemplateParseCache(path.join(app, 'dist', 'bundle'), path.join(build, 'dist'));
    fs.mkdirSync(prod);
    for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(repoRoot, f), path.join(prod, f));
    fs.cpSync(path.join(build, 'dist'), path.join(prod, 'dist'), { recursive: true });
    await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: prod, env: cleanEnv(), timeout: 240_000 });
  }, 600_000);

  afterAll(() => work.cleanup());

  it('ships no installed packages: the bundle imports Node built-ins, its chunks and its two libraries loaded on first use', async () => {
    expect(fs.existsSync(path.join(app, 'node_modules'))).toBe(false);
    const outputs = Object.values(metafile.outputs);
    expect(outputs.length).toBeGreaterThan(1);
    const external = outputs.flatMap((o) => o.imports.filter((i) => i.external).map((i) => i.path));
    expect(external).toContain('node:http2');
    // `node:` names never resolve to a package (undici names node:sqlite, newer than Node 20, for
    // a cache store the agent does not use)
    expect([...new Set(external.filter((spec) => !spec.startsWith('node:') && !isBuiltin(spec)))].sort()).toEqual(['prom-client', 'yaml']);
    // both resolve to their one-file builds inside the bundle, from the chunks as from main.js
    const bundle = path.join(app, 'dist', 'bundle');
    const script = `import { createRequire } from 'node:module'; for (const from of ['./main.js', './chunks/x.js']) for (const lib of ['yaml', 'prom-client']) console.log(createRequire(new URL(from, import.meta.url)).resolve(lib));`;
    fs.writeFileSync(path.join(bundle, 'resolve-check.mjs'), script);
    try {
      const { stdout } = await run(process.execPath, [path.join(bundle, 'resolve-check.mjs')], { cwd: work.path });
      const resolved = stdout.trim().split('\n');
      expect(resolved).toHaveLength(4);
      for (const r of resolved) {
        expect(r.startsWith(`${path.join(bundle, 'node_modules')}/`), r).toBe(true);
        expect(r).toMatch(/\/node_modules\/(yaml|prom-client)\/index\.js$/);
      }
    } finally {
      fs.rmSync(path.join(bundle, 'resolve-check.mjs'));
    }
  });

  it(`keeps the production install's node_modules within ${MAX_NODE_MODULES_BYTES / 1e6} MB and free of development packages`, async () => {
    const { stdout } = await run('du', ['-s', '--block-size=1', path.join(prod, 'node_modules')]);
    const bytes = Number(stdout.split(/\s+/)[0]);
    expect(bytes).toBeGreaterThan(0);
    expect(bytes, `node_modules takes ${bytes} bytes`).toBeLessThanOrEqual(MAX_NODE_MODULES_BYTES);
    for (const name of Object.keys(pkg.devDependencies)) expect(fs.existsSync(path.join(prod, 'node_modules', name)), `${name} is a development dependency`).toBe(false);
    for (const name of Object.keys(pkg.dependencies)) expect(fs.existsSync(path.join(prod, 'node_modules', name, 'package.json')), `${name} is a runtime dependency`).toBe(true);
  });

  it('resolves every package the unbundled agent imports from the production install, and each is a declared runtime dependency', async () => {
    const specs = [...importedPackages(path.join(prod, 'dist'))].sort();
    expect(specs.length).toBeGreaterThan(0);
    const packageOf = (s: string): string => s.split('/').slice(0, s.startsWith('@') ? 2 : 1).join('/');
    expect([...new Set(specs.map(packageOf))].filter((p) => !(p in pkg.dependencies))).toEqual([]);
    const script = `for (const s of ${JSON.stringify(specs)}) { try { import.meta.resolve(s); } catch (e) { console.log(s + ': ' + e.message); } }`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: path.join(prod, 'dist') });
    expect(stdout.trim()).toBe('');
  });

  it('runs `pilot-agent version`', async () => {
    const { stdout } = await run(process.execPath, [path.join(app, 'bin', 'pilot-agent.js'), 'version', '-s'], { cwd: work.path });
    expect(stdout.trim()).toBe(`client version: ${JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version}`);
  });

  describe('pilot-agent proxy sidecar from the production install', () => {
    let cp: ControlPlane;
    let health: GrpcHealthServer;
    let agent: RunningProcess;
    let root: string;
    let record: string;
    let statusPort: number;

    beforeAll(async () => {
      root = path.join(work.path, 'pod');
      fs.mkdirSync(root);
      record = path.join(root, 'record.jsonl');
      cp = await startControlPlane({ listen: '127.0.0.1:0', token: TOKEN });
      buildResourceSet().applyTo(cp);
      writeIstiodMounts(root, cp.rootCertPem, TOKEN);
      health = await grpcHealthServer();
      statusPort = await freePort();
      const pod = injectedProxy('hello.yaml.injected');
      agent = runAgent(pod.args, {
        bin: path.join(app, 'bin', 'pilot-agent.js'),
        cwd: root,
        env: {
          ...pod.env,
          INSTANCE_IP: '127.0.0.1',
          CA_ADDR: cp.address,
          ISTIOD_SAN: 'istiod.istio-system.svc',
          ISTIO_KUBE_APP_PROBERS: JSON.stringify({ '/app-health/hello/livez': { grpc: { port: health.port, service: null }, timeoutSeconds: 5 } }),
          ENVOY_STANDIN_ADS: '1',
          ENVOY_STANDIN_SDS: '1',
          ENVOY_STANDIN_RECORD: record,
          PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: await freePort(), statusPort, discoveryAddress: cp.address, terminationDrainDuration: '0s' }),
        },
      });
    }, 60_000);

    afterAll(async () => {
      killStarted();
      for (const ev of readRecord(record)) if (ev.event === 'start' && typeof ev.pid === 'number' && isAlive(ev.pid)) process.kill(ev.pid, 'SIGKILL');
      await health?.close();
      await cp?.close();
    });

    it('gets its certificate, serves it over SDS, relays xDS, probes the app over gRPC, becomes ready and stops cleanly', { timeout: 120_000 }, async () => {
      const ready = () => httpRequest(`http://127.0.0.1:${statusPort}/healthz/ready`);
      await vi.waitFor(
        async () => {
          if (agent.child.exitCode !== null) throw new Error(`the agent exited:\n${agent.output()}`);
          const res = await ready();
          expect(res.status, res.body).toBe(200);
        },
        { timeout: 90_000, interval: 250 },
      );
      expect(cp.acks().length).toBeGreaterThan(0);
      expect(agent.output()).toMatch(/SDS: PUSH resources:\d+ names:[^ ]*default/);
      const probe = await httpRequest(`http://127.0.0.1:${statusPort}/app-health/hello/livez`);
      expect(probe.status).toBe(200);
      expect(health.peers.at(-1)).toBe('127.0.0.6');
      agent.child.kill('SIGTERM');
      expect(await agent.exited).toEqual({ code: 0, signal: null });
    });
  });
});
