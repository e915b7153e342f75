// Reads the container spec of the istio-proxy container from Istio's injected pod fixtures in
// ../shared/istio-testdata/injection, resolving downward-API env into realistic values, so tests
// start the agent with exactly the argv and env a real cluster gives it.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

import { istioTestdata } from './paths.js';

export const TESTDATA_DIR = `${istioTestdata}/`;

interface EnvEntry {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; resourceFieldRef?: { resource: string } };
}

export interface InjectedProxy {
  readonly args: string[];
  readonly env: Record<string, string>;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
}

const FIELD_VALUES: Record<string, string> = {
  'metadata.name': 'hello-7d9f8c6b5-x2x4z',
  'metadata.namespace': 'default',
  'status.podIP': '10.244.1.17',
  'spec.serviceAccountName': 'default',
  'status.hostIP': '172.18.0.2',
  'spec.nodeName': 'kind-worker',
};
const RESOURCE_VALUES: Record<string, string> = { 'limits.cpu': '2', 'limits.memory': '1073741824' };

/** The istio-proxy container (init container in native-sidecar injection) of an injected fixture. */
export function injectedProxy(fixture: string): InjectedProxy {
  const docs = parseAllDocuments(readFileSync(`${TESTDATA_DIR}injection/${fixture}`, 'utf8')).map((d) => d.toJS() as Record<string, unknown>).filter(Boolean);
  type PodTemplate = { metadata: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: Record<string, unknown> };
  for (const doc of docs) {
    // a Deployment's pod template, or a bare Pod (hello-multiport-metrics is one)
    const tmpl = doc.kind === 'Pod' ? ({ metadata: doc.metadata ?? {}, spec: doc.spec ?? {} } as PodTemplate) : (doc.spec as { template?: PodTemplate } | undefined)?.template;
    if (!tmpl) continue;
    const containers = [...((tmpl.spec.initContainers as unknown[]) ?? []), ...((tmpl.spec.containers as unknown[]) ?? [])] as { name: string; args?: string[]; env?: EnvEntry[] }[];
    const proxy = containers.find((c) => c.name === 'istio-proxy');
    if (!proxy) continue;
    const env: Record<string, string> = {};
    for (const e of proxy.env ?? []) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.fieldRef) env[e.name] = FIELD_VALUES[e.valueFrom.fieldRef.fieldPath] ?? '';
      else if (e.valueFrom?.resourceFieldRef) env[e.name] = RESOURCE_VALUES[e.valueFrom.resourceFieldRef.resource] ?? '';
    }
    // Kubernetes expands $(VAR) references in args from the container env
    const args = (proxy.args ?? []).map((a) => a.replace(/\$\(([A-Z_0-9]+)\)/g, (m, name: string) => env[name] ?? m));
    return { args, env, labels: tmpl.metadata.labels ?? {}, annotations: tmpl.metadata.annotations ?? {} };
  }
  throw new Error(`no istio-proxy container in ${fixture}`);
}

/** Downward-API file content (`key="value"` lines, Go-quoted). */
export function downwardApiText(map: Record<string, string>): string {
  return Object.entries(map).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n') + '\n';
}

/**
 * Writes the pod's istiod mounts under `root` (the container's `/`): istiod's root CA
 * (./var/run/secrets/istio/root-cert.pem) and the projected token (./var/run/secrets/tokens/istio-token).
 */
export function writeIstiodMounts(root: string, rootCertPem: string, token: string): void {
  mkdirSync(join(root, 'var/run/secrets/istio'), { recursive: true });
  writeFileSync(join(root, 'var/run/secrets/istio/root-cert.pem'), rootCertPem);
  mkdirSync(join(root, 'var/run/secrets/tokens'), { recursive: true });
  writeFileSync(join(root, 'var/run/secrets/tokens/istio-token'), token);
}

/**
 * The env that points the hello pod's agent at a development control plane on `address` (istiod
 * and the CA, istiod's SAN) and makes the Envoy stand-in a real ADS and SDS client, recording to `record`.
 */
export function meshEnv(address: string, record: string): Record<string, string> {
  return { CA_ADDR: address, ISTIOD_SAN: 'istiod.istio-system.svc', ENVOY_STANDIN_ADS: '1', ENVOY_STANDIN_SDS: '1', ENVOY_STANDIN_RECORD: record };
}
