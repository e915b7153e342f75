// istiod's answers to the debug port's requests (istio.io/debug/...), read straight from the wire
// and rendered the way Istio's agent rendered them (pkg/istio-agent xds_proxy.go, makeTapHandler,
// removed from Istio in 1.25):
//   - a Delta answer is seen as the SotW DiscoveryResponse it stands for (system_version_info as
//     version_info, the resources' Any, type, nonce, control_plane), as forwardDeltaToTap did;
//   - JSON: proto3 JSON (protomarshal.MarshalIndent, two-space indent, field-number order) when
//     every resource's type can be resolved, else Go's encoding/json of the message (snake_case
//     field names, each Any's value as base64), with Istio's warning. The resources istiod puts
//     in debug answers (envoy.service.status.v3.ClientConfig, envoy.admin.v3 config dumps,
//     istio.io/debug payloads) are not types Istio's agent binary links, so they always take the
//     second form there; the same types take it here.

import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { goQuoteJson } from '../bootstrap/go-json.js';
import type { TapResult } from './xds-proxy.js';
import { deltaResources, scan, sotwResources, XdsField } from './wire.js';

export interface AnyMessage {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

/** A debug answer as a SotW DiscoveryResponse. */
export interface DebugResponse {
  readonly versionInfo: string;
  readonly resources: readonly AnyMessage[];
  readonly typeUrl: string;
  readonly nonce: string;
  /** control_plane.identifier, when istiod set it (it does for syncz). */
  readonly controlPlane?: string;
}

const utf8 = new TextDecoder();

function controlPlaneIdentifier(buf: Uint8Array): string {
  let id = '';
  scan(buf, (_f, s, e) => (id = utf8.decode(buf.subarray(s, e))), new Set([1]));
  return id;
}

/** Reads istiod's answer (SotW or Delta) as the SotW response Istio's tap handler saw. */
export function readDebugResponse(r: TapResult): DebugResponse {
  const buf = r.message;
  const f = r.protocol === 'sotw' ? XdsField.DiscoveryResponse : XdsField.DeltaDiscoveryResponse;
  const version = r.protocol === 'sotw' ? XdsField.DiscoveryResponse.version_info : XdsField.DeltaDiscoveryResponse.system_version_info;
  let versionInfo = '';
  let typeUrl = '';
  let nonce = '';
  let controlPlane: string | undefined;
  scan(
    buf,
    (field, s, e) => {
      if (field === version) versionInfo = utf8.decode(buf.subarray(s, e));
      else if (field === f.type_url) typeUrl = utf8.decode(buf.subarray(s, e));
      else if (field === f.nonce) nonce = utf8.decode(buf.subarray(s, e));
      else controlPlane = controlPlaneIdentifier(buf.subarray(s, e));
    },
    new Set([version, f.type_url, f.nonce, f.control_plane]),
  );
  const resources = r.protocol === 'sotw' ? sotwResources(buf) : deltaResources(buf).flatMap((x) => (x.resource ? [x.resource] : []));
  return { versionInfo, resources, typeUrl, nonce, ...(controlPlane !== undefined ? { controlPlane } : {}) };
}

/** The SotW DiscoveryResponse bytes of a debug answer (the gRPC tap's reply). */
export function encodeDebugResponse(r: DebugResponse): Uint8Array {
  const f = XdsField.DiscoveryResponse;
  const LEN = WireType.LengthDelimited;
  const w = new BinaryWriter();
  if (r.versionInfo) w.tag(f.version_info, LEN).string(r.versionInfo);
  for (const any of r.resources) {
    w.tag(f.resources, LEN).fork();
    if (any.typeUrl) w.tag(XdsField.Any.type_url, LEN).string(any.typeUrl);
    if (any.value.length > 0) w.tag(XdsField.Any.value, LEN).bytes(any.value);
    w.join();
  }
  if (r.typeUrl) w.tag(f.type_url, LEN).string(r.typeUrl);
  if (r.nonce) w.tag(f.nonce, LEN).string(r.nonce);
  if (r.controlPlane !== undefined) {
    w.tag(f.control_plane, LEN).fork();
    if (r.controlPlane) w.tag(1, LEN).string(r.controlPlane);
    w.join();
  }
  return w.finish();
}

/** Members of a JSON object in order, empty ones left out (proto3 JSON and Go's omitempty alike). */
type Members = readonly (readonly [string, string | undefined])[];

function object(members: Members, indent: string | undefined, depth: number): string {
  const kept = members.filter((m): m is readonly [string, string] => m[1] !== undefined);
  if (indent === undefined) return `{${kept.map(([k, v]) => `${goQuoteJson(k)}:${v}`).join(',')}}`;
  if (kept.length === 0) return '{}';
  const pad = indent.repeat(depth + 1);
  return `{\n${kept.map(([k, v]) => `${pad}${goQuoteJson(k)}: ${v}`).join(',\n')}\n${indent.repeat(depth)}}`;
}

const str = (s: string): string | undefined => (s === '' ? undefined : goQuoteJson(s));

/**
 * The body Istio's agent answered with, and the warning it logged when the resources could not be
 * rendered as proto3 JSON.
 */
export function debugResponseJson(r: DebugResponse): { body: string; warning?: string } {
  const unresolved = r.resources[0];
  if (!unresolved) {
    // protomarshal.MarshalIndent(response, "  ")
    const indent = '  ';
    const controlPlane = r.controlPlane === undefined ? undefined : object([['identifier', str(r.controlPlane)]], indent, 1);
    const body = object(
      [
        ['versionInfo', str(r.versionInfo)],
        ['typeUrl', str(r.typeUrl)],
        ['nonce', str(r.nonce)],
        ['controlPlane', controlPlane],
      ],
      indent,
      0,
    );
    return { body };
  }
  // json.Marshal(response): struct field order, snake_case tags, omitempty, []byte as base64
  const anys = r.resources.map((a) => object([['type_url', str(a.typeUrl)], ['value', a.value.length > 0 ? goQuoteJson(Buffer.from(a.value).toString('base64')) : undefined]], undefined, 0));
  const body = object(
    [
      ['version_info', str(r.versionInfo)],
      ['resources', `[${anys.join(',')}]`],
      ['type_url', str(r.typeUrl)],
      ['nonce', str(r.nonce)],
      ['control_plane', r.controlPlane === undefined ? undefined : object([['identifier', str(r.controlPlane)]], undefined, 0)],
    ],
    undefined,
    0,
  );
  return { body, warning: `could not marshal istiod response as pb: unable to resolve ${goQuoteJson(unresolved.typeUrl)}: proto: not found` };
}
