// The workload secret manager (Istio's SecretManagerClient, security/pkg/nodeagent/cache/secretcache.go):
// it owns the workload key and certificate and every secret the SDS server serves.
//
//   default            the workload key + certificate chain: from the CA (a new key and CSR per
//                      attempt), or from mounted files (./etc/certs/{cert-chain,key}.pem,
//                      ./var/run/secrets/workload-spiffe-credentials/, FILE_MOUNTED_CERTS)
//   ROOTCA             the root: the last entry of the CA's chain, or the mounted root-cert.pem,
//                      plus the trust anchors of istiod's ProxyConfig (PROXY_CONFIG_XDS_AGENT)
//   file-cert:<c>~<k>  a key/certificate pair read from files (DestinationRule / Gateway credentials)
//   file-root:<ca>     a root bundle read from a file
//   file-root:system   the OS CA bundle
//
// Root secrets (ROOTCA, file-root:*) also carry the CA's revocation list when PILOT_ENABLE_CA_CRL
// is on and ./var/run/secrets/istio/crl/ca-crl.pem holds one (ca-crl.ts).
// When another SDS server owns the workload socket (externalWorkloadSds), `default` and ROOTCA
// are its to serve: no CA is asked and only the file-based names are served here.
//
// Differences from Istio, on purpose:
//   - the CA certificate is renewed in the background: at `expiry - (ratio +/- jitter) x lifetime`
//     a renewal starts while the current certificate keeps being served; a CA outage is retried with
//     backoff (500 ms .. 60 s) and the old certificate is served until it expires (Istio drops it from
//     its cache at rotation time and fails SDS requests until the CA answers);
//   - one CA request at a time (single flight); start-up warms `default` and ROOTCA the same way,
//     and a request for a secret that is not ready yet waits (lookup() says "pending") instead of
//     failing the SDS stream;
//   - a CA chain is checked (key, SAN, signatures, expiry) before use;
//   - a file that does not parse, or a key that does not match its certificate, never replaces a
//     valid secret: the previous one stays and the error is logged and counted;
//   - an unknown resource name is an error (Istio serves the workload certificate under any name).
// Listeners registered with onUpdate() hear the name of each secret that changed or became
// available; the SDS server pushes it to its subscribers.

import type { KeyObject, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { writeFileAtomicSync } from '../util/atomic-write.js';
import { logger } from '../util/logger.js';
import type { ClientCertificate } from '../grpc/client.js';
import { AbortedError, Backoff, sleep } from '../util/backoff.js';
import { CaClient, validateSignedChain } from './ca-client.js';
import { CaCrlFile } from './ca-crl.js';
import { FileWatchSet } from './file-watch.js';
import { WorkloadCertificateStore } from './last-known-good.js';
import { describeKeySpec, generateKeyAndCsr, KeyGenerationError, type KeyAndCsr } from './keys.js';
import { CSR, securityMetrics, setCertExpiry } from './metrics.js';
import {
  FILE_CERT_PREFIX,
  FILE_ROOT_PREFIX,
  FILE_ROOT_SYSTEM,
  ROOT_RESOURCE,
  WORKLOAD_RESOURCE,
  type SecretManagerOptions,
} from './options.js';
import { parseCertificates, parseRootBundle, splitPemCertificates, summarizeCertificate, validateKeyCertPair, type CertificateSummary } from './pem.js';
import { isoUtc } from '../util/time.js';
import { MAX_TIMER_MS, timerDelay } from '../util/timer-delay.js';

const log = logger('cache');

export type SecretSource = 'ca' | 'file';

export interface SecretItem {
  readonly resourceName: string;
  /** PEM chain (key/certificate secrets). */
  readonly certificateChain?: string;
  /** PEM private key (key/certificate secrets). */
  readonly privateKey?: string;
  /** PEM root bundle (validation-context secrets). */
  readonly rootCert?: string;
  /** PEM revocation list(s) of the CA (validation-context secrets, PILOT_ENABLE_CA_CRL). */
  readonly crl?: string;
  readonly source: SecretSource;
  /** When this content was obtained, epoch ms. */
  readonly createdTime: number;
  /** The leaf's notAfter, epoch ms (key/certificate secrets). */
  readonly expireTime?: number;
  /** Increases every time any secret changes; later content has a higher number. */
  readonly generation: number;
}

export type Lookup =
  | { readonly status: 'ready'; readonly item: SecretItem }
  | { readonly status: 'pending'; readonly reason: string }
  | { readonly status: 'unknown'; readonly reason: string };

export interface SecretSummary {
  readonly resourceName: string;
  readonly source: SecretSource;
  readonly state: 'ready' | 'pending' | 'expired';
  readonly files?: readonly string[];
  readonly generation?: number;
  readonly createdTime?: string;
  readonly expireTime?: string;
  /** When the next renewal starts (CA certificates). */
  readonly rotationTime?: string;
  readonly lastError?: string;
  readonly certificates: readonly CertificateSummary[];
}

/** What to read for a file-based resource. */
type FileSpec = { readonly kind: 'keycert'; readonly cert: string; readonly key: string } | { readonly kind: 'root'; readonly root: string };

interface FileState {
  readonly spec: FileSpec;
  item?: SecretItem;
  certs?: readonly X509Certificate[];
  lastError?: string;
  /** The expiry last logged as passed (logged once per certificate). */
  expiredLogged?: number;
}

interface Workload {
  readonly item: SecretItem;
  readonly key: KeyObject;
  readonly rootPem: string;
  readonly certs: readonly X509Certificate[];
  readonly rotationTime: number;
}

export interface SecretManagerDeps {
  readonly caClient?: CaClient;
  readonly random?: () => number;
  readonly now?: () => number;
}

/** Names served as a validation context: ROOTCA and the file-root: ones. */
function isRootResource(name: string): boolean {
  return name === ROOT_RESOURCE || name.startsWith(FILE_ROOT_PREFIX);
}

/** Delay before rotating, as Istio's rotateTime: expiry - clamp(ratio +/- U(0, jitter), 0, 1) x lifetime. */
export function rotationDelay(createdTime: number, expireTime: number, ratio: number, jitter: number, now: number, random: () => number = Math.random): number {
  const sign = random() < 0.5 ? -1 : 1;
  const graceRatio = Math.min(1, Math.max(0, ratio + sign * random() * jitter));
  const lifetime = expireTime - createdTime;
  return Math.max(0, expireTime - graceRatio * lifetime - now);
}

/** An unref'd timer firing at `at` (epoch ms), re-armed through `rearm` when the wait exceeds MAX_TIMER_MS. */
function timerAt(at: number, now: () => number, rearm: (t: NodeJS.Timeout) => void, fn: () => void): NodeJS.Timeout {
  const wait = Math.max(0, at - now());
  const t = setTimeout(() => {
    if (at - now() > 0 && wait >= MAX_TIMER_MS) rearm(timerAt(at, now, rearm, fn));
    else fn();
  }, timerDelay(wait)); // longer waits are split: a 90-day certificate rotates after ~45 days
  t.unref();
  return t;
}

function sameDir(a: string, b: string): boolean {
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return resolve(a) === resolve(b);
  }
}

function nonEmpty(path: string): boolean {
  try {
    return statSync(path).size > 0;
  } catch {
    return false;
  }
}

/** Reads a file; an error names it (Node's read errors do not: "EISDIR: illegal operation on a directory, read"). */
function readNamed(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code !== 'ENOENT') e.message = `read ${path}: ${e.message}`;
    throw e;
  }
}

export class SecretManager {
  private readonly ca: CaClient | undefined;
  private readonly listeners = new Set<(name: string) => void>();
  private readonly files = new Map<string, FileState>();
  private readonly watcher: FileWatchSet;
  private readonly abort = new AbortController();
  private workload: Workload | undefined;
  private lastCaRoot: string | undefined;
  private lastCaError: string | undefined;
  private renewing: Promise<void> | undefined;
  private rotationTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private generation = 0;
  private trustBundle: string[] = [];
  private trustBundleGeneration = 0;
  /** PILOT_ENABLE_CA_CRL: the CA's revocation list, watched. */
  private readonly crl: CaCrlFile | undefined;
  private crlRead = false;
  private crlGeneration = 0;
  private started = false;
  private closed = false;
  /** The workload certificate or the root comes from the CA (decided at start()). */
  private fromCa = false;
  private defaultSource: SecretSource = 'ca';
  private rootSource: SecretSource = 'ca';
  private readonly now: () => number;
  private readonly random: () => number;
  /** PROXY_XDS_LAST_KNOWN_GOOD: issued certificates are saved here and restored during a CA outage at start. */
  private readonly lastKnownGood: WorkloadCertificateStore | undefined;
  private restoreTried = false;

  constructor(
    readonly options: SecretManagerOptions,
    deps: SecretManagerDeps = {},
  ) {
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    this.ca = options.fileMountedCerts ? undefined : (deps.caClient ?? (options.ca ? new CaClient(options.ca) : undefined));
    this.lastKnownGood = options.lastKnownGoodDir ? new WorkloadCertificateStore(options.lastKnownGoodDir, options.spiffeId) : undefined;
    this.watcher = new FileWatchSet({ debounceMs: options.fileDebounceMs, pollMs: options.filePollMs ?? 10_000, onChange: (name) => this.reloadFile(name) });
    this.crl = options.caCrlPath ? new CaCrlFile({ path: options.caCrlPath, debounceMs: options.fileDebounceMs, pollMs: options.filePollMs ?? 10_000, onChange: () => this.crlChanged() }) : undefined;
  }

  /** Where `default` and `ROOTCA` come from (decided at start()). */
  get sources(): { readonly default: SecretSource; readonly root: SecretSource } {
    return { default: this.defaultSource, root: this.rootSource };
  }

  /**
   * Decides the sources of `default` and ROOTCA, reads mounted files, and (unless `warmUp` is false)
   * starts fetching the workload certificate from the CA in the background: see warmUp(). Returns
   * at once; see waitFor().
   */
  start({ warmUp = true }: { readonly warmUp?: boolean } = {}): void {
    if (this.started || this.closed) return;
    this.started = true;
    const o = this.options;
    // root secrets wait for the first read of the CRL, so that none goes out without it
    void this.crl?.start().then(() => {
      this.crlRead = true;
      this.crlChanged();
    });
    const outputsToMounted = o.outputDir !== '' && sameDir(o.outputDir, dirname(o.mounted.certChain));
    if (o.fileMountedCerts) {
      this.defaultSource = 'file';
      this.rootSource = 'file';
    } else {
      this.defaultSource = !outputsToMounted && nonEmpty(o.mounted.certChain) && nonEmpty(o.mounted.key) ? 'file' : 'ca';
      this.rootSource = !outputsToMounted && nonEmpty(o.mounted.root) ? 'file' : 'ca';
    }
    if (this.defaultSource === 'file') this.lookup(WORKLOAD_RESOURCE);
    if (this.rootSource === 'file') this.lookup(ROOT_RESOURCE);
    const external = o.externalWorkloadSds;
    if ((this.defaultSource === 'ca' || this.rootSource === 'ca') && !external) {
      if (!this.ca) throw new Error('a CA client is needed for the workload certificate but none is configured');
      log.info(`CA endpoint ${this.ca.describe()}; ${describeKeySpec(o.keySpec)} keys for ${o.spiffeId}`);
      this.fromCa = true;
    }
    const from = (source: SecretSource, file: string): string => (source === 'file' ? file : external ? `the SDS server at ${external}` : 'the CA');
    log.info(`workload certificate from ${from(this.defaultSource, `files (${o.mounted.certChain})`)}, root from ${from(this.rootSource, o.mounted.root)}`);
    if (warmUp) this.warmUp();
  }

  /**
   * Starts fetching the workload certificate from the CA in the background, before anyone asks,
   * when it comes from the CA (Istio waits for Envoy's first SDS request). The agent calls it once
   * Envoy is spawned: the key generation, the CA connection and the CSR then overlap Envoy's own
   * start instead of delaying its spawn (~15 ms of main-thread work on the way, bench `startup`).
   * A request that comes first starts the fetch itself; later calls do nothing.
   */
  warmUp(): void {
    if (!this.started || this.closed || !this.fromCa || this.workload !== undefined) return;
    this.ensureRenewing('warm-up');
  }

  /** `default` or ROOTCA would come from the CA, but another SDS server serves it: not ours to serve. */
  private servedElsewhere(name: string): Lookup | undefined {
    const external = this.options.externalWorkloadSds;
    if (!external) return undefined;
    return { status: 'unknown', reason: `${name} is served by the SDS server at ${external}; this agent serves file certificates only` };
  }

  /** Calls `fn(resourceName)` whenever a secret changes or becomes available. Returns an unsubscribe function. */
  onUpdate(fn: (name: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private notify(name: string): void {
    for (const fn of this.listeners) {
      try {
        fn(name);
      } catch (err) {
        log.error(`secret update handler failed for ${name}: ${(err as Error).message}`);
      }
    }
  }

  /**
   * The current secret for a resource name, without waiting. File-based names are read (and watched)
   * on their first lookup; `pending` means it will be announced through onUpdate() when ready.
   */
  lookup(name: string): Lookup {
    const r = this.sourceLookup(name);
    return isRootResource(name) ? this.withRootExtras(name, r) : r;
  }

  /**
   * No SDS stream subscribes to `name` any more: a file secret other than the defaults (which the
   * agent itself uses) stops being read and watched. Istio keeps no state for a file it could not
   * read; here a missing file is watched until it appears, so a client naming thousands of made-up
   * paths must not leave them all watched for ever.
   */
  release(name: string): void {
    if (name === WORKLOAD_RESOURCE || name === ROOT_RESOURCE || !this.files.delete(name)) return;
    this.watcher.unwatch(name);
  }

  private sourceLookup(name: string): Lookup {
    if (name === WORKLOAD_RESOURCE) {
      if (this.defaultSource === 'file') return this.fileLookup(name, { kind: 'keycert', cert: this.options.mounted.certChain, key: this.options.mounted.key });
      const elsewhere = this.servedElsewhere(name);
      if (elsewhere) return elsewhere;
      const w = this.workload;
      if (w && w.item.expireTime! > this.now()) return { status: 'ready', item: w.item };
      if (!this.closed && this.started) this.ensureRenewing('request');
      return { status: 'pending', reason: w ? 'the workload certificate expired; renewing' : `waiting for the CA${this.lastCaError ? ` (last error: ${this.lastCaError})` : ''}` };
    }
    if (name === ROOT_RESOURCE) {
      if (this.rootSource === 'file') return this.fileLookup(name, { kind: 'root', root: this.options.mounted.root });
      const elsewhere = this.servedElsewhere(name);
      if (elsewhere) return elsewhere;
      const w = this.workload;
      if (w) return { status: 'ready', item: { resourceName: ROOT_RESOURCE, rootCert: w.rootPem, source: 'ca', createdTime: w.item.createdTime, generation: w.item.generation } };
      if (!this.closed && this.started) this.ensureRenewing('request');
      return { status: 'pending', reason: `waiting for the CA${this.lastCaError ? ` (last error: ${this.lastCaError})` : ''}` };
    }
    if (name === FILE_ROOT_SYSTEM) {
      if (!this.options.osRootBundle) return { status: 'unknown', reason: 'no OS CA bundle was found on this machine' };
      return this.fileLookup(name, { kind: 'root', root: this.options.osRootBundle });
    }
    if (name.startsWith(FILE_CERT_PREFIX)) {
      const parts = name.slice(FILE_CERT_PREFIX.length).split('~');
      if (parts.length !== 2 || !parts[0] || !parts[1]) return { status: 'unknown', reason: `malformed resource name ${JSON.stringify(name)} (want file-cert:<cert path>~<key path>)` };
      return this.fileLookup(name, { kind: 'keycert', cert: resolve(this.options.cwd, parts[0]), key: resolve(this.options.cwd, parts[1]) });
    }
    if (name.startsWith(FILE_ROOT_PREFIX)) {
      const path = name.slice(FILE_ROOT_PREFIX.length);
      if (!path || path.includes('~')) return { status: 'unknown', reason: `malformed resource name ${JSON.stringify(name)} (want file-root:<path>)` };
      return this.fileLookup(name, { kind: 'root', root: resolve(this.options.cwd, path) });
    }
    return { status: 'unknown', reason: `unknown resource name ${JSON.stringify(name)} (served: ${WORKLOAD_RESOURCE}, ${ROOT_RESOURCE}, file-cert:<cert>~<key>, file-root:<ca>, ${FILE_ROOT_SYSTEM})` };
  }

  /**
   * Extra trust anchors (ProxyConfig caCertificatesPem, delivered by dynamic proxy config), merged
   * into ROOTCA as Istio's UpdateConfigTrustBundle does: a sorted, de-duplicated union of
   * certificates; a change pushes ROOTCA and renews the workload certificate.
   */
  updateConfigTrustBundle(pems: readonly string[]): void {
    const certs = [...new Set(pems.flatMap((p) => splitPemCertificates(p)))].sort();
    if (certs.join('') === this.trustBundle.join('')) return;
    this.trustBundle = certs;
    this.trustBundleGeneration = ++this.generation;
    log.info(`trust bundle from proxy config updated: ${certs.length} extra certificate(s)`);
    // root-cert.pem holds what ROOTCA holds, as Istio writes the merged bundle (proxyless apps read it)
    const root = this.rootSource === 'ca' ? this.lastCaRoot : this.files.get(ROOT_RESOURCE)?.item?.rootCert;
    if (root !== undefined) this.writeOutputs({ root: this.withTrustBundle(root) });
    this.notify(ROOT_RESOURCE);
    if (this.defaultSource === 'ca' && this.started && !this.closed) this.ensureRenewing('trust bundle changed');
  }

  /** ROOTCA's certificates: the root and the ProxyConfig trust bundle, deduplicated (the root as it is without a bundle). */
  private withTrustBundle(rootPem: string): string {
    if (this.trustBundle.length === 0) return rootPem;
    return [...new Set([...this.trustBundle, ...splitPemCertificates(rootPem)])].sort().join('');
  }

  /**
   * What root secrets carry besides their certificates: ROOTCA the ProxyConfig trust bundle, and
   * every root the CA's revocation list (Istio's toEnvoySecret). A change to either makes the
   * generation move, so the SDS server pushes again.
   */
  private withRootExtras(name: string, r: Lookup): Lookup {
    if (r.status !== 'ready') return r;
    let item = r.item;
    if (name === ROOT_RESOURCE && this.trustBundle.length > 0) {
      item = { ...item, rootCert: this.withTrustBundle(item.rootCert ?? ''), generation: Math.max(item.generation, this.trustBundleGeneration) };
    }
    const crl = this.crl;
    if (crl) {
      if (!this.crlRead) return { status: 'pending', reason: `reading the CA CRL ${crl.path}` };
      item = { ...item, ...(crl.pem !== undefined ? { crl: crl.pem } : {}), generation: Math.max(item.generation, this.crlGeneration) };
    }
    return item === r.item ? r : { status: 'ready', item };
  }

  /** The CA CRL was read for the first time, or changed: every root secret is pushed again. */
  private crlChanged(): void {
    this.crlGeneration = ++this.generation;
    for (const name of [ROOT_RESOURCE, ...[...this.files.keys()].filter((n) => n !== ROOT_RESOURCE && isRootResource(n))]) this.notify(name);
  }

  /** Resolves with the secret once it is ready; rejects for unknown names, on close, or when `signal` aborts. */
  waitFor(name: string, signal?: AbortSignal): Promise<SecretItem> {
    return new Promise((resolvePromise, reject) => {
      const check = (): boolean => {
        const r = this.lookup(name);
        if (r.status === 'ready') {
          done();
          resolvePromise(r.item);
          return true;
        }
        if (r.status === 'unknown') {
          done();
          reject(new Error(r.reason));
          return true;
        }
        return false;
      };
      const onAbort = (): void => {
        done();
        reject(new AbortedError(this.closed ? 'the secret manager is closed' : 'aborted'));
      };
      const unsubscribe = this.onUpdate((n) => {
        if (n === name) check();
      });
      const done = (): void => {
        unsubscribe();
        signal?.removeEventListener('abort', onAbort);
        this.abort.signal.removeEventListener('abort', onAbort);
      };
      if (signal?.aborted || this.closed) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.abort.signal.addEventListener('abort', onAbort, { once: true });
      check();
    });
  }

  /** The workload key and chain for the upstream xDS TLS connection, when a valid one is held. */
  clientCertificate(): ClientCertificate | undefined {
    const r = this.defaultSource === 'file' ? this.files.get(WORKLOAD_RESOURCE)?.item : this.workload?.item;
    if (!r || !r.privateKey || !r.certificateChain || !(r.expireTime! > this.now())) return undefined;
    return { privateKey: Buffer.from(r.privateKey), certChain: Buffer.from(r.certificateChain) };
  }

  // ----- CA ---------------------------------------------------------------------------------------

  /** Starts a background renewal unless one is running (single flight). */
  private ensureRenewing(reason: string): void {
    if (this.renewing || this.closed || !this.ca) return;
    log.debug(`fetching a workload certificate from the CA (${reason})`);
    this.renewing = this.renewLoop().finally(() => {
      this.renewing = undefined;
    });
  }

  private async renewLoop(): Promise<void> {
    const backoff = new Backoff(this.options.backoff, this.random);
    // One key and CSR for all the attempts of this renewal, as Istio's retries resend one CSR: an
    // RSA key costs 50-300 ms of CPU, which a pod waiting out a CA outage (every pod of a rollout,
    // at once) should not spend again on every retry.
    let keyAndCsr: Promise<KeyAndCsr> | undefined;
    for (;;) {
      if (this.closed) return;
      try {
        keyAndCsr ??= generateKeyAndCsr(this.options.keySpec, this.options.spiffeId);
        await this.fetchFromCa(keyAndCsr);
        this.lastCaError = undefined;
        return;
      } catch (err) {
        if (this.closed || err instanceof AbortedError) return;
        if (err instanceof KeyGenerationError) keyAndCsr = undefined;
        const wait = backoff.next();
        this.lastCaError = (err as Error).message;
        this.restoreLastKnownGood();
        const w = this.workload;
        const serving = w && w.item.expireTime! > this.now() ? `; still serving the current certificate (expires ${isoUtc(w.item.expireTime!)})` : '';
        log.error(`failed to get a workload certificate from the CA: ${(err as Error).message}; retrying in ${wait}ms${serving}`);
        try {
          await sleep(wait, this.abort.signal);
        } catch {
          return;
        }
      }
    }
  }

  /**
   * The CA failed before any certificate was issued in this process: serve the saved one, if it is
   * still valid for this identity. The renewal loop keeps trying the CA and replaces it.
   */
  private restoreLastKnownGood(): void {
    if (!this.lastKnownGood || this.restoreTried || this.workload || this.defaultSource !== 'ca') return;
    this.restoreTried = true;
    const now = this.now();
    const r = this.lastKnownGood.load(now);
    if (!r) return;
    const item: SecretItem = { resourceName: WORKLOAD_RESOURCE, certificateChain: r.chainPem, privateKey: r.keyPem, source: 'ca', createdTime: now, expireTime: r.expireTime, generation: ++this.generation };
    this.workload = { item, key: r.key, rootPem: r.rootPem, certs: r.certs, rotationTime: now };
    this.lastCaRoot = r.rootPem;
    setCertExpiry(WORKLOAD_RESOURCE, r.expireTime);
    this.scheduleExpiryWarning(r.expireTime);
    log.warn(`the CA is unreachable at start: serving the last-known-good workload certificate saved ${r.savedAt} (expires ${isoUtc(r.expireTime)}) until the CA answers`);
    this.notify(WORKLOAD_RESOURCE);
    if (this.rootSource === 'ca') this.notify(ROOT_RESOURCE);
  }

  private async fetchFromCa(keyAndCsr: Promise<KeyAndCsr>): Promise<void> {
    const o = this.options;
    const t0 = performance.now();
    const { keyPem, csrPem, key } = await keyAndCsr;
    if (this.closed) throw new AbortedError('closed');
    // whole seconds, cut as Istio's int64(SecretTTL.Seconds()) cuts them
    const validitySeconds = Math.trunc(o.secretTtlMs / 1000);
    const chain = await this.ca!.csrSign(csrPem, validitySeconds, this.abort.signal);
    let validated;
    try {
      // the identity is the CA's to decide: istiod signs the caller's authenticated identity, not the
      // CSR's, and Istio's agent takes what it signs (after a trust domain change, the new domain)
      validated = validateSignedChain(chain, key, o.spiffeId, this.now(), { acceptOtherIdentity: true });
    } catch (err) {
      securityMetrics.failedOutgoingRequests.inc({ request_type: CSR });
      throw new Error(`rejected the CA response: ${(err as Error).message}`, { cause: err });
    }
    if (!validated.identities.includes(o.spiffeId)) {
      log.warn(`the CA issued a certificate for ${validated.identities.join(', ') || 'no URI SAN'}, not ${o.spiffeId} as requested (a trust domain change?): using it, as Istio does`);
    }
    if (this.closed) throw new AbortedError('closed');
    const now = this.now();
    const item: SecretItem = {
      resourceName: WORKLOAD_RESOURCE,
      certificateChain: validated.chainPem,
      privateKey: keyPem,
      source: 'ca',
      createdTime: now,
      expireTime: validated.expireTime,
      generation: ++this.generation,
    };
    const delay = rotationDelay(now, validated.expireTime, o.graceRatio, o.graceRatioJitter, now, this.random);
    this.workload = { item, key, rootPem: validated.rootPem, certs: validated.certs, rotationTime: now + delay };
    setCertExpiry(WORKLOAD_RESOURCE, validated.expireTime);
    this.scheduleRotation(delay, validated.expireTime);
    const rootChanged = this.lastCaRoot !== validated.rootPem;
    if (rootChanged && this.lastCaRoot !== undefined) log.info('Root cert has changed, start rotating root cert');
    this.lastCaRoot = validated.rootPem;
    log.info('generated new workload certificate', {
      resourceName: WORKLOAD_RESOURCE,
      latency: `${Math.round(performance.now() - t0)}ms`,
      ttl: `${Math.round((validated.expireTime - now) / 1000)}s`,
      rotation: `${Math.round(delay / 1000)}s`,
    });
    if (this.defaultSource === 'ca') this.lastKnownGood?.save(validated.chainPem, keyPem, validated.rootPem);
    this.writeOutputs({
      ...(this.defaultSource === 'ca' ? { key: keyPem, chain: validated.chainPem } : {}),
      ...(this.rootSource === 'ca' ? { root: this.withTrustBundle(validated.rootPem) } : {}),
    });
    if (this.defaultSource === 'ca') this.notify(WORKLOAD_RESOURCE);
    if (rootChanged && this.rootSource === 'ca') this.notify(ROOT_RESOURCE);
  }

  private scheduleRotation(delay: number, expireTime: number): void {
    if (this.rotationTimer) clearTimeout(this.rotationTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    const rotateAt = this.now() + delay;
    this.rotationTimer = timerAt(rotateAt, this.now, (t) => (this.rotationTimer = t), () => {
      this.rotationTimer = undefined;
      log.info('rotating the workload certificate');
      this.ensureRenewing('rotation');
    });
    this.scheduleExpiryWarning(expireTime);
  }

  private scheduleExpiryWarning(expireTime: number): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = timerAt(expireTime + 1, this.now, (t) => (this.expiryTimer = t), () => {
      this.expiryTimer = undefined;
      if (this.workload?.item.expireTime === expireTime) log.error(`the workload certificate expired at ${isoUtc(expireTime)} and could not be renewed yet`);
    });
  }

  // ----- files ------------------------------------------------------------------------------------

  private fileLookup(name: string, spec: FileSpec): Lookup {
    let state = this.files.get(name);
    if (!state) {
      state = { spec };
      this.files.set(name, state);
      this.readFileSecret(name, state);
      this.watcher.watch(name, spec.kind === 'keycert' ? [spec.cert, spec.key] : [spec.root]);
    }
    if (state.item) {
      // an expired mounted certificate is still served, as Istio serves it: Envoy's listeners wait
      // for it, and withheld it would keep Envoy from going LIVE at all (plaintext traffic and
      // readiness included) where only mTLS with it fails; it is logged, and replaced once renewed
      const exp = state.item.expireTime;
      if (name === WORKLOAD_RESOURCE && exp !== undefined && exp <= this.now() && state.expiredLogged !== exp) {
        state.expiredLogged = exp;
        log.error(`the mounted certificate ${state.spec.kind === 'keycert' ? state.spec.cert : ''} expired at ${isoUtc(exp)}: serving it until it is replaced (mTLS with it fails)`);
      }
      return { status: 'ready', item: state.item };
    }
    return { status: 'pending', reason: state.lastError ?? 'waiting for the files' };
  }

  /** Reads and validates a file-based secret; a failure keeps the previous valid content. Returns whether it changed. */
  private readFileSecret(name: string, state: FileState): boolean {
    const spec = state.spec;
    let item: SecretItem;
    let certs: readonly X509Certificate[];
    try {
      if (spec.kind === 'keycert') {
        const chainPem = readNamed(spec.cert);
        const keyPem = readNamed(spec.key);
        const v = validateKeyCertPair(chainPem, keyPem, `${spec.cert} and ${spec.key}`);
        if (state.item?.certificateChain === chainPem && state.item.privateKey === keyPem) return false;
        certs = v.chain;
        item = { resourceName: name, certificateChain: chainPem, privateKey: keyPem, source: 'file', createdTime: this.now(), expireTime: new Date(v.chain[0]!.validTo).getTime(), generation: 0 };
      } else {
        const bundle = readNamed(spec.root);
        const parsed = parseRootBundle(bundle, spec.root);
        if (parsed.skipped > 0) log.error(`failed to parse ${parsed.skipped} certificate(s) of ${spec.root}; serving the ${parsed.certs.length} valid one(s)`);
        if (state.item?.rootCert === parsed.pem) return false;
        certs = parsed.certs;
        item = { resourceName: name, rootCert: parsed.pem, source: 'file', createdTime: this.now(), generation: 0 };
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const message = e.code === 'ENOENT' ? `file not found: ${e.path ?? ''}` : e.message;
      securityMetrics.fileSecretFailures.inc();
      state.lastError = message;
      if (state.item) log.error(`${name}: failed to read the changed certificate files, keeping the previous valid secret: ${message}`);
      else log.warn(`${name}: failed to generate secret from file: ${message}`);
      return false;
    }
    state.item = { ...item, generation: ++this.generation };
    state.certs = certs;
    state.lastError = undefined;
    if (name === WORKLOAD_RESOURCE) setCertExpiry(WORKLOAD_RESOURCE, item.expireTime);
    log.info('read certificate from file', { resource: name });
    if (name === WORKLOAD_RESOURCE) this.writeOutputs({ key: item.privateKey!, chain: item.certificateChain! });
    if (name === ROOT_RESOURCE) this.writeOutputs({ root: this.withTrustBundle(item.rootCert!) });
    return true;
  }

  private reloadFile(name: string): void {
    const state = this.files.get(name);
    if (!state || this.closed) return;
    if (this.readFileSecret(name, state)) {
      log.info(`file certificate changed for ${name}, pushing to proxy`);
      this.notify(name);
    }
  }

  // ----- OUTPUT_CERTS -----------------------------------------------------------------------------

  /** Writes key.pem, cert-chain.pem, root-cert.pem (those given, when changed) atomically. */
  private writeOutputs(parts: { key?: string; chain?: string; root?: string }): void {
    const dir = this.options.outputDir;
    if (!dir) return;
    const files: [string, string | undefined][] = [
      ['key.pem', parts.key],
      ['cert-chain.pem', parts.chain],
      ['root-cert.pem', parts.root],
    ];
    for (const [file, data] of files) {
      if (data === undefined) continue;
      const path = join(dir, file);
      try {
        if (existsSync(path) && readFileSync(path, 'utf8') === data) continue;
        writeFileAtomicSync(path, data, this.options.outputFileMode ?? 0o600);
      } catch (err) {
        log.error(`error when output the resource: failed to write ${path}: ${(err as Error).message}`);
      }
    }
  }

  // ----- introspection ----------------------------------------------------------------------------

  /** What is held, for /debug/certs: certificates' metadata, never keys. */
  summaries(): SecretSummary[] {
    const out: SecretSummary[] = [];
    const now = this.now();
    const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : isoUtc(ms));
    const opt = <T>(k: string, v: T | undefined): Record<string, T> => (v === undefined ? {} : { [k]: v });
    if ((this.defaultSource === 'ca' || this.rootSource === 'ca') && !this.options.externalWorkloadSds) {
      const w = this.workload;
      if (this.defaultSource === 'ca') {
        out.push({
          resourceName: WORKLOAD_RESOURCE,
          source: 'ca',
          state: !w ? 'pending' : w.item.expireTime! > now ? 'ready' : 'expired',
          ...opt('generation', w?.item.generation),
          ...opt('createdTime', iso(w?.item.createdTime)),
          ...opt('expireTime', iso(w?.item.expireTime)),
          ...opt('rotationTime', iso(w?.rotationTime)),
          ...opt('lastError', this.lastCaError),
          certificates: w ? w.certs.map(summarizeCertificate) : [],
        });
      }
      if (this.rootSource === 'ca') {
        let rootCerts: X509Certificate[] = [];
        try {
          rootCerts = w ? parseCertificates(w.rootPem) : [];
        } catch {
          // validated when received
        }
        out.push({
          resourceName: ROOT_RESOURCE,
          source: 'ca',
          state: w ? 'ready' : 'pending',
          ...opt('generation', w?.item.generation),
          ...opt('createdTime', iso(w?.item.createdTime)),
          ...opt('lastError', this.lastCaError),
          certificates: rootCerts.map(summarizeCertificate),
        });
      }
    }
    for (const [name, s] of this.files) {
      const exp = s.item?.expireTime;
      out.push({
        resourceName: name,
        source: 'file',
        state: !s.item ? 'pending' : exp !== undefined && exp <= now ? 'expired' : 'ready',
        files: s.spec.kind === 'keycert' ? [s.spec.cert, s.spec.key] : [s.spec.root],
        ...opt('generation', s.item?.generation),
        ...opt('createdTime', iso(s.item?.createdTime)),
        ...opt('expireTime', iso(exp)),
        ...opt('lastError', s.lastError),
        certificates: (s.certs ?? []).map(summarizeCertificate),
      });
    }
    return out;
  }

  /** Stops renewals, timers and file watches; pending waitFor() calls reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    if (this.rotationTimer) clearTimeout(this.rotationTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.watcher.close();
    this.crl?.close();
    this.ca?.close();
    setCertExpiry(WORKLOAD_RESOURCE, undefined);
    const renewing = this.renewing;
    if (renewing) await renewing.catch(() => undefined);
    this.listeners.clear();
  }
}
