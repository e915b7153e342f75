// Registry credentials from a WasmPlugin's image pull secret: the `.dockerconfigjson` of a
// kubernetes.io/dockerconfigjson Secret, which istiod passes in the
// ISTIO_META_WASM_IMAGE_PULL_SECRET VM env var. Lookup follows docker's config file: the exact
// registry key first, then any key whose host (scheme and path stripped) is the registry; Docker
// Hub is keyed `https://index.docker.io/v1/`. Error messages never include the secret's content.

import { WasmFetchError } from './http-client.js';

export interface RegistryCredentials {
  readonly username?: string;
  readonly password?: string;
  /** OAuth2 refresh token (`identitytoken`), exchanged at the token realm. */
  readonly identityToken?: string;
  /** A bearer token to send as is (`registrytoken`). */
  readonly registryToken?: string;
}

export const DOCKER_HUB_REGISTRY = 'index.docker.io';
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';

export class PullSecretError extends WasmFetchError {
  override readonly code = 'WASM_PULL_SECRET';
}

interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
  registrytoken?: unknown;
}

/** docker's ConvertToHostname: `https://host:5000/v1/` -> `host:5000`. */
function hostOf(key: string): string {
  const s = key.replace(/^https?:\/\//, '');
  return s.split('/')[0]!;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * The credentials for `registry` (as in an image reference: host[:port], `index.docker.io` for
 * Docker Hub), or undefined for anonymous access. Throws PullSecretError when the secret is not a
 * docker config or its `auth` is malformed.
 */
export function credentialsFor(pullSecret: Uint8Array | string, registry: string): RegistryCredentials | undefined {
  const text = typeof pullSecret === 'string' ? pullSecret : Buffer.from(pullSecret).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PullSecretError('invalid image pull secret: not a JSON docker config');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new PullSecretError('invalid image pull secret: not a docker config object');
  }
  const auths = (parsed as { auths?: unknown }).auths;
  if (auths === undefined || auths === null) return undefined;
  if (typeof auths !== 'object' || Array.isArray(auths)) throw new PullSecretError('invalid image pull secret: "auths" is not an object');
  const table = auths as Record<string, AuthEntry>;
  const key = registry === DOCKER_HUB_REGISTRY ? DOCKER_HUB_KEY : registry;
  let entry: AuthEntry | undefined = table[key];
  if (!entry) {
    for (const [k, v] of Object.entries(table)) {
      if (hostOf(k) === key || (registry === DOCKER_HUB_REGISTRY && ['docker.io', 'index.docker.io', 'registry-1.docker.io'].includes(hostOf(k)))) {
        entry = v;
        break;
      }
    }
  }
  if (!entry || typeof entry !== 'object') return undefined;
  let username = str(entry.username);
  let password = str(entry.password);
  const auth = str(entry.auth);
  if (auth) {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new PullSecretError(`invalid image pull secret: malformed "auth" for registry ${registry}`);
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  const creds: RegistryCredentials = {
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(str(entry.identitytoken) ? { identityToken: str(entry.identitytoken)! } : {}),
    ...(str(entry.registrytoken) ? { registryToken: str(entry.registrytoken)! } : {}),
  };
  return Object.keys(creds).length ? creds : undefined;
}
