// Configuration problems are collected, not thrown one by one: a user fixing a pod spec wants
// every bad value in one start-up attempt.

export interface ConfigIssue {
  /** Where the value came from: `env PROXY_CONFIG`, `flag --concurrency`, `file ./etc/istio/pod/annotations`... */
  readonly source: string;
  /** The field inside that source (`drainDuration`, `tracing.zipkin.address`), empty when the whole source is bad. */
  readonly field: string;
  readonly value: string;
  readonly message: string;
}

export function formatIssue(i: ConfigIssue): string {
  const where = i.field ? `${i.source}: ${i.field}` : i.source;
  return `${where}: ${i.message} (value: ${JSON.stringify(i.value)})`;
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly issues: readonly ConfigIssue[],
    /** What was warned about on the way (bad values replaced by defaults): said too, before the error. */
    readonly warnings: readonly string[] = [],
  ) {
    super(`invalid configuration (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n  ${issues.map(formatIssue).join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** The longest value an error quotes in full: a bad value is named, not dumped. */
const MAX_SHOWN_VALUE = 1024;

/** A bad value as an error shows it; never throws (a value too deep for JSON.stringify is described). */
function shown(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    text = `<${Array.isArray(value) ? 'array' : typeof value} too deeply nested to print>`;
  }
  return text.length > MAX_SHOWN_VALUE ? `${text.slice(0, MAX_SHOWN_VALUE)}... (${text.length} characters)` : text;
}

/** Accumulates issues; `throwIfAny()` raises one ConfigError carrying all of them. */
export class IssueList {
  readonly issues: ConfigIssue[] = [];

  add(source: string, field: string, value: unknown, message: string): void {
    this.issues.push({ source, field, value: shown(value), message });
  }

  throwIfAny(warnings: readonly string[] = []): void {
    if (this.issues.length > 0) throw new ConfigError(this.issues, warnings);
  }
}
