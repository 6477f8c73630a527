import { writeSync } from 'node:fs';
import { StoreConfig } from '../../runtime/config/schema.js';
import { VigilError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/log.js';
import { Store } from '../../runtime/store/store.js';

/**
 * Child process that opens a store and says on stdout, as one JSON line, how that went; run by
 * the tests under another uid to see how a store the user may not write is treated.
 */
const file = process.argv[2]!;
try {
  const store = Store.open(file, StoreConfig.parse({ path: file }), silentLogger());
  writeSync(1, `${JSON.stringify({ ok: true, recovery: store.recovery ?? null })}\n`);
  store.close();
} catch (err) {
  const code = err instanceof VigilError ? err.code : 'not a VigilError';
  writeSync(1, `${JSON.stringify({ ok: false, code, message: (err as Error).message })}\n`);
}
