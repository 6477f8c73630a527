import type { CorruptOutcome } from '../../simulator/chaos/corrupt-frames.js';
import type { FrameRunSummary } from './frames.js';
import type { MetricsScrape } from './prom.js';
import { CAMERA, LINE, PIPELINE, PLC, type ChaosRig } from './rig.js';
import { READINGS_PER_MESSAGE, type TelemetryDriver } from './telemetry.js';

/**
 * What a drill sent, what the gateway accepted, stored and delivered, and what it lost, from
 * outside: the senders' own records, the daemon's counters (/metrics), and the upstream
 * receiver (whatever the store held reaches it in seq order, so once the backlog is empty it has
 * every stored row). "Lost" is only ever what the gateway accepted and then neither stored nor
 * counted as dropped: it must be 0. Refusals (counted, with a reason) and losses on the other
 * side of a protocol (a broker that died with messages, a device that could not be read) are
 * reported separately.
 */

export interface FrameLedger {
  /** Requests made: answered ones plus those that got no answer. */
  sent: number;
  /** Frames answered 202 (the sender's count). */
  accepted: number;
  /** Frames the daemon counted in (vigil_frames_in_total). */
  acceptedByDaemon: number;
  /** Refused before acceptance, by the daemon's reason (the `code` of its 4xx answer). */
  refused: Record<string, number>;
  /**
   * Requests the sender saw no answer to: in flight when the load stopped, a cut upload, a
   * connection error. The daemon may have accepted them (acceptedByDaemon counts them then).
   */
  unanswered: number;
  /** Results stored (the receiver's results of the camera, plus any still waiting upstream). */
  stored: number;
  /** Accepted frames dropped with a counted reason (vigil_samples_dropped_total), e.g. decode_error, deadline. */
  droppedAfterAccept: Record<string, number>;
  /** Results that reached the upstream receiver. */
  delivered: number;
  /** acceptedByDaemon - stored - dropped: accepted and neither stored nor counted. Must be 0. */
  lost: number;
  /** Frames answered 202 to the sender without a stored result (at most the counted drops). */
  acceptedWithoutResult: number;
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
  /** vigil_readings_dropped_total (all sources: only this drill's run). */
  dropped: number;
  /** accepted - stored - dropped. Must be 0. */
  lost: number;
  /** Sent but never accepted nor refused by the gateway: lost on the other side (broker, device); null when not counted. */
  notReceived: number | null;
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
}

export async function computeLedger(rig: ChaosRig, inputs: LedgerInputs): Promise<Ledger> {
  const m: MetricsScrape = await rig.metrics();
  const s = await rig.status();
  const waiting = (cls: string) => s?.upstream?.classes?.[cls]?.rows ?? 0;
  const receiver = rig.receiver;

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
  const droppedAfterAccept = m.by('vigil_samples_dropped_total', 'reason', { pipeline: PIPELINE });
  const acceptedByDaemon = m.sum('vigil_frames_in_total', { source: CAMERA });
  const storedFrames = results.length + waiting('results');
  const frames: FrameLedger = {
    sent,
    accepted: accepted.size,
    acceptedByDaemon,
    refused,
    unanswered: noAnswer,
    stored: storedFrames,
    droppedAfterAccept,
    delivered: results.length,
    lost: acceptedByDaemon - storedFrames - sumOf(droppedAfterAccept),
    acceptedWithoutResult: [...accepted].filter((id) => !withResult.has(id)).length,
  };

  // Readings, per telemetry source.
  const readings: ReadingLedger[] = [];
  const sources = [LINE, ...(inputs.withOpcua ? [PLC] : [])];
  const allReadings = receiver.items('readings');
  for (const source of sources) {
    const delivered = allReadings.filter((r) => (r.item as { source?: string }).source === source).length;
    // Readings still waiting upstream are not told apart by source; with one source they are its own.
    const stored = delivered + (sources.length === 1 ? waiting('readings') : 0);
    const accepted = m.sum('vigil_readings_total', { source });
    const refusedBy = m.by('vigil_input_errors_total', 'reason', { source });
    const dropped = m.sum('vigil_readings_dropped_total');
    const sentReadings =
      source === LINE && inputs.telemetry ? inputs.telemetry.ackedMessages * READINGS_PER_MESSAGE : null;
    readings.push({
      source,
      sent: sentReadings,
      accepted,
      refused: refusedBy,
      stored,
      delivered,
      dropped,
      lost: accepted - stored - dropped,
      notReceived: sentReadings === null ? null : sentReadings - accepted - sumOf(refusedBy),
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

/** What a ledger shows that must never happen; empty when nothing accepted was lost. */
export function ledgerFailures(l: Ledger): string[] {
  const f: string[] = [];
  if (l.frames.lost !== 0) f.push(`${l.frames.lost} accepted frames neither stored nor counted as dropped`);
  if (l.frames.acceptedWithoutResult > sumOf(l.frames.droppedAfterAccept))
    f.push(
      `${l.frames.acceptedWithoutResult} frames answered 202 have no stored result, more than the ` +
        `${sumOf(l.frames.droppedAfterAccept)} counted drops`,
    );
  for (const r of l.readings)
    if (r.lost !== 0)
      f.push(`${r.lost} accepted readings of ${r.source} neither stored nor counted as dropped`);
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
