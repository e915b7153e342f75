// `pilot-agent wait`: polls a readiness URL until it answers 200 (Istio's wait command, used by
// holdApplicationUntilProxyStarts' postStart hook).

import { sleep } from '../util/backoff.js';
import { localRequest } from '../util/local-http.js';
import { logger } from '../util/logger.js';

export interface WaitOptions {
  readonly url: string;
  readonly timeoutSeconds: number;
  readonly requestTimeoutMillis: number;
  readonly periodMillis: number;
}

async function checkIfReady(url: string, timeoutMs: number): Promise<void> {
  const res = await localRequest(url, { timeoutMs });
  if (res.status !== 200) throw new Error(`HTTP status code ${res.status}`);
}

export async function waitUntilReady(o: WaitOptions): Promise<void> {
  const log = logger('default');
  log.info(`Waiting for Envoy proxy to be ready (timeout: ${o.timeoutSeconds} seconds)...`);
  const deadline = performance.now() + o.timeoutSeconds * 1000;
  let lastError = 'none';
  for (;;) {
    const remaining = deadline - performance.now();
    if (remaining <= 0) throw new Error(`timeout waiting for Envoy proxy to become ready. Last error: ${lastError}`);
    await sleep(Math.min(o.periodMillis, remaining), undefined, { keepAlive: true });
    if (performance.now() >= deadline) throw new Error(`timeout waiting for Envoy proxy to become ready. Last error: ${lastError}`);
    try {
      await checkIfReady(o.url, o.requestTimeoutMillis);
      log.info('Envoy is ready!');
      return;
    } catch (err) {
      lastError = (err as Error).message;
      log.debug(`Not ready yet: ${lastError}`);
    }
  }
}
