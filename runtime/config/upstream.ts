import { z } from 'zod';
import { DATA_CLASSES } from '../forward/types.js';
import { MqttTls } from './sources/mqtt.js';
import { Reconnect } from './sources/telemetry.js';

/**
 * The upstream (cloud or plant) broker that stored readings, results and alerts are forwarded to:
 * a second MQTT connection, separate from the local alert broker, with its own credentials and
 * TLS. docs/STORE-AND-FORWARD.md describes the delivery guarantees.
 */
export const UpstreamConfig = z.strictObject({
  enabled: z
    .boolean()
    .default(true)
    .describe('Forward to the upstream broker (false keeps the settings but sends nothing)'),
  url: z
    .string()
    .regex(/^(mqtts?|wss?|tcp|ssl):\/\/[^/?#]+/, 'an MQTT URL such as mqtts://plant-broker:8883')
    .describe('Upstream broker URL; mqtts:// for TLS'),
  clientId: z
    .string()
    .min(1)
    .max(200)
    .optional()
    .describe('MQTT client id; default vigil-<device id>-upstream'),
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
    .default('VIGIL_UPSTREAM_PASSWORD')
    .describe(
      'Environment variable holding the password (used when neither password nor passwordFile is set)',
    ),
  tls: MqttTls.optional().describe('TLS settings for mqtts:// URLs: CA, client certificate and key'),
  topicPrefix: z
    .string()
    .regex(/^[^#+]+$/, 'no MQTT wildcards')
    .default('vigil')
    .describe('Messages go to <topicPrefix>/<device id>/upstream/<class>'),
  classes: z
    .array(z.enum(DATA_CLASSES))
    .min(1)
    .default([...DATA_CLASSES])
    .describe('What is forwarded: alerts, results, readings (always in that order of priority)'),
  batchSize: z.number().int().min(1).max(10_000).default(200).describe('Rows per MQTT message at most'),
  maxRowsPerSecond: z
    .number()
    .positive()
    .default(5_000)
    .describe('Drain rate: rows sent per second at most, so that a returning link is not flooded'),
  maxInFlight: z
    .number()
    .int()
    .min(1)
    .max(100)
    .default(8)
    .describe('Messages sent and not yet acknowledged (PUBACK) at most'),
  ackTimeoutMs: z
    .number()
    .int()
    .min(100)
    .default(10_000)
    .describe(
      'No acknowledgement at all for this long while messages are in flight means the link is dead: the connection is restarted, what was in flight is resent, and fewer and smaller messages are sent at once until acknowledgements keep up',
    ),
  keepaliveSeconds: z.number().int().min(0).default(30).describe('MQTT keep-alive interval'),
  reconnect: Reconnect,
  flushOnStopSeconds: z
    .number()
    .min(0)
    .default(5)
    .describe('On shutdown, keep forwarding the backlog for at most this long'),
});
export type UpstreamConfig = z.infer<typeof UpstreamConfig>;
