import { copyFile, mkdir, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OpcUaSource } from '../../../adapters/opcua/source.js';
import { browseAddressSpace, formatTree, type BrowsedNode } from '../../../adapters/opcua/browse.js';
import { opcuaBrowseCommand } from '../../../runtime/cli/opcua.js';
import { ScriptedMachine } from '../../../simulator/machines/scripted.js';
import { SimOpcUaServer, simNodeId } from '../../../simulator/opcua/server.js';
import { freePort } from '../../helpers/ports.js';
import { LogRecorder, eventually, opcuaConfig, startRelay, tempDir } from './support.js';
import net from 'node:net';

/**
 * The OPC-UA source against the simulator's node-opcua server, over real sockets: subscriptions,
 * status codes, a server restart, SignAndEncrypt with certificates, wrong credentials, and the
 * browse command.
 */

const ITEMS = [
  { nodeId: simNodeId('pump-1', 'temperature'), asset: 'pump-1', tag: 'temperature', samplingIntervalMs: 50 },
  { nodeId: simNodeId('pump-1', 'pressure'), asset: 'pump-1', tag: 'pressure', samplingIntervalMs: 50 },
  { nodeId: simNodeId('pump-1', 'flow'), asset: 'pump-1', tag: 'flow', samplingIntervalMs: 50 },
];

let tmp: { dir: string; remove(): Promise<void> };
/** One server PKI for the whole file: creating a certificate takes a second or two. */
let serverPki: string;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  tmp = await tempDir('vigil-opcua-sim-');
  serverPki = path.join(tmp.dir, 'server-pki');
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  await tmp?.remove();
});

function machine(): ScriptedMachine {
  const m = new ScriptedMachine('pump-1', [{ name: 'temperature' }, { name: 'pressure' }, { name: 'flow' }]);
  m.set('temperature', 42);
  m.set('pressure', Number.NaN, 'bad', 'BadSensorFailure');
  m.set('flow', 3.25, 'uncertain', 'UncertainLastUsableValue');
  return m;
}

async function startServer(
  m: ScriptedMachine,
  options: Partial<ConstructorParameters<typeof SimOpcUaServer>[0]> = {},
): Promise<SimOpcUaServer> {
  const sim = new SimOpcUaServer({ port: 0, machines: [m], pkiFolder: serverPki, ...options });
  await sim.start();
  cleanups.push(() => sim.stop());
  return sim;
}

function startSource(name: string, fields: Record<string, unknown>, rec: LogRecorder): Promise<OpcUaSource> {
  const source = new OpcUaSource(name, opcuaConfig(fields), rec);
  const life = new AbortController();
  cleanups.push(async () => {
    life.abort();
    await source.stop();
  });
  return source.start(life.signal).then(() => source);
}

const latest = (rec: LogRecorder, tag: string) => rec.series('pump-1', tag).at(-1);

describe('OPC-UA source against the simulator', () => {
  it('delivers values with source and server timestamps, and bad/uncertain statuses by name', async () => {
    const m = machine();
    const sim = await startServer(m);
    const rec = new LogRecorder(tmp.dir);
    const before = Date.now();
    const source = await startSource(
      'plc',
      {
        endpoint: sim.endpointUrl,
        pkiFolder: 'client-pki-plain',
        items: [...ITEMS, { nodeId: 'ns=1;s=pump-1.nope', asset: 'pump-1', tag: 'nope' }],
      },
      rec,
    );
    expect(source.state()).toBe('up');
    await rec.until(
      () => ['temperature', 'pressure', 'flow', 'nope'].every((t) => latest(rec, t) !== undefined),
      'a reading of every item',
    );

    const t = latest(rec, 'temperature')!;
    expect(t).toMatchObject({ source: 'plc', asset: 'pump-1', value: 42, quality: 'good' });
    expect(t.status).toBeUndefined();
    expect(t.sourceTime).toBeGreaterThanOrEqual(before - 1000);
    expect(t.sourceTime).toBeLessThanOrEqual(t.receivedAt);
    expect(typeof t.serverTime).toBe('number');
    expect(t.serverTime!).toBeGreaterThanOrEqual(t.sourceTime!);

    expect(latest(rec, 'pressure')).toMatchObject({
      value: null,
      quality: 'bad',
      status: 'BadSensorFailure',
    });
    expect(latest(rec, 'flow')).toMatchObject({
      value: 3.25,
      quality: 'uncertain',
      status: 'UncertainLastUsableValue',
    });
    // A node that does not exist is a bad reading with the server's verdict, and a hint in the log.
    expect(latest(rec, 'nope')).toMatchObject({ value: null, quality: 'bad', status: 'BadNodeIdUnknown' });
    expect(rec.logged(/ns=1;s=pump-1\.nope.*BadNodeIdUnknown.*vigil opcua browse/, 40)).toHaveLength(1);

    // Changes on the machine reach the source, including a recovery from bad to good.
    m.set('temperature', 43.5);
    m.set('pressure', 7);
    await rec.until(
      () => latest(rec, 'temperature')?.value === 43.5 && latest(rec, 'pressure')?.quality === 'good',
      'the changed values',
    );
    expect(latest(rec, 'pressure')).toMatchObject({ value: 7, quality: 'good' });
    expect(rec.rejections).toEqual([]);
    expect(rec.reconnects).toBe(0);
  });

  it('applies absolute and percent (of EURange) deadbands on the server', async () => {
    const m = new ScriptedMachine('tank-1', [{ name: 'temperature' }, { name: 'level', min: 0, max: 200 }]);
    m.set('temperature', 20);
    m.set('level', 100);
    const sim = await startServer(m);
    const rec = new LogRecorder(tmp.dir);
    const node = (tag: string) => simNodeId('tank-1', tag);
    await startSource(
      'plc',
      {
        endpoint: sim.endpointUrl,
        pkiFolder: 'client-pki-plain',
        items: [
          // The same nodes without a filter, to show that the small steps did happen.
          { nodeId: node('temperature'), asset: 'tank-1', tag: 'temperature', samplingIntervalMs: 50 },
          { nodeId: node('level'), asset: 'tank-1', tag: 'level', samplingIntervalMs: 50 },
          {
            nodeId: node('temperature'),
            asset: 'tank-1',
            tag: 'temperature_db',
            samplingIntervalMs: 50,
            deadband: { type: 'absolute', value: 1 },
          },
          {
            nodeId: node('level'),
            asset: 'tank-1',
            tag: 'level_db',
            samplingIntervalMs: 50,
            deadband: { type: 'percent', value: 5 }, // 5 % of 0..200 = 10
          },
        ],
      },
      rec,
    );
    const values = (tag: string) => rec.series('tank-1', tag).map((r) => r.value);
    await rec.until(
      () => values('temperature_db').length > 0 && values('level_db').length > 0,
      'initial values',
    );
    m.set('temperature', 20.5);
    m.set('level', 105);
    await rec.until(
      () => values('temperature').includes(20.5) && values('level').includes(105),
      'the small steps, unfiltered',
    );
    m.set('temperature', 22);
    m.set('level', 120);
    await rec.until(
      () => values('temperature_db').includes(22) && values('level_db').includes(120),
      'the large steps, filtered',
    );
    expect(values('temperature_db')).toEqual([20, 22]);
    expect(values('level_db')).toEqual([100, 120]);
    expect(rec.logged(/refused to monitor/, 40)).toEqual([]);
  });

  it('resumes data after the server restarts, and counts the reconnection', async () => {
    const m = machine();
    const sim = await startServer(m);
    const rec = new LogRecorder(tmp.dir);
    const source = await startSource(
      'plc',
      { endpoint: sim.endpointUrl, pkiFolder: 'client-pki-plain', items: ITEMS },
      rec,
    );
    await rec.until(() => latest(rec, 'temperature')?.value === 42, 'the first value');

    await sim.stop();
    await eventually(
      'the source to notice the lost server',
      () => source.state() === 'down',
      () => rec.text(),
    );
    m.set('temperature', 51);
    await new Promise((r) => setTimeout(r, 800));
    await sim.start(); // a new server on the same port: sessions and subscriptions are gone

    await rec.until(() => latest(rec, 'temperature')?.value === 51, 'data after the restart', 20_000);
    expect(rec.reconnects).toBeGreaterThanOrEqual(1);
    expect(source.state()).toBe('up');
    expect(rec.logged(/lost the connection/, 40).length).toBeGreaterThanOrEqual(1);

    // And it keeps flowing.
    m.set('temperature', 52);
    await rec.until(() => latest(rec, 'temperature')?.value === 52, 'a later value');
  });

  it('keeps the Overflow flag of samples lost in the server queue, and warns once per item', async () => {
    // A value that changes every 10 ms, sampled every 50 ms, published every 400 ms into a queue of
    // 2: the server throws samples away at every publish and flags the oldest one it kept.
    const m = new ScriptedMachine('pump-1', [{ name: 'vibration' }, { name: 'temperature' }]);
    let n = 0;
    const ticker = setInterval(() => m.set('vibration', ++n), 10);
    cleanups.push(async () => clearInterval(ticker));
    m.set('temperature', 42);
    const sim = await startServer(m);
    const rec = new LogRecorder(tmp.dir);
    const node = simNodeId('pump-1', 'vibration');
    await startSource(
      'plc',
      {
        endpoint: sim.endpointUrl,
        pkiFolder: 'client-pki-plain',
        subscription: { publishingIntervalMs: 400, maxKeepAliveCount: 10, lifetimeCount: 100 },
        items: [
          { nodeId: node, asset: 'pump-1', tag: 'vibration', samplingIntervalMs: 50, queueSize: 2 },
          { ...ITEMS[0]!, queueSize: 2 },
        ],
      },
      rec,
    );
    const overflowed = () => rec.series('pump-1', 'vibration').filter((r) => r.status === 'Good#Overflow');
    await rec.until(() => overflowed().length >= 3, 'three publishes with lost samples');
    for (const r of overflowed()) {
      // The value itself is fine: still good, still a number.
      expect(r).toMatchObject({ quality: 'good', asset: 'pump-1', tag: 'vibration' });
      expect(typeof r.value).toBe('number');
    }
    const warned = rec.logged(/samples of pump-1\/vibration .* were lost at the OPC-UA server/, 40);
    expect(warned, rec.text()).toHaveLength(1);
    expect(warned[0]!.msg).toContain(node);
    expect(warned[0]!.msg).toMatch(
      /queueSize 2.*raise the item's queueSize or shorten subscription\.publishingIntervalMs/,
    );
    // A value that does not change never overflows.
    expect(rec.series('pump-1', 'temperature').every((r) => r.status === undefined)).toBe(true);
    expect(rec.rejections).toEqual([]);
  });

  it('resolves nsu= node ids again when a restarted server renumbered its namespaces', async () => {
    const PLANT = 'urn:vigil:test:plant';
    const m = machine();
    const before = await startServer(m, { plantNamespace: PLANT }); // the plant at ns=2
    const port = Number(new URL(before.endpointUrl.replace('opc.tcp', 'http')).port);
    const rec = new LogRecorder(tmp.dir);
    const source = await startSource(
      'plc',
      {
        endpoint: before.endpointUrl,
        pkiFolder: 'client-pki-plain',
        items: ITEMS.map((i) => ({ ...i, nodeId: `nsu=${PLANT};s=pump-1.${i.tag}` })),
      },
      rec,
    );
    await rec.until(() => latest(rec, 'temperature')?.value === 42, 'the first value');

    await before.stop();
    await eventually(
      'the source to notice the lost server',
      () => source.state() === 'down',
      () => rec.text(),
    );
    m.set('temperature', 51);
    // The same server restarted with a module more: its namespace comes first, the plant is ns=3,
    // and node-opcua's repair re-creates the items on ns=2, where they do not exist.
    const restartedAt = rec.received.length;
    await startServer(m, { port, plantNamespace: PLANT, extraNamespaces: ['urn:vigil:test:added'] });

    await rec.until(() => latest(rec, 'temperature')?.value === 51, 'data after the restart', 20_000);
    const renumbered = rec.logged(/renumbered its namespaces/, 40);
    expect(renumbered, rec.text()).toHaveLength(1);
    expect(renumbered[0]!.msg).toContain(`${PLANT} was ns=2, now ns=3`);
    expect(rec.reconnects).toBe(1);
    expect(source.state()).toBe('up');
    const after = rec.received.slice(restartedAt);
    expect(after.filter((r) => r.status === 'BadNodeIdUnknown')).toEqual([]);
    expect(latest(rec, 'pressure')).toMatchObject({ quality: 'bad', status: 'BadSensorFailure' });
    m.set('temperature', 52);
    await rec.until(() => latest(rec, 'temperature')?.value === 52, 'a later value');
  });

  it('starts while the server is down, says so, and connects once it is up', async () => {
    const m = machine();
    const port = await freePort();
    const rec = new LogRecorder(tmp.dir);
    const source = await startSource(
      'plc',
      { endpoint: `opc.tcp://127.0.0.1:${port}`, pkiFolder: 'client-pki-plain', items: ITEMS },
      rec,
    );
    expect(source.state()).toBe('down');
    expect(
      rec.logged(/cannot reach the OPC-UA server at opc\.tcp:\/\/127\.0\.0\.1:\d+: connection refused/, 40),
    ).not.toHaveLength(0);

    await startServer(m, { port });
    await rec.until(() => latest(rec, 'temperature')?.value === 42, 'data once the server is up', 15_000);
    expect(source.state()).toBe('up');
    expect(rec.reconnects).toBe(0); // the first connection is not a reconnection
  });

  it('rebuilds a connection that went silent, and gives up on attempts that get no answer', async () => {
    const m = machine();
    const sim = await startServer(m);
    const relay = await startRelay(Number(new URL(sim.endpointUrl.replace('opc.tcp', 'http')).port));
    cleanups.push(() => relay.close());
    const rec = new LogRecorder(tmp.dir);
    const source = await startSource(
      'plc',
      {
        endpoint: `opc.tcp://127.0.0.1:${relay.port}`,
        pkiFolder: 'client-pki-plain',
        connectTimeoutMs: 800,
        subscription: { publishingIntervalMs: 100, maxKeepAliveCount: 3, lifetimeCount: 100 },
        items: ITEMS,
      },
      rec,
    );
    await rec.until(() => latest(rec, 'temperature')?.value === 42, 'the first value');

    // Packets dropped, sockets open: only the missing keep-alives tell (3 periods, at least 5 s).
    relay.freeze();
    m.set('temperature', 61);
    await eventually(
      'the silent connection to be noticed',
      () => source.state() === 'down',
      () => rec.text(),
      15_000,
    );
    expect(rec.logged(/no data and no keep-alive from the server/, 40)).not.toHaveLength(0);
    // New attempts reach a host that accepts and never answers: abandoned after connectTimeoutMs.
    await eventually(
      'an attempt to time out',
      () => rec.logged(/no answer in time/, 20).length > 0,
      () => rec.text(),
      10_000,
    );
    expect(rec.received.filter((r) => r.value === 61)).toHaveLength(0);

    relay.thaw();
    await rec.until(() => latest(rec, 'temperature')?.value === 61, 'data after the path recovered', 15_000);
    expect(source.state()).toBe('up');
    expect(rec.reconnects).toBe(1);

    await source.stop();
    await source.stop(); // idempotent
    expect(source.state()).toBe('stopped');
  });

  it('gives up on a connection attempt that gets no answer, at start', async () => {
    // A port that accepts and then says nothing, as a wrong device on the right address may.
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const held: net.Socket[] = [];
    silent.on('connection', (s) => held.push(s));
    cleanups.push(async () => {
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    });
    const rec = new LogRecorder(tmp.dir);
    const started = Date.now();
    const source = await startSource(
      'plc',
      {
        endpoint: `opc.tcp://127.0.0.1:${(silent.address() as net.AddressInfo).port}`,
        pkiFolder: 'client-pki-plain',
        connectTimeoutMs: 500,
        items: ITEMS,
      },
      rec,
    );
    expect(Date.now() - started).toBeLessThan(5000); // start() did not wait for the OS's TCP timeout
    expect(source.state()).toBe('down');
    expect(rec.logged(/cannot reach the OPC-UA server .*: no answer in time/, 40)).toHaveLength(1);

    // Stopped in the middle of an attempt: start() and stop() both return at once.
    const patient = new OpcUaSource(
      'patient',
      opcuaConfig({
        endpoint: `opc.tcp://127.0.0.1:${(silent.address() as net.AddressInfo).port}`,
        pkiFolder: 'client-pki-plain',
        connectTimeoutMs: 60_000,
        items: ITEMS,
      }),
      new LogRecorder(tmp.dir),
    );
    const t0 = Date.now();
    const starting = patient.start(new AbortController().signal);
    await new Promise((r) => setTimeout(r, 300));
    await patient.stop();
    await starting;
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(patient.state()).toBe('stopped');
  });

  it('uses SignAndEncrypt once the server certificate is trusted, and refuses it before', async () => {
    const m = machine();
    const sim = await startServer(m, { securityModes: ['SignAndEncrypt'] });
    const rec = new LogRecorder(tmp.dir);
    const pki = path.join(tmp.dir, 'client-pki-secure');
    const source = await startSource(
      'plc',
      { endpoint: sim.endpointUrl, securityMode: 'SignAndEncrypt', pkiFolder: pki, items: ITEMS },
      rec,
    );

    // Unknown server certificate: refused, kept in rejected/, and the log says what to do.
    expect(source.state()).toBe('down');
    const refused = rec.logged(/certificate of the OPC-UA server .* is not trusted/, 50);
    expect(refused).not.toHaveLength(0);
    const rejected = await readdir(path.join(pki, 'rejected'));
    expect(rejected).toHaveLength(1);
    expect(refused[0]!.msg).toContain(path.join(pki, 'rejected', rejected[0]!));
    expect(refused[0]!.msg).toContain(path.join(pki, 'trusted', 'certs'));
    expect(rec.received).toHaveLength(0);

    // The integrator puts it into trusted/certs/ (copied, not moved: the leftover in rejected/,
    // which node-opcua would still hold against it, is cleared): the next retry connects.
    await mkdir(path.join(pki, 'trusted', 'certs'), { recursive: true });
    await copyFile(
      path.join(pki, 'rejected', rejected[0]!),
      path.join(pki, 'trusted', 'certs', rejected[0]!),
    );
    await rec.until(() => latest(rec, 'temperature')?.value === 42, 'encrypted data once trusted', 15_000);
    expect(source.state()).toBe('up');
    expect(latest(rec, 'pressure')).toMatchObject({ quality: 'bad', status: 'BadSensorFailure' });
    expect(await readdir(path.join(pki, 'rejected'))).toEqual([]);
  });

  it("signs with an AES policy, and names Vigil's certificate when the server does not trust it", async () => {
    const m = machine();
    const sim = await startServer(m, { securityModes: ['Sign', 'SignAndEncrypt'], trustAllClients: false });
    const serverCert = path.join(tmp.dir, 'server-cert.pem');
    await copyFile(sim.certificateFile, serverCert);
    const trustingPki = async (name: string) => {
      const pki = path.join(tmp.dir, name);
      await mkdir(path.join(pki, 'trusted', 'certs'), { recursive: true });
      await copyFile(serverCert, path.join(pki, 'trusted', 'certs', 'sim.pem'));
      return pki;
    };

    // A client whose certificate the server has never seen: the server closes the channel.
    const rec = new LogRecorder(tmp.dir);
    const pki = await trustingPki('client-pki-unknown-to-server');
    const source = await startSource(
      'plc',
      {
        endpoint: sim.endpointUrl,
        securityMode: 'Sign',
        securityPolicy: 'Aes128_Sha256_RsaOaep',
        pkiFolder: pki,
        items: ITEMS,
      },
      rec,
    );
    expect(source.state()).toBe('down');
    const refused = rec.logged(/refused Vigil's secure channel/, 50);
    expect(refused, rec.text()).toHaveLength(1);
    expect(refused[0]!.msg).toContain(path.join(pki, 'own', 'certs', 'client_certificate.pem'));

    // The server's administrator moves Vigil's certificate from the server's rejected list to its
    // trusted one; then Sign works.
    const atServer = (await readdir(path.join(serverPki, 'rejected'))).filter((f) => f.startsWith('Vigil'));
    expect(atServer).toHaveLength(1);
    await mkdir(path.join(serverPki, 'trusted', 'certs'), { recursive: true });
    await rename(
      path.join(serverPki, 'rejected', atServer[0]!),
      path.join(serverPki, 'trusted', 'certs', atServer[0]!),
    );
    await sim.restart(); // the simulator reads its trust list when it starts
    await eventually(
      'signed data',
      () => latest(rec, 'temperature')?.value === 42,
      () => rec.text(),
      15_000,
    );
    expect(source.state()).toBe('up');
  });

  it('reports wrong credentials clearly, stays down and keeps retrying; the right ones work', async () => {
    const m = machine();
    const sim = await startServer(m, { users: { alice: 'secret' } });
    const rec = new LogRecorder(tmp.dir);
    const source = await startSource(
      'plc',
      {
        endpoint: sim.endpointUrl,
        pkiFolder: 'client-pki-plain',
        auth: { username: 'alice', password: 'wrong' },
        items: ITEMS,
      },
      rec,
    );
    expect(source.state()).toBe('down');
    const refused = rec.logged(/refused the login of user 'alice'/, 50);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.msg).toContain(sim.endpointUrl);
    expect(refused[0]!.msg).toMatch(/BadUserAccessDenied|BadIdentityTokenRejected/);
    // It retries with back-off (further identical failures are logged at debug level).
    await eventually(
      'a few more attempts',
      () => rec.lines.filter((l) => /refused the login/.test(l.msg)).length >= 3,
      () => rec.text(),
    );
    expect(source.state()).toBe('down');
    expect(rec.received).toHaveLength(0);

    // Anonymous is refused with its own message.
    const anon = new LogRecorder(tmp.dir);
    await startSource(
      'anon',
      { endpoint: sim.endpointUrl, pkiFolder: 'client-pki-plain', items: ITEMS },
      anon,
    );
    expect(anon.logged(/refuses anonymous sessions/, 50), anon.text()).toHaveLength(1);

    const ok = new LogRecorder(tmp.dir);
    const good = await startSource(
      'plc-ok',
      {
        endpoint: sim.endpointUrl,
        pkiFolder: 'client-pki-plain',
        auth: { username: 'alice', passwordEnv: 'VIGIL_TEST_OPCUA_PW' },
        items: ITEMS,
      },
      ok,
    );
    // passwordEnv unset: an empty password is tried, refused, and the log says which variable.
    expect(ok.logged(/VIGIL_TEST_OPCUA_PW/, 40)).not.toHaveLength(0);
    expect(good.state()).toBe('down');

    process.env.VIGIL_TEST_OPCUA_PW_OK = 'secret';
    try {
      const right = new LogRecorder(tmp.dir);
      const s = await startSource(
        'plc-right',
        {
          endpoint: sim.endpointUrl,
          pkiFolder: 'client-pki-plain',
          auth: { username: 'alice', passwordEnv: 'VIGIL_TEST_OPCUA_PW_OK' },
          items: ITEMS,
        },
        right,
      );
      expect(s.state()).toBe('up');
      await right.until(
        () => right.series('pump-1', 'temperature').length > 0,
        'data with the right password',
      );
    } finally {
      delete process.env.VIGIL_TEST_OPCUA_PW_OK;
    }
  });
});

describe('vigil opcua browse', () => {
  const find = (n: BrowsedNode, nodeId: string): BrowsedNode | undefined =>
    n.nodeId === nodeId ? n : n.children.map((c) => find(c, nodeId)).find((x) => x !== undefined);

  it('lists the plant with node ids, data types and values', async () => {
    const sim = await startServer(machine());
    const tree = await browseAddressSpace({
      endpoint: sim.endpointUrl,
      pkiFolder: path.join(tmp.dir, 'browse-pki'),
    });
    expect(tree.nodeId).toBe('ns=0;i=85');
    expect(find(tree, 'ns=1;s=Plant')).toMatchObject({ browseName: 'Plant', nodeClass: 'Object' });
    expect(find(tree, 'ns=1;s=pump-1.temperature')).toMatchObject({
      browseName: 'temperature',
      nodeClass: 'Variable',
      dataType: 'Double',
      value: 42,
    });
    expect(find(tree, 'ns=1;s=pump-1.pressure')).toMatchObject({ status: 'BadSensorFailure', value: null });
    // The standard's Server object is listed, not expanded.
    expect(find(tree, 'ns=0;i=2253')).toMatchObject({ collapsed: true, children: [] });

    const text = formatTree(tree);
    expect(text).toMatch(/temperature {2}ns=1;s=pump-1\.temperature {2}Variable {2}Double = 42/);
    expect(text).toContain('ns=1;s=pump-1.flow');
  });

  it('prints the tree (or JSON) and exits 0; an unreachable endpoint exits 1 with a clear message', async () => {
    const sim = await startServer(machine());
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: { write: (s: string) => out.push(s) }, err: { write: (s: string) => err.push(s) } };
    const pki = path.join(tmp.dir, 'browse-pki');

    expect(await opcuaBrowseCommand(sim.endpointUrl, { pki, depth: 3 }, io)).toBe(0);
    expect(out.join('')).toContain('ns=1;s=pump-1.temperature');
    expect(err.join('')).toBe('');

    out.length = 0;
    expect(await opcuaBrowseCommand(sim.endpointUrl, { pki, json: true }, io)).toBe(0);
    const json = JSON.parse(out.join('')) as BrowsedNode;
    expect(find(json, 'ns=1;s=pump-1.flow')).toMatchObject({
      value: 3.25,
      status: 'UncertainLastUsableValue',
    });

    const port = await freePort();
    expect(await opcuaBrowseCommand(`opc.tcp://127.0.0.1:${port}`, { pki, timeout: 5 }, io)).toBe(1);
    expect(err.join('')).toMatch(
      /vigil opcua browse: cannot reach the OPC-UA server at opc\.tcp:\/\/127\.0\.0\.1:\d+: connection refused/,
    );

    err.length = 0;
    expect(await opcuaBrowseCommand('http://nope', { pki }, io)).toBe(2);
    expect(err.join('')).toContain('not an OPC-UA endpoint URL');
  });
});
