import type { CorruptOutcome } from '../../simulator/chaos/corrupt-frames.js';
import type { FrameRunSummary } from './frames.js';
import type { MetricsScrape } from './prom.js';
import { CAMERA, LINE, PIPELINE, PLC, type ChaosRig } from './rig.js';
import { READINGS_PER_MESSAGE, type TelemetryDriver } from './telemetry.js';

/**
 * What a drill sent, what the gateway accepted, stored and delivered, and what it lost, from
 * outside: the senders' own records, the daemon's counters (/metrics), and the upstream
 * receiver (whatever the store held reaches it in seq order, so once the backlog is empty it has
 * every stored row).
 *
 * A frame the gateway accepted (answered 202) may end in one of three ways: stored; dropped by
 * the pipeline's policy, by design and counted (POLICY_DROP_REASONS: a newer frame superseded it,
 * it could not make its deadline, its data quality said skip, it did not decode); or dropped
 * because something failed (store_error, inference_error, model_unavailable, shutdown). The last
 * is a loss, counted or not: "lost" is every accepted frame neither stored nor dropped by policy,
 * and it must be 0, unless the drill declared an allowance in advance (a bound and a reason,
 * shown in the report with the loss). Every accepted reading must be stored: a reading has no
 * policy drop after acceptance. Refusals before acceptance (counted, with a reason) are not
 * losses; readings lost on the other side of the protocol (a broker that died with messages it
 * had acknowledged) are a failure too, unless the drill declared why it expects them.
 */

/** Drops that are the pipeline's policy, by design and counted: a frame dropped so is not lost. */
export const POLICY_DROP_REASONS: readonly string[] = [
  'superseded',
  'deadline',
  'data_quality',
  'decode_error',
];

/** A loss a drill declares in advance as unavoidable: how many at most, of which kind, and why. */
export interface LossAllowance {
  /** At most this many frames lost after acceptance. */
  max: number;
  /** The failure drop reasons it covers, e.g. store_error. */
  reasons: string[];
  /** Its name and why, one sentence for the report. */
  why: string;
}

export interface Allowances {
  /** Frames the drill allows to be lost after their 202 (disk-full: those already taken when the disk filled). */
  framesLostAfterAccept?: LossAllowance;
  /**
   * Why telemetry the broker acknowledged to the device may never reach the gateway (a SIGKILLed
   * Mosquitto loses what it had not saved yet). Absent: every acknowledged reading must arrive.
   */
  readingsLostByBroker?: string;
}

export interface FrameLedger {
  /** Requests made: answered ones plus those that got no answer. */
  sent: number;
  /** Frames answered 202 (the sender's count). */
  accepted: number;
  /** Frames the daemon counted in (vigil_frames_in_total). */
  acceptedByDaemon: number;
  /** Refused before acceptance, by the daemon's reason (the `code` of its 4xx/503 answer). */
  refused: Record<string, number>;
  /**
   * Requests the sender saw no answer to: in flight when the load stopped, a cut upload, a
   * connection error. The daemon may have accepted them (acceptedByDaemon counts them then).
   */
  unanswered: number;
  /** Results stored (the receiver's results of the camera, plus any still waiting upstream). */
  stored: number;
  /** Accepted frames dropped by the pipeline's policy (POLICY_DROP_REASONS), by reason: not lost. */
  droppedByPolicy: Record<string, number>;
  /** Accepted frames dropped because something failed (store_error, inference_error...), by reason: lost. */
  lostAfterAccept: Record<string, number>;
  /** acceptedByDaemon - stored - every counted drop: accepted and neither stored nor counted. Must be 0. */
  unaccounted: number;
  /** Results that reached the upstream receiver. */
  delivered: number;
  /** Accepted and not stored nor dropped by policy: the failure drops plus the unaccounted. */
  lost: number;
  /** The drill's declared allowance, if any. */
  allowance: LossAllowance | undefined;
  /** Of `lost`, how many the allowance covers (at most its max). */
  allowed: number;
  /** Frames answered 202 to the sender without a stored result (at most the counted drops). */
  acceptedWithoutResult: number;
  /** Their ids (X-Request-Id), matched against the receiver's results. */
  acceptedWithoutResultIds: string[];
}

export interface ReadingLedger {
  source: string;
  /** Readings sent (MQTT: acknowledged by the broker to the device); null when the device side is not counted. */
  sent: number | null;
  /** vigil_readings_total of the source. */
  accepted: number;
  /** Refused by reason (vigil_input_errors_total of the source): e.g. bad_timestamp. */
  refused: Record<string, number>;
  /** Readings of the source stored (delivered upstream plus still waiting). */
  stored: number;
  delivered: number;
  /**
   * Accepted readings dropped before they were stored, by reason (vigil_readings_dropped_total:
   * store_backlog, store_rejected, shutdown). Every one is a loss. The counter has no source
   * label: with several telemetry sources, these are all of them.
   */
  lostAfterAccept: Record<string, number>;
  /** accepted - stored: accepted and never stored, counted drops included. Must be 0. */
  lost: number;
  /**
   * Sent but never accepted nor refused by the gateway (sent - accepted - refused): lost on the
   * other side (the broker, the device); null when not counted.
   */
  notReceived: number | null;
  /**
   * Messages the broker acknowledged to the device of which no reading was stored, found by key
   * (asset and counter `n`): refused ones included. Unlike notReceived, a message the gateway
   * took twice cannot hide one it never got. null when not counted.
   */
  ackedNotStored: number | null;
  /** Why readings lost by the broker do not fail the drill (Allowances.readingsLostByBroker); absent: they do. */
  brokerLossAllowed: string | undefined;
  /** Redelivered messages the daemon recognised as already stored (vigil_ingest_duplicates_total). */
  duplicatesSkipped: number;
}

export interface AlertLedger {
  /** Alerts stored (upstream receiver's alerts plus any still waiting). */
  stored: number;
  deliveredUpstream: number;
  /** Stored alerts received by the local consumer on the plant broker. */
  deliveredLocal: number;
  /** Copies the local consumer received again (at-least-once re-sends). */
  duplicatesLocal: number;
  /** Alerts not yet acknowledged by the plant broker when the drill ended (the store's outbox). */
  outboxLeft: number;
  /** stored - deliveredUpstream. Must be 0. */
  lost: number;
  /** Stored alerts the local consumer never got. */
  notReceivedLocally: number;
}

export interface Ledger {
  frames: FrameLedger;
  readings: ReadingLedger[];
  alerts: AlertLedger;
  /** Receiver-side checks of the upstream stream: seq gaps, order, malformed messages. */
  upstream: { gaps: number; orderViolations: number; malformed: number; duplicates: number };
}

/** Waits until everything accepted has been processed and forwarded; false when it did not within `timeoutMs`. */
export async function settle(rig: ChaosRig, timeoutMs: number): Promise<boolean> {
  try {
    await rig.waitFor(
      'the gateway to settle (every frame processed, nothing pending, backlog and outbox empty)',
      async () => {
        const [s, m] = await Promise.all([rig.status(), rig.metrics().catch(() => undefined)]);
        if (!s || !m) return false;
        const framesIn = m.sum('vigil_frames_in_total', { source: CAMERA });
        const done =
          m.sum('vigil_samples_processed_total', { pipeline: PIPELINE }) +
          m.sum('vigil_samples_dropped_total', { pipeline: PIPELINE });
        const backlog = Object.values(s.upstream?.classes ?? {}).reduce((n, c) => n + c.rows, 0);
        return (
          framesIn === done &&
          m.sum('vigil_readings_pending') === 0 &&
          backlog === 0 &&
          (s.store?.outbox?.alerts ?? 0) === 0
        );
      },
      timeoutMs,
      250,
    );
    return true;
  } catch {
    return false;
  }
}

const sumOf = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

function merge(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

export interface LedgerInputs {
  frameRuns: FrameRunSummary[];
  /** Ids the frame runs got a 202 for. */
  acceptedIds: Set<string>;
  corrupt?: CorruptOutcome[];
  telemetry?: TelemetryDriver;
  withOpcua?: boolean;
  allowances?: Allowances;
}

/** Splits counted drops into the pipeline's policy and failures. */
function splitDrops(drops: Record<string, number>): {
  policy: Record<string, number>;
  failure: Record<string, number>;
} {
  const policy: Record<string, number> = {};
  const failure: Record<string, number> = {};
  for (const [reason, n] of Object.entries(drops)) {
    if (n <= 0) continue;
    (POLICY_DROP_REASONS.includes(reason) ? policy : failure)[reason] = n;
  }
  return { policy, failure };
}

/** Stored readings of `source` whose tag is the message counter `n`, as `asset/n` keys. */
function storedMessageKeys(receiver: ChaosRig['receiver'], source: string): Set<string> {
  const keys = new Set<string>();
  for (const r of receiver.items('readings')) {
    const x = r.item as { source?: string; asset?: string; tag?: string; value?: number | null };
    if (x.source === source && x.tag === 'n' && typeof x.value === 'number')
      keys.add(`${x.asset}/${x.value}`);
  }
  return keys;
}

export async function computeLedger(rig: ChaosRig, inputs: LedgerInputs): Promise<Ledger> {
  const m: MetricsScrape = await rig.metrics();
  const s = await rig.status();
  const waiting = (cls: string) => s?.upstream?.classes?.[cls]?.rows ?? 0;
  const receiver = rig.receiver;
  const allowances = inputs.allowances ?? {};

  // Frames.
  const refused: Record<string, number> = {};
  let sent = 0;
  let noAnswer = 0;
  for (const r of inputs.frameRuns) {
    sent += r.sent;
    merge(refused, r.refused);
    noAnswer += r.unanswered;
  }
  const accepted = new Set(inputs.acceptedIds);
  for (const c of inputs.corrupt ?? []) {
    sent += 1;
    if (c.status === 202) accepted.add(c.id);
    else if (c.status === 0) noAnswer += 1;
    else refused[c.code ?? `http_${c.status}`] = (refused[c.code ?? `http_${c.status}`] ?? 0) + 1;
  }
  const results = receiver.items('results').filter((r) => (r.item as { source?: string }).source === CAMERA);
  const withResult = new Set(results.map((r) => (r.item as { sampleId: string }).sampleId));
  const drops = m.by('vigil_samples_dropped_total', 'reason', { pipeline: PIPELINE });
  const { policy, failure } = splitDrops(drops);
  const acceptedByDaemon = m.sum('vigil_frames_in_total', { source: CAMERA });
  const storedFrames = results.length + waiting('results');
  const unaccounted = acceptedByDaemon - storedFrames - sumOf(drops);
  const lostFrames = sumOf(failure) + unaccounted;
  const withoutResult = [...accepted].filter((id) => !withResult.has(id));
  const allowance = allowances.framesLostAfterAccept;
  const coverable = allowance ? allowance.reasons.reduce((n, reason) => n + (failure[reason] ?? 0), 0) : 0;
  const frames: FrameLedger = {
    sent,
    accepted: accepted.size,
    acceptedByDaemon,
    refused,
    unanswered: noAnswer,
    stored: storedFrames,
    droppedByPolicy: policy,
    lostAfterAccept: failure,
    unaccounted,
    delivered: results.length,
    lost: lostFrames,
    allowance,
    allowed: allowance ? Math.min(allowance.max, coverable) : 0,
    acceptedWithoutResult: withoutResult.length,
    acceptedWithoutResultIds: withoutResult,
  };

  // Readings, per telemetry source.
  const readings: ReadingLedger[] = [];
  const sources = [LINE, ...(inputs.withOpcua ? [PLC] : [])];
  const allReadings = receiver.items('readings');
  const readingDrops = m.by('vigil_readings_dropped_total', 'reason');
  for (const [k, v] of Object.entries(readingDrops)) if (v <= 0) delete readingDrops[k];
  for (const source of sources) {
    const delivered = allReadings.filter((r) => (r.item as { source?: string }).source === source).length;
    // Readings still waiting upstream are not told apart by source; with one source they are its own.
    const stored = delivered + (sources.length === 1 ? waiting('readings') : 0);
    const accepted = m.sum('vigil_readings_total', { source });
    const refusedBy = m.by('vigil_input_errors_total', 'reason', { source });
    const counted = source === LINE && inputs.telemetry !== undefined;
    const sentReadings = counted ? inputs.telemetry!.ackedMessages * READINGS_PER_MESSAGE : null;
    let ackedNotStored: number | null = null;
    if (counted) {
      const storedKeys = storedMessageKeys(receiver, source);
      ackedNotStored = [...inputs.telemetry!.ackedKeys()].filter((k) => !storedKeys.has(k)).length;
    }
    readings.push({
      source,
      sent: sentReadings,
      accepted,
      refused: refusedBy,
      stored,
      delivered,
      lostAfterAccept: { ...readingDrops },
      lost: accepted - stored,
      notReceived: sentReadings === null ? null : sentReadings - accepted - sumOf(refusedBy),
      ackedNotStored,
      brokerLossAllowed: allowances.readingsLostByBroker,
      duplicatesSkipped: m.sum('vigil_ingest_duplicates_total', { source }),
    });
  }

  // Alerts.
  const upAlerts = receiver.items('alerts');
  const storedAlerts = upAlerts.length + waiting('alerts');
  let deliveredLocal = 0;
  for (const a of upAlerts) if (rig.alerts.alerts.has(a.item.id)) deliveredLocal += 1;
  const alerts: AlertLedger = {
    stored: storedAlerts,
    deliveredUpstream: upAlerts.length,
    deliveredLocal,
    duplicatesLocal: rig.alerts.duplicates,
    outboxLeft: s?.store?.outbox?.alerts ?? -1,
    lost: storedAlerts - upAlerts.length,
    notReceivedLocally: storedAlerts - deliveredLocal,
  };

  const check = receiver.check();
  return {
    frames,
    readings,
    alerts,
    upstream: {
      gaps: check.gaps.length,
      orderViolations: check.orderViolations.length,
      malformed: check.malformed.length,
      duplicates: check.duplicates,
    },
  };
}

const reasons = (r: Record<string, number>) =>
  Object.entries(r)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

/** What a ledger shows that must never happen; empty when nothing accepted was lost beyond a declared allowance. */
export function ledgerFailures(l: Ledger): string[] {
  const f: string[] = [];
  const fr = l.frames;
  if (fr.unaccounted !== 0) f.push(`${fr.unaccounted} accepted frames neither stored nor counted as dropped`);
  const failed = sumOf(fr.lostAfterAccept);
  if (fr.allowance) {
    const covered = fr.allowance.reasons.reduce((n, r) => n + (fr.lostAfterAccept[r] ?? 0), 0);
    if (covered > fr.allowance.max)
      f.push(
        `${covered} accepted frames lost (${reasons(fr.lostAfterAccept)}), more than the drill allows ` +
          `(at most ${fr.allowance.max}: ${fr.allowance.why})`,
      );
    if (failed - covered > 0)
      f.push(
        `${failed - covered} accepted frames lost for a reason the allowance does not cover (${reasons(fr.lostAfterAccept)})`,
      );
  } else if (failed > 0)
    f.push(`${failed} accepted frames lost after their 202 (${reasons(fr.lostAfterAccept)})`);
  if (fr.acceptedWithoutResult > sumOf(fr.droppedByPolicy) + failed)
    f.push(
      `${fr.acceptedWithoutResult} frames answered 202 have no stored result, more than the ` +
        `${sumOf(fr.droppedByPolicy) + failed} counted drops`,
    );
  for (const r of l.readings) {
    if (r.lost !== 0) {
      const counted = sumOf(r.lostAfterAccept);
      f.push(
        `${r.lost} accepted readings of ${r.source} never stored` +
          (counted > 0 ? ` (counted as dropped, all sources: ${reasons(r.lostAfterAccept)})` : ''),
      );
    }
    if (r.brokerLossAllowed !== undefined) continue;
    if (r.notReceived !== null && r.notReceived > 0)
      f.push(`${r.notReceived} readings of ${r.source} acknowledged by the broker never reached the gateway`);
    else if (r.ackedNotStored !== null && r.ackedNotStored * READINGS_PER_MESSAGE > sumOf(r.refused))
      f.push(
        `${r.ackedNotStored} messages of ${r.source} acknowledged by the broker have no stored reading, ` +
          `more than the ${sumOf(r.refused)} readings the gateway refused account for`,
      );
  }
  if (l.alerts.lost !== 0) f.push(`${l.alerts.lost} stored alerts never delivered upstream`);
  if (l.alerts.outboxLeft !== 0)
    f.push(`${l.alerts.outboxLeft} alerts still unacknowledged by the plant broker`);
  if (l.alerts.notReceivedLocally !== 0)
    f.push(`${l.alerts.notReceivedLocally} stored alerts never reached the consumer on the plant broker`);
  if (l.upstream.gaps > 0) f.push(`${l.upstream.gaps} seq gaps in the upstream stream`);
  if (l.upstream.orderViolations > 0) f.push(`${l.upstream.orderViolations} rows out of order upstream`);
  if (l.upstream.malformed > 0) f.push(`${l.upstream.malformed} malformed upstream messages`);
  return f;
}
