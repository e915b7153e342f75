// The gRPC xDS bootstrap for proxyless apps (GRPC_XDS_BOOTSTRAP): content as Istio's grpcxds
// writes it, accepted by grpc-js-xds's own bootstrap validation, and written atomically.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { SERVER_LISTENER_NAME_TEMPLATE, unixServerUri, writeGrpcBootstrap } from '../../src/bootstrap/grpc-bootstrap.js';
import { injectedProxy } from '../support/hello-pod.js';
import { cleanupPods, pod } from './support.js';

afterAll(cleanupPods);

const require = createRequire(import.meta.url);
const { validateBootstrapConfig } = require('@grpc/grpc-js-xds/build/src/xds-bootstrap.js') as { validateBootstrapConfig: (obj: unknown) => unknown };

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('gRPC xDS bootstrap', () => {
  it('points gRPC at the agent socket with the node Istio describes (proxyless fixture)', () => {
    const fixture = injectedProxy('grpc-agent.yaml.injected');
    const p = pod({ env: { ...fixture.env, ISTIO_META_UNTYPED: 'only-in-envoy' }, labels: fixture.labels, annotations: fixture.annotations, hostAddresses: ['10.244.1.17'] });
    const { path: written } = writeGrpcBootstrap(p.config);
    expect(written).toBe(path.join(p.dir, 'etc/istio/proxy/grpc-bootstrap.json'));
    const doc = JSON.parse(fs.readFileSync(written, 'utf8')) as Json;

    expect(doc.xds_servers).toEqual([{ server_uri: `unix:///${p.dir.slice(1)}/etc/istio/proxy/XDS`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }]);
    expect(doc.node.id).toBe('sidecar~10.244.1.17~hello-7d9f8c6b5-x2x4z.default~default.svc.cluster.local');
    expect(doc.node.locality).toEqual({});
    expect(doc.node.metadata).toMatchObject({
      GENERATOR: 'grpc',
      NAMESPACE: 'default',
      CLUSTER_ID: 'Kubernetes',
      WORKLOAD_NAME: 'grpc',
      INSTANCE_IPS: '10.244.1.17',
      LABELS: fixture.labels,
      PILOT_SAN: ['istiod.istio-system.svc'],
    });
    // the typed metadata only: raw ISTIO_META_* keys Istio does not model stay out
    expect(doc.node.metadata).not.toHaveProperty('UNTYPED');
    expect(doc.certificate_providers).toEqual({
      default: {
        plugin_name: 'file_watcher',
        config: {
          certificate_file: '/var/lib/istio/data/cert-chain.pem',
          private_key_file: '/var/lib/istio/data/key.pem',
          ca_certificate_file: '/var/lib/istio/data/root-cert.pem',
          refresh_interval: '900s',
        },
      },
    });
    expect(doc.server_listener_resource_name_template).toBe('xds.istio.io/grpc/lds/inbound/%s');
    expect(Object.keys(doc)).toEqual(['xds_servers', 'node', 'certificate_providers', 'server_listener_resource_name_template']);

    const parsed = validateBootstrapConfig(doc) as Json;
    expect(parsed.xdsServers[0].server_uri).toBe(doc.xds_servers[0].server_uri);
    expect(parsed.certificateProviders.default.config.refreshIntervalMs).toBe(900_000);
    expect(parsed.serverListenerResourceNameTemplate).toBe(SERVER_LISTENER_NAME_TEMPLATE);
  });

  it('leaves out certificate providers without OUTPUT_CERTS, and carries the locality', () => {
    const p = pod({ env: { GRPC_XDS_BOOTSTRAP: './out/bootstrap.json' }, labels: { 'topology.istio.io/locality': 'r1/z1' } });
    const { path: written, bootstrap } = writeGrpcBootstrap(p.config);
    expect(written).toBe(path.join(p.dir, 'out/bootstrap.json'));
    expect(bootstrap.certificate_providers).toBeUndefined();
    expect(bootstrap.node.locality).toEqual({ region: 'r1', zone: 'z1' });
    validateBootstrapConfig(JSON.parse(fs.readFileSync(written, 'utf8')));
  });

  it('writes unix:/// URIs with exactly three slashes', () => {
    expect(unixServerUri('/etc/istio/proxy/XDS')).toBe('unix:///etc/istio/proxy/XDS');
    expect(unixServerUri('etc/istio/proxy/XDS')).toBe('unix:///etc/istio/proxy/XDS');
  });

  it('never exposes a partial file to a concurrent reader', async () => {
    const big: Record<string, string> = {};
    for (let i = 0; i < 400; i++) big[`ISTIO_META_K${i}`] = 'v'.repeat(10000); // a ~4 MB document
    const p = pod({ env: big });
    const target = p.config.paths.grpcBootstrap;
    writeGrpcBootstrap(p.config);
    const reader = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const fs = require('node:fs');
       let reads = 0, bad = 0, stop = false;
       parentPort.on('message', () => { stop = true; });
       (function loop() {
         for (let i = 0; i < 50; i++) {
           try { JSON.parse(fs.readFileSync(workerData, 'utf8')); reads++; } catch { bad++; }
         }
         if (stop) parentPort.postMessage({ reads, bad }); else setImmediate(loop);
       })();`,
      { eval: true, workerData: target },
    );
    const done = new Promise<{ reads: number; bad: number }>((resolve) => reader.once('message', resolve));
    for (let i = 0; i < 40; i++) writeGrpcBootstrap(p.config);
    reader.postMessage('stop');
    const { reads, bad } = await done;
    await reader.terminate();
    expect(reads).toBeGreaterThan(0);
    expect(bad).toBe(0);
    expect(fs.readdirSync(path.dirname(target)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
