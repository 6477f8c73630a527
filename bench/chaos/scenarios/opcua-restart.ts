import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { TickMachine } from '../../../simulator/chaos/tick-machine.js';
import type { SimOpcUaServer } from '../../../simulator/opcua/server.js';
import { PLC } from '../rig.js';
import { secondsSince, sleep, waitSeconds, type DrillContext, type Scenario } from '../drill.js';

/**
 * The simulator's OPC-UA server (a PLC) is stopped under load and started again `durationS` later
 * on the same port: sessions and subscriptions are gone, the daemon's OPC-UA source must notice,
 * reconnect, and subscribe again. The PLC's `tick` tag counts 200 ms periods, so the ticks the
 * gateway stored show exactly which moments it got: ticks while the server was down were never
 * sent (a known loss at the device side, not accepted, counted apart); a tick missing anywhere
 * else was lost on the way, and fails the drill.
 *
 * Recovery (seconds from the server's restart): `sourceUp` (the source reports up) and
 * `readingsFlow` (a reading of the PLC accepted after the restart).
 */

/** Long against the 50 ms sampling, so that a busy moment of the server's event loop does not skip a tick. */
const TICK_MS = 200;
const ASSET = 'press-1';

export function opcuaRestart(): Scenario {
  let server: SimOpcUaServer | undefined;
  let machine: TickMachine | undefined;
  let pki: string | undefined;
  let stoppedAt = 0;
  let restartedAt = 0;
  return {
    name: 'opcua-restart',
    summary: "the simulator's OPC-UA server (a PLC) is stopped under load and restarted on the same port",
    async prepare() {
      // node-opcua is heavy: loaded only for this drill.
      const { SimOpcUaServer, simNodeId } = await import('../../../simulator/opcua/server.js');
      pki = await mkdtemp(path.join(os.tmpdir(), 'vigil-chaos-opcua-'));
      machine = new TickMachine(ASSET, TICK_MS);
      server = new SimOpcUaServer({ port: 0, machines: [machine], pkiFolder: pki, securityModes: ['None'] });
      const { endpointUrl } = await server.start();
      return {
        withOpcua: true,
        rig: {
          opcua: {
            endpoint: endpointUrl,
            items: [
              { nodeId: simNodeId(ASSET, 'tick'), asset: ASSET, tag: 'tick' },
              { nodeId: simNodeId(ASSET, 'level'), asset: ASSET, tag: 'level' },
            ],
          },
        },
        cleanup: async () => {
          await server?.stop().catch(() => undefined);
          if (pki) await rm(pki, { recursive: true, force: true });
        },
      };
    },
    async inject(ctx) {
      const { rig, options } = ctx;
      ctx.say(`opcua-restart: stopping the OPC-UA server for ${options.durationS} s`);
      stoppedAt = Date.now();
      await server!.stop();
      const detected = await waitSeconds(
        ctx,
        'the OPC-UA source to notice the server gone',
        stoppedAt,
        async () => (await rig.status())?.telemetry?.[PLC]?.state !== 'up',
        options.durationS + 60,
      );
      await sleep(Math.max(0, stoppedAt + options.durationS * 1000 - Date.now()));
      await ctx.mark('fault');
      await server!.start();
      restartedAt = Date.now();
      ctx.say(`opcua-restart: server back after ${secondsSince(stoppedAt)} s`);
      const [sourceUp, readingsFlow] = await Promise.all([
        waitSeconds(
          ctx,
          'the OPC-UA source to come up',
          restartedAt,
          async () => (await rig.status())?.telemetry?.[PLC]?.state === 'up',
          120,
        ),
        waitSeconds(
          ctx,
          'readings of the PLC after the restart',
          restartedAt,
          async () => ((await rig.status())?.telemetry?.[PLC]?.lastReadingAt ?? 0) >= restartedAt,
          120,
        ),
      ]);
      ctx.recovery.sourceUp = sourceUp;
      ctx.recovery.readingsFlow = readingsFlow;
      ctx.fault.outageS = Math.round((restartedAt - stoppedAt) / 10) / 100;
      ctx.fault.detectedS = detected;
      const s = await rig.status();
      ctx.fault.reconnectsCounted = s?.telemetry?.[PLC]?.reconnects ?? null;
    },
    async quiesce() {
      // The PLC keeps producing: freeze its values, and let the last changes arrive.
      machine!.freeze();
      await sleep(1_000);
    },
    review(ctx: DrillContext) {
      const ticks = ctx.rig.receiver
        .items('readings')
        .map((r) => r.item as { source?: string; tag?: string; value?: number | null })
        .filter((r) => r.source === PLC && r.tag === 'tick' && typeof r.value === 'number')
        .map((r) => r.value as number);
      const seen = new Set(ticks);
      if (seen.size === 0) {
        ctx.failures.push('no tick of the PLC was stored');
        return;
      }
      const first = Math.min(...seen);
      const last = Math.max(...seen);
      // The gap: ticks from the stop until the first one stored after the restart.
      const gapFrom = machine!.tickAt(stoppedAt);
      const firstAfter = Math.min(...[...seen].filter((t) => t > gapFrom), Infinity);
      let inGap = 0;
      let elsewhere = 0;
      const elsewhereSample: number[] = [];
      for (let t = first; t <= last; t++) {
        if (seen.has(t)) continue;
        if (t >= gapFrom - 1 && t < firstAfter) inGap += 1;
        else {
          elsewhere += 1;
          if (elsewhereSample.length < 10) elsewhereSample.push(t);
        }
      }
      ctx.fault.ticksStored = seen.size;
      ctx.fault.ticksNotSentDuringOutage = inGap;
      ctx.fault.ticksMissingOutsideOutage = elsewhere;
      if (elsewhere > 0) {
        ctx.fault.ticksMissingOutsideOutageSample = elsewhereSample;
        // Outside the outage the server was up and the source subscribed: a tick missing there
        // was lost on the way (or skipped by the server's sampling, which the drill cannot tell
        // apart from outside, so it fails either way rather than guess).
        ctx.failures.push(
          `${elsewhere} ticks of the PLC missing outside the outage (e.g. ${elsewhereSample.join(', ')})`,
        );
      }
      ctx.fault.duplicateTickReadings = ticks.length - seen.size;
    },
  };
}
