/**
 * The catalogue of Vigil's coded errors. Every error a person may see carries a stable code
 * (VIGIL_ERR_...) so that logs, metrics and support notes can refer to it, and a message that
 * says what was wrong, where, and what to do about it.
 */
export type VigilErrorCode =
  | 'VIGIL_ERR_CONFIG_INVALID'
  | 'VIGIL_ERR_CONFIG_READ'
  | 'VIGIL_ERR_MANIFEST_INVALID'
  | 'VIGIL_ERR_MODEL_FILE_MISMATCH'
  | 'VIGIL_ERR_MODEL_SIGNATURE'
  | 'VIGIL_ERR_ROLLOUT'
  | 'VIGIL_ERR_MODEL_IO_MISMATCH'
  | 'VIGIL_ERR_MODEL_LOAD'
  | 'VIGIL_ERR_ENGINE_UNAVAILABLE'
  | 'VIGIL_ERR_INFERENCE'
  | 'VIGIL_ERR_INPUT_INVALID'
  | 'VIGIL_ERR_DECODE'
  | 'VIGIL_ERR_PORT_IN_USE'
  | 'VIGIL_ERR_LISTEN'
  | 'VIGIL_ERR_STORE';

export class VigilError extends Error {
  readonly code: VigilErrorCode;
  /** Extra structured detail for logs (never needed to understand the message). */
  readonly detail: Record<string, unknown> | undefined;

  constructor(
    code: VigilErrorCode,
    message: string,
    options?: { cause?: unknown; detail?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VigilError';
    this.code = code;
    this.detail = options?.detail;
  }
}

/** A validation problem located by a dotted path, printed as `path: message`. */
export interface Issue {
  path: string;
  message: string;
}

export class ConfigError extends VigilError {
  readonly issues: Issue[];
  constructor(file: string, issues: Issue[]) {
    super(
      'VIGIL_ERR_CONFIG_INVALID',
      `${file}: ${issues.length} problem${issues.length === 1 ? '' : 's'}\n` +
        issues.map((i) => `${i.path}: ${i.message}`).join('\n'),
    );
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export class ManifestError extends VigilError {
  readonly issues: Issue[];
  constructor(where: string, issues: Issue[]) {
    super(
      'VIGIL_ERR_MANIFEST_INVALID',
      `model package ${where}: invalid vigil.json\n` +
        issues.map((i) => `${i.path}: ${i.message}`).join('\n'),
    );
    this.name = 'ManifestError';
    this.issues = issues;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
