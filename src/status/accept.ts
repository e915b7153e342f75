// Content negotiation of the merged metrics, as Istio's status server does it:
// - the Accept header sent upstream keeps only the media types a source may answer with (Envoy:
//   text; apps: text or OpenMetrics), wildcards replaced by the most basic matching type, and
//   quality values rewritten in order;
// - the format of the merged answer follows the application's Content-Type.

export const FMT_TEXT = 'text/plain; version=0.0.4; charset=utf-8';
export const FMT_OPENMETRICS_1_0_0 = 'application/openmetrics-text; version=1.0.0; charset=utf-8';
export const FMT_OPENMETRICS_0_0_1 = 'application/openmetrics-text; version=0.0.1; charset=utf-8';
export type MetricsFormat = typeof FMT_TEXT | typeof FMT_OPENMETRICS_1_0_0 | typeof FMT_OPENMETRICS_0_0_1;

export const ENVOY_ACCEPTED_TYPES: readonly string[] = ['text/*', 'text/plain'];
export const APP_ACCEPTED_TYPES: readonly string[] = ['text/*', 'text/plain', 'application/openmetrics-text'];

export interface MediaType {
  readonly type: string;
  readonly params: Record<string, string>;
}

const TSPECIALS = '()<>@,;:\\"/[]?=';
const isTokenChar = (c: string): boolean => c > ' ' && c < '\x7f' && !TSPECIALS.includes(c);
const isToken = (s: string): boolean => s.length > 0 && [...s].every(isTokenChar);

function consumeToken(v: string): [string, string] {
  let i = 0;
  while (i < v.length && isTokenChar(v[i]!)) i++;
  return [v.slice(0, i), v.slice(i)];
}

function consumeValue(v: string): [string, string] | undefined {
  if (v.startsWith('"')) {
    let out = '';
    for (let i = 1; i < v.length; i++) {
      const c = v[i]!;
      if (c === '"') return [out, v.slice(i + 1)];
      if (c === '\\' && i + 1 < v.length) {
        out += v[++i];
        continue;
      }
      if (c === '\r' || c === '\n') return undefined;
      out += c;
    }
    return undefined;
  }
  const [tok, rest] = consumeToken(v);
  return tok ? [tok, rest] : undefined;
}

/** Go's mime.ParseMediaType (without RFC 2231 continuations). Throws on malformed input. */
export function parseMediaType(v: string): MediaType {
  const semi = v.indexOf(';');
  const base = (semi < 0 ? v : v.slice(0, semi)).trim().toLowerCase();
  const [major, afterMajor] = consumeToken(base);
  if (!major) throw new Error('mime: no media type');
  if (afterMajor !== '') {
    if (!afterMajor.startsWith('/')) throw new Error('mime: expected slash after first token');
    const [minor, rest] = consumeToken(afterMajor.slice(1));
    if (!minor) throw new Error('mime: expected token after slash');
    if (rest !== '') throw new Error('mime: unexpected content after media subtype');
  }
  const params: Record<string, string> = {};
  let rest = semi < 0 ? '' : v.slice(semi);
  for (;;) {
    rest = rest.replace(/^[ \t]+/, '');
    if (rest === '') break;
    if (rest.trim() === ';') break; // trailing semicolons are ignored
    if (!rest.startsWith(';')) throw new Error('mime: invalid media parameter');
    rest = rest.slice(1).replace(/^[ \t]+/, '');
    const [key, afterKey] = consumeToken(rest);
    if (!key) throw new Error('mime: invalid media parameter');
    let r = afterKey.replace(/^[ \t]+/, '');
    if (!r.startsWith('=')) throw new Error('mime: invalid media parameter');
    r = r.slice(1).replace(/^[ \t]+/, '');
    const value = consumeValue(r);
    if (!value) throw new Error('mime: invalid media parameter');
    const k = key.toLowerCase();
    if (k in params) throw new Error('mime: duplicate parameter name');
    params[k] = value[0];
    rest = value[1];
  }
  return { type: base, params };
}

/** Go's mime.FormatMediaType: lower-case type, parameters sorted by name, quoted when needed. */
export function formatMediaType(m: MediaType): string {
  let out = m.type.toLowerCase();
  for (const k of Object.keys(m.params).sort()) {
    const v = m.params[k]!;
    out += `; ${k.toLowerCase()}=${isToken(v) ? v : `"${v.replace(/(["\\])/g, '\\$1')}"`}`;
  }
  return out;
}

const key = (m: MediaType): string => [m.type, ...Object.keys(m.params).sort().map((k) => `${k}=${m.params[k]}`)].join(';');

const TEXT_004: MediaType = { type: 'text/plain', params: { version: '0.0.4' } };
const OPENMETRICS_001: MediaType = { type: 'application/openmetrics-text', params: { version: '0.0.1' } };

/**
 * Istio's allowedContentTypes: the Accept header to send to a source allowed to answer with
 * `allowed` types. `*` and `* /*` become text 0.0.4, `application/*` OpenMetrics 0.0.1; an
 * unparsable header or nothing left falls back to text 0.0.4.
 */
export function allowedContentTypes(acceptHeader: string | undefined, allowed: readonly string[]): string {
  let encodings: MediaType[];
  try {
    encodings = (acceptHeader ?? '').split(',').map((e) => {
      const m = parseMediaType(e);
      const params = { ...m.params };
      delete params.q; // quality values are not relevant here
      return { type: m.type, params };
    });
  } catch {
    return formatMediaType(TEXT_004).replace(/; /g, ';');
  }
  const accepted: MediaType[] = [];
  const used = new Set<string>();
  const take = (m: MediaType): void => {
    const k = key(m);
    if (used.has(k)) return;
    used.add(k);
    accepted.push(m);
  };
  for (const e of encodings) {
    if (e.type === '*/*' || e.type === '*') {
      if (allowed.includes(TEXT_004.type)) take(TEXT_004);
    } else if (e.type === 'application/*') {
      if (allowed.includes(OPENMETRICS_001.type)) take(OPENMETRICS_001);
    } else if (allowed.includes(e.type)) {
      take(e);
    }
  }
  if (accepted.length === 0) return formatMediaType(TEXT_004).replace(/; /g, ';');
  return accepted.map((e, i) => formatMediaType({ type: e.type, params: { ...e.params, q: `0.${accepted.length - i}` } })).join(',');
}

/** Istio's negotiateMetricsFormat: the format an application's Content-Type stands for. */
export function negotiateMetricsFormat(contentType: string | undefined): MetricsFormat {
  let m: MediaType;
  try {
    m = parseMediaType(contentType ?? '');
  } catch {
    return FMT_TEXT;
  }
  if (m.type === 'application/openmetrics-text') {
    const v = m.params.version ?? '';
    if (v === '1.0.0') return FMT_OPENMETRICS_1_0_0;
    if (v === '0.0.1' || v === '') return FMT_OPENMETRICS_0_0_1;
  }
  return FMT_TEXT;
}

export const isOpenMetrics = (f: MetricsFormat): boolean => f !== FMT_TEXT;
