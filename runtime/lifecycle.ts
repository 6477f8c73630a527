import type { Logger } from './log.js';
import { errorMessage } from './errors.js';

/** Awaits a stop step for at most `ms`; a step that hangs or fails is logged and skipped. */
export async function withDeadline(
  what: string,
  step: Promise<unknown>,
  ms: number,
  log: Logger,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
    timer.unref();
  });
  try {
    const outcome = await Promise.race([step.then(() => 'done' as const), timeout]);
    if (outcome === 'timeout')
      log.warn({ step: what, ms }, `stopping ${what} took longer than ${ms} ms; moving on`);
  } catch (err) {
    log.warn({ step: what, err: errorMessage(err) }, `stopping ${what} failed: ${errorMessage(err)}`);
  } finally {
    clearTimeout(timer);
  }
}
