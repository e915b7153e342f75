/**
 * Go encoding/json Marshal / MarshalIndent over the value model of values.ts:
 * map keys sorted, struct (class instance) fields in declaration order, HTML-sensitive
 * characters escaped as \u003c \u003e \u0026 (unless escapeHTML is false), U+2028/2029
 * escaped, []byte as base64, NaN/Inf and functions rejected ("json: unsupported ...").
 * Objects with a toJSON() method (e.g. Date) are encoded from its result.
 */
import { goQuoteJson } from '../go-json.js';
import { GoFloat, isGoInt, kindOf, mapGet, sortedMapKeys, structFields, typeName } from './values.js';

export class JSONMarshalError extends Error {
  readonly code = 'TEMPLATE_JSON';
}

export interface MarshalOptions {
  escapeHTML?: boolean;
  /** MarshalIndent's indent string; '' for compact output. */
  indent?: string;
  prefix?: string;
}

function jsonNumber(v: number): string {
  if (!Number.isFinite(v)) throw new JSONMarshalError(`json: unsupported value: ${v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : 'NaN'}`);
  if (isGoInt(v) && !Number.isSafeInteger(v)) return BigInt(v).toString();
  // JavaScript's shortest representation matches Go's encoder ('f' format, exponent for <1e-6 / >=1e21).
  return Object.is(v, -0) ? '-0' : String(v);
}

function base64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}

export function marshal(v: unknown, opts: MarshalOptions = {}): string {
  const escapeHTML = opts.escapeHTML !== false;
  const indent = opts.indent ?? '';
  const prefix = opts.prefix ?? '';
  const seen = new Set<object>();

  const enc = (x: unknown, depth: number): string => {
    switch (typeof x) {
      case 'undefined':
        return 'null';
      case 'boolean':
        return x ? 'true' : 'false';
      case 'number':
        return jsonNumber(x);
      case 'bigint':
        return x.toString();
      case 'string':
        return goQuoteJson(x, escapeHTML);
      case 'function':
      case 'symbol':
        throw new JSONMarshalError(`json: unsupported type: ${typeName(x)}`);
    }
    if (x === null) return 'null';
    if (x instanceof GoFloat) return jsonNumber(x.value);
    const obj = x as object;
    if (seen.has(obj)) throw new JSONMarshalError(`json: unsupported value: encountered a cycle via ${typeName(obj)}`);
    const nl = indent ? '\n' + prefix + indent.repeat(depth + 1) : '';
    const nlEnd = indent ? '\n' + prefix + indent.repeat(depth) : '';
    const colon = indent ? ': ' : ':';
    seen.add(obj);
    try {
      const toJSON = (obj as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') return enc((toJSON as () => unknown).call(obj), depth);
      switch (kindOf(obj)) {
        case 'bytes':
          return '"' + base64(obj as Uint8Array) + '"';
        case 'slice': {
          const a = obj as unknown[];
          if (a.length === 0) return '[]';
          return '[' + a.map((e) => nl + enc(e, depth + 1)).join(',') + nlEnd + ']';
        }
        case 'map': {
          const keys = sortedMapKeys(obj);
          if (keys.length === 0) return '{}';
          const parts = keys.map((k) => nl + goQuoteJson(String(k), escapeHTML) + colon + enc(mapGet(obj, k), depth + 1));
          return '{' + parts.join(',') + nlEnd + '}';
        }
        default: {
          const fields = structFields(obj).filter(([, val]) => val !== undefined);
          if (fields.length === 0) return '{}';
          const parts = fields.map(([k, val]) => nl + goQuoteJson(k, escapeHTML) + colon + enc(val, depth + 1));
          return '{' + parts.join(',') + nlEnd + '}';
        }
      }
    } finally {
      seen.delete(obj);
    }
  };
  return enc(v, 0);
}

/** Decodes JSON like Go's json.Unmarshal into interface{} (numbers are float64). */
export function unmarshal(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch (e) {
    throw new JSONMarshalError(e instanceof Error ? e.message : String(e));
  }
}
