// Errors raised while building a bootstrap. Each carries a stable `code` for callers to branch on.

export class BootstrapError extends Error {
  readonly code: string = 'BOOTSTRAP_FAILED';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BootstrapError';
  }
}

/** Node metadata that Istio's typed decoding would refuse (e.g. `ISTIO_META_DNS_CAPTURE=yes`). */
export class NodeMetadataError extends BootstrapError {
  override readonly code = 'BOOTSTRAP_NODE_METADATA';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NodeMetadataError';
  }
}

/** A bootstrap template that cannot be read, parsed or executed; the message names the file. */
export class BootstrapTemplateError extends BootstrapError {
  override readonly code = 'BOOTSTRAP_TEMPLATE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BootstrapTemplateError';
  }
}
