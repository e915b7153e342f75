// HTTP plumbing shared by the plain HTTP(S) fetcher and the OCI registry client: undici dispatchers
// whose every dial goes through the address guard (redirects included), through the proxy the
// environment names when it names one (proxy.ts), bounded body reads, and retries with exponential
// backoff on transport errors and retryable 5xx responses.

import { rootCertificates } from 'node:tls';
import { Agent, interceptors, Pool, ProxyAgent, request, type Dispatcher } from 'undici';
import { Backoff, sleep } from '../util/backoff.js';
import type { TlsRestrictions } from '../security/compliance-policy.js';
import { AddressPolicy, guardedConnector, isBlockedAddressError, type LookupFunction } from './net-guard.js';
import { proxiedTargetGuard, ProxyRules, type ProxySettings } from './proxy.js';

export class WasmFetchError extends Error {
  readonly code: string = 'WASM_FETCH';
}

/** The body exceeded the size cap (module, manifest, token response...). */
export class TooLargeError extends WasmFetchError {
  override readonly code = 'WASM_TOO_LARGE';
}

/** A response status that ends the fetch (4xx, 501, ...), or a retryable one after the last attempt. */
export class HttpStatusError extends WasmFetchError {
  override readonly code = 'WASM_HTTP_STATUS';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface HttpClientOptions {
  readonly policy: AddressPolicy;
  readonly lookup?: LookupFunction;
  readonly extraCaCerts?: readonly (string | Buffer)[];
  readonly maxRedirections?: number;
  /** HTTP(S)_PROXY / NO_PROXY; no proxy when absent or empty. */
  readonly proxy?: ProxySettings;
  /** Versions, ciphers and curves allowed (COMPLIANCE_POLICY), for verified and insecure registries alike. */
  readonly restrictions?: TlsRestrictions;
}

const KEEP_ALIVE_MS = 4_000;

/** Two pools (verified TLS, and unverified TLS for insecure registries), both guarded, each with its proxies. */
export class WasmHttpClient {
  private readonly secure: Dispatcher;
  private readonly insecure: Dispatcher;
  private readonly agents: Dispatcher[] = [];
  /** Proxy agents made on first use, by `insecure|proxy URL`. */
  private readonly proxies = new Map<string, ProxyAgent>();

  constructor(private readonly opts: HttpClientOptions) {
    const redirect = interceptors.redirect({ maxRedirections: opts.maxRedirections ?? 10 });
    const rules = opts.proxy ? new ProxyRules(opts.proxy) : undefined;
    const make = (insecure: boolean): Dispatcher => {
      const direct = new Agent({ connect: this.connector(insecure), keepAliveTimeout: KEEP_ALIVE_MS });
      this.agents.push(direct);
      if (!rules?.enabled) return direct.compose(redirect);
      // the proxy choice sits under the redirect interceptor: every hop is routed and checked anew
      return direct.compose(proxiedTargetGuard(rules, (url) => this.proxyAgent(url, insecure), opts.policy, opts.lookup), redirect);
    };
    this.secure = make(false);
    this.insecure = make(true);
  }

  private connector(insecure: boolean): ReturnType<typeof guardedConnector> {
    const o = this.opts;
    return guardedConnector({ policy: o.policy, insecure, ...(o.lookup ? { lookup: o.lookup } : {}), ...(o.extraCaCerts ? { extraCaCerts: o.extraCaCerts } : {}), ...(o.restrictions ? { restrictions: o.restrictions } : {}) });
  }

  /**
   * undici's ProxyAgent for one proxy: https targets through a CONNECT tunnel, http ones as
   * absolute-form requests (as Go's Transport). Connections to the proxy itself are dialed by the
   * guarded connector, as Istio's DialContext dials the proxy.
   */
  private proxyAgent(proxyUrl: string, insecure: boolean): ProxyAgent {
    const key = `${insecure}|${proxyUrl}`;
    let agent = this.proxies.get(key);
    if (agent) return agent;
    const proxyOrigin = new URL(proxyUrl).origin;
    const toProxy = this.connector(insecure);
    const pool = (origin: string | URL, options: object): Pool => {
      const toTheProxy = new URL(String(origin)).origin === proxyOrigin;
      return new Pool(origin, { ...options, ...(toTheProxy ? { connect: toProxy } : {}), keepAliveTimeout: KEEP_ALIVE_MS });
    };
    const extra = this.opts.extraCaCerts;
    agent = new ProxyAgent({
      uri: proxyUrl,
      proxyTunnel: false,
      requestTls: { ...this.opts.restrictions, rejectUnauthorized: !insecure, ...(extra?.length ? { ca: [...rootCertificates, ...extra] } : {}) },
      clientFactory: (origin, options) => pool(origin, options),
      factory: (origin, options) => pool(origin, options),
      keepAliveTimeout: KEEP_ALIVE_MS,
    });
    this.proxies.set(key, agent);
    return agent;
  }

  dispatcher(insecure: boolean): Dispatcher {
    return insecure ? this.insecure : this.secure;
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents, ...this.proxies.values()].map((a) => a.destroy().catch(() => undefined)));
  }
}

export interface SendOptions {
  readonly method?: 'GET' | 'POST';
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly signal?: AbortSignal;
  /** Time to the response headers, and the longest pause between body chunks. */
  readonly idleTimeoutMs: number;
}

export async function send(client: WasmHttpClient, url: string, insecure: boolean, opts: SendOptions): Promise<Dispatcher.ResponseData> {
  return request(url, {
    dispatcher: client.dispatcher(insecure),
    method: opts.method ?? 'GET',
    headers: { 'user-agent': 'pilot-agent-ts', ...opts.headers },
    ...(opts.body !== undefined ? { body: opts.body } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    headersTimeout: opts.idleTimeoutMs,
    bodyTimeout: opts.idleTimeoutMs,
  });
}

/**
 * Reads a body, failing as soon as it passes `cap` bytes (the declared content-length is checked
 * first, so an oversized body is refused before it is read). `onChunk` sees every chunk (hashing).
 */
export async function readCapped(res: Dispatcher.ResponseData, cap: number, what: string, onChunk?: (chunk: Buffer) => void): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > cap) {
    res.body.destroy();
    throw new TooLargeError(`${what} is ${declared} bytes, more than the limit of ${cap} bytes`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > cap) {
      res.body.destroy();
      throw new TooLargeError(`${what} exceeds the limit of ${cap} bytes`);
    }
    onChunk?.(chunk);
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}

/** Discards a body we do not need, reading at most a little of it so the connection can be reused. */
export async function discard(res: Dispatcher.ResponseData): Promise<void> {
  try {
    await res.body.dump({ limit: 64 * 1024 });
  } catch {
    /* the connection is dropped instead */
  }
}

/** Go's net/http retry rule used by Istio: 5xx except 501, 505 and 511. */
export function retryableStatus(code: number): boolean {
  return code >= 500 && code !== 501 && code !== 505 && code !== 511;
}

export interface RetryOptions {
  /** Total attempts (>= 1). */
  readonly attempts: number;
  readonly initialBackoffMs: number;
  /** The whole operation's signal: no retry once it fired. */
  readonly signal?: AbortSignal;
}

export class RetryableError extends WasmFetchError {
  override readonly code = 'WASM_RETRYABLE';
}

/**
 * Runs `attempt` until it succeeds, it throws a non-retryable error, or the attempts are used up.
 * Transport errors and RetryableError are retried; refused dials (blocked address), HttpStatusError,
 * TooLargeError and aborts are not. The final error names the attempt count and the last cause.
 */
export async function withRetries<T>(what: string, opts: RetryOptions, attempt: (n: number) => Promise<T>): Promise<T> {
  // Istio's backoff (x1.5, +/-50 %, 60 s cap) from the configured first interval
  const backoff = new Backoff({ initialMs: opts.initialBackoffMs });
  let last: unknown;
  let made = 0;
  const attempts = Math.max(1, opts.attempts);
  for (let n = 1; n <= attempts; n++) {
    try {
      made = n;
      return await attempt(n);
    } catch (err) {
      last = err;
      if (opts.signal?.aborted) throw new WasmFetchError(`${what} failed after ${n} attempts, last error: ${describeError(err, opts.signal)}`);
      if (!isRetryable(err) || n === attempts) break;
      try {
        await sleep(backoff.next(), opts.signal);
      } catch {
        // the operation's signal fired during the wait: what failed is the last attempt
        throw new WasmFetchError(`${what} failed after ${n} attempts, last error: ${describeError(err, opts.signal)}`);
      }
    }
  }
  if (last instanceof HttpStatusError || last instanceof TooLargeError || isBlockedAddressError(last)) {
    throw last instanceof WasmFetchError ? last : new WasmFetchError(`${what} failed: ${describeError(last)}`);
  }
  // the attempts made: a non-retryable failure (a digest mismatch) ends after the first
  throw new WasmFetchError(`${what} failed after ${made} attempt${made === 1 ? '' : 's'}, last error: ${describeError(last)}`);
}

function isRetryable(err: unknown): boolean {
  if (err instanceof RetryableError) return true;
  if (err instanceof WasmFetchError) return false; // status, size, format: retrying cannot help
  if (isBlockedAddressError(err)) return false;
  return true; // transport: refused, reset, TLS, timeouts
}

/** A message for logs and NACKs: the error and its causes, never request headers. */
export function describeError(err: unknown, signal?: AbortSignal): string {
  if (signal?.aborted && signal.reason instanceof Error && signal.reason.name === 'TimeoutError') return 'timed out';
  const parts: string[] = [];
  for (let e = err as { message?: unknown; code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    const msg = typeof e.message === 'string' && e.message ? e.message : String(e.code ?? e);
    if (!parts.includes(msg)) parts.push(msg);
  }
  return parts.join(': ') || String(err);
}


/** A URL fit for logs and NACKs: no user info, no query (either may carry credentials). */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '';
      u.password = '';
    }
    const q = u.search ? '?<redacted>' : '';
    u.search = '';
    return u.toString() + q;
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//').replace(/\?.*$/, '?<redacted>');
  }
}
