// External SDS (Istio's pkg/istio-agent Run/checkSocket): when another SDS server already answers
// on the workload socket (./var/run/secrets/workload-spiffe-uds/socket, e.g. SPIRE's agent), the
// real agent leaves it alone: it asks no CA, serves file certificates only on
// ./var/run/secrets/credential-uds/files-socket (the bootstrap gains the sds-files-grpc cluster),
// and the Envoy stand-in gets `default` and ROOTCA from that server. A socket nobody answers on is
// a leftover: removed, and the agent serves as usual (the CA is asked). A non-default
// WORKLOAD_IDENTITY_SOCKET_FILE with no socket behind it stops start-up.

import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CertificateAuthority, generateCsr } from '../control-plane/index.js';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { startExternalSdsServer, type ExternalSdsServer } from '../support/external-sds-server.js';
import { stopAgent, type RunningProcess } from '../support/processes.js';
import { useSdsPods } from '../support/sds-pod.js';

const TOKEN = 'external-sds-token';
const WORKLOAD_SOCKET = 'var/run/secrets/workload-spiffe-uds/socket';
const FILES_SOCKET = 'var/run/secrets/credential-uds/files-socket';

interface SdsEvent {
  name: string;
  certChainPem?: string;
  trustedCaPem?: string;
}

const pods = useSdsPods(TOKEN);
let external: ExternalSdsServer | undefined;

afterEach(async () => {
  await external?.close();
  external = undefined;
});

const sdsEvents = (): SdsEvent[] => readRecord(join(pods.dir(), 'record.jsonl')).filter((e) => e.event === 'sds') as unknown as SdsEvent[];

async function waitForSecrets(a: RunningProcess): Promise<{ leaf: SdsEvent; root: SdsEvent }> {
  await vi.waitFor(
    () => {
      if (a.child.exitCode !== null) throw new Error(`agent exited:\n${a.output()}`);
      const names = new Set(sdsEvents().map((e) => e.name));
      expect(names.has('default') && names.has('ROOTCA')).toBe(true);
    },
    { timeout: 40_000, interval: 100 },
  );
  return { leaf: sdsEvents().find((e) => e.name === 'default')!, root: sdsEvents().find((e) => e.name === 'ROOTCA')! };
}

describe('an SDS server already on the workload socket', () => {
  it('serves Envoy; the agent neither binds it nor calls the CA, and serves files on files-socket', { timeout: 90_000 }, async () => {
    // the provider's own CA and identity (SPIRE issues under its own root)
    const spire = await CertificateAuthority.create({ trustDomain: 'spire.example' });
    const csr = await generateCsr({ spiffeId: 'spiffe://spire.example/ns/default/sa/default' });
    const signed = await spire.sign(csr.csrPem, 3600);
    const chain = signed.certChain.slice(0, -1).join('');
    const cp = pods.cp();
    const callsBefore = cp.ca.calls;
    const { agent } = await pods.start('pa-external-sds-', {}, async (dir) => {
      external = await startExternalSdsServer(
        join(dir, WORKLOAD_SOCKET),
        new Map([
          ['default', { certificateChain: chain, privateKey: csr.keyPem }],
          ['ROOTCA', { trustedCa: spire.rootCertPem }],
        ]),
      );
    });
    const dir = pods.dir();

    const { leaf, root } = await waitForSecrets(agent);
    expect(leaf.certChainPem).toBe(chain);
    expect(root.trustedCaPem).toBe(spire.rootCertPem);
    // the stand-in's stream (its bootstrap node) reached the external server, not the agent
    const bootstrap = JSON.parse(readFileSync(join(dir, 'etc/istio/proxy/envoy-rev.json'), 'utf8')) as {
      node: { id: string; metadata: Record<string, unknown> };
      static_resources: { clusters: { name: string; load_assignment?: { endpoints: { lb_endpoints: { endpoint: { address: { pipe?: { path: string } } } }[] }[] } }[] };
    };
    expect(external!.requests.some((r) => r.nodeId === bootstrap.node.id && r.names.includes('default'))).toBe(true);

    const out = agent.output();
    expect(out).toContain(`Existing workload SDS socket found at ${WORKLOAD_SOCKET}. Default Istio SDS Server will only serve files`);
    expect(out).toContain(`Starting SDS server for file certificates only, will listen on "${join(dir, FILES_SOCKET)}"`);
    // Istio's ServeOnlyFiles bootstrap: file-credential metadata and the sds-files-grpc cluster
    expect(bootstrap.node.metadata['file-credential']).toBe('true');
    const pipeOf = (name: string) => bootstrap.static_resources.clusters.find((c) => c.name === name)?.load_assignment?.endpoints[0]?.lb_endpoints[0]?.endpoint.address.pipe?.path;
    expect(pipeOf('sds-grpc')).toBe(`./${WORKLOAD_SOCKET}`);
    expect(pipeOf('sds-files-grpc')).toBe(`./${FILES_SOCKET}`);
    expect(lstatSync(join(dir, FILES_SOCKET)).isSocket()).toBe(true);
    expect(cp.ca.calls).toBe(callsBefore);

    // the provider's socket outlives the agent: it was never the agent's to remove
    await stopAgent(agent);
    expect(agent.child.exitCode).toBe(0);
    expect(lstatSync(join(dir, WORKLOAD_SOCKET)).isSocket()).toBe(true);
    expect(existsSync(join(dir, FILES_SOCKET))).toBe(false);
    expect(cp.ca.calls).toBe(callsBefore);
  });
});

describe('a socket nobody answers on', () => {
  it('is removed as a leftover, and the agent serves the workload certificate from the CA', { timeout: 90_000 }, async () => {
    const cp = pods.cp();
    const callsBefore = cp.ca.calls;
    let socket = '';
    const { agent } = await pods.start('pa-external-sds-stale-', {}, (dir) => {
      socket = join(dir, WORKLOAD_SOCKET);
      mkdirSync(join(dir, 'var/run/secrets/workload-spiffe-uds'), { recursive: true });
      // a provider that crashed: its socket file stays, nothing listens
      spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, 'SIGKILL'))`]);
      expect(lstatSync(socket).isSocket()).toBe(true);
    });

    const { root } = await waitForSecrets(agent);
    expect(root.trustedCaPem?.replace(/\s/g, '')).toBe(cp.rootCertPem.replace(/\s/g, ''));
    expect(cp.ca.calls).toBeGreaterThan(callsBefore);
    expect(agent.output()).not.toContain('Existing workload SDS socket found');
    expect(agent.output()).toContain(`Starting SDS server for workload certificates, will listen on "${socket}"`);
    expect(existsSync(join(pods.dir(), FILES_SOCKET))).toBe(false);
  });
});

describe('WORKLOAD_IDENTITY_SOCKET_FILE naming a socket that is not there', () => {
  it('stops start-up with Istio’s error', { timeout: 30_000 }, async () => {
    const { agent, record } = await pods.start('pa-external-sds-missing-', { WORKLOAD_IDENTITY_SOCKET_FILE: 'spire-agent.sock' });
    const { code } = await agent.exited;
    expect(code).not.toBe(0);
    expect(agent.output()).toContain('agent configured for non-default SDS socket path: var/run/secrets/workload-spiffe-uds/spire-agent.sock but no socket found');
    expect(readRecord(record).filter((e) => e.event === 'start')).toEqual([]);
  });
});
