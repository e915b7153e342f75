// gRPC status codes and the rules that carry them over HTTP/2: grpc-status/grpc-message in
// trailers (or in the headers of a trailers-only response), percent-encoded messages, and the
// statuses that HTTP errors and stream resets stand for (gRPC's PROTOCOL-HTTP2 and
// http-grpc-status-mapping documents).

import type http2 from 'node:http2';

export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const NAMES = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k])) as Record<number, string>;

/** The code's name (`UNAVAILABLE`), or the number for a code outside the list. */
export function statusName(code: number): string {
  return NAMES[code] ?? String(code);
}

export interface GrpcStatus {
  readonly code: number;
  readonly details: string;
}

/**
 * What grpc-go answers a streamed request that does not unmarshal with (its receive path), and so
 * what Istio's agent answers: INTERNAL, "grpc: failed to unmarshal the received message: ...".
 */
export function unmarshalFailure(err: unknown): GrpcStatus {
  return { code: Status.INTERNAL, details: `grpc: failed to unmarshal the received message: ${(err as Error).message}` };
}

/** The gRPC status an HTTP response status stands for (gRPC's http-grpc-status-mapping). */
export function statusFromHttp(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return Status.INTERNAL;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE;
    default:
      return Status.UNKNOWN;
  }
}

/**
 * HTTP/2 error codes (RFC 9113 section 7) the agent sends and reads, the one table of them.
 * Written out rather than read from node:http2's constants: this module is loaded before Envoy's
 * spawn (the CA client's statuses), node:http2 is not. status.test.ts holds them to node:http2's.
 */
export const H2Error = {
  NO_ERROR: 0x0,
  INTERNAL_ERROR: 0x2,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
} as const;

/** The gRPC status of a stream reset with an HTTP/2 error code (gRPC's PROTOCOL-HTTP2 rules). */
export function statusFromReset(rstCode: number | undefined): number {
  switch (rstCode) {
    case H2Error.CANCEL:
      return Status.CANCELLED;
    case H2Error.REFUSED_STREAM:
      return Status.UNAVAILABLE;
    case H2Error.ENHANCE_YOUR_CALM:
      return Status.RESOURCE_EXHAUSTED;
    case H2Error.INADEQUATE_SECURITY:
      return Status.PERMISSION_DENIED;
    default:
      return Status.INTERNAL;
  }
}

/** Reads grpc-status/grpc-message from response headers or trailers; undefined when absent. */
export function statusFromHeaders(headers: http2.IncomingHttpHeaders): GrpcStatus | undefined {
  const raw = headers['grpc-status'];
  if (raw === undefined) return undefined;
  const text = String(Array.isArray(raw) ? raw[0] : raw);
  const message = headers['grpc-message'];
  const details = typeof message === 'string' ? decodeGrpcMessage(message) : '';
  // decimal digits only, as grpc-go parses it: Number() would read "" and "0x0" as OK
  if (!/^\d{1,10}$/.test(text)) return { code: Status.INTERNAL, details: `malformed grpc-status ${JSON.stringify(text.slice(0, 32))}${details ? `: ${details}` : ''}` };
  const code = Number(text);
  return { code: code <= 16 ? code : Status.UNKNOWN, details };
}

/** grpc-message is percent-encoded UTF-8; a malformed escape is kept as it came. */
export function decodeGrpcMessage(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** Percent-encodes what gRPC requires (anything outside printable ASCII, and '%'). */
export function encodeGrpcMessage(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
