// Downloading a Wasm module from an http(s):// URL, as Istio's HTTPFetcher does: GET with a
// per-request timeout, up to WASM_HTTP_REQUEST_MAX_RETRIES attempts with exponential backoff on
// transport errors and retryable 5xx, the size cap enforced while the body streams in, then gzip /
// tar unboxing. TLS is verified unless the host is an insecure registry.

import { describeError, HttpStatusError, readCapped, RetryableError, retryableStatus, send, discard, WasmFetchError, withRetries, type WasmHttpClient } from './http-client.js';
import { unboxIfPossible } from './unbox.js';
import { deadline } from '../util/deadline.js';

export interface HttpFetchOptions {
  readonly client: WasmHttpClient;
  readonly insecure: boolean;
  readonly maxBinarySizeBytes: number;
  /** Timeout of one attempt, body included (Go's http.Client.Timeout). */
  readonly requestTimeoutMs: number;
  readonly attempts: number;
  readonly initialBackoffMs: number;
  /** The whole fetch (all attempts). */
  readonly signal?: AbortSignal;
}

/** The module's bytes (unboxed). Throws WasmFetchError naming the attempts and the last cause. */
export async function fetchHttpModule(url: string, opts: HttpFetchOptions): Promise<Buffer> {
  const retry = { attempts: opts.attempts, initialBackoffMs: opts.initialBackoffMs, ...(opts.signal ? { signal: opts.signal } : {}) };
  const body = await withRetries('wasm module download', retry, async () => {
    const perAttempt = deadline(opts.requestTimeoutMs, opts.signal);
    const signal = perAttempt.signal;
    try {
      // the attempt's signal bounds the whole request; undici's own timers only back it up
      const res = await send(opts.client, url, opts.insecure, { signal, idleTimeoutMs: opts.requestTimeoutMs + 1000 });
      if (res.statusCode === 200) return await readCapped(res, opts.maxBinarySizeBytes, 'module');
      await discard(res);
      const msg = `wasm module download request failed: status code ${res.statusCode}`;
      if (retryableStatus(res.statusCode)) throw new RetryableError(msg);
      throw new HttpStatusError(res.statusCode, msg);
    } catch (err) {
      const code = (err as { code?: string }).code;
      const timedOut = perAttempt.expired || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
      if (timedOut && !opts.signal?.aborted) throw new Error(`request timed out after ${opts.requestTimeoutMs}ms`, { cause: err });
      throw err;
    } finally {
      perAttempt.clear();
    }
  }).catch((err: unknown) => {
    throw err instanceof WasmFetchError ? err : new WasmFetchError(describeError(err));
  });
  return unboxIfPossible(body, opts.maxBinarySizeBytes);
}
