/**
 * Errors raised while parsing or executing a template. Messages follow Go's
 * text/template wording:
 *
 *   template: NAME:LINE:COL: unexpected "}" in operand
 *   template: NAME:LINE:COL: executing "NAME" at <.a.b>: nil pointer evaluating interface {}.b
 *
 * LINE is 1-based. COL is Go's ErrorContext column: the 0-based byte offset of the
 * offending token within its line. (Go's own parse errors print only the line; we
 * add the column, computed the same way as Go's execution errors.)
 */

export type TemplateErrorPhase = 'parse' | 'exec';

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
  readonly code = 'TEMPLATE';

  constructor(
    message: string,
    /** 'parse' or 'exec'. */
    readonly phase: TemplateErrorPhase,
    /** Name of the template file (the top-level template's name). */
    readonly templateName: string,
    /** 1-based line, or 0 when the error has no position. */
    readonly line: number,
    /** 0-based byte column within the line (Go's convention). */
    readonly column: number,
    /** The message without the "template: name:line:col:" prefix. */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Line (1-based) and Go-style column (0-based UTF-8 byte offset in the line) of `pos` in `text`. */
export function locate(text: string, pos: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < pos; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  const prefix = text.slice(lineStart, pos);
  let column = prefix.length;
  for (let i = 0; i < prefix.length; i++) {
    if (prefix.charCodeAt(i) > 0x7f) {
      column = new TextEncoder().encode(prefix).length;
      break;
    }
  }
  return { line, column };
}
