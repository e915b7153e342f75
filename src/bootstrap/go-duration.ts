// Go's time.ParseDuration, exact to the nanosecond (bigint), for the stats annotations whose
// values Istio parses with it (`sidecar.istio.io/statsFlushInterval: 10s`).

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

/** Nanoseconds, or undefined where Go reports an error. */
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
