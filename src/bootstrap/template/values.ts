/**
 * The Go value model used by the template engine.
 *
 * Template data is plain JavaScript, mapped onto Go's types as follows:
 *
 * | JavaScript                         | Go                         |
 * | ---------------------------------- | -------------------------- |
 * | `undefined`                        | invalid value ("no value"), e.g. a missing map key |
 * | `null`                             | nil `interface{}`           |
 * | `boolean`                          | `bool`                     |
 * | integral `number` (abs < 2^63)     | `int`                      |
 * | other `number`, {@link GoFloat}    | `float64`                  |
 * | `bigint`                           | `int` (64-bit)             |
 * | `string`                           | `string`                   |
 * | `Array`                            | `[]interface {}`           |
 * | `Uint8Array`                       | `[]uint8` (bytes)          |
 * | plain object / `Map`               | `map[string]interface {}` (keys sorted when ranged/printed) |
 * | class instance                     | struct: own properties are fields, prototype functions are methods |
 * | `function`                         | `func`                     |
 *
 * A {@link GoFloat} box exists only so that integral float literals in a template
 * (`1.0`, `1e6`) keep their float64 kind, as in Go; it is unwrapped before values
 * reach user-supplied functions.
 */

import { compareUtf8 } from '../go-json.js';

/** A float64 whose value happens to be integral (e.g. the template literal `1e6`). */
export class GoFloat {
  constructor(readonly value: number) {}
}

/** Mark a number as a Go float64 even when it is integral. */
export function goFloat(n: number): GoFloat | number {
  return Number.isInteger(n) ? new GoFloat(n) : n;
}

export type Kind =
  | 'invalid'
  | 'nil'
  | 'bool'
  | 'int'
  | 'float'
  | 'string'
  | 'slice'
  | 'bytes'
  | 'map'
  | 'struct'
  | 'func';

const INT_LIMIT = 2 ** 63;

export function isGoInt(n: number): boolean {
  return Number.isInteger(n) && Math.abs(n) < INT_LIMIT;
}

export function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

export function kindOf(v: unknown): Kind {
  switch (typeof v) {
    case 'undefined':
      return 'invalid';
    case 'boolean':
      return 'bool';
    case 'number':
      return isGoInt(v) ? 'int' : 'float';
    case 'bigint':
      return 'int';
    case 'string':
      return 'string';
    case 'function':
      return 'func';
    case 'object':
      if (v === null) return 'nil';
      if (v instanceof GoFloat) return 'float';
      if (Array.isArray(v)) return 'slice';
      if (v instanceof Uint8Array) return 'bytes';
      if (v instanceof Map) return 'map';
      if (isPlainObject(v)) return 'map';
      return 'struct';
    default:
      return 'struct';
  }
}

/** Go's type name for a value, as `%T` prints it. */
export function typeName(v: unknown): string {
  switch (kindOf(v)) {
    case 'invalid':
    case 'nil':
      return '<nil>';
    case 'bool':
      return 'bool';
    case 'int':
      return 'int';
    case 'float':
      return 'float64';
    case 'string':
      return 'string';
    case 'slice':
      return '[]interface {}';
    case 'bytes':
      return '[]uint8';
    case 'map':
      return 'map[string]interface {}';
    case 'func':
      return 'func(...interface {}) interface {}';
    case 'struct': {
      const ctor = (v as { constructor?: { name?: string } }).constructor;
      return ctor?.name ? ctor.name : 'struct {}';
    }
  }
}

/** Numeric value of an int/float value (bigint converted). */
export function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof GoFloat) return v.value;
  return NaN;
}

/** Strip the GoFloat box (deeply not needed: boxes only occur at top level). */
export function unbox(v: unknown): unknown {
  return v instanceof GoFloat ? v.value : v;
}

/** Go's truth: false, 0, nil, and empty strings/slices/maps are false; structs are true. */
export function isTrue(v: unknown): boolean {
  switch (typeof v) {
    case 'undefined':
      return false;
    case 'boolean':
      return v;
    case 'number':
      return v !== 0;
    case 'bigint':
      return v !== 0n;
    case 'string':
      return v.length > 0;
    case 'function':
      return true;
    case 'object':
      if (v === null) return false;
      if (v instanceof GoFloat) return v.value !== 0;
      if (Array.isArray(v) || v instanceof Uint8Array) return v.length > 0;
      if (v instanceof Map) return v.size > 0;
      if (isPlainObject(v)) return hasEntries(v);
      return true;
    default:
      return true;
  }
}

function hasEntries(m: object): boolean {
  const rec = m as Record<string, unknown>;
  for (const k in rec) {
    if (Object.prototype.hasOwnProperty.call(rec, k) && rec[k] !== undefined) return true;
  }
  return false;
}

/** Keys of a map value (plain object or Map), in Go's sorted order. */
export function sortedMapKeys(m: object): unknown[] {
  if (m instanceof Map) {
    const keys = [...m.keys()];
    return keys.sort(compareKeys);
  }
  return mapKeys(m).sort(compareStrings);
}

/** Own enumerable keys whose value is not undefined (undefined = absent). */
export function mapKeys(m: object): string[] {
  const rec = m as Record<string, unknown>;
  const out: string[] = [];
  for (const k in rec) {
    if (Object.prototype.hasOwnProperty.call(rec, k) && rec[k] !== undefined) out.push(k);
  }
  return out;
}

export function mapGet(m: object, key: unknown): unknown {
  if (m instanceof Map) return m.get(key);
  if (typeof key !== 'string') return undefined;
  return Object.prototype.hasOwnProperty.call(m, key) ? (m as Record<string, unknown>)[key] : undefined;
}

export function mapLen(m: object): number {
  return m instanceof Map ? m.size : mapKeys(m).length;
}

/** Go's string order (by UTF-8 bytes). */
export const compareStrings = compareUtf8;

function compareKeys(a: unknown, b: unknown): number {
  const ka = kindOf(a);
  const kb = kindOf(b);
  if (ka !== kb) return compareStrings(ka, kb);
  if (ka === 'int' || ka === 'float') {
    const x = toNumber(a);
    const y = toNumber(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (ka === 'string') return compareStrings(a as string, b as string);
  if (ka === 'bool') return (a ? 1 : 0) - (b ? 1 : 0);
  return 0;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

export function utf8Bytes(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

export function utf8String(b: Uint8Array): string {
  return utf8Decoder.decode(b);
}

/** Length of a string in bytes, as Go's len() reports it. */
export function byteLength(s: string): number {
  // fast path for ASCII
  let ascii = true;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) {
      ascii = false;
      break;
    }
  }
  return ascii ? s.length : utf8Bytes(s).length;
}

/** Whether an object has a callable method (on its prototype chain, not an own field). */
export function findMethod(obj: object, name: string): ((...args: unknown[]) => unknown) | undefined {
  if (isPlainObject(obj) || obj instanceof Map || Array.isArray(obj)) return undefined;
  if (Object.prototype.hasOwnProperty.call(obj, name)) return undefined;
  let proto = Object.getPrototypeOf(obj) as object | null;
  while (proto && proto !== Object.prototype) {
    const desc = Object.getOwnPropertyDescriptor(proto, name);
    if (desc) {
      if (typeof desc.value === 'function' && name !== 'constructor') {
        return desc.value as (...args: unknown[]) => unknown;
      }
      return undefined;
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return undefined;
}

/** A Go Stringer / error: a struct-like object with String()/Error() or a custom toString(). */
export function stringerOf(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || kindOf(v) !== 'struct') return undefined;
  if (v instanceof Error) return v.message;
  const str = findMethod(v, 'String') ?? findMethod(v, 'Error');
  if (str) return String(str.call(v));
  const ts = (v as { toString?: unknown }).toString;
  if (typeof ts === 'function' && ts !== Object.prototype.toString) return String((ts as () => unknown).call(v));
  return undefined;
}

/** Struct fields (own enumerable properties), in declaration order. */
export function structFields(v: object): [string, unknown][] {
  return Object.entries(v).filter(([, x]) => typeof x !== 'function');
}
