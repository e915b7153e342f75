// End to end: the real agent with the development control plane's CA and the Envoy stand-in.
// The stand-in's SDS stream (from the socket its bootstrap names) receives `default` and
// `ROOTCA`; openssl checks what the CA signed for our CSR. RSA and ECDSA.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, killRecordedStandIns, killStarted, runAgent, tempDir } from '../support/processes.js';

const TOKEN = 'certs-token';
let cp: ControlPlane;
let work: ReturnType<typeof tempDir>;

beforeAll(async () => {
  cp = await startControlPlane({ token: TOKEN, log: () => undefined });
});
afterAll(async () => {
  await cp.close();
});
afterEach(() => {
  killStarted();
  killRecordedStandIns(join(work.path, 'record.jsonl'));
  work.cleanup();
});

interface SdsEvent {
  name: string;
  certChainPem?: string;
  trustedCaPem?: string;
  [k: string]: unknown;
}

describe.each([
  { alg: 'RSA', env: {} as Record<string, string>, keyText: /Public-Key: \(2048 bit\)/ },
  { alg: 'ECDSA P-256', env: { ECC_SIGNATURE_ALGORITHM: 'ECDSA' } as Record<string, string>, keyText: /ASN1 OID: prime256v1/ },
])('workload certificate ($alg)', ({ env, keyText }) => {
  it('reaches Envoy over SDS as default and ROOTCA, verifiable with openssl', { timeout: 60_000 }, async () => {
    work = tempDir('pa-certs-');
    const pod = injectedProxy('hello.yaml.injected');
    writeIstiodMounts(work.path, cp.rootCertPem, TOKEN);
    const record = join(work.path, 'record.jsonl');
    const agent = runAgent(pod.args, {
      cwd: work.path,
      env: {
        ...pod.env,
        ...env,
        CA_ADDR: cp.address,
        ISTIOD_SAN: 'istiod.istio-system.svc',
        SECRET_TTL: '2h',
        ENVOY_STANDIN_SDS: '1',
        ENVOY_STANDIN_RECORD: record,
        PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: await freePort(), statusPort: 0, discoveryAddress: cp.address, terminationDrainDuration: '0s' }),
      },
    });
    const sds = (): SdsEvent[] => readRecord(record).filter((e) => e.event === 'sds') as unknown as SdsEvent[];
    await vi.waitFor(
      () => {
        if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
        const names = new Set(sds().map((e) => e.name));
        expect(names.has('default') && names.has('ROOTCA')).toBe(true);
      },
      { timeout: 40_000, interval: 100 },
    );
    const leafEvent = sds().find((e) => e.name === 'default')!;
    const rootEvent = sds().find((e) => e.name === 'ROOTCA')!;
    const chainPem = String(leafEvent.certChainPem ?? '');
    const rootPem = String(rootEvent.trustedCaPem ?? '');
    expect(chainPem).toContain('BEGIN CERTIFICATE');
    expect(rootPem.replace(/\s/g, '')).toBe(cp.rootCertPem.replace(/\s/g, ''));

    const dir = work.path;
    const certs = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    writeFileSync(join(dir, 'leaf.pem'), certs[0]! + '\n');
    writeFileSync(join(dir, 'chain.pem'), certs.slice(1).join('\n') + '\n');
    writeFileSync(join(dir, 'root.pem'), rootPem);
    const verify = execFileSync('openssl', ['verify', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'chain.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(verify).toContain('leaf.pem: OK');
    const text = execFileSync('openssl', ['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-text'], { encoding: 'utf8' });
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/default/);
    expect(text).toMatch(keyText);
    const dates = execFileSync('openssl', ['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-startdate', '-enddate'], { encoding: 'utf8' });
    const start = Date.parse(/notBefore=(.*)/.exec(dates)![1]!);
    const end = Date.parse(/notAfter=(.*)/.exec(dates)![1]!);
    expect(Math.abs(end - start - 2 * 3600_000)).toBeLessThanOrEqual(5 * 60_000); // SECRET_TTL=2h
    // the CA saw our token
    expect(cp.ca.calls).toBeGreaterThanOrEqual(1);

    agent.child.kill('SIGTERM');
    expect((await agent.exited).code, agent.output()).toBe(0);
  });
});
