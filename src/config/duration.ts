// The one duration module. Durations arrive in two spellings: Go's time.ParseDuration ("1m30s",
// "500ms": env vars, flags, the stats annotations Istio parses with it) and proto3 JSON ("90s",
// "0.5s": ProxyConfig). Go's is parsed exactly, to the nanosecond (bigint), as Go does, overflow
// included; milliseconds are derived from that. ProxyConfig keeps its canonical proto3 JSON
// string so the bootstrap metadata matches Istio's byte for byte.

const UNITS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5
  'μs': 1_000n, // U+03BC
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

const MAX_INT64 = (1n << 63n) - 1n;

/** Go's time.ParseDuration: nanoseconds, or undefined where Go reports an error. */
export function parseGoDurationNs(text: string): bigint | undefined {
  let s = text;
  let negative = false;
  if (s[0] === '-' || s[0] === '+') {
    negative = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') return undefined;
  let total = 0n;
  const re = /^(\d*)(?:\.(\d*))?([^\d.]+)/;
  while (s !== '') {
    const m = re.exec(s);
    if (!m) return undefined;
    const [whole, intPart = '', fracPart, unitName = ''] = m;
    if (intPart === '' && (fracPart === undefined || fracPart === '')) return undefined; // no digits
    const unit = UNITS[unitName];
    if (unit === undefined) return undefined;
    let v = BigInt(intPart || '0') * unit;
    if (fracPart) v += (BigInt(fracPart) * unit) / 10n ** BigInt(fracPart.length);
    total += v;
    if (total > MAX_INT64 + (negative ? 1n : 0n)) return undefined;
    s = s.slice(whole.length);
  }
  return negative ? -total : total;
}

/** A time.Duration in the template data. Prints as an Envoy (proto3 JSON) duration: "10s", "0.5s". */
export class GoDuration {
  constructor(readonly nanoseconds: bigint) {}

  String(): string {
    const neg = this.nanoseconds < 0n;
    const abs = neg ? -this.nanoseconds : this.nanoseconds;
    const secs = abs / 1_000_000_000n;
    const nanos = abs % 1_000_000_000n;
    const frac = nanos === 0n ? '' : `.${nanos.toString().padStart(9, '0').replace(/0+$/, '')}`;
    return `${neg ? '-' : ''}${secs}${frac}s`;
  }
}

/** Go's time.ParseDuration in milliseconds (surrounding blanks ignored); undefined when malformed. */
export function parseGoDuration(text: string): number | undefined {
  const ns = parseGoDurationNs(text.trim());
  return ns === undefined ? undefined : Number(ns) / 1e6;
}

/** Formats milliseconds as proto3 JSON Duration ("2s", "0.100s"). */
export function formatProtoDuration(ms: number): string {
  const negative = ms < 0;
  const abs = Math.abs(ms);
  const seconds = Math.floor(abs / 1000);
  const nanos = Math.round((abs - seconds * 1000) * 1e6);
  let frac = '';
  if (nanos !== 0) {
    // proto3 JSON uses 3, 6 or 9 fractional digits
    const nine = String(nanos).padStart(9, '0');
    frac = '.' + (nine.endsWith('000000') ? nine.slice(0, 3) : nine.endsWith('000') ? nine.slice(0, 6) : nine);
  }
  return `${negative ? '-' : ''}${seconds}${frac}s`;
}

/** Accepts proto3 JSON ("2s", "0.5s") and, leniently, Go spellings ("1m", "500ms"); undefined when neither. */
export function parseAnyDuration(text: string): number | undefined {
  const proto = /^(-?\d+)(?:\.(\d{1,9}))?s$/.exec(text.trim());
  if (proto) {
    const sec = Number(proto[1]);
    const frac = proto[2] ? Number(proto[2].padEnd(9, '0')) / 1e6 : 0;
    return sec * 1000 + (sec < 0 || proto[1]!.startsWith('-') ? -frac : frac);
  }
  return parseGoDuration(text);
}

/** Go's Duration.String(), used where Istio prints durations (logs, Envoy flags are computed separately). */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const neg = ms < 0;
  let rest = Math.abs(ms);
  if (rest < 1000) return `${neg ? '-' : ''}${+rest.toFixed(6)}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = +(rest / 1000).toFixed(9);
  return `${neg ? '-' : ''}${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${s}s`;
}
