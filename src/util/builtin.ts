// Node built-ins that the agent needs only after Envoy's spawn, or only on some paths, loaded on
// first use instead of at import. Envoy's spawn waits for every module the agent has imported;
// node:crypto, node:http2, node:tls, node:http, node:https and node:zlib cost ~6-22 ms each to
// load there
// (bench `startup`; test/packaging/spawn-first.test.ts). Synchronous, so callers stay
// synchronous; each is looked up once.

import { createRequire } from 'node:module';

const requireBuiltin = createRequire(import.meta.url);

function once<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= requireBuiltin(name) as T);
}

export const lazyBuiltin = {
  crypto: once<typeof import('node:crypto')>('node:crypto'),
  http: once<typeof import('node:http')>('node:http'),
  http2: once<typeof import('node:http2')>('node:http2'),
  https: once<typeof import('node:https')>('node:https'),
  tls: once<typeof import('node:tls')>('node:tls'),
  zlib: once<typeof import('node:zlib')>('node:zlib'),
};
