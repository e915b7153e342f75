// JSON text the way Go's encoding/json writes it, for everything pilot-agent serialises with
// json.Marshal (node metadata, runtime flags, converted option values): object keys sorted by
// their UTF-8 bytes (Go sorts map keys that way), `<`, `>`, `&`, U+2028 and U+2029 escaped,
// unpaired surrogates replaced by U+FFFD (Go writes invalid UTF-8 as U+FFFD). Numbers use the
// shortest round-trip form, which for float64 is the same in Go and JavaScript.
//
// Values are plain JSON data: strings, finite numbers, booleans, null, arrays and plain objects.
// `undefined` object members are skipped; any other value is a programming error.

export type GoJson = string | number | boolean | null | readonly GoJson[] | { readonly [k: string]: GoJson | undefined };

/** Compares two strings by their UTF-8 encoding (= by code point), as Go compares strings. */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (0xD800-0xDFFF) encode code points above 0xFFFF, which sort after every BMP char.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Keys of a plain object in Go's map order, skipping undefined members. */
export function goSortedKeys(o: { readonly [k: string]: unknown }): string[] {
  return Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort(compareUtf8);
}

const SHORT_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

function hex4(code: number): string {
  return `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * A Go-escaped JSON string literal, quotes included: the one encoder of Go JSON strings (json.Marshal's,
 * and with `escapeHTML` false, an Encoder with SetEscapeHTML(false)).
 */
export function goQuoteJson(s: string, escapeHTML = true): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let rep: string | undefined;
    if (c < 0x20 || c === 0x22 || c === 0x5c) rep = SHORT_ESCAPES[s[i]!] ?? hex4(c);
    else if (c === 0x2028 || c === 0x2029 || (escapeHTML && (c === 0x3c || c === 0x3e || c === 0x26))) rep = hex4(c);
    else if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++; // a valid pair is copied as it is
        continue;
      }
      rep = '\ufffd';
    } else if (c >= 0xdc00 && c <= 0xdfff) rep = '\ufffd';
    if (rep !== undefined) {
      out += s.slice(start, i) + rep;
      start = i + 1;
    }
  }
  return out + s.slice(start) + '"';
}

function formatNumber(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`json: unsupported value: ${n}`);
  return Object.is(n, -0) ? '-0' : String(n);
}

/** Go's json.Marshal of a JSON value (compact form). */
export function goJsonMarshal(v: GoJson | undefined): string {
  if (v === null || v === undefined) return 'null';
  switch (typeof v) {
    case 'string':
      return goQuoteJson(v);
    case 'number':
      return formatNumber(v);
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      break;
  }
  if (Array.isArray(v)) return `[${(v as readonly GoJson[]).map((x) => goJsonMarshal(x)).join(',')}]`;
  const o = v as { readonly [k: string]: GoJson | undefined };
  return `{${goSortedKeys(o).map((k) => `${goQuoteJson(k)}:${goJsonMarshal(o[k])}`).join(',')}}`;
}

/** Deep copy of a JSON value with every object's keys in Go's order (for JSON.stringify with indentation). */
export function goSortDeep(v: GoJson | undefined): GoJson | undefined {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return (v as readonly GoJson[]).map((x) => goSortDeep(x) ?? null);
  const o = v as { readonly [k: string]: GoJson | undefined };
  const out: { [k: string]: GoJson } = {};
  for (const k of goSortedKeys(o)) out[k] = goSortDeep(o[k]) ?? null;
  return out;
}
