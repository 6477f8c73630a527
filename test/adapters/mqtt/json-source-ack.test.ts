import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MqttJsonSource } from '../../../adapters/mqtt/json-source.js';
import { StoreConfig } from '../../../runtime/config/schema.js';
import { MqttJsonSource as MqttJsonSourceSchema } from '../../../runtime/config/sources/mqtt.js';
import { silentLogger } from '../../../runtime/log.js';
import { Metrics } from '../../../runtime/ops/metrics.js';
import type { IngestMark, SourceIngestMark } from '../../../runtime/pipeline/source.js';
import { Store } from '../../../runtime/store/store.js';
import { ReadingGate } from '../../../runtime/telemetry/gate.js';
import { TelemetryIngest, type ReadingSink } from '../../../runtime/telemetry/ingest.js';
import type { Reading } from '../../../runtime/telemetry/reading.js';
import { SimJsonPublisher } from '../../../simulator/mqtt/json-publisher.js';
import { startMosquitto, type RunningMosquitto } from '../../helpers/mosquitto.js';
import { Recorder } from '../recorder.js';
import { PUBACK, startTcpLink, type TcpLink } from './tcp-link.js';

/**
 * The MQTT JSON source acknowledges a QoS 1 message only once its readings are stored: the
 * broker keeps (and redelivers) what a crash before the commit would lose. Seen on the wire,
 * through a relay that reads the client's packets, against a real Mosquitto.
 */

let broker: RunningMosquitto;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  broker = await startMosquitto();
});

afterAll(async () => {
  await broker?.stop();
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let sources = 0;
const TOPIC = 'plant/press-1/telemetry';
const json = (temp: number) => JSON.stringify({ ts: Date.now(), temperature: temp });
const sha = (topic: string, payload: string) =>
  createHash('sha256').update(`${topic}\0${payload}`).digest('hex');

async function startLinkedSource(rec: Recorder): Promise<{ source: MqttJsonSource; link: TcpLink }> {
  const link = await startTcpLink(broker.port);
  cleanups.push(() => link.close());
  const config = MqttJsonSourceSchema.parse({
    type: 'mqtt-json',
    url: link.url,
    reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
    subscriptions: [
      { topic: 'plant/+/telemetry', asset: '{1}', allNumericFields: true, timestampField: 'ts' },
    ],
  });
  // A name of its own per test: the broker keeps each persistent session.
  const source = new MqttJsonSource(`ack${++sources}`, config, rec);
  cleanups.push(() => source.stop());
  await source.start(new AbortController().signal);
  expect(source.state()).toBe('up');
  return { source, link };
}

async function startPublisher() {
  const pub = new SimJsonPublisher({ url: broker.url, machines: [], rateHz: 0 });
  cleanups.push(() => pub.stop());
  await pub.start();
  return pub;
}

const pubacks = (link: TcpLink, id: number) =>
  link.clientPackets.filter((p) => p.type === PUBACK && p.messageId === id);

describe('MQTT JSON source: acknowledgement after storing', () => {
  it('sends the PUBACK of a QoS 1 message only once its readings are stored', async () => {
    const rec = new Recorder();
    rec.holdDurable = true;
    const { link } = await startLinkedSource(rec);
    const pub = await startPublisher();
    const payload = json(20);
    await pub.publishRaw(TOPIC, payload);
    await rec.until(() => rec.durable.length === 1, 'the message');
    const { mark } = rec.durable[0]!;
    expect(mark).toEqual({
      key: expect.stringMatching(/^\d+$/),
      hash: sha(TOPIC, payload),
      redelivered: false,
    });
    const id = Number(mark!.key);

    // Held: a PINGREQ would have had time to go out, a PUBACK must not.
    await new Promise((res) => setTimeout(res, 300));
    expect(pubacks(link, id)).toEqual([]);

    rec.releaseDurable();
    await rec.until(() => pubacks(link, id).length === 1, 'the PUBACK after the store');
    expect(rec.series('press-1', 'temperature').map((r) => r.value)).toEqual([20]);
  });

  it('leaves a message unacknowledged when its connection drops first; the broker sends it again, marked DUP', async () => {
    const rec = new Recorder();
    rec.holdDurable = true;
    const { source, link } = await startLinkedSource(rec);
    const pub = await startPublisher();
    const payload = json(21);
    await pub.publishRaw(TOPIC, payload);
    await rec.until(() => rec.durable.length === 1, 'the first delivery');
    const id = Number(rec.durable[0]!.mark!.key);
    await new Promise((res) => setTimeout(res, 200));
    expect(pubacks(link, id)).toEqual([]);

    link.cut();
    await rec.until(() => source.state() === 'down', 'the source to notice the outage');
    // Stored only now, after its connection is gone: no PUBACK may follow it onto the next one.
    rec.releaseDurable();
    link.restore();

    await rec.until(() => rec.durable.length === 2, 'the redelivery');
    const [first, again] = rec.durable;
    expect(again!.mark).toEqual({ key: first!.mark!.key, hash: first!.mark!.hash, redelivered: true });
    await rec.until(() => again!.resolved && pubacks(link, id).length > 0, 'the PUBACK of the redelivery');
    // Time for a PUBACK left over from the first connection to show up too, were one sent.
    await new Promise((res) => setTimeout(res, 200));
    expect(pubacks(link, id)).toEqual([{ type: PUBACK, messageId: id, connection: 2 }]);

    // Acknowledged once and for all: another outage brings nothing back.
    link.cut();
    await rec.until(() => source.state() === 'down', 'the second outage');
    link.restore();
    await rec.until(() => rec.reconnects === 2 && source.state() === 'up', 'the second reconnect');
    await pub.publishRaw(TOPIC, json(22));
    await rec.until(() => rec.durable.length === 3, 'the next message');
    expect(rec.durable[2]!.mark!.redelivered).toBe(false);
    expect(rec.series('press-1', 'temperature').map((r) => r.value)).toEqual([21, 21, 22]);
  });
});

/** The Store, and a hook run right after each commit, before the ingest learns of it. */
class HookedStore implements ReadingSink {
  afterCommit: (() => void) | undefined;
  constructor(readonly store: Store) {}

  saveReadings(batch: readonly Reading[], marks?: readonly SourceIngestMark[]): void {
    this.store.saveReadings(batch, marks);
    const hook = this.afterCommit;
    this.afterCommit = undefined;
    hook?.();
  }

  hasIngestMark(source: string, key: string, hash: string): boolean {
    return this.store.hasIngestMark(source, key, hash);
  }
}

describe('MQTT JSON source through TelemetryIngest: redelivery after a lost acknowledgement', () => {
  it('stores a message redelivered after its commit only once, and acknowledges the redelivery', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'vigil-ack-store-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'vigil.db');
    const store = Store.open(file, StoreConfig.parse({ path: file }), silentLogger());
    cleanups.push(async () => store.close());
    const sink = new HookedStore(store);
    const metrics = new Metrics({ processMetrics: false });
    const rec = new Recorder();
    const ingest = new TelemetryIngest({
      sink,
      metrics,
      log: rec.log,
      batchSize: 100,
      flushIntervalMs: 60_000,
    });
    cleanups.push(async () => ingest.close());
    const gate = new ReadingGate({}, { maxClockSkewSeconds: 60, maxAgeSeconds: 3600 });
    const outcomes: Array<{ mark: IngestMark | undefined; duplicate: boolean }> = [];
    const name = `ack${++sources}`;
    rec.readingsDurable = async (batch, mark) => {
      const outcome = await ingest.acceptDurable(name, batch, gate, rec.log, mark);
      outcomes.push({ mark, duplicate: outcome.duplicate });
      return outcome;
    };

    const link = await startTcpLink(broker.port);
    cleanups.push(() => link.close());
    const config = MqttJsonSourceSchema.parse({
      type: 'mqtt-json',
      url: link.url,
      reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
      subscriptions: [
        { topic: 'plant/+/telemetry', asset: '{1}', allNumericFields: true, timestampField: 'ts' },
      ],
    });
    const source = new MqttJsonSource(name, config, rec);
    cleanups.push(() => source.stop());
    await source.start(new AbortController().signal);

    // The committed transaction, then the network gone before the PUBACK: as a power cut would.
    sink.afterCommit = () => link.cut();
    const pub = await startPublisher();
    await pub.publishRaw(TOPIC, json(30));
    await rec.until(() => source.state() === 'down', 'the cut right after the commit');
    const stored = () => store.listReadings({ source: name }).map((r) => r.value);
    expect(stored()).toEqual([30]);
    link.restore();

    await rec.until(() => outcomes.length === 2, 'the redelivery');
    expect(outcomes.map((o) => [o.mark?.redelivered, o.duplicate])).toEqual([
      [false, false],
      [true, true],
    ]);
    const id = Number(outcomes[0]!.mark!.key);
    await rec.until(() => pubacks(link, id).length === 1, 'the PUBACK of the redelivery');
    expect(stored()).toEqual([30]);
    expect(ingest.statsFor(name).readings.good).toBe(1);
    const dups = (await metrics.registry.getMetricsAsJSON()).find(
      (m) => m.name === 'vigil_ingest_duplicates_total',
    );
    expect(dups?.values.find((v) => v.labels.source === name)?.value).toBe(1);
  });
});
