// `npm run demo`: the agent's main job, end to end on this machine. It starts the development
// control plane (an istiod stand-in with ADS and the Istio CA, TLS + token), a hello gRPC server,
// and `pilot-agent proxy sidecar` with the argv and env Istio's injector gives a pod. With an
// `envoy` binary on PATH the agent runs it as a sidecar; otherwise it runs proxyless (as for the
// grpc-agent sample pod) and a gRPC client resolves xds:///hello... through the agent.
// It shows what the control plane sees, the client's replies and the status port, and stops
// cleanly on Ctrl-C (or after --seconds N).

import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { startControlPlane } from '../control-plane/index.js';
import { helloXdsResources, HELLO_METHOD, HELLO_SERVICE, startHelloServer } from '../support/hello-mesh.js';
import { downwardApiText, injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { repoRoot } from '../support/paths.js';
import { agentBin, freePort } from '../support/processes.js';

const say = (msg: string): boolean => process.stdout.write(`\x1b[1;36m[demo]\x1b[0m ${msg}\n`);
const TOKEN = 'demo-token';

function envoyOnPath(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v envoy'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

async function main(): Promise<void> {
  const secondsIdx = process.argv.indexOf('--seconds');
  const seconds = secondsIdx >= 0 ? Number(process.argv[secondsIdx + 1]) : 0;
  const dir = join(repoRoot, '.demo');
  rmSync(dir, { recursive: true, force: true });

  const hello = await startHelloServer('the hello server');
  const cp = await startControlPlane({ token: TOKEN, log: () => undefined });
  for (const [typeUrl, resources] of Object.entries(helloXdsResources(hello.port))) cp.setResources(typeUrl, resources, { replace: true });
  say(`development control plane (istiod stand-in: ADS + CA) on ${cp.address}, TLS, bearer token required`);
  say(`hello gRPC server on 127.0.0.1:${hello.port}`);

  // the pod's mounts, under ./.demo standing in for the container's /
  const pod = injectedProxy(envoyOnPath() ? 'hello.yaml.injected' : 'grpc-agent.yaml.injected');
  mkdirSync(join(dir, 'etc/istio/pod'), { recursive: true });
  writeFileSync(join(dir, 'etc/istio/pod/labels'), downwardApiText(pod.labels));
  writeFileSync(join(dir, 'etc/istio/pod/annotations'), downwardApiText(pod.annotations));
  writeIstiodMounts(dir, cp.rootCertPem, TOKEN);

  const statusPort = await freePort();
  const envoy = envoyOnPath();
  const proxyConfig: Record<string, unknown> = { discoveryAddress: cp.address, statusPort, terminationDrainDuration: '2s' };
  // the injected pod names the cluster's istiod as its CA (CA_ADDR); here the development control
  // plane is the CA too, so the workload certificate is issued and the proxy becomes ready
  const env: Record<string, string> = { ...pod.env, PATH: process.env.PATH ?? '', ISTIOD_SAN: 'istiod.istio-system.svc', CA_ADDR: cp.address };
  if (envoy) {
    proxyConfig.binaryPath = envoy;
    proxyConfig.proxyAdminPort = await freePort();
    say(`envoy found at ${envoy}: running as a sidecar`);
  } else {
    env.GRPC_XDS_BOOTSTRAP = './etc/istio/proxy/grpc-bootstrap.json';
    env.OUTPUT_CERTS = './var/lib/istio/data';
    say('no envoy on PATH: running proxyless (DISABLE_ENVOY), a gRPC client resolves through the agent');
  }
  env.PROXY_CONFIG = JSON.stringify(proxyConfig);
  // istiod's debug API through the agent (Istio's port 15004 may be taken on this machine)
  env.PROXY_XDS_DEBUG_VIA_AGENT_PORT = String(await freePort());
  say(`working directory ${dir}`);
  say(`xDS debug through the agent: curl http://127.0.0.1:${env.PROXY_XDS_DEBUG_VIA_AGENT_PORT}/debug/syncz`);
  say(`pilot-agent ${pod.args.join(' ')}`);
  // its own process group: Ctrl-C reaches the demo only, which then sends the one SIGTERM a pod gets
  const agent = spawn(process.execPath, [agentBin, ...pod.args], { cwd: dir, env, stdio: 'inherit', detached: true });
  const exited = new Promise<number>((resolve) => agent.once('exit', (code) => resolve(code ?? 1)));

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    say('stopping: SIGTERM to the agent (what a pod deletion sends)');
    agent.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  let client: grpc.Client | undefined;
  if (!envoy) {
    process.env.GRPC_XDS_BOOTSTRAP = join(dir, 'etc/istio/proxy/grpc-bootstrap.json');
    const xds = await import('@grpc/grpc-js-xds');
    xds.register();
    client = new grpc.Client(`xds:///${HELLO_SERVICE}`, grpc.credentials.createInsecure());
  }
  const identity = (b: Buffer): Buffer => b;
  let n = 0;
  let shownStream = false;
  let shownCert = false;
  const deadline = seconds > 0 ? Date.now() + seconds * 1000 : Infinity;
  say(seconds > 0 ? `running for ${seconds}s` : 'running; press Ctrl-C to stop');
  while (!stopping && Date.now() < deadline) {
    if (client) {
      const c = client;
      const reply = await new Promise<string>((resolve) =>
        c.makeUnaryRequest(HELLO_METHOD, identity, identity, Buffer.from(`hello #${++n}`), { deadline: new Date(Date.now() + 5000) }, (err, res) =>
          resolve(err ? `error: ${err.message}` : res!.toString()),
        ),
      );
      say(`client -> xds:///${HELLO_SERVICE}: ${reply}`);
    }
    const stream = cp.streams()[0];
    if (stream && !shownStream) {
      shownStream = true;
      const node = stream.node as { id?: string; metadata?: Record<string, unknown> } | undefined;
      say(`control plane: stream from the agent for node ${node?.id ?? '?'} (generator ${String(node?.metadata?.GENERATOR ?? 'envoy')}), token ${stream.metadata.authorization ? 'presented' : 'missing'}, ClusterID ${String(stream.metadata.clusterid ?? '?')}`);
    }
    const acked = [...new Set(cp.acks().map((a) => a.typeUrl.split('.').pop()))].join(', ');
    if (acked) say(`control plane: ACKed by the client through the agent: ${acked}`);
    // proxyless: the agent writes the workload certificate for the app (OUTPUT_CERTS)
    const certFile = join(dir, 'var/lib/istio/data/cert-chain.pem');
    if (!shownCert && existsSync(certFile)) {
      shownCert = true;
      const leaf = new X509Certificate(readFileSync(certFile));
      say(`workload certificate from the control plane's CA: ${leaf.subjectAltName ?? '?'}, valid until ${leaf.validTo}`);
    }
    const ready = await fetch(`http://127.0.0.1:${statusPort}/healthz/ready`).then((r) => `${r.status} ${r.statusText}`, () => 'not served');
    say(`status port http://127.0.0.1:${statusPort}/healthz/ready -> ${ready}`);
    await sleep(Math.min(3000, Math.max(0, deadline - Date.now())));
  }
  stop();
  client?.close();
  const code = await exited;
  await cp.close();
  hello.server.forceShutdown();
  say(`agent exited with code ${code}`);
  process.exit(code);
}

void main();
