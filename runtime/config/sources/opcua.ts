import { z } from 'zod';
import { TelemetryExpectations } from '../../quality/config.js';
import { AssetName, Reconnect, TagLimits, TagName } from './telemetry.js';

/**
 * Config of the OPC-UA telemetry source: one client session on one server, one subscription, one
 * monitored item per configured node. See docs/OPCUA.md for security modes and the PKI folder.
 */

/**
 * An OPC-UA node id in its string form: `ns=1;s=Pump1.Temperature`, `ns=3;i=1002`,
 * `nsu=urn:plc;s=x`, `i=2258`, `ns=2;g=<guid>`, `ns=2;b=<base64>`. Checked here by shape only so
 * that reading a config does not load the OPC-UA stack; the source parses it for real.
 */
export const OpcUaNodeId = z
  .string()
  .regex(
    /^(ns=\d+;|nsu=[^;]+;)?(i=\d+|s=.+|g=[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|b=[A-Za-z0-9+/=]+)$/,
    'an OPC-UA node id such as ns=2;s=Line1.Pump.Temperature or ns=3;i=1002 (`vigil opcua browse` lists them)',
  );

export const OpcUaSecurityMode = z.enum(['None', 'Sign', 'SignAndEncrypt']);
export const OpcUaSecurityPolicy = z.enum([
  'Basic256Sha256',
  'Aes128_Sha256_RsaOaep',
  'Aes256_Sha256_RsaPss',
]);

const Deadband = z
  .strictObject({
    type: z
      .enum(['absolute', 'percent'])
      .describe(
        'absolute: in the value’s own unit; percent: of the node’s EURange (only analog items that have one)',
      ),
    value: z.number().min(0).describe('Changes smaller than this are not reported by the server'),
  })
  .refine((d) => d.type !== 'percent' || d.value <= 100, { message: 'a percent deadband is at most 100' })
  .describe('Report a value only when it moved by more than this (a data change filter on the server)');

export const OpcUaItem = z
  .strictObject({
    nodeId: OpcUaNodeId.describe('Node id of the variable to monitor'),
    asset: AssetName.describe('Asset the readings of this node belong to'),
    tag: TagName.describe('Tag name of the readings of this node'),
    samplingIntervalMs: z
      .number()
      .min(0)
      .default(1000)
      .describe('How often the server samples the node (0: as fast as it can; the server may revise it)'),
    queueSize: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(10)
      .describe('Samples the server keeps between two publishes (and across a short connection loss)'),
    deadband: Deadband.optional(),
  })
  .describe('One monitored node');

export const OpcUaSource = z
  .strictObject({
    type: z.literal('opcua').describe('An OPC-UA client: one session and one subscription on one server'),
    endpoint: z
      .string()
      .regex(
        /^opc\.tcp:\/\/[^\s/:]+(:\d{1,5})?(\/\S*)?$/,
        'an OPC-UA endpoint URL such as opc.tcp://192.168.0.10:4840 or opc.tcp://plc.local:4840/UA/Server',
      )
      .describe('Endpoint URL of the OPC-UA server'),
    securityMode: OpcUaSecurityMode.default('None').describe(
      'None: plain; Sign: messages signed; SignAndEncrypt: signed and encrypted (needs the server certificate in pkiFolder/trusted/certs)',
    ),
    securityPolicy: OpcUaSecurityPolicy.default('Basic256Sha256').describe(
      'Security policy for Sign and SignAndEncrypt (ignored with None)',
    ),
    auth: z
      .strictObject({
        username: z.string().min(1).describe('User name of the session'),
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
          .default('VIGIL_OPCUA_PASSWORD')
          .describe(
            'Environment variable holding the password, used when neither password nor passwordFile is set',
          ),
      })
      .optional()
      .describe('User name and password; without it the session is anonymous'),
    pkiFolder: z
      .string()
      .min(1)
      .default('vigil-data/pki/opcua')
      .describe(
        'Certificate folder (relative to the config file): own/ holds Vigil’s certificate and key (created on first start), trusted/certs/ the trusted server certificates, rejected/ the unknown ones that were refused',
      ),
    trustUnknownServer: z
      .boolean()
      .default(false)
      .describe(
        'Trust a server certificate never seen before and copy it into trusted/ (trust on first use). Off: it lands in rejected/ until someone moves it to trusted/certs/',
      ),
    subscription: z
      .strictObject({
        publishingIntervalMs: z
          .number()
          .min(10)
          .default(1000)
          .describe('How often the server sends the changes it collected'),
        maxKeepAliveCount: z
          .number()
          .int()
          .min(1)
          .default(10)
          .describe(
            'Publishing intervals without changes after which the server sends a keep-alive; a connection silent for 3 keep-alive periods (at least 5 s) is rebuilt',
          ),
        lifetimeCount: z
          .number()
          .int()
          .min(3)
          .default(100)
          .describe(
            'Publishing intervals without contact after which the server drops the subscription (at least 3 x maxKeepAliveCount)',
          ),
      })
      .refine((s) => s.lifetimeCount >= 3 * s.maxKeepAliveCount, {
        message: 'lifetimeCount must be at least 3 x maxKeepAliveCount',
      })
      .default({ publishingIntervalMs: 1000, maxKeepAliveCount: 10, lifetimeCount: 100 })
      .describe('The one subscription that carries every item'),
    connectTimeoutMs: z
      .number()
      .int()
      .min(100)
      .default(15_000)
      .describe(
        'A connection attempt (channel, session, subscription) that takes longer is abandoned and retried',
      ),
    items: z.array(OpcUaItem).min(1).describe('Nodes to monitor, each mapped to an asset and tag'),
    limits: TagLimits,
    expectations: TelemetryExpectations.optional().describe(
      'Data expectations on the readings of this source: out-of-spec data is stored, flagged, counted and alerted on (docs/DATA-QUALITY.md)',
    ),
    reconnect: Reconnect,
  })
  .superRefine((s, ctx) => {
    const seen = new Set<string>();
    s.items.forEach((item, i) => {
      const key = `${item.asset}\u0000${item.tag}`;
      if (seen.has(key)) {
        ctx.addIssue({
          code: 'custom',
          path: ['items', i, 'tag'],
          message: `asset ${item.asset} already has a tag ${item.tag} in this source`,
        });
      }
      seen.add(key);
    });
  })
  .describe('Telemetry from an OPC-UA server: subscriptions to monitored nodes');

export type OpcUaSource = z.infer<typeof OpcUaSource>;
export type OpcUaSourceConfig = OpcUaSource;
export type OpcUaItem = z.infer<typeof OpcUaItem>;
