// The Envoy messages the SDS server reads and writes (DiscoveryRequest, DiscoveryResponse, Secret),
// with the generated code of Envoy's API (src/gen/envoy/). The schemas load with the first SDS
// stream (sdsCodec()), so an agent that no client asks for secrets never builds them.

import { lazy } from '../util/lazy.js';

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

export interface SdsCodec {
  decodeDiscoveryRequest(buf: Uint8Array): DiscoveryRequest;
  encodeSecretResponse(versionInfo: string, nonce: string, secrets: readonly SecretMessage[]): Buffer;
  /** For tests and benchmarks: a subscription or ACK as Envoy sends it. */
  encodeDiscoveryRequest(req: Partial<DiscoveryRequest>): Buffer;
  /** For tests and benchmarks: a DiscoveryResponse and its Secrets. */
  decodeSecretResponse(buf: Uint8Array): { versionInfo: string; nonce: string; typeUrl: string; secrets: SecretMessage[] };
}

/** The codec, loaded on first call (later calls share it; a failed load is retried). */
export const sdsCodec = lazy(async (): Promise<SdsCodec> => {
  const [{ create, fromBinary, toBinary }, { anyPack, anyUnpack }, discovery, secretPb] = await Promise.all([
    import('@bufbuild/protobuf'),
    import('@bufbuild/protobuf/wkt'),
    import('../gen/envoy/service/discovery/v3/discovery_pb.js'),
    import('../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js'),
  ]);
  const { DiscoveryRequestSchema, DiscoveryResponseSchema } = discovery;
  const { SecretSchema } = secretPb;
  const inline = (text: string) => ({ specifier: { case: 'inlineBytes' as const, value: Buffer.from(text) } });
  const text = (source: { specifier: { case: string | undefined; value?: unknown } } | undefined): string =>
    source?.specifier.case === 'inlineBytes' ? Buffer.from(source.specifier.value as Uint8Array).toString('utf8') : '';
  const secret = (s: SecretMessage) =>
    create(
      SecretSchema,
      'trustedCa' in s
        ? { name: s.name, type: { case: 'validationContext', value: { trustedCa: inline(s.trustedCa), ...(s.crl !== undefined ? { crl: inline(s.crl) } : {}) } } }
        : { name: s.name, type: { case: 'tlsCertificate', value: { certificateChain: inline(s.certificateChain), privateKey: inline(s.privateKey) } } },
    );
  return {
    decodeDiscoveryRequest(buf) {
      const m = fromBinary(DiscoveryRequestSchema, buf);
      return {
        versionInfo: m.versionInfo,
        nodeId: m.node?.id ?? '',
        resourceNames: m.resourceNames,
        typeUrl: m.typeUrl,
        responseNonce: m.responseNonce,
        ...(m.errorDetail ? { errorDetail: { code: m.errorDetail.code, message: m.errorDetail.message } } : {}),
      };
    },
    encodeSecretResponse(versionInfo, nonce, secrets) {
      const msg = create(DiscoveryResponseSchema, { versionInfo, resources: secrets.map((s) => anyPack(SecretSchema, secret(s))), typeUrl: SECRET_TYPE_URL, nonce });
      return Buffer.from(toBinary(DiscoveryResponseSchema, msg));
    },
    encodeDiscoveryRequest(req) {
      const msg = create(DiscoveryRequestSchema, {
        versionInfo: req.versionInfo ?? '',
        ...(req.nodeId ? { node: { id: req.nodeId } } : {}),
        resourceNames: [...(req.resourceNames ?? [])],
        typeUrl: req.typeUrl ?? SECRET_TYPE_URL,
        responseNonce: req.responseNonce ?? '',
        ...(req.errorDetail ? { errorDetail: { ...req.errorDetail } } : {}),
      });
      return Buffer.from(toBinary(DiscoveryRequestSchema, msg));
    },
    decodeSecretResponse(buf) {
      const m = fromBinary(DiscoveryResponseSchema, buf);
      const secrets = m.resources.map((any): SecretMessage => {
        const s = anyUnpack(any, SecretSchema);
        if (!s) throw new Error(`SDS response holds a resource of type ${JSON.stringify(any.typeUrl)}, not a Secret`);
        if (s.type.case === 'validationContext') {
          const vc = s.type.value;
          return { name: s.name, trustedCa: text(vc.trustedCa), ...(vc.crl ? { crl: text(vc.crl) } : {}) };
        }
        const tls = s.type.case === 'tlsCertificate' ? s.type.value : undefined;
        return { name: s.name, certificateChain: text(tls?.certificateChain), privateKey: text(tls?.privateKey) };
      });
      return { versionInfo: m.versionInfo, nonce: m.nonce, typeUrl: m.typeUrl, secrets };
    },
  };
});
