import { LINE } from '../rig.js';
import { READINGS_PER_MESSAGE } from '../telemetry.js';
import { secondsSince, sleep, waitSeconds, type DrillContext, type Scenario } from '../drill.js';
import type { Ledger } from '../ledger.js';

/**
 * The plant's Mosquitto is SIGKILLed (or SIGTERMed) under load and started again `durationS`
 * later on the same port with its persistence. Meanwhile frames keep arriving over HTTP: their
 * results and alerts are stored, and the alerts wait in the store's outbox. After the restart the
 * daemon must reconnect its alert publisher and its MQTT telemetry source, deliver every alert
 * stored during the outage, and take the telemetry the devices buffered. After SIGTERM, which
 * Mosquitto answers by saving everything, every reading it acknowledged must reach the gateway;
 * after SIGKILL, what it acknowledged since its last autosave may be lost on its side (reported).
 *
 * Recovery (seconds from the broker's restart): `reconnect` (the alert publisher is connected
 * again), `sourceUp` (the mqtt-json source is up), `alertsDrained` (the outbox is empty: every
 * alert acknowledged by the broker), `telemetryCaughtUp` (the daemon has taken every reading
 * published up to the restart, including what the device buffered during the outage).
 */

export interface BrokerRestartFindings {
  signal: 'SIGKILL' | 'SIGTERM';
  outageS: number;
  /** From the kill until the daemon's status said the broker was gone (s). */
  detectedS: number | null;
  /** Alerts stored while the broker was down (by their timestamp). */
  alertsStoredDuringOutage: number;
  /** Of them, received by the plant consumer after the restart. */
  alertsDeliveredAfterRestart: number;
  /** Outbox size when the broker came back. */
  outboxAtRestart: number;
  /** Slowest of those alerts to reach the consumer, counted from the restart (s). */
  lastOutageAlertDeliveredS: number | null;
}

export function brokerRestart(signal: 'SIGKILL' | 'SIGTERM' = 'SIGKILL'): Scenario {
  let killedAt = 0;
  let restartedAt = 0;
  return {
    name: 'broker-restart',
    summary: `the plant Mosquitto (alerts and MQTT telemetry) is ${
      signal === 'SIGKILL' ? 'killed (SIGKILL)' : 'stopped (SIGTERM)'
    } under load and restarted`,
    async inject(ctx) {
      const { rig, options } = ctx;
      ctx.say(`broker-restart: ${signal} to Mosquitto, down for ${options.durationS} s`);
      if (signal === 'SIGKILL')
        // SIGTERM makes Mosquitto save everything before it exits: then every reading it
        // acknowledged must reach the gateway, and the ledger fails the drill on any that does not.
        ctx.allowances.readingsLostByBroker =
          'SIGKILL: Mosquitto may lose what it acknowledged after its last autosave, 1 s';
      killedAt = Date.now();
      await rig.plant.kill(signal);
      const detectedS = await waitSeconds(
        ctx,
        'the daemon to see the broker gone',
        killedAt,
        async () => (await rig.status())?.mqtt?.connected === false,
        options.durationS + 30,
      );
      await sleep(Math.max(0, killedAt + options.durationS * 1000 - Date.now()));
      const publishedAtRestart = ctx.telemetry.published;
      const outboxAtRestart = (await rig.status())?.store?.outbox?.alerts ?? -1;
      await ctx.mark('fault');
      await rig.plant.restart();
      restartedAt = Date.now();
      ctx.say(
        `broker-restart: broker back after ${secondsSince(killedAt)} s with ${outboxAtRestart} alerts in the outbox`,
      );
      const [reconnect, sourceUp, alertsDrained, telemetryCaughtUp] = await Promise.all([
        waitSeconds(
          ctx,
          'the alert publisher to reconnect',
          restartedAt,
          async () => (await rig.status())?.mqtt?.connected === true,
          120,
        ),
        waitSeconds(
          ctx,
          'the mqtt-json source to come up',
          restartedAt,
          async () => (await rig.status())?.telemetry?.[LINE]?.state === 'up',
          120,
        ),
        waitSeconds(
          ctx,
          'the alert outbox to drain',
          restartedAt,
          async () => {
            const s = await rig.status();
            return s?.mqtt?.connected === true && s.store?.outbox?.alerts === 0;
          },
          120,
        ),
        waitSeconds(
          ctx,
          'the telemetry published up to the restart to be taken',
          restartedAt,
          async () => {
            const m = await rig.metrics();
            const taken =
              m.sum('vigil_readings_total', { source: LINE }) +
              m.sum('vigil_input_errors_total', { source: LINE });
            return taken >= publishedAtRestart * READINGS_PER_MESSAGE;
          },
          30,
          // Messages a SIGKILLed broker acknowledged but had not saved are the broker's loss: the
          // ledger counts them as not received (a failure after SIGTERM) rather than failing here.
          false,
        ),
      ]);
      ctx.recovery.reconnect = reconnect;
      ctx.recovery.sourceUp = sourceUp;
      ctx.recovery.alertsDrained = alertsDrained;
      ctx.recovery.telemetryCaughtUp = telemetryCaughtUp;
      const findings: BrokerRestartFindings = {
        signal,
        outageS: Math.round((restartedAt - killedAt) / 10) / 100,
        detectedS,
        alertsStoredDuringOutage: 0,
        alertsDeliveredAfterRestart: 0,
        outboxAtRestart,
        lastOutageAlertDeliveredS: null,
      };
      Object.assign(ctx.fault, findings);
    },
    review(ctx: DrillContext, _ledger: Ledger) {
      const during = ctx.rig.receiver.items('alerts').filter((a) => {
        const at = Date.parse((a.item as { timestamp?: string }).timestamp ?? '');
        return at >= killedAt && at < restartedAt;
      });
      let delivered = 0;
      let last: number | null = null;
      for (const a of during) {
        const got = ctx.rig.alerts.alerts.get(a.item.id);
        if (!got) continue;
        delivered += 1;
        const s = Math.round((got.receivedAt - restartedAt) / 10) / 100;
        last = last === null ? s : Math.max(last, s);
      }
      ctx.fault.alertsStoredDuringOutage = during.length;
      ctx.fault.alertsDeliveredAfterRestart = delivered;
      ctx.fault.lastOutageAlertDeliveredS = last;
      if (during.length === 0)
        ctx.failures.push(
          'no alert was stored during the outage: the drill did not exercise the outbox (raise --fps or --duration)',
        );
    },
  };
}
