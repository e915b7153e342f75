// withRetries' final error names the attempts that were made, not the attempts allowed: a failure
// retrying cannot help (a digest mismatch) ends after the first, and says so.

import { describe, expect, it } from 'vitest';
import { WasmFetchError, withRetries } from './http-client.js';

describe('withRetries', () => {
  it('a failure retrying cannot help stops at the first attempt and says 1 attempt', async () => {
    let calls = 0;
    const failing = withRetries('downloading layer sha256:abc', { attempts: 5, initialBackoffMs: 1 }, async () => {
      calls++;
      throw new WasmFetchError('digest mismatch: got sha256:def');
    });
    await expect(failing).rejects.toThrow('downloading layer sha256:abc failed after 1 attempt, last error: digest mismatch: got sha256:def');
    expect(calls).toBe(1);
  });

  it('a transport failure is retried until the attempts are used up, and the count says so', async () => {
    let calls = 0;
    const failing = withRetries('fetching x', { attempts: 3, initialBackoffMs: 1 }, async () => {
      calls++;
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    });
    await expect(failing).rejects.toThrow('fetching x failed after 3 attempts, last error: connect ECONNREFUSED 127.0.0.1:1');
    expect(calls).toBe(3);
  });
});
