// The CA's certificate revocation list (PILOT_ENABLE_CA_CRL): istiod publishes its plugged-in CA's
// ca-crl.pem in the istio-ca-crl ConfigMap, mounted at ./var/run/secrets/istio/crl/, and Istio's
// SDS server adds it to the validation context of ROOTCA and every file-root secret
// (security/pkg/nodeagent/sds toEnvoySecret), so Envoy refuses revoked peers.
//
// Differences from Istio, on purpose: Istio hands Envoy the file name and looks at the file only
// when a root secret happens to be generated, so a CRL published later waits for the next
// certificate rotation, and a file that does not parse makes Envoy reject the whole validation
// context (every mTLS connection then fails). Here the file is watched (ConfigMap ..data swaps
// included), read, and checked: each `X509 CRL` block must parse. A good file is sent inline and
// pushed at once; a bad one is logged with the file and the reason and never replaces the last good
// list; a removed file removes the list.

import { readFileSync } from 'node:fs';
import { logger } from '../util/logger.js';
import { FileWatchSet } from './file-watch.js';
import { lazy } from '../util/lazy.js';
import { securityMetrics } from './metrics.js';
import { isoUtc } from '../util/time.js';
import { lazyBuiltin } from '../util/builtin.js';

type X509 = typeof import('@peculiar/x509');

/** @peculiar/x509 (CRL parsing and signature checks), loaded with the first CRL. */
const loadX509 = lazy(async (): Promise<X509> => {
  await import('reflect-metadata'); // @peculiar/x509's ASN.1 schemas need it loaded first
  const m = await import('@peculiar/x509');
  // bundled, a CommonJS package imported dynamically exposes only `default`
  const x509 = ((m as { default?: X509 }).default ?? m) as X509;
  x509.cryptoProvider.set(lazyBuiltin.crypto().webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  return x509;
});

const log = logger('cache');

/** Where istiod's istio-ca-crl ConfigMap is mounted (Istio's security.CACRLFilePath). */
export const CA_CRL_PATH = './var/run/secrets/istio/crl/ca-crl.pem';

const MISSING = '\0missing';

const CRL_BLOCK = /-----BEGIN X509 CRL-----[\s\S]*?-----END X509 CRL-----/g;

export interface CaCrlOptions {
  /** Absolute path of ca-crl.pem. */
  readonly path: string;
  readonly debounceMs: number;
  /** Safety-net rescans, ms (0 = none). */
  readonly pollMs: number;
  /** The list in force changed (appeared, changed, or was removed). */
  readonly onChange: () => void;
}

/** Reads and checks a CRL bundle: every `X509 CRL` block parses, and there is at least one. */
export async function parseCrlBundle(text: string): Promise<{ pem: string; summary: string }> {
  const blocks = text.match(CRL_BLOCK) ?? [];
  if (blocks.length === 0) throw new Error('no PEM "X509 CRL" block found');
  const x509 = await loadX509();
  const summaries = blocks.map((b, i) => {
    try {
      const crl = new x509.X509Crl(b);
      return `issuer "${crl.issuer}", ${crl.entries.length} revoked, next update ${crl.nextUpdate ? isoUtc(crl.nextUpdate.getTime()) : 'none'}`;
    } catch (err) {
      throw new Error(`CRL ${i} does not parse: ${(err as Error).message}`, { cause: err });
    }
  });
  return { pem: blocks.map((b) => `${b}\n`).join(''), summary: summaries.join('; ') };
}

export class CaCrlFile {
  private readonly watcher: FileWatchSet;
  private current: string | undefined;
  /** The content last read (good or bad, or MISSING), so that unchanged bytes are not re-reported. */
  private lastSeen: string | undefined;
  private reading: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly options: CaCrlOptions) {
    this.watcher = new FileWatchSet({ debounceMs: options.debounceMs, pollMs: options.pollMs, onChange: () => this.schedule() });
  }

  get path(): string {
    return this.options.path;
  }

  /** The revocation list in force (PEM), if any. */
  get pem(): string | undefined {
    return this.current;
  }

  /** Reads the file now and watches it; resolves once the first read is done. */
  start(): Promise<void> {
    this.watcher.watch('ca-crl', [this.options.path]);
    return this.schedule();
  }

  /** Reads run one at a time, in order: a later read never loses to an earlier one. */
  private schedule(): Promise<void> {
    this.reading = this.reading.then(() => this.read());
    return this.reading;
  }

  private async read(): Promise<void> {
    if (this.closed) return;
    const path = this.options.path;
    let text: string | undefined;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      // unreadable is not the same as removed: nothing changes, and the next event retries
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return this.reject(`cannot read it: ${(err as Error).message}`);
    }
    const seen = text ?? MISSING;
    if (seen === this.lastSeen) return;
    this.lastSeen = seen;
    if (text === undefined) {
      if (this.current === undefined) return;
      this.current = undefined;
      log.info(`CA CRL file ${path} was removed: root certificates are sent without a revocation list`);
      this.options.onChange();
      return;
    }
    let parsed: { pem: string; summary: string };
    try {
      parsed = await parseCrlBundle(text);
    } catch (err) {
      return this.reject((err as Error).message);
    }
    if (this.closed || parsed.pem === this.current) return;
    this.current = parsed.pem;
    log.info(`CA CRL loaded from ${path} (${parsed.summary}): pushing root certificates with it`);
    this.options.onChange();
  }

  private reject(reason: string): void {
    securityMetrics.fileSecretFailures.inc();
    const keeping = this.current === undefined ? 'no revocation list is sent' : 'keeping the previous revocation list';
    log.error(`invalid CA CRL file ${this.options.path}: ${reason}; ${keeping}`);
  }

  close(): void {
    this.closed = true;
    this.watcher.close();
  }
}
