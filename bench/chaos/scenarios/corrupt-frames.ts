import {
  CORRUPT_KINDS,
  corruptFrame,
  sendCorruptFrame,
  type CorruptOutcome,
} from '../../../simulator/chaos/corrupt-frames.js';
import { CAMERA, PIPELINE } from '../rig.js';
import { sleep, waitSeconds, type DrillContext, type Scenario } from '../drill.js';
import type { Ledger } from '../ledger.js';

/**
 * A burst of corrupt frames among the good ones: every kind of simulator/chaos/corrupt-frames.ts
 * (empty, garbage, wrong media type, truncated JPEG, image headers over garbage, a pixel bomb, a
 * body over the limit, an upload cut half-way), sent 4 at a time over `durationS` while the
 * camera load goes on. Each must be refused with a clear reason and counted: at once with a 4xx
 * and a JSON `{error, code}`, or, for bytes that only look like an image, accepted and then
 * counted as `decode_error` when they do not decode; a cut upload is counted as `incomplete`.
 * None may get a result, and the daemon must not fall over.
 *
 * Every good frame answered 202 must get a result, or be one of the counted drops: an accepted
 * frame waits in its camera's slot, where a newer one may supersede it or it may miss its
 * deadline, corrupt or not. Each superseded or deadline drop accounts for one frame only: the
 * good frames without a result (found by id in the receiver) and the accepted corrupt frames not
 * counted as decode_error must together be no more than those drops.
 *
 * Recovery (seconds from the end of the burst): `processing` (a good frame stored after it).
 */

const PER_KIND = 8;
const MAX_BODY = 4 * 1024 * 1024;

interface KindOutcome {
  sent: number;
  /** HTTP status or `no answer` → count. */
  answers: Record<string, number>;
  /** Reasons the daemon gave (`code`). */
  codes: Record<string, number>;
  expected: string;
  /** Example of the daemon's error message. */
  message?: string;
}

export function corruptFrames(): Scenario {
  let outcomes: CorruptOutcome[] = [];
  /** Accepted undecodable frames the daemon did not count as decode_error (superseded or late before decoding). */
  let decodeShort = 0;
  return {
    name: 'corrupt-frames',
    summary: 'a burst of corrupt, truncated and garbage frames among good ones over HTTP',
    prepare: async () => ({ rig: { maxBodyBytes: MAX_BODY } }),
    async inject(ctx) {
      const { rig, options, pool } = ctx;
      const good = pool.frames[0]!.data;
      const frames = CORRUPT_KINDS.flatMap((kind) =>
        Array.from({ length: PER_KIND }, (_, i) => corruptFrame(kind, good, 1000 + i, MAX_BODY)),
      );
      // Interleave the kinds (frames holds them kind by kind), so that the burst is a mix.
      const order = frames.map(
        (_, i) => frames[(i % CORRUPT_KINDS.length) * PER_KIND + Math.floor(i / CORRUPT_KINDS.length)]!,
      );
      ctx.say(
        `corrupt-frames: ${order.length} corrupt frames (${CORRUPT_KINDS.length} kinds) over ${options.durationS} s`,
      );
      const before = await rig.metrics();
      const burstStart = Date.now();
      const gapMs = (options.durationS * 1000) / Math.max(1, order.length / 4);
      outcomes = [];
      for (let i = 0; i < order.length; i += 4) {
        const batch = order.slice(i, i + 4);
        const got = await Promise.all(
          batch.map((f, j) =>
            sendCorruptFrame(rig.cameraUrl, f, `corrupt-${process.pid}-${String(i + j).padStart(4, '0')}`),
          ),
        );
        outcomes.push(...got);
        const wait = burstStart + ((i + 4) / 4) * gapMs - Date.now();
        if (wait > 0) await sleep(wait);
      }
      const burstEnd = Date.now();
      ctx.corrupt.push(...outcomes);
      await ctx.mark('fault');
      const processedAtEnd = (await rig.status())?.pipelines?.[PIPELINE]?.processed ?? 0;
      ctx.recovery.processing = await waitSeconds(
        ctx,
        'a good frame to be stored after the burst',
        burstEnd,
        async () => ((await rig.status())?.pipelines?.[PIPELINE]?.processed ?? 0) > processedAtEnd,
        60,
      );
      // The counters settle once the accepted corrupt frames have been tried by the pipeline.
      await sleep(500);
      const after = await rig.metrics();
      const counted = (reason: string) =>
        after.sum('vigil_input_errors_total', { source: CAMERA, reason }) -
        before.sum('vigil_input_errors_total', { source: CAMERA, reason });
      // Per kind: what the sender saw, and what the daemon counted under the kind's reason.
      const byKind: Record<string, KindOutcome> = {};
      const expectedCounts: Record<string, number> = {};
      for (const [i, o] of outcomes.entries()) {
        const f = order[i]!;
        const k = (byKind[o.kind] ??= {
          sent: 0,
          answers: {},
          codes: {},
          expected: `${f.expect} (${f.reason})`,
        });
        k.sent += 1;
        const answer = o.status === 0 ? 'no answer' : String(o.status);
        k.answers[answer] = (k.answers[answer] ?? 0) + 1;
        if (o.code) k.codes[o.code] = (k.codes[o.code] ?? 0) + 1;
        if (o.error && !k.message) k.message = o.error.slice(0, 160);
        // An undecodable frame is counted only if it was accepted (a 4xx for it is fine too).
        if (f.expect !== 'undecodable' || o.status === 202)
          expectedCounts[f.reason] = (expectedCounts[f.reason] ?? 0) + 1;
        // Every answer the sender did get must be a 4xx with a reason and a message, or a 202.
        if (o.status !== 0 && o.status !== 202 && !(o.status >= 400 && o.status < 500 && o.code && o.error))
          ctx.failures.push(`${o.kind} (${o.id}) answered ${o.status} without a 4xx code and message`);
        if (f.expect === 'refused' && o.status === 202)
          ctx.failures.push(`${o.kind} (${o.id}) was accepted (202) instead of refused`);
      }
      const countedBy: Record<string, number> = {};
      for (const [reason, n] of Object.entries(expectedCounts)) {
        countedBy[reason] = counted(reason);
        const short = n - countedBy[reason];
        // More counted than sent is always wrong. Fewer is possible only for decode_error (an
        // accepted frame dropped before it was decoded), and review() checks those against the
        // drops that can account for them.
        if (short < 0 || (short > 0 && reason !== 'decode_error'))
          ctx.failures.push(`${n} corrupt frames should be counted as ${reason}, ${countedBy[reason]} were`);
        if (reason === 'decode_error') decodeShort = Math.max(0, short);
      }
      // A refusal the sender never read: answered 4xx and closed, while the sender, still sending
      // the rest of its body, got a reset that discarded the answer. Counted by the daemon all the same.
      const refusalsUnread = outcomes.filter(
        (o, i) => order[i]!.expect === 'refused' && o.status === 0,
      ).length;
      Object.assign(ctx.fault, {
        corruptSent: outcomes.length,
        burstS: Math.round((burstEnd - burstStart) / 10) / 100,
        expectedCounts,
        countedByDaemon: countedBy,
        acceptedNotCountedAsDecodeError: decodeShort,
        refusalsUnreadBySender: refusalsUnread,
        byKind,
        healthzAfter: await fetch(`${rig.opsUrl}/healthz`)
          .then((r) => r.status)
          .catch(() => 0),
      });
      if (ctx.fault.healthzAfter !== 200)
        ctx.failures.push(`/healthz answered ${String(ctx.fault.healthzAfter)} after the burst`);
    },
    review(ctx: DrillContext, ledger: Ledger) {
      const corruptIds = new Set(outcomes.map((o) => o.id));
      const withResult = ctx.rig.receiver
        .items('results')
        .filter((r) => corruptIds.has((r.item as { sampleId: string }).sampleId)).length;
      ctx.fault.corruptWithResult = withResult;
      if (withResult > 0) ctx.failures.push(`${withResult} corrupt frames got a stored result`);
      // The good frames answered 202 that have no result in the receiver, by id.
      const goodWithoutResult = ledger.frames.acceptedWithoutResultIds.filter((id) => !corruptIds.has(id));
      const policy = ledger.frames.droppedByPolicy;
      const beforeDecode = (policy.superseded ?? 0) + (policy.deadline ?? 0);
      ctx.fault.goodFramesWithoutResult = goodWithoutResult.length;
      ctx.fault.supersededOrDeadlineDrops = beforeDecode;
      if (goodWithoutResult.length + decodeShort > beforeDecode)
        ctx.failures.push(
          `${goodWithoutResult.length} good frames answered 202 have no result ` +
            `(${goodWithoutResult.slice(0, 5).join(', ')}${goodWithoutResult.length > 5 ? ', ...' : ''}) and ` +
            `${decodeShort} accepted corrupt frames were not counted as decode_error, ` +
            `but only ${beforeDecode} frames were dropped as superseded or deadline to account for them`,
        );
    },
  };
}
