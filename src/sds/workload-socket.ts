// Who serves the workload certificate, decided at start as Istio's agent does (pkg/istio-agent
// agent.go Run, checkSocket): another SDS server may already own the workload SDS socket
// (./var/run/secrets/workload-spiffe-uds/<WORKLOAD_IDENTITY_SOCKET_FILE>), e.g. SPIRE's agent.
//
//   - a socket there that answers gRPC within 1 s: it serves `default` and `ROOTCA` to Envoy (the
//     bootstrap's sds-grpc cluster names that path); the agent asks no CA and serves only file
//     certificates, on ./var/run/secrets/credential-uds/files-socket (the bootstrap then has the
//     sds-files-grpc cluster);
//   - a socket that does not answer: a leftover, removed; the agent serves as usual;
//   - nothing there: the agent serves as usual, unless WORKLOAD_IDENTITY_SOCKET_FILE names a file
//     other than Istio's `socket`, which then must exist (start-up fails).

import { lstatSync, rmSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import type { AgentConfig } from '../config/load.js';
import { dialUnixSocket } from '../grpc/dial.js';
import { logger } from '../util/logger.js';

const log = logger('default');

/** Istio's default workload socket file name (security.DefaultWorkloadIdentitySocketFile). */
export const DEFAULT_WORKLOAD_SOCKET_FILE = 'socket';

/** Where the agent serves file certificates when the workload socket is someone else's. */
export const FILES_ONLY_SOCKET = './var/run/secrets/credential-uds/files-socket';

/** How long a socket found at start gets to answer (Istio's socketHealthCheck deadline). */
const HEALTH_CHECK_MS = 1000;

export interface WorkloadSds {
  /** The workload socket Envoy's sds-grpc cluster uses. */
  readonly workloadSocket: string;
  /** Another SDS server owns the workload socket: the agent serves file certificates only. */
  readonly external: boolean;
  /** Where the agent's own SDS server listens. */
  readonly listenPath: string;
}

export class WorkloadSocketError extends Error {
  override readonly name = 'WorkloadSocketError';
  readonly code = 'WORKLOAD_SOCKET';
}

/** The path as Istio prints it: relative to the working directory (the container's `/`). */
function shown(cwd: string, path: string): string {
  const rel = relative(cwd, path);
  return rel === '' || rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

/** Istio's socketFileExists: anything there that is not a regular file. */
function somethingOtherThanAFile(path: string): boolean {
  try {
    return !lstatSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Istio's checkSocket: true when a server answers on `path`; a socket nobody answers on is
 * removed (false); one that cannot be removed is an error.
 */
async function liveSocket(path: string): Promise<boolean> {
  if (!somethingOtherThanAFile(path)) return false;
  try {
    await dialUnixSocket(path, HEALTH_CHECK_MS);
    return true;
  } catch (err) {
    log.debug(`SDS socket detected but not healthy: ${(err as Error).message}`, { path });
    try {
      rmSync(path);
    } catch (rmErr) {
      throw new WorkloadSocketError(`failed to check SDS socket: existing SDS socket could not be removed: ${(rmErr as Error).message}`, { cause: rmErr });
    }
    return false;
  }
}

export async function resolveWorkloadSds(config: AgentConfig): Promise<WorkloadSds> {
  const cwd = config.paths.cwd;
  const workloadSocket = config.paths.sdsSocket;
  const isIstioSds = config.env.WORKLOAD_IDENTITY_SOCKET_FILE === DEFAULT_WORKLOAD_SOCKET_FILE;
  const external = await liveSocket(workloadSocket);
  if (external) {
    log.info(`Existing workload SDS socket found at ${shown(cwd, workloadSocket)}. Default Istio SDS Server will only serve files`);
  } else if (!isIstioSds) {
    throw new WorkloadSocketError(`agent configured for non-default SDS socket path: ${shown(cwd, workloadSocket)} but no socket found`);
  }
  log.info('Starting default Istio SDS Server');
  return { workloadSocket, external, listenPath: external ? resolve(cwd, FILES_ONLY_SOCKET) : workloadSocket };
}
