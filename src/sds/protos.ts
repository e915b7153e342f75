// The Envoy messages the SDS server reads and writes, encoded with the real Envoy API protos shipped
// in @grpc/grpc-js-xds (deps/envoy-api, xds, googleapis, protoc-gen-validate). Only
// envoy/service/discovery/v3/discovery.proto and envoy/extensions/transport_sockets/tls/v3/secret.proto
// (and their imports, ~80 files) are parsed, with protobufjs, on first use: ~50 ms and ~2 MB of heap
// that an agent without SDS clients never spends.

import type protobuf from 'protobufjs';
import { loadEnvoyProtoRoot } from '../util/envoy-proto-root.js';

export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

export interface DiscoveryRequest {
  readonly versionInfo: string;
  readonly nodeId: string;
  readonly resourceNames: readonly string[];
  readonly typeUrl: string;
  readonly responseNonce: string;
  readonly errorDetail?: { readonly code: number; readonly message: string };
}

/** A secret as the SDS server sends it: key/certificate, or a root bundle. */
export type SecretMessage =
  | { readonly name: string; readonly certificateChain: string; readonly privateKey: string }
  | { readonly name: string; readonly trustedCa: string; readonly crl?: string };

interface SdsTypes {
  readonly request: protobuf.Type;
  readonly response: protobuf.Type;
  readonly secret: protobuf.Type;
}

let types: SdsTypes | undefined;

function loadTypes(): SdsTypes {
  const root = loadEnvoyProtoRoot(['envoy/service/discovery/v3/discovery.proto', 'envoy/extensions/transport_sockets/tls/v3/secret.proto']);
  return {
    request: root.lookupType('envoy.service.discovery.v3.DiscoveryRequest'),
    response: root.lookupType('envoy.service.discovery.v3.DiscoveryResponse'),
    secret: root.lookupType('envoy.extensions.transport_sockets.tls.v3.Secret'),
  };
}

/** Loads the protos now (the first encode/decode does it otherwise). */
export function sdsTypes(): SdsTypes {
  types ??= loadTypes();
  return types;
}

interface RawRequest {
  version_info?: string;
  node?: { id?: string };
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

export function decodeDiscoveryRequest(buf: Uint8Array): DiscoveryRequest {
  const { request } = sdsTypes();
  const raw = request.toObject(request.decode(buf), { arrays: true }) as RawRequest;
  return {
    versionInfo: raw.version_info ?? '',
    nodeId: raw.node?.id ?? '',
    resourceNames: raw.resource_names ?? [],
    typeUrl: raw.type_url ?? '',
    responseNonce: raw.response_nonce ?? '',
    ...(raw.error_detail ? { errorDetail: { code: raw.error_detail.code ?? 0, message: raw.error_detail.message ?? '' } } : {}),
  };
}

export function encodeSecret(s: SecretMessage): Uint8Array {
  const { secret } = sdsTypes();
  const obj =
    'trustedCa' in s
      ? { name: s.name, validation_context: { trusted_ca: { inline_bytes: Buffer.from(s.trustedCa) }, ...(s.crl !== undefined ? { crl: { inline_bytes: Buffer.from(s.crl) } } : {}) } }
      : { name: s.name, tls_certificate: { certificate_chain: { inline_bytes: Buffer.from(s.certificateChain) }, private_key: { inline_bytes: Buffer.from(s.privateKey) } } };
  return secret.encode(secret.fromObject(obj)).finish();
}

export function encodeSecretResponse(versionInfo: string, nonce: string, secrets: readonly SecretMessage[]): Buffer {
  const { response } = sdsTypes();
  const msg = response.fromObject({
    version_info: versionInfo,
    resources: secrets.map((s) => ({ type_url: SECRET_TYPE_URL, value: encodeSecret(s) })),
    type_url: SECRET_TYPE_URL,
    nonce,
  });
  return Buffer.from(response.encode(msg).finish());
}

/** For tests and the Envoy stand-in: decodes a DiscoveryResponse and its Secrets. */
export function decodeSecretResponse(buf: Uint8Array): { versionInfo: string; nonce: string; typeUrl: string; secrets: SecretMessage[] } {
  const { response, secret } = sdsTypes();
  const raw = response.toObject(response.decode(buf), { arrays: true }) as { version_info?: string; nonce?: string; type_url?: string; resources?: { type_url?: string; value?: Uint8Array }[] };
  const secrets = (raw.resources ?? []).map((any) => {
    const s = secret.toObject(secret.decode(any.value ?? new Uint8Array()), {}) as {
      name?: string;
      tls_certificate?: { certificate_chain?: { inline_bytes?: Uint8Array }; private_key?: { inline_bytes?: Uint8Array } };
      validation_context?: { trusted_ca?: { inline_bytes?: Uint8Array }; crl?: { inline_bytes?: Uint8Array } };
    };
    const text = (b: Uint8Array | undefined): string => Buffer.from(b ?? new Uint8Array()).toString('utf8');
    const vc = s.validation_context;
    if (vc) return { name: s.name ?? '', trustedCa: text(vc.trusted_ca?.inline_bytes), ...(vc.crl ? { crl: text(vc.crl.inline_bytes) } : {}) };
    return { name: s.name ?? '', certificateChain: text(s.tls_certificate?.certificate_chain?.inline_bytes), privateKey: text(s.tls_certificate?.private_key?.inline_bytes) };
  });
  return { versionInfo: raw.version_info ?? '', nonce: raw.nonce ?? '', typeUrl: raw.type_url ?? '', secrets };
}
