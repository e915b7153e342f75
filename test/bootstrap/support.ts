// Helpers for bootstrap tests: an AgentConfig for a pod laid out in a temporary directory
// (downward-API files under ./etc/istio/pod), and a small seeded random generator.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAgentConfig, type AgentConfig, type ProxyFlags } from '../../src/config/load.js';
import { downwardApiText } from '../support/hello-pod.js';
import { rng } from '../support/random.js';

export { rng };

export interface PodSpec {
  readonly env?: Record<string, string>;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
  readonly flags?: Partial<ProxyFlags>;
  readonly proxyType?: string;
  readonly hostAddresses?: readonly string[];
  /** Extra files to create, relative to the pod root. */
  readonly files?: Record<string, string>;
}

export interface Pod {
  readonly dir: string;
  readonly config: AgentConfig;
}

const created: string[] = [];

/** Removes every directory made by `pod()`; call from afterAll. */
export function cleanupPods(): void {
  for (const d of created.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

export const BASE_ENV: Readonly<Record<string, string>> = {
  POD_NAME: 'app-6d8f9c-abcde',
  POD_NAMESPACE: 'shop',
  INSTANCE_IP: '10.1.2.3',
  SERVICE_ACCOUNT: 'app',
};

/** The AgentConfig of a pod whose files live in a fresh temporary directory. */
export function pod(spec: PodSpec = {}): Pod {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'bootstrap-pod-')));
  created.push(dir);
  fs.mkdirSync(path.join(dir, 'etc/istio/pod'), { recursive: true });
  if (spec.labels) fs.writeFileSync(path.join(dir, 'etc/istio/pod/labels'), downwardApiText(spec.labels));
  if (spec.annotations) fs.writeFileSync(path.join(dir, 'etc/istio/pod/annotations'), downwardApiText(spec.annotations));
  for (const [rel, content] of Object.entries(spec.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
  const config = loadAgentConfig({
    proxyType: spec.proxyType ?? 'sidecar',
    env: { ...BASE_ENV, ...spec.env },
    cwd: dir,
    flags: { meshConfig: './no-mesh-config', ...spec.flags },
    hostAddresses: spec.hostAddresses ?? ['10.1.2.3'],
  });
  return { dir, config };
}

export class Gen {
  private readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = rng(seed);
  }

  int(max: number): number {
    return Math.floor(this.next() * max);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** A string mixing plain text with the characters that break naive JSON/template handling. */
  nastyString(maxLen = 12, exclude = ''): string {
    const pieces = [
      'a', 'Z', '0', '-', '.', '_', '/', ' ', '"', '\\', '\n', '\r', '\t', '\u0001', '\u001f', '<', '>', '&', "'", '`',
      '{{', '}}', '{{ .nodeID }}', '%s', '%v', '$', '=', ',', ':', '{', '}', '[', ']', 'é', 'ß', '中文', 'Ω', '\u2028', '\u2029',
      '\u00a0', '\ufeff', '😀', '𝄞', '\\u0000', '\\n', '{pod_ip}', 'null', 'true', '0',
    ].filter((p) => ![...exclude].some((c) => p.includes(c)));
    let s = '';
    const n = this.int(maxLen + 1);
    for (let i = 0; i < n; i++) s += this.pick(pieces);
    return s;
  }

  /** An identifier-like key: `[A-Z][A-Z0-9_]*`. */
  envName(prefix: string): string {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_';
    let s = prefix + this.pick([...'ABCDEFGHIJKLMNOPQRSTUVWXYZ']);
    for (let i = this.int(10); i > 0; i--) s += this.pick([...chars]);
    return s;
  }
}
