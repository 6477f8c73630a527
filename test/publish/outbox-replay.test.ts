import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MqttConfig } from '../../runtime/config/schema.js';
import { silentLogger } from '../../runtime/log.js';
import type { Alert } from '../../runtime/pipeline/result.js';
import { MqttPublisher, type AlertOutbox } from '../../runtime/publish/mqtt-publisher.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { makeResult } from '../store/fixtures.js';

describe('outbox replay when the store cannot mark alerts as delivered', () => {
  let broker: RunningMosquitto;
  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('sends each waiting alert once per round instead of looping on it', async () => {
    const waiting: Alert[] = [1, 2, 3].map((n) => makeResult(n, { alert: true }).alert!);
    let reads = 0;
    let marks = 0;
    // A store on a full or read-only disk: reads work, marking fails.
    const outbox: AlertOutbox = {
      unpublishedAlerts: (limit) => {
        reads++;
        return waiting.slice(0, limit);
      },
      markAlertPublished: () => {
        marks++;
        throw new Error('SQLITE_FULL: database or disk is full');
      },
    };
    const delivered: string[] = [];
    const p = new MqttPublisher({
      config: MqttConfig.parse({ url: broker.url }),
      deviceId: 'full-disk',
      log: silentLogger(),
      version: 'test',
      env: {},
      outbox,
      onDelivered: (a) => delivered.push(a.id),
    });
    try {
      await p.start();
      // The connect starts one replay round; wait for it to end, then run one more explicitly.
      const deadline = Date.now() + 10_000;
      while (marks < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      const readsAfterFirstRound = reads;
      expect(marks).toBe(3);
      const sent = await p.flushOutbox();
      expect(reads - readsAfterFirstRound).toBeLessThanOrEqual(2);
      expect(sent).toBe(3);
      expect(marks).toBe(6);
      expect(delivered.sort()).toEqual([...waiting.map((a) => a.id), ...waiting.map((a) => a.id)].sort());
    } finally {
      await p.stop();
    }
  });
});
