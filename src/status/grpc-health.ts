// gRPC health probes: grpc.health.v1.Health/Check over the agent's own gRPC client (src/grpc/),
// with the generated code of gRPC's health.proto. As kubelet and Istio (grpc-go with WithBlock):
// plaintext; a connection that does not come up is dialled again, with grpc-go's backoff, until
// the probe's timeout; SERVING is success, anything else (UNIMPLEMENTED included) is failure.

import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as ServingStatus, HealthCheckResponseSchema } from '../gen/grpc/health/v1/health_pb.js';
import { GrpcCallError, unaryCall } from '../grpc/client.js';
import { Status } from '../grpc/status.js';
import { Backoff, sleep } from '../util/backoff.js';
import { joinHostPort } from '../util/ip.js';

export const HEALTH_CHECK_METHOD = '/grpc.health.v1.Health/Check';

/** grpc-go's connection backoff (google.golang.org/grpc/backoff.DefaultConfig). */
const DIAL_BACKOFF = { initialMs: 1000, multiplier: 1.6, randomization: 0.2, maxMs: 120_000 } as const;

export type GrpcHealthResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface GrpcHealthCheckOptions {
  readonly host: string;
  readonly port: number;
  readonly service: string;
  readonly timeoutMs: number;
  /** The prober's User-Agent, sent on (kubelet's "kube-probe/1.x"). */
  readonly userAgent?: string | undefined;
  readonly localAddress?: string | undefined;
  readonly signal?: AbortSignal;
}

export async function grpcHealthCheck(opts: GrpcHealthCheckOptions): Promise<GrpcHealthResult> {
  const target = { address: joinHostPort(opts.host, opts.port), ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) };
  const request = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: opts.service }));
  const metadata = opts.userAgent ? { 'user-agent': `${opts.userAgent} pilot-agent-ts` } : undefined;
  const deadline = performance.now() + opts.timeoutMs;
  const backoff = new Backoff(DIAL_BACKOFF);
  for (;;) {
    const left = deadline - performance.now();
    let answer: Buffer;
    try {
      answer = await unaryCall(target, HEALTH_CHECK_METHOD, request, {
        timeoutMs: Math.max(1, left),
        connectTimeoutMs: Math.max(1, left),
        peerName: 'the application',
        ...(metadata ? { metadata } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (err) {
      if (!(err instanceof GrpcCallError)) throw err;
      if (!err.connected) {
        const wait = backoff.next();
        if (performance.now() + wait < deadline && !opts.signal?.aborted) {
          await sleep(wait, opts.signal).catch(() => undefined);
          continue;
        }
        return { ok: false, reason: `failed to create grpc connection to probe app: no connection within ${opts.timeoutMs} ms: ${err.details}` };
      }
      if (err.status === Status.UNIMPLEMENTED) return { ok: false, reason: `server does not implement the grpc health protocol (grpc.health.v1.Health): ${err.message}` };
      if (err.status === Status.DEADLINE_EXCEEDED) return { ok: false, reason: `grpc request not finished within timeout: ${err.message}` };
      return { ok: false, reason: `grpc probe failed: ${err.message}` };
    }
    let status: number;
    try {
      status = fromBinary(HealthCheckResponseSchema, answer).status;
    } catch (err) {
      return { ok: false, reason: `grpc probe failed: the answer is not a HealthCheckResponse: ${(err as Error).message}` };
    }
    if (status === ServingStatus.SERVING) return { ok: true };
    return { ok: false, reason: `grpc probe answered ${ServingStatus[status] ?? status}` };
  }
}
