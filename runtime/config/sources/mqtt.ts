import { z } from 'zod';
import { MqttJsonExpectations, TelemetryExpectations } from '../../quality/config.js';
import { Reconnect, TagLimits, TagName } from './telemetry.js';

/**
 * Config of the MQTT telemetry sources: JSON payloads mapped to tags, and Sparkplug B. Both
 * subscribe as a client of an existing broker (the plant's, not Vigil's own alert broker).
 */

const ClientId = z.string().min(1).max(200).optional();

/** The broker connection both MQTT sources share, in the style of the top-level `mqtt` section. */
/** TLS of an MQTT connection: the alert broker's and every MQTT telemetry source's. */
export const MqttTls = z.strictObject({
  ca: z.string().optional().describe('PEM file of the CA that signed the broker certificate'),
  cert: z.string().optional().describe('Client certificate (PEM) for mutual TLS'),
  key: z.string().optional().describe('Client key (PEM) for mutual TLS'),
  rejectUnauthorized: z.boolean().default(true).describe('Refuse brokers whose certificate does not verify'),
});

export const MqttConnectionFields = {
  url: z
    .string()
    .regex(/^(mqtts?|wss?|tcp|ssl):\/\/[^/?#]+/, 'an MQTT URL such as mqtt://host:1883 or mqtts://host:8883')
    .describe('Broker URL to subscribe at; mqtts:// for TLS'),
  clientId: ClientId.describe(
    'MQTT client id; it must be unique on the broker (two clients with one id keep disconnecting each other); default vigil-<source name>-<random>',
  ),
  protocolVersion: z
    .literal([4, 5])
    .default(4)
    .describe(
      'MQTT protocol version: 4 (MQTT 3.1.1, every broker) or 5 (MQTT 5: a sender can name its message with a user property x-request-id or traceparent, or with correlation data, which becomes the trace id of its readings; docs/OBSERVABILITY.md). Under 5 a persistent session is kept until the broker expires it',
    ),
  username: z.string().optional().describe('User name, when the broker requires one'),
  password: z
    .string()
    .optional()
    .describe(
      'Password in plain text (vigil config check warns); prefer passwordFile or passwordEnv so that the secret stays out of the config file',
    ),
  passwordFile: z
    .string()
    .min(1)
    .optional()
    .describe(
      'File holding the password (white space around it trimmed), relative to the config file; used when password is not set',
    ),
  passwordEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
    .optional()
    .describe(
      'Name of an environment variable holding the password (used when neither password nor passwordFile is set)',
    ),
  tls: MqttTls.optional().describe(
    'TLS settings for mqtts:// URLs; file paths are relative to the config file',
  ),
  keepaliveSeconds: z.number().int().min(0).max(65535).default(30).describe('MQTT keep-alive interval'),
  connectTimeoutMs: z
    .number()
    .int()
    .min(100)
    .default(10_000)
    .describe('A connection attempt that gets no CONNACK within this long is abandoned and retried'),
  reconnect: Reconnect,
};

export const MqttConnection = z.strictObject(MqttConnectionFields);
export type MqttConnection = z.infer<typeof MqttConnection>;

/** A path into a JSON payload: dotted keys, digits index arrays (`data.temp`, `values.0`). */
const PayloadPath = z
  .string()
  .regex(/^[^.\s][^.]*(\.[^.]+)*$/, 'a dotted path into the payload such as data.temp or values.0');

/** An MQTT topic filter: `+` for one whole level, `#` only as the whole last level. */
export const TopicFilter = z
  .string()
  .min(1)
  .refine(
    (t) =>
      t.split('/').every((level, i, all) => {
        if (level === '#') return i === all.length - 1;
        return level === '+' || !/[+#]/.test(level);
      }),
    'an MQTT topic filter: + stands for one whole level, # only as the whole last level',
  )
  .refine((t) => !t.includes('\u0000'), 'no NUL characters');

/** `{n}` in an asset template stands for the n-th topic level, counted from 0. */
const AssetTemplate = z
  .string()
  .min(1)
  .regex(
    /^([A-Za-z0-9_.:-]|\{\d+\})+$/,
    'an asset id (letters, digits, dot, colon, dash, underscore), where {n} stands for the topic level n (from 0)',
  );

export const MqttJsonSubscription = z
  .strictObject({
    topic: TopicFilter.describe(
      'Topic filter to subscribe to, e.g. plant/+/telemetry; + matches one level, # the rest',
    ),
    asset: AssetTemplate.optional().describe(
      'Asset of the readings: a fixed id, or a template where {n} is topic level n counted from 0 (plant/+/telemetry with {1} gives the second level)',
    ),
    assetField: PayloadPath.optional().describe(
      'Instead of asset: the payload field holding the asset id (a string or number)',
    ),
    tags: z
      .record(TagName, PayloadPath.describe('Path of the tag’s value in the payload'))
      .optional()
      .describe(
        'Tag name → path of its value in the payload (data.temp, values.0); true/false count as 1/0, null as a bad reading; a tag absent from a message is skipped',
      ),
    allNumericFields: z
      .boolean()
      .default(false)
      .describe(
        'Also take every top-level number as a tag of that name (other than the timestamp and asset fields); non-numeric text fields are ignored, but numeric-looking strings ("12.5", "NaN") are refused',
      ),
    timestampField: PayloadPath.optional().describe(
      'Path of the measurement time in the payload; without it the receive time is used',
    ),
    timestampFormat: z
      .enum(['ms', 's', 'iso'])
      .default('ms')
      .describe(
        'How timestampField is written: ms or s since the epoch (a number), or an ISO 8601 string with a zone',
      ),
  })
  .refine((s) => (s.asset === undefined) !== (s.assetField === undefined), {
    message: 'give exactly one of asset (a fixed id or a {n} template) and assetField',
  })
  .refine((s) => s.allNumericFields || (s.tags !== undefined && Object.keys(s.tags).length > 0), {
    message: 'map at least one tag (tags) or set allNumericFields: true',
  })
  .refine(
    (s) => {
      if (s.asset === undefined) return true;
      const levels = s.topic.split('/');
      if (levels.at(-1) === '#') return true;
      return [...s.asset.matchAll(/\{(\d+)\}/g)].every((m) => Number(m[1]) < levels.length);
    },
    { message: 'asset refers to a topic level ({n}) that the topic filter does not have' },
  )
  .describe('One topic filter and how its JSON payloads become readings');
export type MqttJsonSubscription = z.infer<typeof MqttJsonSubscription>;

/** Whether some topic matches both filters (a message would then be mapped twice). */
export function filtersOverlap(a: string, b: string): boolean {
  const la = a.split('/');
  const lb = b.split('/');
  for (let i = 0; ; i++) {
    const x = la[i];
    const y = lb[i];
    if (x === '#' || y === '#') return true;
    if (x === undefined || y === undefined) return x === y;
    if (x !== '+' && y !== '+' && x !== y) return false;
  }
}

export const MqttJsonSource = z
  .strictObject({
    type: z.literal('mqtt-json').describe('JSON payloads on MQTT topics, mapped to tags by subscriptions'),
    ...MqttConnectionFields,
    clientId: ClientId.describe(
      'MQTT client id of the persistent session the broker keeps for this source (queued messages are kept under it); default vigil-<source name>-<host name>, the same after every restart. It must be unique on the broker: set it when two gateways share a host name, since two clients with one id take over each other’s session and keep disconnecting each other',
    ),
    qos: z
      .literal([0, 1])
      .default(1)
      .describe(
        'Subscription QoS. The source connects with a persistent session (clean session off), so with 1 the broker queues the messages published with QoS 1 while Vigil is disconnected (network outage, Vigil restart, or a broker restart when the broker persists sessions, e.g. Mosquitto persistence true) and delivers them on reconnect, and resends any not yet acknowledged; a message can then arrive twice. The broker bounds the queue (Mosquitto: max_queued_messages, default 1000; persistent_client_expiration) and keeps the session of a removed or renamed source until it expires. With 0 nothing sent while Vigil is away is kept',
      ),
    maxPayloadBytes: z
      .number()
      .int()
      .positive()
      .default(256 * 1024)
      .describe('Larger payloads are refused as too_large'),
    subscriptions: z
      .array(MqttJsonSubscription)
      .min(1)
      .superRefine((subs, ctx) => {
        for (let i = 0; i < subs.length; i++) {
          for (let j = i + 1; j < subs.length; j++) {
            if (filtersOverlap(subs[i]!.topic, subs[j]!.topic)) {
              ctx.addIssue({
                code: 'custom',
                path: [j, 'topic'],
                message: `overlaps subscription ${i} (${subs[i]!.topic}): some topic matches both, so its messages would be mapped twice; make the filters disjoint`,
              });
            }
          }
        }
      })
      .describe('Topic filters and their payload mappings; no two may match the same topic'),
    limits: TagLimits,
    expectations: MqttJsonExpectations.optional().describe(
      'Data expectations on the payloads and readings of this source: out-of-spec data is stored, flagged, counted and alerted on (docs/DATA-QUALITY.md)',
    ),
  })
  .describe('Telemetry as JSON payloads on MQTT topics, mapped to tags by config');
export type MqttJsonSourceConfig = z.infer<typeof MqttJsonSource>;

/** A Sparkplug B id (group, edge node, device): one topic level. */
const SparkplugId = z
  .string()
  .min(1)
  .regex(/^[^/+#]+$/, 'a Sparkplug id: one topic level, without / + #');

export const SparkplugSource = z
  .strictObject({
    type: z.literal('sparkplug-b').describe('Sparkplug B edge nodes, with Vigil as a host application'),
    ...MqttConnectionFields,
    clientId: ClientId.describe(
      'MQTT client id; it must be unique on the broker (two clients with one id keep disconnecting each other); default vigil-<source name>-<random>. The session is clean, as Sparkplug B wants of a host application: nothing is queued for Vigil while it is disconnected; the next message of an edge node that sent meanwhile shows a sequence gap, and Vigil asks it for a rebirth (rebirthOnGap)',
    ),
    groupId: z
      .string()
      .min(1)
      .regex(/^(\+|[^/+#]+)$/, 'a Sparkplug group id (one topic level, without / + #), or + for every group')
      .default('+')
      .describe('Sparkplug group id to follow; + for every group'),
    edgeNodes: z
      .array(SparkplugId.describe('An edge node id of the group'))
      .min(1)
      .optional()
      .describe('Follow only these edge node ids; default every edge node of the group'),
    hostId: SparkplugId.optional().describe(
      'Sparkplug host application id: when set, Vigil publishes its retained STATE (Sparkplug 3.0: spBv1.0/STATE/<hostId>, {"online": true|false, "timestamp"}) with an offline will, for edge nodes that wait for their primary host',
    ),
    rebirthOnGap: z
      .boolean()
      .default(true)
      .describe(
        'Send an edge node the NCMD Node Control/Rebirth request when its sequence numbers show a lost message, or it sends data Vigil cannot decode (before its birth, an unknown alias)',
      ),
    rebirthMinIntervalMs: z
      .number()
      .int()
      .min(0)
      .default(5000)
      .describe('At most one rebirth request per edge node within this long'),
    maxPayloadBytes: z
      .number()
      .int()
      .positive()
      .default(1024 * 1024)
      .describe('Larger payloads are refused as too_large'),
    limits: TagLimits,
    expectations: TelemetryExpectations.optional().describe(
      'Data expectations on the readings of this source: out-of-spec data is stored, flagged, counted and alerted on (docs/DATA-QUALITY.md)',
    ),
  })
  .describe(
    'Telemetry from Sparkplug B edge nodes: the asset is the device id for DBIRTH/DDATA/DDEATH and the edge node id for NBIRTH/NDATA/NDEATH; the tag is the metric name',
  );
export type SparkplugSourceConfig = z.infer<typeof SparkplugSource>;
