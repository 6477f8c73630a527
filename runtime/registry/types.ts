/**
 * The model registry contract: what Vigil needs from an MLflow-compatible registry, so that the
 * rollout controller and the CLI do not depend on HTTP details. runtime/registry/mlflow.ts
 * implements it over MLflow's REST API (docs/REGISTRY.md).
 */

/** One registered model version, as the registry describes it. */
export interface ModelVersionInfo {
  /** Registered model name. */
  name: string;
  /** MLflow versions are strings of digits ('3'). */
  version: string;
  /** READY once the registry finished registering it; only READY versions are pulled. */
  status: 'READY' | 'PENDING_REGISTRATION' | 'FAILED_REGISTRATION' | string;
  /** Where the artifacts are (mlflow-artifacts:/... behind the artifact proxy). */
  source: string;
  runId?: string;
  tags: Record<string, string>;
  aliases: string[];
  lastUpdated: number;
}

export type RegistryErrorKind =
  /** TCP refused, DNS, TLS handshake: the registry cannot be reached. */
  | 'unreachable'
  /** No answer within the request timeout. */
  | 'timeout'
  /** 401 / 403: credentials wrong or missing, or not allowed. */
  | 'auth'
  /** 404, or an alias that is not set (MLflow answers 400 INVALID_PARAMETER_VALUE). */
  | 'not_found'
  /** 429 or 5xx: the registry is there but cannot answer now; retried with back-off. */
  | 'unavailable'
  /** Anything else the registry refused, or an answer that is not what the API promises. */
  | 'invalid';

/** A registry call that failed; `errorCode` is MLflow's own (RESOURCE_DOES_NOT_EXIST, ...). */
export class RegistryError extends Error {
  constructor(
    readonly kind: RegistryErrorKind,
    message: string,
    readonly status?: number,
    readonly errorCode?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RegistryError';
  }

  /** Worth trying again later (the poll's back-off), as opposed to a problem a person must fix. */
  get retryable(): boolean {
    return this.kind === 'unreachable' || this.kind === 'timeout' || this.kind === 'unavailable';
  }
}

export interface DownloadProgress {
  file: string;
  /** Bytes of this file so far, and its size when the registry said it. */
  bytes: number;
  total?: number;
  /** Bytes of the whole version so far and in all. */
  doneBytes: number;
  totalBytes?: number;
}

export interface RegistryClient {
  /** The version an alias points at now. RegistryError('not_found') when the alias is not set. */
  versionByAlias(name: string, alias: string): Promise<ModelVersionInfo>;
  getVersion(name: string, version: string): Promise<ModelVersionInfo>;
  /**
   * Downloads every artifact of the version into `destDir` (created; files keep their relative
   * paths). Resumes a file left partial in `destDir` by an interrupted download (HTTP Range)
   * instead of starting it again. Rejects with RegistryError; the partial files stay for the next
   * attempt.
   */
  downloadVersion(
    version: ModelVersionInfo,
    destDir: string,
    options?: { onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal },
  ): Promise<{ files: string[]; bytes: number; resumedBytes: number }>;
  /** Sets a tag on the model version (needs EDIT permission where the server has auth). */
  setVersionTag(name: string, version: string, key: string, value: string): Promise<void>;
}
