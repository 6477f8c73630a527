import { writeSync } from 'node:fs';
import { pino } from 'pino';
import { ModelStore } from '../../runtime/modelstore/store.js';
import { verifyPackage } from '../../runtime/modelstore/verify.js';
import { copyPackage, makeVersion } from '../helpers/model-packages.js';

/**
 * Child process of the crash test: installs, activates and prunes version after version of one
 * model as fast as it can until it is killed; every fourth version is rolled back from, as after
 * a regression. Before each step it writes `phase <step> <version>` on stdout, and the store logs
 * its own steps there (JSON, debug level), so that the test can aim its kills; after each version
 * it writes `done <version> <active>`.
 * Arguments: store folder, source package folder, payload bytes per version.
 */
const [root, source, payload] = process.argv.slice(2) as [string, string, string];
const MODEL = 'defect';
// The store's debug lines, written as they happen, tell the test which step is under way.
const log = pino({ level: 'debug', base: null, timestamp: false }, pino.destination({ dest: 1, sync: true }));
const store = await ModelStore.open(root, log);
const verify = (dir: string): Promise<unknown> => verifyPackage(dir, { policy: 'off', publicKeys: [] });
const say = (line: string): void => void writeSync(1, `${line}\n`);

const seen = [...store.installed(MODEL), ...Object.keys(store.snapshot(MODEL).rejected)].map(Number);
let next = Math.max(0, ...seen) + 1;
say('open');
for (;;) {
  const v = String(next++);
  say(`phase stage ${v}`);
  // A download killed halfway starts over here; resuming is the registry client's job.
  const staging = store.stagingDir(MODEL, v);
  await copyPackage(source, staging);
  await makeVersion(staging, v, Number(payload));
  say(`phase install ${v}`);
  await store.install(MODEL, v, staging, verify);
  say(`phase activate ${v}`);
  await store.activate(MODEL, v);
  if (Number(v) % 4 === 0 && store.previous(MODEL) !== undefined) {
    say(`phase rollback ${v}`);
    await store.rollback(MODEL, 'regression', 'crash test');
  }
  say(`phase prune ${v}`);
  await store.prune(MODEL, 3);
  say(`done ${v} ${store.active(MODEL)}`);
}
