import { connectAsync, type MqttClient } from 'mqtt';
import sparkplug from 'sparkplug-payload';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SparkplugSource } from '../../../adapters/mqtt/sparkplug-source.js';
import { SparkplugSource as SparkplugSourceSchema } from '../../../runtime/config/sources/mqtt.js';
import { ScriptedMachine } from '../../../simulator/machines/scripted.js';
import { SimSparkplugNode } from '../../../simulator/mqtt/sparkplug-node.js';
import { startMosquitto, type RunningMosquitto } from '../../helpers/mosquitto.js';
import { Recorder } from '../recorder.js';

const tahu = sparkplug.get('spBv1.0')!;
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

let groups = 0;
/** A group id of its own per test, so that no test sees another's retained or late messages. */
const newGroup = () => `plant${++groups}`;

async function startSource(groupId: string, overrides: Record<string, unknown> = {}) {
  const rec = new Recorder();
  const config = SparkplugSourceSchema.parse({
    type: 'sparkplug-b',
    url: broker.url,
    groupId,
    reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
    ...overrides,
  });
  const source = new SparkplugSource('sparkplug', config, rec);
  cleanups.push(() => source.stop());
  await source.start(new AbortController().signal);
  expect(source.state()).toBe('up');
  return { source, rec };
}

async function startNode(groupId: string, machines: ScriptedMachine[], edgeNodeId = 'gw1') {
  const node = new SimSparkplugNode({ url: broker.url, groupId, edgeNodeId, machines, rateHz: 0 });
  cleanups.push(() => node.stop());
  await node.start();
  return node;
}

/** A plain MQTT client that records what arrives on a topic filter, as an operator's tool would. */
async function watch(filter: string) {
  const client: MqttClient = await connectAsync(broker.url, { reconnectPeriod: 0 });
  cleanups.push(() => client.endAsync(true));
  const seen: Array<{ topic: string; payload: Buffer; retain: boolean }> = [];
  client.on('message', (topic, payload, packet) => seen.push({ topic, payload, retain: packet.retain }));
  await client.subscribeAsync(filter, { qos: 1 });
  return seen;
}

function machines() {
  const pump = new ScriptedMachine('pump-1', [{ name: 'temperature' }, { name: 'pressure' }]);
  const press = new ScriptedMachine('press-2', [{ name: 'force' }]);
  pump.set('temperature', 20.5);
  pump.set('pressure', 3.25);
  press.set('force', 1200);
  return { pump, press };
}

describe('Sparkplug B source through Mosquitto', () => {
  it('turns NBIRTH, DBIRTH and DDATA by alias into readings with asset, tag, value and time', async () => {
    const group = newGroup();
    const { rec } = await startSource(group);
    const { pump, press } = machines();
    const node = await startNode(group, [pump, press]);
    await rec.until(() => rec.series('press-2', 'force').length === 1, 'the DBIRTH values');
    expect(rec.series('pump-1', 'temperature')[0]).toMatchObject({ value: 20.5, quality: 'good' });
    expect(rec.series('gw1', 'uptime_s')).toHaveLength(1); // node metric: the asset is the edge node

    pump.set('temperature', 22.75);
    pump.set('pressure', Number.NaN, 'bad', 'BadSensorFailure');
    const before = Date.now();
    await node.tick();
    await rec.until(() => rec.series('pump-1', 'pressure').length === 2, 'the DDATA values');
    const temp = rec.series('pump-1', 'temperature')[1]!;
    expect(temp).toMatchObject({
      source: 'sparkplug',
      asset: 'pump-1',
      tag: 'temperature',
      value: 22.75,
      quality: 'good',
    });
    expect(temp.sourceTime).toBeGreaterThanOrEqual(before);
    expect(temp.sourceTime).toBeLessThanOrEqual(temp.receivedAt);
    expect(rec.series('pump-1', 'pressure')[1]).toMatchObject({
      value: null,
      quality: 'bad',
      status: 'NoValue',
    });
    expect(rec.rejections).toEqual([]);
    // bdSeq and Node Control/Rebirth are protocol plumbing, not readings.
    expect(rec.received.some((r) => r.tag === 'bdSeq' || r.tag.startsWith('Node Control/'))).toBe(false);
  });

  it('a sequence gap sends an NCMD rebirth request; after the rebirth, data flows again', async () => {
    const group = newGroup();
    const commands = await watch(`spBv1.0/${group}/NCMD/#`);
    const { source, rec } = await startSource(group);
    const { pump, press } = machines();
    const node = await startNode(group, [pump, press]);
    await rec.until(() => rec.series('press-2', 'force').length === 1, 'the births');

    node.skipSeq();
    pump.set('temperature', 30);
    await node.tick();
    await rec.until(() => node.rebirthRequests === 1, 'the rebirth request at the edge node');
    expect(rec.rejections.filter((r) => r.reason === 'sequence_gap').length).toBeGreaterThanOrEqual(1);
    expect(rec.rejections[0]!.message).toMatch(/expected \d+/);
    await rec.until(() => node.births === 2, 'the new NBIRTH');
    expect(source.rebirthsRequested).toBe(1);
    await rec.until(() => commands.length === 1, 'the NCMD at an independent subscriber');
    expect(commands[0]!.topic).toBe(`spBv1.0/${group}/NCMD/gw1`);
    const request = tahu.decodePayload(commands[0]!.payload);
    expect(request.metrics).toEqual([expect.objectContaining({ name: 'Node Control/Rebirth', value: true })]);

    pump.set('temperature', 31);
    await node.tick();
    await rec.until(
      () => rec.series('pump-1', 'temperature').some((r) => r.value === 31),
      'data after the rebirth',
    );
    // The readings refused during the gap never arrive; everything before and after does.
    expect(rec.series('pump-1', 'temperature').map((r) => r.value)).toEqual([20.5, 30, 31]);
  });

  it('asks an edge node that was born before Vigil started for a rebirth, and then reads it', async () => {
    const group = newGroup();
    const { pump } = machines();
    const node = await startNode(group, [pump]);
    const { rec } = await startSource(group);
    await node.tick();
    await rec.until(() => node.rebirthRequests === 1, 'the rebirth request');
    expect(rec.rejections[0]).toMatchObject({ reason: 'unknown_tag' });
    await rec.until(() => rec.series('pump-1', 'temperature').length >= 1, 'the births after the request');
    pump.set('temperature', 44);
    await node.tick();
    await rec.until(() => rec.series('pump-1', 'temperature').some((r) => r.value === 44), 'data');
  });

  it('the NDEATH will marks every metric of the node and its devices bad', async () => {
    const group = newGroup();
    const { rec } = await startSource(group);
    const { pump, press } = machines();
    const node = await startNode(group, [pump, press]);
    await rec.until(() => rec.series('press-2', 'force').length === 1, 'the births');
    await node.dropConnection();
    await rec.until(() => rec.received.some((r) => r.status === 'NodeDeath'), 'the NDEATH');
    const dead = rec.received.filter((r) => r.status === 'NodeDeath');
    expect(dead.map((r) => `${r.asset}/${r.tag}`).sort()).toEqual([
      'gw1/uptime_s',
      'press-2/force',
      'pump-1/pressure',
      'pump-1/temperature',
    ]);
    expect(dead.every((r) => r.value === null && r.quality === 'bad')).toBe(true);
  });

  it('refuses payloads that are not Sparkplug or too large, and keeps reading', async () => {
    const group = newGroup();
    const { source, rec } = await startSource(group, { maxPayloadBytes: 4096 });
    const { pump } = machines();
    const node = await startNode(group, [pump]);
    await rec.until(() => rec.series('pump-1', 'temperature').length === 1, 'the births');
    const raw = await connectAsync(broker.url, { reconnectPeriod: 0 });
    cleanups.push(() => raw.endAsync(true));
    await raw.publishAsync(`spBv1.0/${group}/DDATA/gw1/pump-1`, '{"temperature": 5}', { qos: 1 });
    await raw.publishAsync(`spBv1.0/${group}/DDATA/gw1/pump-1`, Buffer.alloc(5000, 1), { qos: 1 });
    await rec.until(() => rec.rejections.length === 2, 'two refusals');
    expect(rec.rejections.map((r) => r.reason)).toEqual(['malformed', 'too_large']);
    expect(rec.rejections[0]!.message).toContain('not a Sparkplug B protobuf');
    pump.set('temperature', 50);
    await node.tick();
    await rec.until(
      () => rec.series('pump-1', 'temperature').some((r) => r.value === 50),
      'data after the garbage',
    );
    expect(source.state()).toBe('up');
  });

  it('with hostId, publishes a retained STATE online, and offline when it stops', async () => {
    const group = newGroup();
    const states = await watch('spBv1.0/STATE/vigil-test');
    const { source } = await startSource(group, { hostId: 'vigil-test' });
    const rec = new Recorder();
    await rec.until(() => states.length === 1, 'the STATE birth');
    const online = JSON.parse(states[0]!.payload.toString()) as { online: boolean; timestamp: number };
    expect(online.online).toBe(true);
    await source.stop();
    await rec.until(() => states.length === 2, 'the STATE death');
    const offline = JSON.parse(states[1]!.payload.toString()) as { online: boolean; timestamp: number };
    expect(offline).toEqual({ online: false, timestamp: online.timestamp });
    const late = await watch('spBv1.0/STATE/vigil-test');
    await rec.until(() => late.length === 1, 'the retained STATE');
    expect(late[0]!.retain).toBe(true);
    expect(JSON.parse(late[0]!.payload.toString())).toMatchObject({ online: false });
  });

  it('connects on a clean session: nothing sent while it was away is delivered after it is back', async () => {
    const group = newGroup();
    const first = await startSource(group, { clientId: 'vigil-sparkplug-clean' });
    await first.source.stop();
    const raw = await connectAsync(broker.url, { reconnectPeriod: 0 });
    cleanups.push(() => raw.endAsync(true));
    // Not Sparkplug: delivered, it would be refused as malformed, so it cannot pass unseen.
    await raw.publishAsync(`spBv1.0/${group}/NDATA/away`, 'sent while Vigil was away', { qos: 1 });

    const second = await startSource(group, { clientId: 'vigil-sparkplug-clean' });
    await raw.publishAsync(`spBv1.0/${group}/NDATA/back`, 'sent after Vigil was back', { qos: 1 });
    // One connection delivers in order: had the first been queued, it would come before this one.
    await second.rec.until(() => second.rec.rejections.length >= 1, 'the message sent after the reconnect');
    expect(second.rec.rejections.map((r) => r.origin)).toEqual([`spBv1.0/${group}/NDATA/back`]);
  });

  it('follows only the edge nodes listed in edgeNodes', async () => {
    const group = newGroup();
    const { rec } = await startSource(group, { edgeNodes: ['gw1'] });
    const followed = await startNode(
      group,
      [new ScriptedMachine('pump-1', [{ name: 'temperature' }])],
      'gw1',
    );
    const other = await startNode(group, [new ScriptedMachine('pump-9', [{ name: 'temperature' }])], 'gw2');
    await other.tick();
    await followed.tick();
    await rec.until(() => rec.series('pump-1', 'temperature').length === 2, 'the followed node');
    expect(rec.received.filter((r) => r.asset === 'pump-9' || r.asset === 'gw2')).toEqual([]);
    expect(rec.rejections).toEqual([]);
  });
});
