// The bearer token the agent presents to istiod and the CA: the projected service-account token,
// re-read for every connection or call (kubelet rotates it). Empty: no authorization header. A
// file that cannot be read (absent, EACCES, EMFILE) is said, and the call goes out without it, as
// Istio's token reader warns and sends none: istiod then answers UNAUTHENTICATED, which names the
// problem on its side too, and a client certificate (PROV_CERT) may still authenticate the call.

import { readFileSync } from 'node:fs';

/** The token in `path`, or undefined (empty, or unreadable: `onUnreadable` is told why). */
export function readBearerToken(path: string, onUnreadable: (reason: string) => void): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    onUnreadable(`cannot read the token file ${path}: ${(err as Error).message}`);
    return undefined;
  }
  return text.trim() || undefined;
}
