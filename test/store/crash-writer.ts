import { writeSync } from 'node:fs';
import { StoreConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import { Store } from '../../runtime/store/store.js';
import { makeResult } from './fixtures.js';
import { readings } from './helpers.js';

/**
 * Child process of the crash test: writes reading batches (and now and then a result with an
 * alert) as fast as it can until it is killed, and reports each batch on stdout only after its
 * transaction committed: `<batch> <readings>`. Arguments: database file, synchronous level
 * (full | normal), number of the first batch.
 */
const [file, synchronous, first] = process.argv.slice(2) as [string, 'full' | 'normal', string];
const store = Store.open(
  file,
  StoreConfig.parse({ path: file, synchronous, integrityCheck: 'off', minFreeDiskMiB: 0 }),
  silentLogger(),
);
writeSync(1, 'open\n');
for (let b = Number(first); ; b++) {
  const n = 1 + (b % 50);
  store.saveReadings(readings(n, { tag: `b${b}`, receivedAt: 1_764_000_000_000 + b }));
  if (b % 7 === 0) {
    const { result, alert } = makeResult(b, { alert: b % 14 === 0 });
    store.saveResult(result, alert);
  }
  writeSync(1, `${b} ${n}\n`);
  // Checkpoints too get killed halfway now and then.
  if (b % 25 === 0) store.checkpoint('PASSIVE');
}
