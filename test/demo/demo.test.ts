// The README's first command must keep working: the demo brings up the development control
// plane, the agent and a proxyless client, and stops cleanly.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { repoRoot } from '../support/paths.js';

it('npm run demo: the client gets answers through the agent and everything stops with exit 0', { timeout: 90_000 }, async () => {
  const child = spawn(process.execPath, [join(repoRoot, 'dist-test/test/demo/run-demo.js'), '--seconds', '7'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(code, out).toBe(0);
  expect(out).toContain('greetings from the hello server: hello #1');
  expect(out).toMatch(/ACKed by the client through the agent: .*Listener.*ClusterLoadAssignment/);
  expect(out).toContain('token presented');
  // the workload certificate comes from the control plane's CA, and the proxy reports ready
  expect(out).toMatch(/status port http:\/\/127\.0\.0\.1:\d+\/healthz\/ready -> 200/);
  expect(out).toContain('agent exited with code 0');
});
