// HTTP plumbing shared by the plain HTTP(S) fetcher and the OCI registry client: undici dispatchers
// whose every dial goes through the address guard (redirects included), bounded body reads, and
// retries with exponential backoff on transport errors and retryable 5xx responses.

import { Agent, interceptors, request, type Dispatcher } from 'undici';
import type { TlsRestrictions } from '../security/compliance-policy.js';
import { AddressPolicy, guardedConnector, isBlockedAddressError, type LookupFunction } from './net-guard.js';

export class WasmFetchError extends Error {}

/** The body exceeded the size cap (module, manifest, token response...). */
export class TooLargeError extends WasmFetchError {}

/** A response status that ends the fetch (4xx, 501, ...), or a retryable one after the last attempt. */
export class HttpStatusError extends WasmFetchError {
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
  /** Versions, ciphers and curves allowed (COMPLIANCE_POLICY), for verified and insecure registries alike. */
  readonly restrictions?: TlsRestrictions;
}

/** Two pools (verified TLS, and unverified TLS for insecure registries), both guarded. */
export class WasmHttpClient {
  private readonly secure: Dispatcher;
  private readonly insecure: Dispatcher;
  private readonly agents: Agent[];

  constructor(opts: HttpClientOptions) {
    const make = (insecure: boolean): Agent =>
      new Agent({
        connect: guardedConnector({
          policy: opts.policy,
          insecure,
          ...(opts.lookup ? { lookup: opts.lookup } : {}),
          ...(opts.extraCaCerts ? { extraCaCerts: opts.extraCaCerts } : {}),
          ...(opts.restrictions ? { restrictions: opts.restrictions } : {}),
        }),
        keepAliveTimeout: 4_000,
      });
    const secure = make(false);
    const insecure = make(true);
    this.agents = [secure, insecure];
    const redirect = interceptors.redirect({ maxRedirections: opts.maxRedirections ?? 10 });
    this.secure = secure.compose(redirect);
    this.insecure = insecure.compose(redirect);
  }

  dispatcher(insecure: boolean): Dispatcher {
    return insecure ? this.insecure : this.secure;
  }

  async close(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.destroy().catch(() => undefined)));
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

export class RetryableError extends WasmFetchError {}

/**
 * Runs `attempt` until it succeeds, it throws a non-retryable error, or the attempts are used up.
 * Transport errors and RetryableError are retried; refused dials (blocked address), HttpStatusError,
 * TooLargeError and aborts are not. The final error names the attempt count and the last cause.
 */
export async function withRetries<T>(what: string, opts: RetryOptions, attempt: (n: number) => Promise<T>): Promise<T> {
  let delay = opts.initialBackoffMs;
  let last: unknown;
  const attempts = Math.max(1, opts.attempts);
  for (let n = 1; n <= attempts; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      last = err;
      if (opts.signal?.aborted) throw new WasmFetchError(`${what} failed after ${n} attempts, last error: ${describeError(err, opts.signal)}`);
      if (!isRetryable(err) || n === attempts) break;
      const jittered = delay * (0.5 + Math.random());
      await sleep(Math.min(jittered, 60_000), opts.signal);
      delay *= 1.5;
    }
  }
  if (last instanceof HttpStatusError || last instanceof TooLargeError || isBlockedAddressError(last)) {
    throw last instanceof WasmFetchError ? last : new WasmFetchError(`${what} failed: ${describeError(last)}`);
  }
  throw new WasmFetchError(`${what} failed after ${attempts} attempts, last error: ${describeError(last)}`);
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

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
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
