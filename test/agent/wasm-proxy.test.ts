// The real `pilot-agent proxy sidecar` and Wasm modules behind a proxy: HTTP_PROXY / NO_PROXY as the
// pod's env sets them, a forward proxy the test starts, the development control plane pushing an ECDS
// Wasm filter with a remote module, and the Envoy stand-in as ADS client. The module URL names
// 0.0.0.0 (this host, and not loopback, which Go never proxies). Also
// ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION=false: Envoy receives the remote config as istiod
// sent it and the agent fetches nothing.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { isAbsolute, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { injectedProxy } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, killRecordedStandIns, runAgent, type RunningProcess, stopAgent, tempDir } from '../support/processes.js';
import { ecdsWasmListener, remoteWasmExtension } from '../support/sidecar-resources.js';
import { startForwardProxy, wasmModule, type ForwardProxy } from '../wasm/support.js';

const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const ECDS = 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig';
const EXTENSION = 'default.hello-wasm';
const MODULE = wasmModule(2048, 'behind-a-proxy');

let cp: ControlPlane;
let files: Server;
let filesPort: number;
let proxy: ForwardProxy;
let downloads: string[] = [];
let agent: RunningProcess | undefined;
let work: ReturnType<typeof tempDir> | undefined;
let adminPort = 0;
let moduleUrl = '';

beforeAll(async () => {
  files = createServer((req, res) => {
    downloads.push(req.url ?? '');
    if (req.url === '/hello.wasm') res.end(MODULE);
    else res.writeHead(404).end();
  });
  filesPort = await new Promise<number>((r) => files.listen(0, '127.0.0.1', () => r((files.address() as { port: number }).port)));
  moduleUrl = `http://0.0.0.0:${filesPort}/hello.wasm`;
  proxy = await startForwardProxy();
  cp = await startControlPlane({ plaintext: true });
  cp.setResources(LDS, [ecdsWasmListener(EXTENSION)], { replace: true });
  cp.setResources(ECDS, [remoteWasmExtension(EXTENSION, moduleUrl, createHash('sha256').update(MODULE).digest('hex'))], { replace: true });
});

afterAll(async () => {
  await cp?.close();
  await proxy?.close();
  files?.close();
});

afterEach(async () => {
  await stopAgent(agent);
  agent = undefined;
  if (work) killRecordedStandIns(join(work.path, 'record.jsonl'));
  work?.cleanup();
  work = undefined;
  downloads = [];
  proxy.requests.length = 0;
});

async function startAgent(env: Record<string, string>): Promise<RunningProcess> {
  work = tempDir('pa-wasm-proxy-agent-');
  adminPort = await freePort();
  const pod = injectedProxy('hello.yaml.injected');
  agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      ...env,
      ENVOY_STANDIN_ADS: '1',
      ENVOY_STANDIN_RECORD: join(work.path, 'record.jsonl'),
      PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: adminPort, statusPort: 0, controlPlaneAuthPolicy: 'NONE', discoveryAddress: cp.address, terminationDrainDuration: '0s' }),
    },
  });
  return agent;
}

type WasmCode = { local?: { filename?: string }; remote?: { http_uri?: { uri?: string } } };
type VmConfig = { code?: WasmCode; environment_variables?: { key_values?: Record<string, string> } };

/** The Wasm VM config of the extension the stand-in accepted, once it has one. */
async function heldVmConfig(running: RunningProcess): Promise<VmConfig> {
  let vm: VmConfig | undefined;
  await vi.waitFor(
    async () => {
      if (running.child.exitCode !== null) throw new Error(`agent exited:\n${running.output()}`);
      const body = (await (await fetch(`http://127.0.0.1:${adminPort}/standin/xds`)).json()) as { types: Record<string, { resourceJson?: Record<string, { typed_config?: { config?: { vm_config?: VmConfig } } }> } | undefined> };
      vm = body.types.ECDS?.resourceJson?.[EXTENSION]?.typed_config?.config?.vm_config;
      expect(vm?.code).toBeDefined();
    },
    { timeout: 40_000, interval: 200 },
  );
  return vm!;
}

function expectLocalModule(code: WasmCode): void {
  const filename = code.local?.filename ?? '';
  expect(filename).not.toBe('');
  expect(readFileSync(isAbsolute(filename) ? filename : join(work!.path, filename)).equals(MODULE)).toBe(true);
}

describe('Wasm modules behind HTTP_PROXY (real agent)', () => {
  it('fetches the module through the proxy and hands Envoy the local file', { timeout: 90_000 }, async () => {
    const running = await startAgent({ HTTP_PROXY: proxy.url });
    expectLocalModule((await heldVmConfig(running)).code!);
    expect(proxy.requests).toEqual([`GET ${moduleUrl}`]);
    expect(downloads).toEqual(['/hello.wasm']); // the proxy's one request reached the server
    expect(running.output()).toContain(`Wasm fetches use proxies: https none, http ${proxy.url}/`);
  });

  it('goes around the proxy for a NO_PROXY target', { timeout: 90_000 }, async () => {
    const running = await startAgent({ http_proxy: proxy.url, no_proxy: 'example.com,0.0.0.0' });
    expectLocalModule((await heldVmConfig(running)).code!);
    expect(proxy.requests).toEqual([]);
    expect(downloads).toEqual(['/hello.wasm']);
  });

  it('with ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION=false relays the remote config untouched and fetches nothing', { timeout: 90_000 }, async () => {
    const running = await startAgent({ HTTP_PROXY: proxy.url, ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION: 'false' });
    const vm = await heldVmConfig(running);
    expect(vm.code?.local).toBeUndefined();
    expect(vm.code?.remote?.http_uri?.uri).toBe(moduleUrl);
    // the pull-policy key the conversion consumes and strips is still there: the resource is istiod's
    expect(vm.environment_variables?.key_values).toEqual({ ISTIO_META_WASM_IMAGE_PULL_POLICY: 'IfNotPresent' });
    expect(running.output()).toContain('ISTIO_AGENT_ENABLE_WASM_REMOTE_LOAD_CONVERSION is false: ECDS is relayed to Envoy unconverted');
    expect(proxy.requests).toEqual([]);
    expect(downloads).toEqual([]);
    expect(cp.acks(ECDS).length).toBeGreaterThanOrEqual(1);
  });
});
