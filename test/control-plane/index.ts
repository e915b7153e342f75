// Public surface of the development control plane (see README.md).

export { startControlPlane, DEFAULT_SERVING_SANS } from './control-plane.js';
export type { ControlPlane, ControlPlaneOptions, SetResourcesOptions, WaitOptions } from './control-plane.js';
export type { AckRecord, NackRecord, RejectedStream, RequestRecord, ResponseRecord, StreamInfo, StreamKind, SubscriptionInfo } from './ads-server.js';
export { CertificateAuthority, generateCsr, generateKeyPair, privateKeyToPem, splitPemCertificates, CA_FAILURE_MODES } from './ca.js';
export type { CaFailureMode, CaRequestRecord, CertificateAuthorityOptions, KeyAlgorithm } from './ca.js';
export { emptyAnswer, parseResourceFile, toStoredResource, ResourceError } from './resources.js';
export type { ChangeEvent, FileError, ReloadResult, ResourceInput, StoredResource } from './resources.js';
export { buildResourceSet, cloneName, KIND_TYPE_URL, DEFAULT_KINDS, SIDECAR_CONFIG_DUMP, ECDS_CONFIG_DUMP } from './resource-set.js';
export type { BuildResourceSetOptions, BuiltResource, ResourceKind, ResourceSet } from './resource-set.js';
export { openSotw, openDelta, createCertificate, decodeResource, resourceNames, channelCredentials, createClient, SotwClient, DeltaClient, XdsStream } from './clients.js';
export type { ClientOptions, Target } from './clients.js';
export { TypeUrl, NON_WILDCARD_TYPES, ANSWER_EVERY_NAME_TYPES, adsServiceDefinition, adsMethods, xdsSchemas, UNLIMITED_MESSAGE_OPTIONS } from './xds-protos.js';
export type { DiscoveryRequest, DiscoveryResponse, DeltaDiscoveryRequest, DeltaDiscoveryResponse } from './xds-protos.js';
export { runCli, parseDurationSeconds } from './cli.js';
