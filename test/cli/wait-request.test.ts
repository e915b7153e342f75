// `pilot-agent wait` and `pilot-agent request` as the kubelet's hooks run them.

import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../support/paths.js';
import { agentBin, freePort, killStarted, runAgent, tempDir } from '../support/processes.js';

let server: Server | undefined;
afterEach(async () => {
  killStarted();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

async function serve(handler: (calls: number) => number): Promise<{ port: number; calls: () => number }> {
  let calls = 0;
  const port = await freePort();
  server = createServer((_req, res) => {
    calls++;
    res.statusCode = handler(calls);
    res.end(res.statusCode === 200 ? 'LIVE' : 'not ready');
  });
  await new Promise<void>((r) => server!.listen(port, '127.0.0.1', r));
  return { port, calls: () => calls };
}

describe('pilot-agent wait', () => {
  it('polls until the URL answers 200', async () => {
    const srv = await serve((n) => (n < 4 ? 503 : 200));
    const dir = tempDir('pa-wait-');
    try {
      const p = runAgent(['wait', `--url=http://127.0.0.1:${srv.port}/healthz/ready`, '--periodMillis=50', '--timeoutSeconds=10'], { cwd: dir.path, env: {} });
      expect((await p.exited).code, p.output()).toBe(0);
      expect(srv.calls()).toBe(4);
      expect(p.output()).toContain('Envoy is ready!');
    } finally {
      dir.cleanup();
    }
  });

  it('fails after --timeoutSeconds with the last error', async () => {
    const srv = await serve(() => 503);
    const dir = tempDir('pa-wait-');
    try {
      const t0 = Date.now();
      const p = runAgent(['wait', '--url', `http://127.0.0.1:${srv.port}/healthz/ready`, '--periodMillis', '100', '--timeoutSeconds', '1'], { cwd: dir.path, env: {} });
      expect((await p.exited).code).toBe(255);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
      expect(p.output()).toContain('timeout waiting for Envoy proxy to become ready. Last error: HTTP status code 503');
      expect(srv.calls()).toBeGreaterThanOrEqual(5);
    } finally {
      dir.cleanup();
    }
  });
});

describe('the command line as pflag reads it', () => {
  it('a bare boolean flag does not take the next word: --log_as_json wait', async () => {
    const srv = await serve(() => 200);
    const dir = tempDir('pa-wait-');
    try {
      const p = runAgent(['--log_as_json', 'wait', `--url=http://127.0.0.1:${srv.port}/healthz/ready`, '--timeoutSeconds=5'], { cwd: dir.path, env: {} });
      expect((await p.exited).code, p.output()).toBe(0);
      const line = p.output().split('\n').find((l) => l.includes('Envoy is ready!'))!;
      expect(JSON.parse(line)).toMatchObject({ level: 'info' });
    } finally {
      dir.cleanup();
    }
  });

  it('wait and request refuse flags they do not know, as Istio does (only the root and proxy accept them)', async () => {
    const srv = await serve(() => 200);
    for (const args of [['wait', '--timeout=5', `--url=http://127.0.0.1:${srv.port}/healthz/ready`], ['request', '--bogus', 'GET', 'stats']]) {
      const r = spawnSync(process.execPath, [agentBin, ...args], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, args.join(' ')).toBe(255);
      expect(r.stderr).toContain(`unknown option '${args[1]}'`);
    }
    expect(srv.calls()).toBe(0);
  });

  it('a --log_target that cannot be opened stops the command, naming it (no stream error later)', () => {
    const dir = tempDir('pa-logtarget-');
    try {
      const target = join(dir.path, 'missing-dir', 'agent.log');
      const r = spawnSync(process.execPath, [agentBin, `--log_target=${target}`, 'wait', '--timeoutSeconds=1', '--url=http://127.0.0.1:1/'], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status).toBe(255);
      expect(r.stdout + r.stderr).toContain(`flag --log_target: cannot open the log file: ENOENT`);
      expect(r.stdout + r.stderr).not.toContain('Unhandled');
    } finally {
      dir.cleanup();
    }
  });

  it('--log_target is repeatable, each use one path (commas included), as pflag StringArray in Istio', () => {
    const dir = tempDir('pa-logtarget-');
    try {
      const a = join(dir.path, 'a.log');
      const comma = join(dir.path, 'b,c.log');
      const r = spawnSync(process.execPath, [agentBin, `--log_target=${a}`, '--log_target', comma, '--log_target=stderr', 'wait', '--timeoutSeconds=1', '--periodMillis=100', '--url=http://127.0.0.1:1/'], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status).toBe(255);
      for (const out of [readFileSync(a, 'utf8'), readFileSync(comma, 'utf8'), r.stderr]) expect(out).toContain('timeout waiting for Envoy proxy to become ready');
      expect(r.stdout).toBe(''); // the default (stdout) was replaced by the first --log_target
    } finally {
      dir.cleanup();
    }
  });

  it('a log target that fails on write (a full disk: /dev/full) loses its lines, not the command', async () => {
    const srv = await serve(() => 200);
    const dir = tempDir('pa-logtarget-');
    try {
      // the answering server runs in this process: the command runs beside it, not synchronously
      const p = runAgent(['--log_target=/dev/full', '--log_target=stderr', 'wait', `--url=http://127.0.0.1:${srv.port}/healthz/ready`, '--timeoutSeconds=5'], { cwd: dir.path, env: {} });
      expect((await p.exited).code, p.output()).toBe(0);
      expect(p.output().match(/log target \/dev\/full: .*ENOSPC.*its log lines are dropped from now on/g)).toHaveLength(1);
      expect(p.output()).toContain('Envoy is ready!');
    } finally {
      dir.cleanup();
    }
  });

  it("exit statuses are Istio's: a failed command 255 (cobra's error -> os.Exit(-1)), help 0", () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [agentBin, ...args], { encoding: 'utf8', timeout: 20_000 });
    const unknown = run('bogus');
    expect(unknown.status).toBe(255);
    expect(unknown.stderr).toContain("unknown command 'bogus'");
    expect(run('request', 'GET').status).toBe(255); // a missing argument
    expect(run('wait', '--timeoutSeconds=soon').status).toBe(255); // a bad flag value
    for (const args of [[], ['--help'], ['proxy', '--help']]) {
      const r = run(...args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout + r.stderr).toContain('Usage: pilot-agent');
    }
  });

  it("version: Istio's shapes, with shorthand values after =", () => {
    const version = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version as string;
    const run = (...args: string[]): string => spawnSync(process.execPath, [agentBin, 'version', ...args], { encoding: 'utf8' }).stdout;
    expect(run('-s')).toBe(`client version: ${version}\n`);
    expect(run('--short=false')).toMatch(/^client version: version\.BuildInfo\{Version:"[^"]+", GitRevision:"[^"]*", GolangVersion:"[^"]*", BuildStatus:"Clean", GitTag:"[^"]*"\}\n$/);
    expect(Object.keys(JSON.parse(run('-o=json')).clientVersion)).toEqual(['version', 'revision', 'golang_version', 'status', 'tag']);
  });
});

describe('pilot-agent request', () => {
  it('refuses ports outside the allow-list', async () => {
    const dir = tempDir('pa-request-');
    try {
      const p = runAgent(['request', '--debug-port=8080', 'GET', 'stats'], { cwd: dir.path, env: {} });
      expect((await p.exited).code).toBe(255);
      expect(p.output()).toContain('debug port 8080 is not in allowed list [15000 15004 15020 15021]');
    } finally {
      dir.cleanup();
    }
  });

  // Port 15020 is fixed by the allow-list, so the call runs in a private network namespace of its
  // own where that port is free (needs root, as CI has).
  it.runIf(process.getuid?.() === 0)('POSTs the preStop drain to the status port and prints the body; fails on 5xx but not 404', () => {
    const serverJs = `
      const http = require('node:http');
      http.createServer((req, res) => {
        if (req.url === '/drain' && req.method === 'POST') { res.end('draining'); return; }
        if (req.url === '/missing') { res.statusCode = 404; res.end('nope'); return; }
        res.statusCode = 503; res.end('broken');
      }).listen(15020, '127.0.0.1', () => process.stdout.write('up\\n'));`;
    const script = `
      ip link set lo up
      node -e "$SERVER_JS" > /dev/null &
      srv=$!
      for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/15020) 2>/dev/null && break; sleep 0.05; done
      node ${agentBin} request --debug-port=15020 POST drain; echo "rc=$?"
      node ${agentBin} request --debug-port=15020 GET missing; echo "rc=$?"
      node ${agentBin} request --debug-port=15020 GET broken 2>&1; echo "rc=$?"
      kill $srv`;
    const r = spawnSync('unshare', ['-n', 'bash', '-c', script], { env: { ...process.env, SERVER_JS: serverJs }, encoding: 'utf8', timeout: 60_000 });
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/draining\nrc=0/);
    expect(out).toMatch(/nope\nrc=0/);
    expect(out).toContain('received unsuccessful status code 503: broken');
    expect(out).toMatch(/rc=255\s*$/);
  });
});
