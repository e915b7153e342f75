// Shared helpers of the certificate tests: a dev control plane (its Istio CA), a pod-like working
// directory (CA root, token), secret manager options, openssl wrappers and polling.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../control-plane/index.js';
import type { SecretManagerOptions } from '../../src/security/options.js';
import { configureLogging, parseOutputLevels } from '../../src/util/logger.js';

export const NAMESPACE = 'default';
export const SERVICE_ACCOUNT = 'hello';
export const SPIFFE_ID = `spiffe://cluster.local/ns/${NAMESPACE}/sa/${SERVICE_ACCOUNT}`;
export const TOKEN = 'test-token-1';

export interface Work {
  readonly dir: string;
  readonly rootCertPath: string;
  readonly tokenPath: string;
  write(rel: string, data: string): string;
  cleanup(): void;
}

/** A short temp dir (unix socket paths are limited to 107 bytes). */
export function workDir(prefix = 'pa-sec-'): Work {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const write = (rel: string, data: string): string => {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, data);
    return p;
  };
  return {
    dir,
    rootCertPath: join(dir, 'var/run/secrets/istio/root-cert.pem'),
    tokenPath: join(dir, 'var/run/secrets/tokens/istio-token'),
    write,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export async function startCa(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  return startControlPlane({ token: TOKEN, ...opts });
}

/** Pod files: the CA root where Istio mounts it, and the token. */
export function podFiles(work: Work, cp: ControlPlane, token: string | undefined = TOKEN): void {
  work.write('var/run/secrets/istio/root-cert.pem', cp.rootCertPem);
  if (token !== undefined) work.write('var/run/secrets/tokens/istio-token', token);
}

/** Secret manager options for a CA at `cp` over TLS, with fast retries. */
export function managerOptions(work: Work, cp: ControlPlane | { address: string }, over: Partial<SecretManagerOptions> = {}): SecretManagerOptions {
  return {
    cwd: work.dir,
    spiffeId: SPIFFE_ID,
    keySpec: { type: 'ecdsa', curve: 'P256', pkcs8: false },
    secretTtlMs: 3600_000,
    graceRatio: 0.5,
    graceRatioJitter: 0,
    fileDebounceMs: 50,
    outputDir: '',
    mounted: { certChain: join(work.dir, 'etc/certs/cert-chain.pem'), key: join(work.dir, 'etc/certs/key.pem'), root: join(work.dir, 'etc/certs/root-cert.pem') },
    fileMountedCerts: false,
    osRootBundle: '/etc/ssl/certs/ca-certificates.crt',
    ca: {
      address: cp.address,
      tls: { rootCaPath: work.rootCertPath, osRootBundle: '', serverName: 'istiod.istio-system.svc' },
      tokenPath: work.tokenPath,
      clusterId: 'Kubernetes',
      headers: {},
      certSigner: '',
      retryBaseMs: 10,
    },
    backoff: { initialMs: 50, maxMs: 400 },
    filePollMs: 500,
    ...over,
  };
}

export function openssl(args: readonly string[], input?: string): string {
  return execFileSync('openssl', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** openssl with stdout+stderr and the exit status (verify prints to stderr on some versions). */
export function opensslStatus(args: readonly string[], input?: string): { status: number; output: string } {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' });
  return { status: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
}

/** The leaf (first) certificate of a PEM chain. */
export function leafOf(chainPem: string): string {
  return /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/.exec(chainPem)![0];
}

/** Polls `fn` until it returns a value other than undefined. */
export async function until<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Collects the agent's log lines (and still prints warnings and errors) until restore(). */
export function captureLogs(): { lines: string[]; text: () => string; restore: () => void } {
  const lines: string[] = [];
  configureLogging({
    outputLevels: parseOutputLevels('all:debug'),
    write: (l) => {
      lines.push(l);
      if (/\t(warn|error)\t/.test(l) && process.env.SHOW_AGENT_LOGS) process.stderr.write(l);
    },
  });
  return {
    lines,
    text: () => lines.join(''),
    restore: () => configureLogging({ outputLevels: new Map([['default', 'info']]), write: (l) => process.stdout.write(l) }),
  };
}
