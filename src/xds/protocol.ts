// SotW and Delta ADS differ only in their method, message field numbers and ACK shape; the proxy
// connection logic is shared, parameterised by one of these two descriptors.

import {
  encodeDeltaRequest,
  encodeSotwRequest,
  summarizeDeltaRequest,
  summarizeDeltaResponse,
  summarizeSotwRequest,
  summarizeSotwResponse,
  type AckFields,
  type RequestSummary,
  type ResponseSummary,
} from './wire.js';

export interface XdsProtocol {
  readonly kind: 'sotw' | 'delta';
  /** Full gRPC method path. */
  readonly method: string;
  summarizeRequest(buf: Uint8Array): RequestSummary;
  summarizeResponse(buf: Uint8Array): ResponseSummary;
  /** An agent-originated request: ACK, NACK, or an initial subscription (no nonce). */
  encodeRequest(fields: AckFields): Uint8Array;
}

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';

export const SOTW: XdsProtocol = {
  kind: 'sotw',
  method: `${SERVICE}/StreamAggregatedResources`,
  summarizeRequest: summarizeSotwRequest,
  summarizeResponse: summarizeSotwResponse,
  encodeRequest: encodeSotwRequest,
};

export const DELTA: XdsProtocol = {
  kind: 'delta',
  method: `${SERVICE}/DeltaAggregatedResources`,
  summarizeRequest: summarizeDeltaRequest,
  summarizeResponse: summarizeDeltaResponse,
  encodeRequest: encodeDeltaRequest,
};
