// xDS wire types for the development control plane and its test clients.
//
// Messages are encoded and decoded with @bufbuild/protobuf using the Envoy API registry from
// test/support/envoy-protos.ts (the upstream Envoy protos shipped in @grpc/grpc-js-xds), so the
// bytes on the wire are exactly what Envoy's generated code produces and reads. The gRPC service
// definitions below plug those codecs into @grpc/grpc-js; no proto-loader pass is needed for ADS.

import { create, fromBinary, fromJson, toBinary, toJson, type DescMessage, type JsonValue, type Message } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { envoyRegistry } from '../support/envoy-protos.js';

export const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** Type URLs of the resources an Istio sidecar receives over ADS. */
export const TypeUrl = {
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  VirtualHost: 'type.googleapis.com/envoy.config.route.v3.VirtualHost',
  ScopedRouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration',
  Secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
  TypedExtensionConfig: 'type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig',
  NameTable: 'type.googleapis.com/istio.networking.nds.v1.NameTable',
} as const;

/**
 * Types whose subscriptions name resources (Istio's pkg/xds IsWildcardTypeURL: Secret, EDS, RDS
 * and ECDS are not wildcard; CDS, LDS and Istio's own types are). VHDS is named as well.
 */
export const NON_WILDCARD_TYPES: readonly string[] = [
  TypeUrl.Secret,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.RouteConfiguration,
  TypeUrl.TypedExtensionConfig,
  TypeUrl.VirtualHost,
];

/**
 * Named types istiod answers for every subscribed name, with an empty resource when it has none:
 * an EDS cluster without endpoints gets a ClusterLoadAssignment with no endpoints
 * (buildEmptyClusterLoadAssignment), a route name it cannot build a RouteConfiguration with no
 * virtual hosts (BuildHTTPRoutes). Envoy warms EDS clusters and RDS listeners until these arrive.
 */
export const ANSWER_EVERY_NAME_TYPES: readonly string[] = [TypeUrl.ClusterLoadAssignment, TypeUrl.RouteConfiguration];

/** Order in which changed types are pushed (make-before-break, as istiod does). */
export const PUSH_ORDER: readonly string[] = [
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
  TypeUrl.VirtualHost,
  TypeUrl.ScopedRouteConfiguration,
  TypeUrl.TypedExtensionConfig,
  TypeUrl.Secret,
];

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const SOTW_METHOD_PATH = `/${ADS_SERVICE}/StreamAggregatedResources`;
export const DELTA_METHOD_PATH = `/${ADS_SERVICE}/DeltaAggregatedResources`;

// ---------------------------------------------------------------------------------------------
// Message shapes (bufbuild's reflection-free runtime objects; field names are the local camelCase
// names). Only the fields the control plane uses are typed.

export interface AnyMsg {
  typeUrl: string;
  value: Uint8Array;
}

export interface StatusMsg {
  code: number;
  message: string;
  details: AnyMsg[];
}

export interface ControlPlaneMsg {
  identifier: string;
}

export interface DiscoveryRequest {
  versionInfo: string;
  node?: Message;
  resourceNames: string[];
  typeUrl: string;
  responseNonce: string;
  errorDetail?: StatusMsg;
}

export interface DiscoveryResponse {
  versionInfo: string;
  resources: AnyMsg[];
  canary: boolean;
  typeUrl: string;
  nonce: string;
  controlPlane?: ControlPlaneMsg;
}

export interface DeltaDiscoveryRequest {
  node?: Message;
  typeUrl: string;
  resourceNamesSubscribe: string[];
  resourceNamesUnsubscribe: string[];
  initialResourceVersions: Record<string, string>;
  responseNonce: string;
  errorDetail?: StatusMsg;
}

export interface DeltaResource {
  name: string;
  aliases: string[];
  version: string;
  resource?: AnyMsg;
}

export interface DeltaDiscoveryResponse {
  systemVersionInfo: string;
  resources: DeltaResource[];
  typeUrl: string;
  removedResources: string[];
  nonce: string;
  controlPlane?: ControlPlaneMsg;
}

export interface XdsSchemas {
  readonly DiscoveryRequest: DescMessage;
  readonly DiscoveryResponse: DescMessage;
  readonly DeltaDiscoveryRequest: DescMessage;
  readonly DeltaDiscoveryResponse: DescMessage;
  readonly Resource: DescMessage;
  readonly Node: DescMessage;
  readonly Any: DescMessage;
  readonly Status: DescMessage;
  readonly ControlPlane: DescMessage;
}

let schemas: XdsSchemas | undefined;

function mustGet(name: string): DescMessage {
  const d = envoyRegistry().getMessage(name);
  if (!d) throw new Error(`${name} is missing from the Envoy API registry`);
  return d;
}

export function xdsSchemas(): XdsSchemas {
  schemas ??= {
    DiscoveryRequest: mustGet('envoy.service.discovery.v3.DiscoveryRequest'),
    DiscoveryResponse: mustGet('envoy.service.discovery.v3.DiscoveryResponse'),
    DeltaDiscoveryRequest: mustGet('envoy.service.discovery.v3.DeltaDiscoveryRequest'),
    DeltaDiscoveryResponse: mustGet('envoy.service.discovery.v3.DeltaDiscoveryResponse'),
    Resource: mustGet('envoy.service.discovery.v3.Resource'),
    Node: mustGet('envoy.config.core.v3.Node'),
    Any: mustGet('google.protobuf.Any'),
    Status: mustGet('google.rpc.Status'),
    ControlPlane: mustGet('envoy.config.core.v3.ControlPlane'),
  };
  return schemas;
}

/** Builds a message of `schema` from a plain init object (local field names). */
export function createMessage<T>(schema: DescMessage, init: object): T {
  return create(schema, init as never) as unknown as T;
}

function toBuffer(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function serializer<T>(schema: DescMessage): (m: T) => Buffer {
  return (m: T) => toBuffer(toBinary(schema, m as unknown as Message));
}

function deserializer<T>(schema: DescMessage): (b: Buffer) => T {
  return (b: Buffer) => fromBinary(schema, b) as unknown as T;
}

export function encodeMessage(schema: DescMessage, m: object): Buffer {
  return toBuffer(toBinary(schema, m as Message));
}

export function decodeMessage<T>(schema: DescMessage, bytes: Uint8Array): T {
  return fromBinary(schema, bytes) as unknown as T;
}

/** Reads proto3 JSON (snake_case or camelCase names) into a message, strictly. */
export function messageFromJson<T>(schema: DescMessage, json: unknown): T {
  return fromJson(schema, json as JsonValue, { registry: envoyRegistry() }) as unknown as T;
}

/** Proto3 JSON with proto (snake_case) field names, as Envoy's config_dump prints. */
export function messageToJson(schema: DescMessage, m: object): JsonValue {
  return toJson(schema, m as Message, { registry: envoyRegistry(), useProtoFieldName: true });
}

export interface AdsCodecs {
  readonly sotw: grpc.MethodDefinition<DiscoveryRequest, DiscoveryResponse>;
  readonly delta: grpc.MethodDefinition<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;
}

/** Method definitions of the ADS service with bufbuild codecs. */
export function adsMethods(): AdsCodecs {
  const s = xdsSchemas();
  return {
    sotw: {
      path: SOTW_METHOD_PATH,
      requestStream: true,
      responseStream: true,
      requestSerialize: serializer<DiscoveryRequest>(s.DiscoveryRequest),
      requestDeserialize: deserializer<DiscoveryRequest>(s.DiscoveryRequest),
      responseSerialize: serializer<DiscoveryResponse>(s.DiscoveryResponse),
      responseDeserialize: deserializer<DiscoveryResponse>(s.DiscoveryResponse),
      originalName: 'streamAggregatedResources',
    },
    delta: {
      path: DELTA_METHOD_PATH,
      requestStream: true,
      responseStream: true,
      requestSerialize: serializer<DeltaDiscoveryRequest>(s.DeltaDiscoveryRequest),
      requestDeserialize: deserializer<DeltaDiscoveryRequest>(s.DeltaDiscoveryRequest),
      responseSerialize: serializer<DeltaDiscoveryResponse>(s.DeltaDiscoveryResponse),
      responseDeserialize: deserializer<DeltaDiscoveryResponse>(s.DeltaDiscoveryResponse),
      originalName: 'deltaAggregatedResources',
    },
  };
}

/** The ADS service definition for grpc.Server#addService. */
export function adsServiceDefinition(): grpc.ServiceDefinition {
  const m = adsMethods();
  return {
    StreamAggregatedResources: m.sotw,
    DeltaAggregatedResources: m.delta,
  } as grpc.ServiceDefinition;
}

/** Channel/server options: no message size limits (real pushes exceed 4 MiB, even 64 MiB). */
export const UNLIMITED_MESSAGE_OPTIONS = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
} as const;

/** Fully-qualified message name of a type URL. */
export function typeNameOf(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

/** Normalizes `envoy.config.cluster.v3.Cluster` or a type URL to `type.googleapis.com/<name>`. */
export function normalizeTypeUrl(typeUrlOrName: string): string {
  return TYPE_URL_PREFIX + typeNameOf(typeUrlOrName);
}

/** Short label for logs: `Cluster`, `ClusterLoadAssignment`, ... */
export function shortType(typeUrl: string): string {
  const name = typeNameOf(typeUrl);
  return name.slice(name.lastIndexOf('.') + 1);
}
