// Reading and writing just the xDS fields the proxy needs, straight from the wire bytes: the one
// place that knows the discovery messages' field numbers and walks their top-level fields.
// Messages of ordinary Envoy types are forwarded as the bytes that came in; decoding a 50 MB
// push only to read its type URL and nonce would cost a full copy and seconds of CPU (and would
// build the Envoy schemas at start-up). The numbers are those of envoy.service.discovery.v3
// (stable since v3 shipped); a test checks them against the generated schemas (src/gen/).
// @bufbuild/protobuf's wire reader and writer do the varints.

import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

const WIRE_LEN = WireType.LengthDelimited;

/** Field numbers, per message. */
export const XdsField = {
  DiscoveryRequest: { version_info: 1, node: 2, resource_names: 3, type_url: 4, response_nonce: 5, error_detail: 6 },
  DiscoveryResponse: { version_info: 1, resources: 2, canary: 3, type_url: 4, nonce: 5, control_plane: 6 },
  DeltaDiscoveryRequest: { node: 1, type_url: 2, resource_names_subscribe: 3, resource_names_unsubscribe: 4, initial_resource_versions: 5, response_nonce: 6, error_detail: 7 },
  DeltaDiscoveryResponse: { system_version_info: 1, resources: 2, type_url: 4, nonce: 5, removed_resources: 6, control_plane: 7 },
  Any: { type_url: 1, value: 2 },
  Resource: { name: 3, version: 1, resource: 2 },
  Status: { code: 1, message: 2 },
} as const;
const F = XdsField;

/**
 * Calls `onField` for each top-level field of `buf`: its number, wire type, where its tag starts,
 * where its payload starts (after the length, for length-delimited fields) and where it ends.
 * Throws RangeError on a truncated message.
 */
export function forEachField(buf: Uint8Array, onField: (field: number, wire: WireType, start: number, payload: number, end: number) => void): void {
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const start = r.pos;
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = (tag & 7) as WireType;
    if (wire === WIRE_LEN) {
      const len = r.uint32();
      const payload = r.pos;
      r.pos += len;
      if (r.pos > r.len) throw new RangeError(`premature EOF: field ${field} declares ${len} bytes, ${r.len - payload} remain`);
      onField(field, wire, start, payload, r.pos);
    } else {
      r.skip(wire, field);
      onField(field, wire, start, r.pos, r.pos);
    }
  }
}

export interface ResponseSummary {
  readonly typeUrl: string;
  readonly nonce: string;
  /** SotW version_info, or Delta system_version_info. */
  readonly version: string;
  readonly resourceCount: number;
}

export interface RequestSummary {
  readonly typeUrl: string;
  readonly responseNonce: string;
  /** SotW only: the version being ACKed ("" for Delta). */
  readonly versionInfo: string;
  readonly isNack: boolean;
  readonly hasNode: boolean;
}

/**
 * Scans the top-level fields of a message, calling `onField` for the length-delimited ones we
 * care about; everything else is skipped without being decoded.
 */
export function scan(buf: Uint8Array, onLen: (field: number, start: number, end: number) => void, lenFields: ReadonlySet<number>): void {
  forEachField(buf, (field, wire, _start, payload, end) => {
    if (wire === WIRE_LEN && lenFields.has(field)) onLen(field, payload, end);
  });
}

const utf8 = new TextDecoder();

function str(buf: Uint8Array, start: number, end: number): string {
  return utf8.decode(buf.subarray(start, end));
}

export function summarizeSotwResponse(buf: Uint8Array): ResponseSummary {
  let typeUrl = '';
  let nonce = '';
  let version = '';
  let resourceCount = 0;
  const f = XdsField.DiscoveryResponse;
  scan(
    buf,
    (field, s, e) => {
      if (field === f.type_url) typeUrl = str(buf, s, e);
      else if (field === f.nonce) nonce = str(buf, s, e);
      else if (field === f.version_info) version = str(buf, s, e);
      else if (field === f.resources) resourceCount++;
    },
    new Set([f.type_url, f.nonce, f.version_info, f.resources]),
  );
  return { typeUrl, nonce, version, resourceCount };
}

export function summarizeDeltaResponse(buf: Uint8Array): ResponseSummary {
  let typeUrl = '';
  let nonce = '';
  let version = '';
  let resourceCount = 0;
  const f = XdsField.DeltaDiscoveryResponse;
  scan(
    buf,
    (field, s, e) => {
      if (field === f.type_url) typeUrl = str(buf, s, e);
      else if (field === f.nonce) nonce = str(buf, s, e);
      else if (field === f.system_version_info) version = str(buf, s, e);
      else if (field === f.resources) resourceCount++;
    },
    new Set([f.type_url, f.nonce, f.system_version_info, f.resources]),
  );
  return { typeUrl, nonce, version, resourceCount };
}

export function summarizeSotwRequest(buf: Uint8Array): RequestSummary {
  let typeUrl = '';
  let responseNonce = '';
  let versionInfo = '';
  let isNack = false;
  let hasNode = false;
  const f = XdsField.DiscoveryRequest;
  scan(
    buf,
    (field, s, e) => {
      if (field === f.type_url) typeUrl = str(buf, s, e);
      else if (field === f.response_nonce) responseNonce = str(buf, s, e);
      else if (field === f.version_info) versionInfo = str(buf, s, e);
      else if (field === f.error_detail) isNack = true;
      else if (field === f.node) hasNode = true;
    },
    new Set([f.type_url, f.response_nonce, f.version_info, f.error_detail, f.node]),
  );
  return { typeUrl, responseNonce, versionInfo, isNack, hasNode };
}

export function summarizeDeltaRequest(buf: Uint8Array): RequestSummary {
  let typeUrl = '';
  let responseNonce = '';
  let isNack = false;
  let hasNode = false;
  const f = XdsField.DeltaDiscoveryRequest;
  scan(
    buf,
    (field, s, e) => {
      if (field === f.type_url) typeUrl = str(buf, s, e);
      else if (field === f.response_nonce) responseNonce = str(buf, s, e);
      else if (field === f.error_detail) isNack = true;
      else if (field === f.node) hasNode = true;
    },
    new Set([f.type_url, f.response_nonce, f.error_detail, f.node]),
  );
  return { typeUrl, responseNonce, versionInfo: '', isNack, hasNode };
}

/** The resources of a SotW response as raw Any messages (type_url + packed value). */
export function sotwResources(buf: Uint8Array): { typeUrl: string; value: Uint8Array }[] {
  const out: { typeUrl: string; value: Uint8Array }[] = [];
  scan(buf, (_f, s, e) => out.push(decodeAny(buf.subarray(s, e))), new Set([XdsField.DiscoveryResponse.resources]));
  return out;
}

export function decodeAny(buf: Uint8Array): { typeUrl: string; value: Uint8Array } {
  let typeUrl = '';
  let value: Uint8Array = new Uint8Array(0);
  scan(
    buf,
    (field, s, e) => {
      if (field === XdsField.Any.type_url) typeUrl = str(buf, s, e);
      else value = buf.subarray(s, e);
    },
    new Set([XdsField.Any.type_url, XdsField.Any.value]),
  );
  return { typeUrl, value };
}

export interface AckFields {
  readonly typeUrl: string;
  readonly responseNonce: string;
  /** SotW: version being ACKed (the last good one for a NACK). Ignored for Delta. */
  readonly versionInfo?: string;
  /** Present for a NACK: google.rpc.Status. */
  readonly error?: { readonly code: number; readonly message: string };
}

function writeStatus(w: BinaryWriter, field: number, err: { code: number; message: string }): void {
  w.tag(field, WIRE_LEN).fork();
  if (err.code !== 0) w.tag(F.Status.code, WireType.Varint).int32(err.code);
  if (err.message) w.tag(F.Status.message, WIRE_LEN).string(err.message);
  w.join();
}

/** Encodes a SotW DiscoveryRequest (ACK, NACK or an initial subscription with no nonce). */
export function encodeSotwRequest(a: AckFields & { resourceNames?: readonly string[] }): Uint8Array {
  const f = F.DiscoveryRequest;
  const w = new BinaryWriter();
  if (a.versionInfo) w.tag(f.version_info, WIRE_LEN).string(a.versionInfo);
  for (const n of a.resourceNames ?? []) w.tag(f.resource_names, WIRE_LEN).string(n);
  if (a.typeUrl) w.tag(f.type_url, WIRE_LEN).string(a.typeUrl);
  if (a.responseNonce) w.tag(f.response_nonce, WIRE_LEN).string(a.responseNonce);
  if (a.error) writeStatus(w, f.error_detail, a.error);
  return w.finish();
}

/** Encodes a DeltaDiscoveryRequest (ACK, NACK or an initial wildcard subscription). */
export function encodeDeltaRequest(a: AckFields & { subscribe?: readonly string[] }): Uint8Array {
  const f = F.DeltaDiscoveryRequest;
  const w = new BinaryWriter();
  if (a.typeUrl) w.tag(f.type_url, WIRE_LEN).string(a.typeUrl);
  for (const n of a.subscribe ?? []) w.tag(f.resource_names_subscribe, WIRE_LEN).string(n);
  if (a.responseNonce) w.tag(f.response_nonce, WIRE_LEN).string(a.responseNonce);
  if (a.error) writeStatus(w, f.error_detail, a.error);
  return w.finish();
}

/** The resources of a Delta response: name, version and the packed Any of each. */
export function deltaResources(buf: Uint8Array): { name: string; version: string; resource: { typeUrl: string; value: Uint8Array } | undefined }[] {
  const out: { name: string; version: string; resource: { typeUrl: string; value: Uint8Array } | undefined }[] = [];
  scan(
    buf,
    (_f, s, e) => {
      const r = buf.subarray(s, e);
      let name = '';
      let version = '';
      let resource: { typeUrl: string; value: Uint8Array } | undefined;
      scan(
        r,
        (field, rs, re) => {
          if (field === XdsField.Resource.name) name = str(r, rs, re);
          else if (field === XdsField.Resource.version) version = str(r, rs, re);
          else resource = decodeAny(r.subarray(rs, re));
        },
        new Set([XdsField.Resource.name, XdsField.Resource.version, XdsField.Resource.resource]),
      );
      out.push({ name, version, resource });
    },
    new Set([XdsField.DeltaDiscoveryResponse.resources]),
  );
  return out;
}
