// `npm run demo`: runs `pilot-agent proxy sidecar` as Istio's injector would start it in the
// hello pod (argv and env from ../shared/istio-testdata), in ./.demo, with the Envoy stand-in as
// the Envoy binary, shows what happened, and drains gracefully on Ctrl-C (or after --seconds N).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { downwardApiText, injectedProxy } from '../support/hello-pod.js';
import { envoyStandInPath, repoRoot } from '../support/paths.js';
import { agentBin, freePort } from '../support/processes.js';

const say = (msg: string): boolean => process.stdout.write(`\x1b[1m[demo]\x1b[0m ${msg}\n`);

async function main(): Promise<void> {
  const secondsIdx = process.argv.indexOf('--seconds');
  const seconds = secondsIdx >= 0 ? Number(process.argv[secondsIdx + 1]) : 0;
  const dir = join(repoRoot, '.demo');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'etc/istio/pod'), { recursive: true });
  const pod = injectedProxy('hello.yaml.injected');
  writeFileSync(join(dir, 'etc/istio/pod/labels'), downwardApiText(pod.labels));
  writeFileSync(join(dir, 'etc/istio/pod/annotations'), downwardApiText(pod.annotations));
  const adminPort = await freePort();
  const record = join(dir, 'envoy-stand-in.jsonl');
  const env = {
    ...pod.env,
    PATH: process.env.PATH ?? '',
    PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: adminPort, statusPort: 0, controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1', terminationDrainDuration: '2s' }),
    ENVOY_STANDIN_RECORD: record,
  };
  say(`working directory ${dir} (stands in for the container's /)`);
  say(`pilot-agent ${pod.args.join(' ')}`);
  const agent = spawn(process.execPath, [agentBin, ...pod.args], { cwd: dir, env, stdio: 'inherit' });
  const exited = new Promise<number>((resolve) => agent.once('exit', (code) => resolve(code ?? 1)));

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    say('stopping: SIGTERM to the agent (a pod deletion does the same)');
    agent.kill('SIGTERM');
  };
  process.on('SIGINT', stop); // Ctrl-C reaches the agent too (same process group); it drains once
  process.on('SIGTERM', stop);

  for (let i = 0; i < 200 && !existsSync(record); i++) await sleep(50);
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${adminPort}/ready`).then((r) => r.ok, () => false);
    if (ok) break;
    await sleep(100);
  }
  const bootstrapPath = join(dir, 'etc/istio/proxy/envoy-rev.json');
  if (existsSync(bootstrapPath)) {
    const bootstrap = JSON.parse(readFileSync(bootstrapPath, 'utf8')) as { node: { id: string; cluster: string } };
    say(`bootstrap written: ${bootstrapPath}`);
    say(`  node.id=${bootstrap.node.id} node.cluster=${bootstrap.node.cluster}`);
  }
  const info = await fetch(`http://127.0.0.1:${adminPort}/server_info`).then((r) => r.json() as Promise<{ state: string }>, () => undefined);
  if (info) say(`Envoy (stand-in) admin on 127.0.0.1:${adminPort}: state ${info.state}`);
  say(seconds > 0 ? `running for ${seconds}s` : 'running; press Ctrl-C to drain and stop');
  if (seconds > 0) void sleep(seconds * 1000).then(stop);
  const code = await exited;
  say(`agent exited with code ${code}`);
  process.exit(code);
}

void main();
