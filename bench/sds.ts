// Bench `sds`: workload certificate costs.
//   - key + CSR generation (RSA-2048, ECDSA P-256; in process, warm) as ratios to
//     `openssl req -new -newkey ... -subj / -addext subjectAltName=critical,URI:...` doing the same in
//     the same run (a process start included: that is what the baseline costs);
//   - first_secret_ms: from the secret manager's and SDS server's start to the first `default` secret
//     on an SDS stream over the unix socket, in a fresh process per sample (module loading, key, CSR,
//     TLS to the CA, SDS proto loading and the push included; module imports not), against the dev
//     control plane's CA running in its own process.
// This file is also the per-sample child (`node sds.js --once ...`).

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median, round, timeCommand, type Bench } from './harness.js';
import { startControlPlaneProcess } from './processes.js';

const SPIFFE = 'spiffe://cluster.local/ns/default/sa/bench';
const TOKEN = 'bench-token';

type KeyType = 'rsa' | 'ecdsa';

interface OnceResult {
  readonly firstSecretMs: number;
  readonly importMs: number;
}

/** One sample, in this (fresh) process: start manager + SDS, connect, wait for `default`. */
async function once(caAddress: string, rootPath: string, dir: string, keyType: KeyType): Promise<OnceResult> {
  const ti = performance.now();
  const [{ SecretManager }, { SdsServer }, { sdsCodec }, grpc] = await Promise.all([
    import('../src/security/secret-manager.js'),
    import('../src/sds/server.js'),
    import('../src/sds/protos.js'),
    import('@grpc/grpc-js'),
  ]);
  const importMs = performance.now() - ti;
  const tokenPath = join(dir, 'var/run/secrets/tokens/istio-token');
  mkdirSync(join(dir, 'var/run/secrets/tokens'), { recursive: true });
  writeFileSync(tokenPath, TOKEN);
  const socketPath = join(dir, 'var/run/secrets/workload-spiffe-uds/socket');

  const t0 = performance.now();
  const manager = new SecretManager({
    cwd: dir,
    spiffeId: SPIFFE,
    keySpec: keyType === 'rsa' ? { type: 'rsa', bits: 2048, pkcs8: false } : { type: 'ecdsa', curve: 'P256', pkcs8: false },
    secretTtlMs: 24 * 3600_000,
    graceRatio: 0.5,
    graceRatioJitter: 0.01,
    fileDebounceMs: 100,
    outputDir: '',
    mounted: { certChain: join(dir, 'etc/certs/cert-chain.pem'), key: join(dir, 'etc/certs/key.pem'), root: join(dir, 'etc/certs/root-cert.pem') },
    fileMountedCerts: false,
    osRootBundle: '',
    ca: { address: caAddress, tls: { rootCaPath: rootPath, osRootBundle: '', serverName: 'istiod.istio-system.svc' }, tokenPath, clusterId: 'Kubernetes', headers: {}, certSigner: '' },
  });
  manager.start();
  const sds = new SdsServer({ socketPath, secrets: manager });
  await sds.start();
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  const call = client.makeBidiStreamRequest('/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets', (b: Buffer) => b, (b: Buffer) => b);
  const codec = await sdsCodec();
  const firstSecretMs = await new Promise<number>((resolve, reject) => {
    call.on('data', (buf: Buffer) => {
      if (codec.decodeSecretResponse(buf).secrets.some((s) => s.name === 'default')) resolve(performance.now() - t0);
    });
    call.on('error', reject);
    call.write(codec.encodeDiscoveryRequest({ nodeId: 'sidecar~10.0.0.1~bench.default~default.svc.cluster.local', resourceNames: ['default'] }));
  });
  call.cancel();
  client.close();
  await sds.close();
  await manager.close();
  return { firstSecretMs, importMs };
}

function runChild(script: string, args: readonly string[]): Promise<OnceResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, '--once', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) reject(new Error(`sds sample failed (exit ${code}):\n${out}\n${err}`));
      else resolve(JSON.parse(line) as OnceResult);
    });
  });
}

async function startControlPlane(dir: string): Promise<{ address: string; rootPath: string; stop: () => Promise<unknown> }> {
  const rootPath = join(dir, 'root-cert.pem');
  const { proc, address } = await startControlPlaneProcess(['--listen', '127.0.0.1:0', '--root-cert-out', rootPath, '--token', TOKEN, '--quiet'], { echoStderr: true });
  return { address, rootPath, stop: () => proc.stop() };
}

export const sdsBench: Bench = async ({ runs }) => {
  const { generateKeyAndCsr } = await import('../src/security/keys.js');
  const dir = mkdtempSync(join(tmpdir(), 'pa-bench-sds-'));
  const cp = await startControlPlane(dir);
  try {
    const timeOurs = async (type: KeyType): Promise<number> => {
      const t = performance.now();
      await generateKeyAndCsr(type === 'rsa' ? { type: 'rsa', bits: 2048, pkcs8: false } : { type: 'ecdsa', curve: 'P256', pkcs8: false }, SPIFFE);
      return performance.now() - t;
    };
    const opensslArgs = (type: KeyType): string[] => [
      'req', '-new', '-nodes', '-newkey', ...(type === 'rsa' ? ['rsa:2048'] : ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']),
      '-keyout', join(dir, `${type}.key`), '-out', join(dir, `${type}.csr`), '-subj', '/', '-addext', `subjectAltName=critical,URI:${SPIFFE}`,
    ];
    const coldRsa = await timeOurs('rsa'); // the first call, as the agent's warm-up pays it
    const coldEc = await timeOurs('ecdsa');
    const samples: Record<string, number[]> = { rsaOurs: [], rsaSsl: [], ecOurs: [], ecSsl: [] };
    // RSA key generation time is random (prime search): take more samples of it
    for (let i = 0; i < Math.max(runs, 3) * 2; i++) {
      samples.rsaSsl!.push(await timeCommand('openssl', opensslArgs('rsa')));
      samples.rsaOurs!.push(await timeOurs('rsa'));
    }
    for (let i = 0; i < Math.max(runs, 3); i++) {
      samples.ecSsl!.push(await timeCommand('openssl', opensslArgs('ecdsa')));
      samples.ecOurs!.push(await timeOurs('ecdsa'));
    }
    const script = fileURLToPath(import.meta.url);
    const first: Record<KeyType, OnceResult[]> = { rsa: [], ecdsa: [] };
    for (let i = 0; i < Math.max(3, Math.ceil(runs / 2)); i++) {
      for (const type of ['rsa', 'ecdsa'] as const) {
        const d = mkdtempSync(join(tmpdir(), 'pa-bsds-'));
        try {
          first[type].push(await runChild(script, [cp.address, cp.rootPath, d, type]));
        } finally {
          rmSync(d, { recursive: true, force: true });
        }
      }
    }
    const m = (k: string): number => median(samples[k]!);
    const rsaRatio = m('rsaOurs') / m('rsaSsl');
    const ecRatio = m('ecOurs') / m('ecSsl');
    const firstRsa = median(first.rsa.map((r) => r.firstSecretMs));
    const firstEc = median(first.ecdsa.map((r) => r.firstSecretMs));
    return {
      rows: [
        ['openssl req -newkey rsa:2048 (median ms)', m('rsaSsl').toFixed(1)],
        ['ours RSA-2048 key + CSR, warm (median ms)', m('rsaOurs').toFixed(1)],
        ['ours RSA-2048 key + CSR, first call (ms)', coldRsa.toFixed(1)],
        ['rsa2048_csr_ratio (ours / openssl)', rsaRatio.toFixed(2)],
        ['openssl req -newkey ec P-256 (median ms)', m('ecSsl').toFixed(1)],
        ['ours ECDSA P-256 key + CSR, warm (median ms)', m('ecOurs').toFixed(2)],
        ['ours ECDSA P-256 key + CSR, first call (ms)', coldEc.toFixed(1)],
        ['ecdsa_p256_csr_ratio (ours / openssl)', ecRatio.toFixed(2)],
        ['first default secret on SDS, RSA-2048, fresh process (median ms)', firstRsa.toFixed(1)],
        ['first default secret on SDS, ECDSA P-256, fresh process (median ms)', firstEc.toFixed(1)],
        ['    module import before start (median ms)', median(first.rsa.map((r) => r.importMs)).toFixed(1)],
      ],
      figures: {
        rsa2048_csr_ratio: round(rsaRatio),
        ecdsa_p256_csr_ratio: round(ecRatio),
        first_secret_ms: round(firstRsa, 1),
        first_secret_ecdsa_ms: round(firstEc, 1),
        rsa2048_csr_ms: round(m('rsaOurs'), 1),
        ecdsa_p256_csr_ms: round(m('ecOurs'), 2),
        openssl_rsa2048_ms: round(m('rsaSsl'), 1),
        openssl_ecdsa_p256_ms: round(m('ecSsl'), 1),
      },
    };
  } finally {
    await cp.stop();
    rmSync(dir, { recursive: true, force: true });
  }
};

if (process.argv[2] === '--once' && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [caAddress, rootPath, dir, keyType] = process.argv.slice(3) as [string, string, string, KeyType];
  once(caAddress, rootPath, dir, keyType).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
