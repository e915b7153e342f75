// gRPC health probes: grpc.health.v1.Health/Check over @grpc/grpc-js, with the health messages
// described to protobufjs (reflection, no parser) instead of hand-written encoding. As kubelet:
// plaintext, wait for the connection up to the probe timeout, SERVING is success, anything else
// (including UNIMPLEMENTED) is failure.

import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs/light.js';

const root = new protobuf.Root();
const ns = root.define('grpc.health.v1');
ns.add(new protobuf.Type('HealthCheckRequest').add(new protobuf.Field('service', 1, 'string')));
ns.add(
  new protobuf.Type('HealthCheckResponse')
    .add(new protobuf.Enum('ServingStatus', { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 }))
    .add(new protobuf.Field('status', 1, 'ServingStatus')),
);
root.resolveAll();
const HealthCheckRequest = root.lookupType('grpc.health.v1.HealthCheckRequest');
const HealthCheckResponse = root.lookupType('grpc.health.v1.HealthCheckResponse');

export const HEALTH_CHECK_METHOD = '/grpc.health.v1.Health/Check';
export const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;

export const encodeHealthCheckRequest = (service: string): Buffer => Buffer.from(HealthCheckRequest.encode(HealthCheckRequest.create({ service })).finish());
export const decodeHealthCheckResponse = (b: Buffer): number => {
  const msg = HealthCheckResponse.toObject(HealthCheckResponse.decode(b), { enums: Number, defaults: true }) as { status: number };
  return msg.status;
};

export type GrpcHealthResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export async function grpcHealthCheck(opts: { host: string; port: number; service: string; timeoutMs: number; userAgent?: string | undefined }): Promise<GrpcHealthResult> {
  const target = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
  const channelOptions: grpc.ChannelOptions = { 'grpc.enable_retries': 0, 'grpc.max_reconnect_backoff_ms': 1000 };
  if (opts.userAgent) channelOptions['grpc.primary_user_agent'] = opts.userAgent;
  const client = new grpc.Client(target, grpc.credentials.createInsecure(), channelOptions);
  const deadline = Date.now() + opts.timeoutMs;
  try {
    // kubelet dials with WithBlock: a connection that never comes up is a timeout, not UNAVAILABLE
    await new Promise<void>((resolve, reject) => client.waitForReady(deadline, (err) => (err ? reject(err) : resolve())));
  } catch (err) {
    client.close();
    return { ok: false, reason: `failed to create grpc connection to probe app: ${(err as Error).message}` };
  }
  try {
    const status = await new Promise<number>((resolve, reject) => {
      client.makeUnaryRequest(
        HEALTH_CHECK_METHOD,
        (service: string) => encodeHealthCheckRequest(service),
        (b: Buffer) => decodeHealthCheckResponse(b),
        opts.service,
        new grpc.Metadata(),
        { deadline },
        (err, value) => (err ? reject(err) : resolve(value!)),
      );
    });
    if (status === 1) return { ok: true };
    return { ok: false, reason: `grpc probe answered ${SERVING_STATUS[status] ?? status}` };
  } catch (err) {
    const e = err as grpc.ServiceError;
    if (e.code === grpc.status.UNIMPLEMENTED) return { ok: false, reason: `server does not implement the grpc health protocol (grpc.health.v1.Health): ${e.message}` };
    if (e.code === grpc.status.DEADLINE_EXCEEDED) return { ok: false, reason: `grpc request not finished within timeout: ${e.message}` };
    return { ok: false, reason: `grpc probe failed: ${e.message}` };
  } finally {
    client.close();
  }
}
