/**
 * Errors of the simulator's machines and scenarios. The simulator is the outside world and does
 * not import the runtime, so it has its own small coded error, in the same spirit as VigilError:
 * a stable code and a message that says what is wrong and what to do.
 */
export type SimErrorCode =
  | 'SIM_ERR_DATASET_MISSING'
  | 'SIM_ERR_DATASET_INVALID'
  | 'SIM_ERR_SCENARIO_READ'
  | 'SIM_ERR_SCENARIO_INVALID'
  | 'SIM_ERR_MACHINE_CONFIG';

export class SimError extends Error {
  readonly code: SimErrorCode;

  constructor(code: SimErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SimError';
    this.code = code;
  }
}
