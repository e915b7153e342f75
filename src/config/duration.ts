// Durations arrive in two spellings: Go's time.ParseDuration ("1m30s", "500ms", used by env vars)
// and proto3 JSON ("90s", "0.5s", used by ProxyConfig). Both parse to milliseconds here; ProxyConfig
// keeps its canonical proto3 JSON string so the bootstrap metadata matches Istio's byte for byte.

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a Go duration string into milliseconds; returns undefined when malformed. */
export function parseGoDuration(text: string): number | undefined {
  const s = text.trim();
  if (s === '0') return 0;
  const m = /^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.exec(s);
  if (!m) return undefined;
  let total = 0;
  for (const part of s.replace(/^[+-]/, '').matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(part[1]) * UNIT_MS[part[2]!]!;
  }
  return m[1] === '-' ? -total : total;
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
