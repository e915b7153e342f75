// Rebuilding an ECDS DiscoveryResponse / DeltaDiscoveryResponse with some resources replaced,
// straight on the wire: every other byte of the message (version, nonce, control plane, unknown
// fields, untouched resources, a Delta Resource's name/version/ttl/metadata...) is copied as it
// came, and only the `value` of a replaced resource's Any is new.

import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { forEachField, XdsField } from '../xds/wire.js';

const WIRE_LEN = WireType.LengthDelimited;
/** DiscoveryResponse.resources and DeltaDiscoveryResponse.resources are the same field. */
const RESOURCES = XdsField.DiscoveryResponse.resources;
/** Resource.resource (the Any) in a Delta response. */
const DELTA_RESOURCE_ANY = XdsField.Resource.resource;
const ANY_VALUE = XdsField.Any.value;

interface Field {
  readonly number: number;
  /** Start of the tag. */
  readonly start: number;
  /** Start of the payload (length-delimited fields). */
  readonly payload: number;
  readonly end: number;
  readonly wire: number;
}

function fields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  forEachField(buf, (number, wire, start, payload, end) => out.push({ number, start, payload, end, wire }));
  return out;
}

/** Tag and length of a length-delimited field, then its payload (not copied). */
function lenField(number: number, payload: Uint8Array): Uint8Array[] {
  return [new BinaryWriter().tag(number, WIRE_LEN).uint32(payload.length).finish(), payload];
}

/** An Any with `value` replaced (its type_url and anything else kept). */
function replaceAnyValue(anyBytes: Uint8Array, value: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  const fs = fields(anyBytes);
  const lastValue = fs.map((f) => f.number === ANY_VALUE && f.wire === WIRE_LEN).lastIndexOf(true);
  fs.forEach((f, i) => {
    if (f.number === ANY_VALUE && f.wire === WIRE_LEN) {
      if (i === lastValue) parts.push(...lenField(ANY_VALUE, value));
    } else {
      parts.push(anyBytes.subarray(f.start, f.end));
    }
  });
  if (lastValue < 0) parts.push(...lenField(ANY_VALUE, value));
  return Buffer.concat(parts);
}

function rebuild(buf: Uint8Array, replace: (index: number, payload: Uint8Array) => Uint8Array | undefined): Uint8Array {
  const parts: Uint8Array[] = [];
  let index = 0;
  let copyFrom = 0;
  for (const f of fields(buf)) {
    if (f.number !== RESOURCES || f.wire !== WIRE_LEN) continue;
    const next = replace(index++, buf.subarray(f.payload, f.end));
    if (next === undefined) continue;
    parts.push(buf.subarray(copyFrom, f.start), ...lenField(RESOURCES, next));
    copyFrom = f.end;
  }
  if (copyFrom === 0) return buf;
  parts.push(buf.subarray(copyFrom));
  return Buffer.concat(parts);
}

/** A SotW response whose resources[i].value is replaced for each i in `values`. */
export function replaceSotwResourceValues(buf: Uint8Array, values: ReadonlyMap<number, Uint8Array>): Uint8Array {
  return rebuild(buf, (i, any) => {
    const v = values.get(i);
    return v === undefined ? undefined : replaceAnyValue(any, v);
  });
}

/** A Delta response whose resources[i].resource.value is replaced for each i in `values`. */
export function replaceDeltaResourceValues(buf: Uint8Array, values: ReadonlyMap<number, Uint8Array>): Uint8Array {
  return rebuild(buf, (i, resource) => {
    const v = values.get(i);
    if (v === undefined) return undefined;
    const parts: Uint8Array[] = [];
    for (const f of fields(resource)) {
      if (f.number === DELTA_RESOURCE_ANY && f.wire === WIRE_LEN) parts.push(...lenField(DELTA_RESOURCE_ANY, replaceAnyValue(resource.subarray(f.payload, f.end), v)));
      else parts.push(resource.subarray(f.start, f.end));
    }
    return Buffer.concat(parts);
  });
}
