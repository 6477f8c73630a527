import sparkplug from 'sparkplug-payload';
import tahuProto from 'sparkplug-payload/lib/sparkplugPayloadProto.js';
import type { UMetric } from 'sparkplug-payload/lib/sparkplugbpayload.js';
import { describe, expect, it } from 'vitest';
import { decodeSparkplugPayload } from '../../../adapters/mqtt/sparkplug-payload.js';
import { SparkplugState, parseSparkplugTopic } from '../../../adapters/mqtt/sparkplug-state.js';

const tahu = sparkplug.get('spBv1.0')!;
const T0 = 1_750_000_000_000;

function msg(
  type: string,
  payload: { seq?: number; timestamp?: number; metrics: UMetric[] },
  device?: string,
) {
  const topic = parseSparkplugTopic(`spBv1.0/g1/${type}/n1${device ? `/${device}` : ''}`)!;
  return { topic, payload: decodeSparkplugPayload(tahu.encodePayload(payload)) };
}

function newState(rebirthMinIntervalMs = 5000, rebirth = true) {
  const state = new SparkplugState({ source: 'sp', rebirth, rebirthMinIntervalMs });
  const send = (m: ReturnType<typeof msg>, at = T0) => state.handle(m.topic, m.payload, at);
  return { state, send };
}

const nbirth = (bdSeq = 0) =>
  msg('NBIRTH', {
    seq: 0,
    timestamp: T0,
    metrics: [
      { name: 'bdSeq', type: 'UInt64', value: bdSeq },
      { name: 'Node Control/Rebirth', alias: 0, type: 'Boolean', value: false },
      { name: 'uptime_s', alias: 1, type: 'Double', value: 12.5 },
    ],
  });

const dbirth = (seq = 1) =>
  msg(
    'DBIRTH',
    {
      seq,
      timestamp: T0,
      metrics: [
        { name: 'temp', alias: 10, type: 'Float', value: 21.5, timestamp: T0 - 5 },
        { name: 'offset', alias: 11, type: 'Int8', value: -5 },
        { name: 'count', alias: 12, type: 'UInt32', value: 4_000_000_000 },
        { name: 'energy', alias: 13, type: 'Int64', value: -7 },
        { name: 'running', alias: 14, type: 'Boolean', value: true },
        { name: 'serial', alias: 15, type: 'String', value: 'SN-1' },
      ],
    },
    'pump-1',
  );

const ddata = (seq: number, metrics: UMetric[], timestamp = T0 + 1000) =>
  msg('DDATA', { seq, timestamp, metrics }, 'pump-1');

describe('Sparkplug B topics', () => {
  it('parses node and device topics and nothing else', () => {
    expect(parseSparkplugTopic('spBv1.0/g/NDATA/n')).toEqual({
      group: 'g',
      type: 'NDATA',
      edgeNode: 'n',
      device: undefined,
    });
    expect(parseSparkplugTopic('spBv1.0/g/DDATA/n/d')).toEqual({
      group: 'g',
      type: 'DDATA',
      edgeNode: 'n',
      device: 'd',
    });
    expect(parseSparkplugTopic('spBv1.0/g/DDATA/n')).toBeUndefined();
    expect(parseSparkplugTopic('spBv1.0/g/NDATA/n/d')).toBeUndefined();
    expect(parseSparkplugTopic('spBv1.0/STATE/host')).toBeUndefined();
    expect(parseSparkplugTopic('spAv1.0/g/NDATA/n')).toBeUndefined();
  });
});

describe('Sparkplug B host state', () => {
  it('turns births and data by alias into readings: node metrics on the node, device metrics on the device', () => {
    const { send } = newState();
    const n = send(nbirth());
    expect(n.readings.map((r) => [r.asset, r.tag, r.value, r.sourceTime])).toEqual([
      ['n1', 'uptime_s', 12.5, T0],
    ]);
    const d = send(dbirth());
    expect(d.rejections).toEqual([]);
    expect(d.readings.map((r) => [r.asset, r.tag, r.value, r.sourceTime])).toEqual([
      ['pump-1', 'temp', 21.5, T0 - 5],
      ['pump-1', 'offset', -5, T0],
      ['pump-1', 'count', 4_000_000_000, T0],
      ['pump-1', 'energy', -7, T0],
      ['pump-1', 'running', 1, T0],
    ]);
    expect(d.notes.join()).toContain("'serial'");
    const data = send(
      ddata(2, [
        { alias: 10, type: 'Float', value: 22.25, timestamp: T0 + 900 },
        { alias: 14, type: 'Boolean', value: false },
      ]),
    );
    expect(data.readings.map((r) => [r.asset, r.tag, r.value, r.sourceTime, r.quality])).toEqual([
      ['pump-1', 'temp', 22.25, T0 + 900, 'good'],
      ['pump-1', 'running', 0, T0 + 1000, 'good'],
    ]);
    expect(data.rebirth).toBeUndefined();
  });

  it('reads DATA metrics that leave the datatype out with the type from the birth', () => {
    const { send } = newState();
    send(nbirth());
    send(dbirth());
    const { Payload } = tahuProto.org.eclipse.tahu.protobuf;
    const bytes = Payload.encode(
      Payload.create({
        seq: 2,
        timestamp: T0,
        metrics: [
          Payload.Metric.create({ alias: 11, intValue: 0xfffffff0 }), // Int8 -16, sign-extended to 32 bits
          Payload.Metric.create({ alias: 11, intValue: 0xf0 }), // Int8 -16 as 8-bit two's complement
          Payload.Metric.create({ alias: 10, floatValue: 1.5 }),
          Payload.Metric.create({ alias: 13, isNull: true }),
        ],
      }),
    ).finish();
    const topic = parseSparkplugTopic('spBv1.0/g1/DDATA/n1/pump-1')!;
    const out = send({ topic, payload: decodeSparkplugPayload(bytes) });
    expect(out.readings.map((r) => [r.tag, r.value, r.quality, r.status])).toEqual([
      ['offset', -16, 'good', undefined],
      ['offset', -16, 'good', undefined],
      ['temp', 1.5, 'good', undefined],
      ['energy', null, 'bad', 'NoValue'],
    ]);
  });

  it('refuses NaN metrics as not_finite and keeps the rest', () => {
    const { send } = newState();
    send(nbirth());
    send(dbirth());
    const out = send(
      ddata(2, [
        { alias: 10, type: 'Float', value: NaN },
        { alias: 12, type: 'UInt32', value: 7 },
      ]),
    );
    expect(out.rejections).toEqual([expect.objectContaining({ reason: 'not_finite' })]);
    expect(out.rejections[0]!.message).toContain("'temp'");
    expect(out.readings.map((r) => [r.tag, r.value])).toEqual([['count', 7]]);
  });

  it('a sequence gap refuses the node until it is born again, and asks for a rebirth at a limited rate', () => {
    const { send, state } = newState(5000);
    send(nbirth());
    send(dbirth());
    const gap = send(ddata(4, [{ alias: 10, type: 'Float', value: 1 }]), T0 + 10);
    expect(gap.readings).toEqual([]);
    expect(gap.rejections).toEqual([expect.objectContaining({ reason: 'sequence_gap' })]);
    expect(gap.rejections[0]!.message).toContain('expected 2');
    expect(gap.rebirth).toEqual(expect.objectContaining({ group: 'g1', edgeNode: 'n1' }));
    // Until the NBIRTH, data is refused: a lost DBIRTH may have changed the aliases.
    const next = send(ddata(5, [{ alias: 10, type: 'Float', value: 2 }]), T0 + 20);
    expect(next.rejections[0]!.reason).toBe('sequence_gap');
    expect(next.rebirth).toBeUndefined();
    const later = send(ddata(6, [{ alias: 10, type: 'Float', value: 3 }]), T0 + 6000);
    expect(later.rebirth).toBeDefined();
    send(nbirth());
    send(dbirth());
    const after = send(ddata(2, [{ alias: 10, type: 'Float', value: 4 }]));
    expect(after.rejections).toEqual([]);
    expect(after.readings.map((r) => r.value)).toEqual([4]);
    expect(state.bornNodes()).toEqual(['g1/n1']);
  });

  it('follows the sequence through its wrap from 255 to 0', () => {
    const { send } = newState();
    send(nbirth());
    send(dbirth(1));
    let seq = 2;
    for (let i = 0; i < 300; i++) {
      const out = send(ddata(seq, [{ alias: 12, type: 'UInt32', value: i }]));
      expect(out.rejections).toEqual([]);
      seq = (seq + 1) % 256;
    }
  });

  it('counts a gap without waiting when rebirthOnGap is off', () => {
    const { send } = newState(5000, false);
    send(nbirth());
    send(dbirth());
    const out = send(ddata(9, [{ alias: 10, type: 'Float', value: 1 }]));
    expect(out.rejections.map((r) => r.reason)).toEqual(['sequence_gap']);
    expect(out.readings.map((r) => r.value)).toEqual([1]);
    expect(out.rebirth).toBeUndefined();
    expect(send(ddata(10, [{ alias: 10, type: 'Float', value: 2 }])).rejections).toEqual([]);
  });

  it('refuses data before the birth and unknown aliases as unknown_tag, and asks for a rebirth', () => {
    const { send } = newState(0);
    const early = send(ddata(3, [{ alias: 10, type: 'Float', value: 1 }]));
    expect(early.rejections).toEqual([expect.objectContaining({ reason: 'unknown_tag' })]);
    expect(early.rebirth).toBeDefined();
    send(nbirth());
    const noDevice = send(ddata(1, [{ alias: 10, type: 'Float', value: 1 }]));
    expect(noDevice.rejections[0]!.message).toContain('before its DBIRTH');
    expect(noDevice.rebirth).toBeDefined();
    send(dbirth(2));
    const unknown = send(
      ddata(3, [
        { alias: 99, type: 'Float', value: 1 },
        { alias: 10, type: 'Float', value: 5 },
      ]),
    );
    expect(unknown.rejections).toEqual([expect.objectContaining({ reason: 'unknown_tag' })]);
    expect(unknown.rejections[0]!.message).toContain('alias 99');
    expect(unknown.readings.map((r) => r.value)).toEqual([5]);
    expect(unknown.rebirth).toBeDefined();
  });

  it('NDEATH of the current session marks every node and device metric bad; a stale one is ignored', () => {
    const { send, state } = newState();
    send(nbirth(3));
    send(dbirth());
    const stale = send(msg('NDEATH', { metrics: [{ name: 'bdSeq', type: 'UInt64', value: 2 }] }), T0 + 50);
    expect(stale.readings).toEqual([]);
    expect(stale.notes.join()).toContain('older session');
    const death = send(msg('NDEATH', { metrics: [{ name: 'bdSeq', type: 'UInt64', value: 3 }] }), T0 + 100);
    expect(death.readings.map((r) => [r.asset, r.tag, r.value, r.quality, r.status, r.sourceTime])).toEqual([
      ['n1', 'uptime_s', null, 'bad', 'NodeDeath', T0 + 100],
      ['pump-1', 'temp', null, 'bad', 'NodeDeath', T0 + 100],
      ['pump-1', 'offset', null, 'bad', 'NodeDeath', T0 + 100],
      ['pump-1', 'count', null, 'bad', 'NodeDeath', T0 + 100],
      ['pump-1', 'energy', null, 'bad', 'NodeDeath', T0 + 100],
      ['pump-1', 'running', null, 'bad', 'NodeDeath', T0 + 100],
    ]);
    expect(state.bornNodes()).toEqual([]);
  });

  it('DDEATH marks the device metrics bad and forgets the device', () => {
    const { send } = newState();
    send(nbirth());
    send(dbirth());
    const death = send(msg('DDEATH', { seq: 2, timestamp: T0 + 7, metrics: [] }, 'pump-1'));
    expect(death.readings).toHaveLength(5);
    expect(
      death.readings.every((r) => r.status === 'DeviceDeath' && r.value === null && r.sourceTime === T0 + 7),
    ).toBe(true);
    const after = send(ddata(3, [{ alias: 10, type: 'Float', value: 1 }]));
    expect(after.rejections[0]!.reason).toBe('unknown_tag');
  });
});
