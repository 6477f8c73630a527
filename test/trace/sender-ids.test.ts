import { connectAsync, type MqttClient } from 'mqtt';
import sparkplug from 'sparkplug-payload';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SourceMqttClient, packetTraceId, type MqttPacketInfo } from '../../adapters/mqtt/connection.js';
import { decodeSparkplugPayload } from '../../adapters/mqtt/sparkplug-payload.js';
import { withSenderTrace } from '../../adapters/mqtt/sparkplug-source.js';
import { pickTraceId, senderId, traceparentId } from '../../adapters/trace-id.js';
import { MqttConnection } from '../../runtime/config/sources/mqtt.js';
import type { Reading } from '../../runtime/telemetry/reading.js';
import { Recorder } from '../adapters/recorder.js';
import { waitFor } from '../helpers/daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';

// Where a protocol carries the sender's own id for a message, the readings take it as their trace
// id: MQTT 5 user properties or correlation data (adapters/mqtt/connection.ts), the Sparkplug B
// payload uuid. The same rules as the HTTP camera's X-Request-Id decide which ids are taken.

describe('which sender ids are taken', () => {
  it('a request id when it is short and printable; a traceparent by its trace id', () => {
    expect(senderId('line3-cam2:000042')).toBe('line3-cam2:000042');
    expect(senderId('  padded  ')).toBe('padded');
    for (const bad of ['', '-leading-dash', 'has space', 'tab\there', 'x'.repeat(129), 42, null])
      expect(senderId(bad), String(bad)).toBeUndefined();
    expect(traceparentId('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toBe(
      '4bf92f3577b34da6a3ce929d0e0e4736',
    );
    expect(traceparentId('00-00000000000000000000000000000000-00f067aa0ba902b7-01')).toBeUndefined();
    expect(traceparentId('00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01')).toBeUndefined();
  });

  it('a request id first, then a traceparent, then a correlation field', () => {
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    expect(pickTraceId({ requestId: 'req-1', traceparent: tp, correlation: 'corr' })).toBe('req-1');
    expect(pickTraceId({ requestId: 'bad id', traceparent: tp, correlation: 'corr' })).toBe(
      '4bf92f3577b34da6a3ce929d0e0e4736',
    );
    expect(pickTraceId({ correlation: 'corr-7' })).toBe('corr-7');
    expect(pickTraceId({})).toBeUndefined();
  });

  it('MQTT 5 properties: user properties in any letter case, correlation data as text', () => {
    expect(packetTraceId({ userProperties: { 'X-Request-Id': 'msg-9' } })).toBe('msg-9');
    expect(packetTraceId({ userProperties: { 'x-request-id': ['first', 'second'] } })).toBe('first');
    expect(packetTraceId({ correlationData: Buffer.from('corr-1') })).toBe('corr-1');
    expect(packetTraceId({ correlationData: Buffer.from([0, 1, 2, 0xff]) })).toBeUndefined();
    expect(packetTraceId(undefined)).toBeUndefined();
  });
});

describe('Sparkplug B payload uuid', () => {
  const tahu = sparkplug.get('spBv1.0')!;
  const readings = (): Reading[] => [
    { source: 's', asset: 'd1', tag: 'a', value: 1, quality: 'good', sourceTime: 1, receivedAt: 2 },
    { source: 's', asset: 'd1', tag: 'b', value: 2, quality: 'good', sourceTime: 1, receivedAt: 2 },
  ];

  it('is decoded from the wire and becomes the trace id of every reading of the message', () => {
    const bytes = tahu.encodePayload({
      timestamp: 1,
      seq: 3,
      uuid: 'edge-7-msg-000123',
      metrics: [{ name: 'a', type: 'Double', value: 1 }],
    });
    const decoded = decodeSparkplugPayload(bytes);
    expect(decoded.uuid).toBe('edge-7-msg-000123');
    expect(withSenderTrace(readings(), decoded.uuid).map((r) => r.traceId)).toEqual([
      'edge-7-msg-000123',
      'edge-7-msg-000123',
    ]);
  });

  it('is left out when absent or not a sane id: ingest then gives the message one', () => {
    const bytes = tahu.encodePayload({ timestamp: 1, seq: 3, metrics: [] });
    expect(decodeSparkplugPayload(bytes).uuid).toBeUndefined();
    expect(withSenderTrace(readings(), undefined).every((r) => r.traceId === undefined)).toBe(true);
    expect(withSenderTrace(readings(), 'not {an} id').every((r) => r.traceId === undefined)).toBe(true);
  });
});

describe('MQTT 5 trace ids through Mosquitto', () => {
  let broker: RunningMosquitto;
  const cleanups: Array<() => Promise<unknown>> = [];
  let n = 0;

  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  async function subscriber(protocolVersion: 4 | 5, clientId: string, topic: string) {
    const got: Array<{ topic: string; payload: string; info: MqttPacketInfo }> = [];
    const rec = new Recorder();
    const client = new SourceMqttClient({
      sourceName: 'plant',
      config: MqttConnection.parse({
        url: broker.url,
        clientId,
        reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
      }),
      session: 'persistent',
      ctx: rec,
      log: rec.log,
      subscriptions: [{ topic, qos: 1 }],
      protocolVersion,
      onMessage: (t, payload, _at, info) => {
        got.push({ topic: t, payload: payload.toString(), info });
      },
    });
    await client.start(new AbortController().signal);
    expect(client.state()).toBe('up');
    return { client, got };
  }

  async function publisher(): Promise<MqttClient> {
    const pub = await connectAsync(broker.url, { protocolVersion: 5, clientId: `trace-pub-${++n}` });
    cleanups.push(() => pub.endAsync(true));
    return pub;
  }

  it("takes the sender's x-request-id, traceparent or correlation data on an MQTT 5 session", async () => {
    const topic = `trace/${++n}/data`;
    const { client, got } = await subscriber(5, `trace-v5-${n}`, topic);
    cleanups.push(() => client.stop());
    const pub = await publisher();
    const send = (properties: Record<string, unknown>) =>
      pub.publishAsync(topic, '{"a":1}', { qos: 1, properties });
    await send({ userProperties: { 'x-request-id': 'plc7-000001' } });
    await send({
      userProperties: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    });
    await send({ correlationData: Buffer.from('corr-000003') });
    await send({ userProperties: { 'x-request-id': 'not an id' } });
    await send({});
    await waitFor('five messages', () => (got.length === 5 ? true : undefined));
    expect(got.map((m) => m.info.traceId)).toEqual([
      'plc7-000001',
      '0af7651916cd43dd8448eb211c80319c',
      'corr-000003',
      undefined,
      undefined,
    ]);
  });

  it('keeps an MQTT 5 persistent session while away: a queued message arrives with its trace id', async () => {
    const topic = `trace/${++n}/data`;
    const clientId = `trace-v5-persistent-${n}`;
    const first = await subscriber(5, clientId, topic);
    await first.client.stop();
    const pub = await publisher();
    await pub.publishAsync(topic, '{"a":2}', {
      qos: 1,
      properties: { userProperties: { 'x-request-id': 'sent-while-away' } },
    });
    const again = await subscriber(5, clientId, topic);
    cleanups.push(() => again.client.stop());
    await waitFor('the queued message', () => (again.got.length === 1 ? true : undefined));
    expect(again.got[0]).toMatchObject({ payload: '{"a":2}', info: { traceId: 'sent-while-away', qos: 1 } });
  });

  it('sees no trace id on an MQTT 3.1.1 session (the default): 3.1.1 has no message properties', async () => {
    const topic = `trace/${++n}/data`;
    const { client, got } = await subscriber(4, `trace-v4-${n}`, topic);
    cleanups.push(() => client.stop());
    const pub = await publisher();
    await pub.publishAsync(topic, '{"a":3}', {
      qos: 1,
      properties: { userProperties: { 'x-request-id': 'lost-on-3.1.1' } },
    });
    await waitFor('the message', () => (got.length === 1 ? true : undefined));
    expect(got[0]!.info.traceId).toBeUndefined();
  });
});
