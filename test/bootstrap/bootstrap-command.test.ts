// `pilot-agent bootstrap`: the hello pod's injected arguments and env, rendered as the agent would
// render them, parse strictly as an Envoy Bootstrap; --output and --grpc.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { registerBootstrapCommand } from '../../src/cli/bootstrap-command.js';
import { parseBootstrap } from '../support/envoy-protos.js';
import { downwardApiText, injectedProxy } from '../support/hello-pod.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function podDir(fixture: string): { dir: string; env: Record<string, string>; args: string[] } {
  const p = injectedProxy(fixture);
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'bootstrap-cmd-')));
  dirs.push(dir);
  fs.mkdirSync(path.join(dir, 'etc/istio/pod'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'etc/istio/pod/labels'), downwardApiText(p.labels));
  fs.writeFileSync(path.join(dir, 'etc/istio/pod/annotations'), downwardApiText(p.annotations));
  // `proxy sidecar ...` as injected, asked of the bootstrap command instead
  return { dir, env: p.env, args: ['bootstrap', ...p.args.slice(1)] };
}

async function run(args: string[], env: Record<string, string>, cwd: string): Promise<{ stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const program = new Command('pilot-agent').exitOverride().allowUnknownOption(true).option('--log_as_json', 'JSON logs', false);
  registerBootstrapCommand(program, { env, cwd, hostAddresses: ['10.244.1.17'], stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  await program.parseAsync(args, { from: 'user' });
  return { stdout, stderr };
}

describe('pilot-agent bootstrap', () => {
  it('writes the statsd sink with the address the name resolves to, as Istio resolves statsdUdpAddress', async () => {
    const { dir, env, args } = podDir('hello.yaml.injected');
    const { stdout } = await run(args, { ...env, PROXY_CONFIG: JSON.stringify({ ...JSON.parse(env.PROXY_CONFIG ?? '{}'), statsdUdpAddress: 'localhost:9125' }) }, dir);
    const b = JSON.parse(stdout) as Json;
    const sink = (b.stats_sinks as Json[]).find((s) => s.name === 'envoy.stat_sinks.statsd')!;
    expect(sink.typed_config.address.socket_address).toMatchObject({ address: expect.stringMatching(/^(127\.0\.0\.1|::1)$/), port_value: 9125 });
    expect(b.node.metadata.PROXY_CONFIG.statsdUdpAddress).toMatch(/^(127\.0\.0\.1|\[::1\]):9125$/);
  });

  it("prints the hello pod's Envoy bootstrap, valid for Envoy's strict parser", async () => {
    const { dir, env, args } = podDir('hello.yaml.injected');
    const { stdout } = await run(args, env, dir);
    const message = parseBootstrap(stdout);
    expect(message).toBeDefined();
    const b = JSON.parse(stdout) as Json;
    expect(b.node.id).toBe('sidecar~10.244.1.17~hello-7d9f8c6b5-x2x4z.default~default.svc.cluster.local');
    expect(b.node.cluster).toBe('hello.default');
    expect(b.node.metadata).toMatchObject({
      NAMESPACE: 'default',
      NAME: 'hello-7d9f8c6b5-x2x4z',
      CLUSTER_ID: 'Kubernetes',
      MESH_ID: 'cluster.local',
      WORKLOAD_NAME: 'hello',
      APP_CONTAINERS: 'hello',
      INTERCEPTION_MODE: 'REDIRECT',
      POD_PORTS: '[{"name":"http","containerPort":80,"protocol":""}]',
      LABELS: { app: 'hello', tier: 'backend' },
      PILOT_SAN: ['istiod.istio-system.svc'],
      ENVOY_SKIP_DEPRECATED_LOGS: 'true',
    });
    expect(b.node.metadata.PROXY_CONFIG).toMatchObject({ discoveryAddress: 'istiod.istio-system.svc:15012', concurrency: 2 });
    expect(b.static_resources.clusters.find((c: Json) => c.name === 'xds-grpc').load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path).toBe('./etc/istio/proxy/XDS');
    // nothing of the running agent is touched
    expect(fs.existsSync(path.join(dir, 'etc/istio/proxy/envoy-rev.json'))).toBe(false);
  });

  it('writes the document to --output, and prints the gRPC bootstrap with --grpc', async () => {
    const { dir, env, args } = podDir('grpc-agent.yaml.injected');
    await run([...args, '--output', 'out/envoy.json'], env, dir);
    parseBootstrap(fs.readFileSync(path.join(dir, 'out/envoy.json'), 'utf8'));

    const { stdout } = await run([...args, '--grpc'], env, dir);
    const grpc = JSON.parse(stdout) as Json;
    expect(grpc.xds_servers[0].server_uri).toBe(`unix:///${dir.slice(1)}/etc/istio/proxy/XDS`);
    expect(grpc.node.metadata.GENERATOR).toBe('grpc');
    expect(grpc.certificate_providers.default.plugin_name).toBe('file_watcher');
  });

  it('prints a customConfigFile as it is, saying so on stderr', async () => {
    const { dir, env, args } = podDir('hello.yaml.injected');
    fs.writeFileSync(path.join(dir, 'mine.json'), '{"admin":{}}\n');
    const { stdout, stderr } = await run(args, { ...env, PROXY_CONFIG: '{"customConfigFile":"./mine.json"}' }, dir);
    expect(stdout).toBe('{"admin":{}}\n');
    expect(stderr).toMatch(/customConfigFile/);
  });

  it('passes --log_as_json on to the Envoy log format', async () => {
    const { dir, env, args } = podDir('hello.yaml.injected');
    const { stdout } = await run(['--log_as_json', ...args], env, dir);
    expect((JSON.parse(stdout) as Json).application_log_config.log_format.json_format).toBeDefined();
  });
});
