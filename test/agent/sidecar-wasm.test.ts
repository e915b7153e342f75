// End to end for Wasm: the development control plane pushes a listener whose HTTP filter comes
// from ECDS, and the ECDS resource names a remote Wasm module (http, with its sha256). The real
// agent downloads it into its cache and rewrites the resource; the Envoy stand-in (a real ADS
// client, which checks that local Wasm files exist and start with \0asm) receives a local filename
// pointing at a file with exactly the module's bytes. A module that fails its checksum falls back
// to Istio's deny-all RBAC filter of the same name, never a half-written file.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { isAbsolute, join } from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { injectedProxy } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { ecdsWasmListener, remoteWasmExtension } from '../support/sidecar-resources.js';
import { freePort, killRecordedStandIns, killStarted, runAgent, type RunningProcess, tempDir } from '../support/processes.js';

const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const ECDS = 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig';
const EXTENSION = 'default.hello-wasm';

// the smallest valid module: magic + version, then a custom section naming this test
const MODULE = Buffer.concat([Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]), Buffer.from([0x00, 0x05, 0x04]), Buffer.from('test')]);

let cp: ControlPlane;
let files: Server;
let filesPort: number;
let work: ReturnType<typeof tempDir>;
let agent: RunningProcess;
let adminPort: number;
let downloads = 0;

const moduleAt = (path: string, sha256: string) => remoteWasmExtension(EXTENSION, `http://127.0.0.1:${filesPort}${path}`, sha256);

beforeAll(async () => {
  work = tempDir('pa-wasm-agent-');
  files = createServer((req, res) => {
    downloads++;
    if (req.url === '/hello.wasm') res.end(MODULE);
    else res.writeHead(404).end();
  });
  filesPort = await new Promise<number>((r) => files.listen(0, '127.0.0.1', () => r((files.address() as { port: number }).port)));
  cp = await startControlPlane({ plaintext: true, log: () => undefined });
  cp.setResources(CDS, [], { replace: true });
  cp.setResources(LDS, [ecdsWasmListener(EXTENSION)], { replace: true });
  cp.setResources(ECDS, [moduleAt('/hello.wasm', createHash('sha256').update(MODULE).digest('hex'))], { replace: true });
  adminPort = await freePort();
  mkdirSync(join(work.path, 'var/lib/istio/data'), { recursive: true });
  const pod = injectedProxy('hello.yaml.injected');
  agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      ENVOY_STANDIN_ADS: '1',
      ENVOY_STANDIN_RECORD: join(work.path, 'record.jsonl'),
      PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: adminPort, statusPort: 0, controlPlaneAuthPolicy: 'NONE', discoveryAddress: cp.address, terminationDrainDuration: '0s' }),
    },
  });
});

afterAll(async () => {
  agent?.child.kill('SIGTERM');
  await agent?.exited;
  killStarted();
  killRecordedStandIns(join(work.path, 'record.jsonl'));
  await cp?.close();
  files?.close();
  work?.cleanup();
});

interface StandInXds {
  types: Record<string, { resourceJson?: Record<string, { typed_config?: Record<string, unknown> }>; nacks?: number } | undefined>;
}

async function ecdsHeld(): Promise<Record<string, { typed_config?: Record<string, unknown> }>> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/standin/xds`);
  const body = (await res.json()) as StandInXds;
  return body.types.ECDS?.resourceJson ?? {};
}

it('hands Envoy a local file with the module bytes, downloaded once into the cache', { timeout: 60_000 }, async () => {
  let filename = '';
  await vi.waitFor(
    async () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
      const held = await ecdsHeld();
      const config = held['default.hello-wasm']?.typed_config?.config as { vm_config?: { code?: { local?: { filename?: string }; remote?: unknown } } } | undefined;
      filename = config?.vm_config?.code?.local?.filename ?? '';
      expect(filename).not.toBe('');
      expect(config?.vm_config?.code?.remote).toBeUndefined();
    },
    { timeout: 40_000, interval: 200 },
  );
  const path = isAbsolute(filename) ? filename : join(work.path, filename);
  expect(readFileSync(path).equals(MODULE)).toBe(true);
  expect(path).toContain(join('var/lib/istio/data'));
  // the env key the agent consumes is stripped; the rest of the config is kept
  const held = await ecdsHeld();
  const config = held['default.hello-wasm']!.typed_config!.config as { root_id: string; vm_config: { environment_variables?: { key_values?: Record<string, string> } } };
  expect(config.root_id).toBe('hello');
  expect(config.vm_config.environment_variables?.key_values?.ISTIO_META_WASM_IMAGE_PULL_POLICY).toBeUndefined();
  expect(downloads).toBe(1);
});

it('falls back to a deny-all RBAC filter of the same name when the checksum does not match', { timeout: 60_000 }, async () => {
  cp.setResources(ECDS, [moduleAt('/hello.wasm', '0'.repeat(64))], { replace: true });
  await vi.waitFor(
    async () => {
      const held = await ecdsHeld();
      const typed = held['default.hello-wasm']?.typed_config;
      expect(String(typed?.['@type'])).toBe('type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC');
    },
    { timeout: 40_000, interval: 200 },
  );
  const typed = (await ecdsHeld())['default.hello-wasm']!.typed_config! as { rules_stat_prefix?: string };
  expect(typed.rules_stat_prefix ?? JSON.stringify(typed)).toContain('wasm-default-deny');
});
