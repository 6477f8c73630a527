import os from 'node:os';
import client from 'node-opcua-client';
import type { ClientSession, OPCUAClient as OPCUAClientType, UserIdentityInfo } from 'node-opcua-client';
import { errorMessage } from '../../runtime/errors.js';
import type { Pki } from './pki.js';
import './logging.js';

const { OPCUAClient, MessageSecurityMode, SecurityPolicy, UserTokenType } = client;
export type OpcUaClient = OPCUAClientType;
export type OpcUaSession = ClientSession;

export type SecurityModeName = 'None' | 'Sign' | 'SignAndEncrypt';
export type SecurityPolicyName = 'Basic256Sha256' | 'Aes128_Sha256_RsaOaep' | 'Aes256_Sha256_RsaPss';

export interface ClientOptions {
  endpoint: string;
  securityMode: SecurityModeName;
  securityPolicy: SecurityPolicyName;
  pki: Pki;
  /**
   * node-opcua's own reconnection after a lost connection (new channel, session reactivated or
   * re-created, subscriptions transferred or re-created), with these delays. Absent: none, for a
   * one-shot command.
   */
  reconnect?: { initialDelayMs: number; maxDelayMs: number };
  /** A request without an answer in this long fails (ms). */
  requestTimeoutMs?: number;
}

/** A client whose first connect() tries once, so that the caller's own back-off and log lines rule. */
export function createClient(options: ClientOptions): OpcUaClient {
  const secure = options.securityMode !== 'None';
  return OPCUAClient.create({
    applicationName: 'Vigil',
    applicationUri: `urn:${os.hostname()}:vigil`,
    clientName: 'vigil',
    endpointMustExist: false,
    securityMode: MessageSecurityMode[options.securityMode],
    securityPolicy: secure ? SecurityPolicy[options.securityPolicy] : SecurityPolicy.None,
    clientCertificateManager: options.pki.manager,
    keepSessionAlive: true,
    requestedSessionTimeout: 60_000,
    defaultTransactionTimeout: options.requestTimeoutMs ?? 15_000,
    transportTimeout: options.requestTimeoutMs ?? 15_000,
    // maxRetry 1, not 0: node-opcua only repairs a lost connection when retries are allowed at
    // all; a lost connection is then retried without end, with these delays.
    connectionStrategy: options.reconnect
      ? {
          maxRetry: 1,
          initialDelay: options.reconnect.initialDelayMs,
          maxDelay: options.reconnect.maxDelayMs,
        }
      : { maxRetry: 0, initialDelay: 100, maxDelay: 100 },
  });
}

export function userIdentity(auth: { username: string; password: string } | undefined): UserIdentityInfo {
  if (!auth) return { type: UserTokenType.Anonymous };
  return { type: UserTokenType.UserName, userName: auth.username, password: auth.password };
}

export type FailureKind =
  'unreachable' | 'untrusted_server' | 'client_refused' | 'credentials' | 'security' | 'timeout' | 'other';

export interface Explained {
  kind: FailureKind;
  /** One line a person can act on: what failed, where, what to do. */
  message: string;
}

/**
 * Turns node-opcua's connection and session errors into a line an integrator can act on; node-opcua
 * only says things like `BadIdentityTokenRejected (0x80210000)`.
 */
export async function explainFailure(
  err: unknown,
  options: {
    endpoint: string;
    username?: string | undefined;
    pki: Pki;
    securityMode: SecurityModeName;
    securityPolicy?: SecurityPolicyName;
    /** Whose words the advice uses: a source's config keys (default) or the browse command's options. */
    audience?: 'config' | 'cli';
  },
): Promise<Explained> {
  const raw = errorMessage(err);
  const at = options.endpoint;
  const cli = options.audience === 'cli';
  const words = {
    retry: cli ? 'then run the command again' : 'Vigil retries on its own',
    trustAll: cli ? 'or pass --trust-server' : 'or set trustUnknownServer',
    user: cli ? '--user' : 'auth.username',
    password: cli ? '--password or VIGIL_OPCUA_PASSWORD' : 'auth.password or the auth.passwordEnv variable',
    security: cli ? '--security-mode and --security-policy' : 'securityMode and securityPolicy',
  };
  if (/server Certificate verification failed|BadCertificateUntrusted.*verification/i.test(raw)) {
    const file = await options.pki.newestRejected();
    return {
      kind: 'untrusted_server',
      message:
        `the certificate of the OPC-UA server ${at} is not trusted (${statusIn(raw) ?? raw}); it was put in ` +
        `${file ?? options.pki.rejectedFolder}. If this is the right server, move that file into ` +
        `${options.pki.trustedFolder}/ (${words.retry}), ${words.trustAll}`,
    };
  }
  if (/BadUserAccessDenied|BadIdentityToken|BadUserSignatureInvalid/.test(raw)) {
    return {
      kind: 'credentials',
      message: options.username
        ? `the OPC-UA server ${at} refused the login of user '${options.username}' (${statusIn(raw)}): ` +
          `check ${words.user} and the password (${words.password})`
        : `the OPC-UA server ${at} refuses anonymous sessions (${statusIn(raw)}): it wants a user; give ${words.user} and a password`,
    };
  }
  if (/Cannot find ANONYMOUS user token policy/i.test(raw)) {
    return {
      kind: 'credentials',
      message: `the OPC-UA server ${at} refuses anonymous sessions: it wants a user; give ${words.user} and a password`,
    };
  }
  if (/Cannot find \w+ user token policy/i.test(raw)) {
    return {
      kind: 'credentials',
      message: `the OPC-UA server ${at} does not accept user name and password logins on this endpoint (${raw}); check with its administrator, or try another security mode`,
    };
  }
  if (/BadSecurityChecksFailed|BadCertificate|BadSecurityPolicyRejected|BadNonceInvalid/.test(raw)) {
    return {
      kind: 'client_refused',
      message:
        `the OPC-UA server ${at} refused Vigil's secure channel (${statusIn(raw) ?? raw}): the server probably ` +
        `does not trust Vigil's certificate ${options.pki.ownCertificateFile}; add it to the server's trust list`,
    };
  }
  if (/Cannot find an Endpoint|endpoint.*(security|mode|policy)|BadSecurityModeRejected/i.test(raw)) {
    return {
      kind: 'security',
      message: `the OPC-UA server ${at} offers no endpoint with security mode ${options.securityMode}${options.securityPolicy ? ` and policy ${options.securityPolicy}` : ''} (${raw}); check ${words.security} against what the server offers`,
    };
  }
  if (/ECONNREFUSED/.test(raw)) {
    return {
      kind: 'unreachable',
      message: `cannot reach the OPC-UA server at ${at}: connection refused; is the server running and the port right?`,
    };
  }
  if (/ENOTFOUND|EAI_AGAIN/.test(raw)) {
    return {
      kind: 'unreachable',
      message: `cannot reach the OPC-UA server at ${at}: the host name does not resolve`,
    };
  }
  if (/ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|timeout|timed out/i.test(raw)) {
    return {
      kind: 'timeout',
      message: `cannot reach the OPC-UA server at ${at}: no answer in time (${raw}); check the network path and the firewall`,
    };
  }
  return { kind: 'other', message: `OPC-UA server ${at}: ${raw}` };
}

function statusIn(text: string): string | undefined {
  return /\b((?:Bad|Uncertain)[A-Za-z]+)/.exec(text)?.[1];
}
