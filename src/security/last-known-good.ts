// The last-known-good workload certificate (PROXY_XDS_LAST_KNOWN_GOOD): the CA-issued key, chain and
// root are saved (mode 0600, atomically) each time a certificate is issued, and loaded when the CA
// cannot be reached at start, so a pod restarted during a CA outage still has an identity. Never an
// expired certificate, never one for another identity, never one whose key does not match: each is
// checked as a fresh CA answer is (validateSignedChain). Beyond Istio, and opt-in.

import type { KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../util/atomic-write.js';
import { logger } from '../util/logger.js';
import { validateSignedChain } from './ca-client.js';
import { isoUtc } from '../util/time.js';
import { lazyBuiltin } from '../util/builtin.js';

const log = logger('cache');

const FORMAT = 1;

interface SavedWorkload {
  format: number;
  spiffeId: string;
  chainPem: string;
  keyPem: string;
  rootPem: string;
  savedAt: string;
}

export interface RestoredWorkload {
  readonly chainPem: string;
  readonly keyPem: string;
  readonly key: KeyObject;
  readonly rootPem: string;
  readonly certs: readonly X509Certificate[];
  readonly expireTime: number;
  readonly savedAt: string;
}

const MAX_SAVED_BYTES = 1024 * 1024;

function isSavedWorkload(v: unknown): v is SavedWorkload {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.format === 'number' && ['spiffeId', 'chainPem', 'keyPem', 'rootPem', 'savedAt'].every((k) => typeof o[k] === 'string');
}

export class WorkloadCertificateStore {
  private readonly path: string;

  constructor(
    dir: string,
    private readonly spiffeId: string,
  ) {
    this.path = join(dir, `workload-${lazyBuiltin.crypto().createHash('sha256').update(spiffeId).digest('hex').slice(0, 16)}.json`);
  }

  get file(): string {
    return this.path;
  }

  save(chainPem: string, keyPem: string, rootPem: string): void {
    const saved: SavedWorkload = { format: FORMAT, spiffeId: this.spiffeId, chainPem, keyPem, rootPem, savedAt: isoUtc(Date.now()) };
    try {
      writeFileAtomicSync(this.path, JSON.stringify(saved), 0o600);
    } catch (err) {
      log.warn(`last-known-good: cannot save the workload certificate to ${this.path}: ${(err as Error).message}`);
    }
  }

  /** The saved certificate if it is still valid for this identity now; otherwise undefined (logged). */
  load(now: number): RestoredWorkload | undefined {
    const refuse = (why: string): undefined => {
      log.warn(`last-known-good workload certificate ${this.path} is not served: ${why}`);
      return undefined;
    };
    let raw: string;
    try {
      const size = statSync(this.path).size;
      // a key, a chain and a root: a few KiB; a file far larger is not ours and is not read
      if (size > MAX_SAVED_BYTES) return refuse(`${size} bytes, more than the ${MAX_SAVED_BYTES} a saved certificate can take`);
      raw = readFileSync(this.path, 'utf8');
    } catch {
      return undefined; // nothing saved yet
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return refuse('it is not valid JSON (truncated or corrupt)');
    }
    if (!isSavedWorkload(parsed)) return refuse(`it does not hold a saved certificate: ${raw.slice(0, 200)}`);
    const s = parsed;
    if (s.format !== FORMAT) return refuse(`format ${String(s.format)} (expected ${FORMAT})`);
    if (s.spiffeId !== this.spiffeId) return refuse(`issued to ${s.spiffeId}, not ${this.spiffeId}`);
    try {
      const key = lazyBuiltin.crypto().createPrivateKey(s.keyPem);
      const chain = s.chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
      // the saved chain may have been issued without the root in it: check it against the saved root
      const full = chain.join('').includes(s.rootPem.trim()) ? chain : [...chain, s.rootPem];
      const v = validateSignedChain(full, key, this.spiffeId, now);
      return { chainPem: s.chainPem, keyPem: s.keyPem, key, rootPem: s.rootPem, certs: v.certs, expireTime: v.expireTime, savedAt: s.savedAt };
    } catch (err) {
      return refuse((err as Error).message);
    }
  }
}
