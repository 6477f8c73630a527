import client from 'node-opcua-client';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { OverflowWarnings, overflowMessage } from '../../../adapters/opcua/overflow.js';
import {
  hasOverflow,
  infoBitNames,
  qualityOf,
  statusName,
  toReading,
} from '../../../adapters/opcua/status.js';
import { OpcUaSource } from '../../../runtime/config/sources/opcua.js';

const { DataType, DataValue, StatusCode, StatusCodes, Variant, VariantArrayType } = client;

/** DataValue → Reading with node-opcua's own DataValue objects, as they come off the wire. */

const target = { nodeId: 'ns=2;s=Line1.Pump.Temperature', asset: 'pump-1', tag: 'temperature' };
const at = Date.UTC(2026, 0, 1, 12, 0, 0);
const received = at + 250;

function dv(
  variant: ConstructorParameters<typeof Variant>[0] | null,
  status: InstanceType<typeof StatusCode> = StatusCodes.Good,
  times: { source?: number; server?: number } = { source: at, server: at + 10 },
) {
  return new DataValue({
    ...(variant ? { value: new Variant(variant) } : {}),
    statusCode: status,
    ...(times.source !== undefined ? { sourceTimestamp: new Date(times.source) } : {}),
    ...(times.server !== undefined ? { serverTimestamp: new Date(times.server) } : {}),
  });
}

describe('OPC-UA DataValue to Reading', () => {
  it('keeps a good number with both timestamps', () => {
    const r = toReading('plc', target, dv({ dataType: DataType.Double, value: 21.5 }), received);
    expect(r).toEqual({
      ok: true,
      reading: {
        source: 'plc',
        asset: 'pump-1',
        tag: 'temperature',
        value: 21.5,
        quality: 'good',
        sourceTime: at,
        serverTime: at + 10,
        receivedAt: received,
      },
    });
  });

  it('turns integers, 64-bit integers and booleans into numbers', () => {
    const value = (v: ConstructorParameters<typeof Variant>[0]) => {
      const r = toReading('plc', target, dv(v), received);
      return r.ok ? r.reading.value : r.reason;
    };
    expect(value({ dataType: DataType.UInt16, value: 65535 })).toBe(65535);
    expect(value({ dataType: DataType.Int32, value: -7 })).toBe(-7);
    expect(value({ dataType: DataType.Float, value: 0.5 })).toBe(0.5);
    expect(value({ dataType: DataType.Boolean, value: true })).toBe(1);
    expect(value({ dataType: DataType.Boolean, value: false })).toBe(0);
    expect(value({ dataType: DataType.Int64, arrayType: VariantArrayType.Scalar, value: [1, 5] })).toBe(
      2 ** 32 + 5,
    );
    expect(
      value({
        dataType: DataType.Int64,
        arrayType: VariantArrayType.Scalar,
        value: [0xffffffff, 0xfffffffe],
      }),
    ).toBe(-2);
    expect(value({ dataType: DataType.UInt64, arrayType: VariantArrayType.Scalar, value: [0, 42] })).toBe(42);
  });

  it('refuses good values that are not one finite number, naming the node', () => {
    const refused = (v: ConstructorParameters<typeof Variant>[0] | null) => {
      const r = toReading('plc', target, dv(v), received);
      if (r.ok) throw new Error(`expected a refusal, got ${JSON.stringify(r.reading)}`);
      return r;
    };
    expect(refused({ dataType: DataType.String, value: '21.5' })).toMatchObject({
      reason: 'not_a_number',
      origin: target.nodeId,
      message: expect.stringContaining('pump-1/temperature (ns=2;s=Line1.Pump.Temperature): a String value'),
    });
    expect(
      refused({ dataType: DataType.Double, arrayType: VariantArrayType.Array, value: [1, 2] }),
    ).toMatchObject({
      reason: 'not_a_number',
      message: expect.stringContaining('an array of Double'),
    });
    expect(refused({ dataType: DataType.Double, value: Number.NaN })).toMatchObject({ reason: 'not_finite' });
    expect(refused({ dataType: DataType.Double, value: Number.POSITIVE_INFINITY })).toMatchObject({
      reason: 'not_finite',
    });
    expect(refused(null)).toMatchObject({
      reason: 'not_a_number',
      message: expect.stringContaining('no value'),
    });
  });

  it('keeps bad statuses by name with no value, whatever the server sent', () => {
    const r = toReading(
      'plc',
      target,
      dv({ dataType: DataType.Double, value: 99 }, StatusCodes.BadSensorFailure),
      received,
    );
    expect(r).toMatchObject({
      ok: true,
      reading: { value: null, quality: 'bad', status: 'BadSensorFailure' },
    });
    const none = toReading('plc', target, dv(null, StatusCodes.BadNoCommunication), received);
    expect(none).toMatchObject({
      ok: true,
      reading: { value: null, quality: 'bad', status: 'BadNoCommunication' },
    });
  });

  it('keeps an uncertain number, and drops a non-numeric or non-finite one to null', () => {
    const u = StatusCodes.UncertainSensorNotAccurate;
    expect(toReading('plc', target, dv({ dataType: DataType.Double, value: 3 }, u), received)).toMatchObject({
      reading: { value: 3, quality: 'uncertain', status: 'UncertainSensorNotAccurate' },
    });
    expect(
      toReading('plc', target, dv({ dataType: DataType.String, value: 'x' }, u), received),
    ).toMatchObject({
      reading: { value: null, quality: 'uncertain' },
    });
    expect(
      toReading('plc', target, dv({ dataType: DataType.Double, value: Number.NaN }, u), received),
    ).toMatchObject({
      reading: { value: null, quality: 'uncertain' },
    });
  });

  it('uses the receive time when the server sends no source timestamp', () => {
    const r = toReading(
      'plc',
      target,
      dv({ dataType: DataType.Double, value: 1 }, StatusCodes.Good, {}),
      received,
    );
    expect(r).toMatchObject({ reading: { sourceTime: received, serverTime: null } });
  });

  it('reads quality from the severity bits, and names codes', () => {
    expect(qualityOf(StatusCodes.Good)).toBe('good');
    expect(qualityOf(StatusCodes.GoodClamped)).toBe('good');
    expect(qualityOf(StatusCodes.UncertainLastUsableValue)).toBe('uncertain');
    expect(qualityOf(StatusCodes.BadOutOfService)).toBe('bad');
    expect(statusName(StatusCodes.BadOutOfService)).toBe('BadOutOfService');
  });
});

describe('OPC-UA info bits', () => {
  // What node-opcua's server sets when a monitored item's queue overflowed, and the same code as
  // the decoder builds it from the 32 bits on the wire: InfoType DataValue and Overflow (0x480).
  const overflow = StatusCode.makeStatusCode(StatusCodes.Good, 'Overflow | InfoTypeDataValue');
  const decoded = StatusCode.makeStatusCode(StatusCodes.Good, 0x0480);

  it('keeps an overflow on a good value: still good, still the number, flagged in status', () => {
    for (const code of [overflow, decoded]) {
      const r = toReading('plc', target, dv({ dataType: DataType.Double, value: 21.5 }, code), received);
      expect(r).toMatchObject({
        ok: true,
        reading: { value: 21.5, quality: 'good', status: 'Good#Overflow', sourceTime: at },
      });
      expect(hasOverflow(code)).toBe(true);
    }
    // Also without the InfoType marker, as node-opcua's makeStatusCode(Good, 'Overflow') makes it.
    const bare = StatusCode.makeStatusCode(StatusCodes.Good, 'Overflow');
    expect(statusName(bare)).toBe('Good#Overflow');
    expect(hasOverflow(StatusCodes.Good)).toBe(false);
  });

  it('names the info bits on uncertain and bad codes too, and the limit bits once each', () => {
    const u = StatusCode.makeStatusCode(StatusCodes.UncertainLastUsableValue, 'Overflow | InfoTypeDataValue');
    expect(toReading('plc', target, dv({ dataType: DataType.Double, value: 3 }, u), received)).toMatchObject({
      reading: { value: 3, quality: 'uncertain', status: 'UncertainLastUsableValue#Overflow' },
    });
    const clamped = StatusCode.makeStatusCode(StatusCodes.GoodClamped, 'LimitHigh | InfoTypeDataValue');
    expect(statusName(clamped)).toBe('GoodClamped#LimitHigh');
    const constant = StatusCode.makeStatusCode(StatusCodes.Good, 'LimitConstant | InfoTypeDataValue');
    expect(infoBitNames(constant)).toEqual(['LimitConstant']);
    expect(statusName(StatusCode.makeStatusCode(StatusCodes.BadSensorFailure, 0x4000))).toBe(
      'BadSensorFailure#SemanticsChanged',
    );
    // A reserved InfoType: the bits mean something else, so none of them is named.
    expect(statusName(StatusCode.makeStatusCode(StatusCodes.Good, 0x0880))).toBe('Good');
    expect(statusName(StatusCodes.BadSensorFailure)).toBe('BadSensorFailure');
  });

  it('warns about an overflowing item once a minute, counting the overflows in between', () => {
    const w = new OverflowWarnings(60_000);
    const t0 = 1_000_000;
    expect(w.due('pump-1/vibration', t0)).toEqual({ log: true, suppressed: 0 });
    expect(w.due('pump-1/vibration', t0 + 500)).toEqual({ log: false });
    expect(w.due('pump-1/temperature', t0 + 500)).toEqual({ log: true, suppressed: 0 });
    expect(w.due('pump-1/vibration', t0 + 59_999)).toEqual({ log: false });
    expect(w.due('pump-1/vibration', t0 + 60_000)).toEqual({ log: true, suppressed: 2 });
    expect(w.due('pump-1/vibration', t0 + 60_001)).toEqual({ log: false });

    const msg = overflowMessage(
      { nodeId: 'ns=2;s=Vib', asset: 'pump-1', tag: 'vibration', queueSize: 2, samplingIntervalMs: 50 },
      1000,
      2,
    );
    expect(msg).toContain('pump-1/vibration (ns=2;s=Vib) were lost at the OPC-UA server (2 more times');
    expect(msg).toContain('queueSize 2');
    expect(msg).toContain("raise the item's queueSize or shorten subscription.publishingIntervalMs");
  });
});

describe('OPC-UA source config', () => {
  it('describes every field, for the generated configuration reference', () => {
    type Node = {
      description?: string;
      properties?: Record<string, Node>;
      items?: Node;
      anyOf?: Node[];
    };
    const undescribed: string[] = [];
    const walk = (node: Node, at: string): void => {
      for (const [key, child] of Object.entries(node.properties ?? {})) {
        const where = at ? `${at}.${key}` : key;
        if (!child.description) undescribed.push(where);
        walk(child, where);
      }
      if (node.items) walk(node.items, `${at}[]`);
      for (const variant of node.anyOf ?? []) walk(variant, at);
    };
    walk(z.toJSONSchema(OpcUaSource, { io: 'input', unrepresentable: 'any' }) as Node, '');
    expect(undescribed).toEqual([]);
  });

  const base = {
    type: 'opcua',
    endpoint: 'opc.tcp://192.168.0.10:4840',
    items: [{ nodeId: 'ns=2;s=Line1.Pump.Temperature', asset: 'pump-1', tag: 'temperature' }],
  };

  it('fills in defaults: no security, anonymous, the default PKI folder, 1 s sampling', () => {
    const c = OpcUaSource.parse(base);
    expect(c).toMatchObject({
      securityMode: 'None',
      securityPolicy: 'Basic256Sha256',
      pkiFolder: 'vigil-data/pki/opcua',
      trustUnknownServer: false,
      subscription: { publishingIntervalMs: 1000, maxKeepAliveCount: 10, lifetimeCount: 100 },
      reconnect: { initialDelayMs: 500, maxDelayMs: 30_000 },
      limits: {},
    });
    expect(c.auth).toBeUndefined();
    expect(c.items[0]).toMatchObject({ samplingIntervalMs: 1000, queueSize: 10 });
    expect(OpcUaSource.parse({ ...base, auth: { username: 'vigil' } }).auth).toEqual({
      username: 'vigil',
      passwordEnv: 'VIGIL_OPCUA_PASSWORD',
    });
  });

  it('accepts the node id forms of the standard', () => {
    for (const nodeId of [
      'i=2258',
      'ns=3;i=1002',
      'ns=1;s=pump-1.temperature',
      'nsu=urn:plc:line1;s=Temperature',
      'ns=2;g=09087e75-8e5e-499b-954f-f2a9603db28a',
      'ns=2;b=M/RbKBsRVkePCePcx24oRA==',
    ]) {
      expect(OpcUaSource.safeParse({ ...base, items: [{ ...base.items[0], nodeId }] }).success, nodeId).toBe(
        true,
      );
    }
  });

  it('refuses what can never work, saying where', () => {
    const issues = (c: unknown) => {
      const r = OpcUaSource.safeParse(c);
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(issues({ ...base, endpoint: 'http://plc:4840' })[0]).toMatch(/^endpoint: an OPC-UA endpoint URL/);
    expect(issues({ ...base, items: [{ ...base.items[0], nodeId: 'Temperature' }] })[0]).toMatch(
      /^items.0.nodeId: an OPC-UA node id/,
    );
    expect(issues({ ...base, items: [base.items[0], { ...base.items[0], nodeId: 'i=1' }] })[0]).toBe(
      'items.1.tag: asset pump-1 already has a tag temperature in this source',
    );
    expect(issues({ ...base, subscription: { maxKeepAliveCount: 50, lifetimeCount: 100 } })[0]).toMatch(
      /lifetimeCount must be at least 3 x maxKeepAliveCount/,
    );
    expect(
      issues({ ...base, items: [{ ...base.items[0], deadband: { type: 'percent', value: 150 } }] }),
    ).toHaveLength(1);
    expect(issues({ ...base, securityMode: 'Encrypt' })).toHaveLength(1);
    expect(issues({ ...base, items: [] })).toHaveLength(1);
    expect(issues({ ...base, unknownKey: 1 })).toHaveLength(1);
  });
});
