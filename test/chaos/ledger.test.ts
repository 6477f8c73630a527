import { describe, expect, it } from 'vitest';
import {
  ledgerFailures,
  type FrameLedger,
  type Ledger,
  type ReadingLedger,
} from '../../bench/chaos/ledger.js';

/**
 * The verdict of the chaos drills' accounting (bench/chaos/ledger.ts), on ledgers written out by
 * hand: which drops are losses, what an allowance covers, and when telemetry the broker
 * acknowledged counts as lost. The drills themselves fill the ledger from a real gateway
 * (broker-restart.test.ts); this pins down how it is judged.
 */

function frames(over: Partial<FrameLedger> = {}): FrameLedger {
  return {
    sent: 100,
    accepted: 100,
    acceptedByDaemon: 100,
    refused: {},
    unanswered: 0,
    stored: 100,
    droppedByPolicy: {},
    lostAfterAccept: {},
    unaccounted: 0,
    delivered: 100,
    lost: 0,
    allowance: undefined,
    allowed: 0,
    acceptedWithoutResult: 0,
    acceptedWithoutResultIds: [],
    ...over,
  };
}

function line(over: Partial<ReadingLedger> = {}): ReadingLedger {
  return {
    source: 'line',
    sent: 200,
    accepted: 200,
    refused: {},
    stored: 200,
    delivered: 200,
    lostAfterAccept: {},
    lost: 0,
    notReceived: 0,
    ackedNotStored: 0,
    brokerLossAllowed: undefined,
    duplicatesSkipped: 0,
    ...over,
  };
}

function ledger(f: FrameLedger, r: ReadingLedger = line()): Ledger {
  return {
    frames: f,
    readings: [r],
    alerts: {
      stored: 5,
      deliveredUpstream: 5,
      deliveredLocal: 5,
      duplicatesLocal: 0,
      outboxLeft: 0,
      lost: 0,
      notReceivedLocally: 0,
    },
    upstream: { gaps: 0, orderViolations: 0, malformed: 0, duplicates: 0 },
  };
}

describe('chaos ledger verdict', () => {
  it('passes a clean drill, and policy drops are not losses', () => {
    expect(ledgerFailures(ledger(frames()))).toEqual([]);
    const policy = frames({
      stored: 95,
      delivered: 95,
      droppedByPolicy: { superseded: 3, decode_error: 2 },
      acceptedWithoutResult: 5,
    });
    expect(ledgerFailures(ledger(policy))).toEqual([]);
  });

  it('counts a frame dropped after its 202 because something failed as lost, counted or not', () => {
    const f = frames({
      stored: 97,
      delivered: 97,
      lostAfterAccept: { store_error: 2, inference_error: 1 },
      lost: 3,
      acceptedWithoutResult: 3,
    });
    expect(ledgerFailures(ledger(f))).toEqual([
      '3 accepted frames lost after their 202 (store_error 2, inference_error 1)',
    ]);
  });

  it('allows a declared loss up to its bound and only for its reasons', () => {
    const allowance = { max: 3, reasons: ['store_error'], why: 'frames held when the disk filled' };
    const within = frames({
      stored: 97,
      delivered: 97,
      lostAfterAccept: { store_error: 3 },
      lost: 3,
      allowance,
      allowed: 3,
      acceptedWithoutResult: 3,
    });
    expect(ledgerFailures(ledger(within))).toEqual([]);
    const over = frames({
      ...within,
      stored: 96,
      delivered: 96,
      lostAfterAccept: { store_error: 4 },
      lost: 4,
      acceptedWithoutResult: 4,
    });
    expect(ledgerFailures(ledger(over))).toEqual([
      '4 accepted frames lost (store_error 4), more than the drill allows (at most 3: frames held when the disk filled)',
    ]);
    const other = frames({
      ...within,
      stored: 98,
      delivered: 98,
      lostAfterAccept: { store_error: 1, shutdown: 1 },
      lost: 2,
      allowed: 1,
      acceptedWithoutResult: 2,
    });
    expect(ledgerFailures(ledger(other))).toEqual([
      '1 accepted frames lost for a reason the allowance does not cover (store_error 1, shutdown 1)',
    ]);
  });

  it('fails frames neither stored nor counted', () => {
    const f = frames({ stored: 99, delivered: 99, unaccounted: 1, lost: 1, acceptedWithoutResult: 1 });
    const failures = ledgerFailures(ledger(f));
    expect(failures).toContain('1 accepted frames neither stored nor counted as dropped');
    expect(failures).toContain('1 frames answered 202 have no stored result, more than the 0 counted drops');
  });

  it('counts accepted readings dropped before they were stored as lost', () => {
    const r = line({ stored: 190, delivered: 190, lost: 10, lostAfterAccept: { store_backlog: 10 } });
    expect(ledgerFailures(ledger(frames(), r))).toEqual([
      '10 accepted readings of line never stored (counted as dropped, all sources: store_backlog 10)',
    ]);
  });

  it('fails telemetry the broker acknowledged and never delivered, unless the drill allows a broker loss', () => {
    const lostByBroker = line({ sent: 210, notReceived: 10, ackedNotStored: 5 });
    expect(ledgerFailures(ledger(frames(), lostByBroker))).toEqual([
      '10 readings of line acknowledged by the broker never reached the gateway',
    ]);
    const allowed = { ...lostByBroker, brokerLossAllowed: 'SIGKILL' };
    expect(ledgerFailures(ledger(frames(), allowed))).toEqual([]);
  });

  it('finds by key an acknowledged message a duplicate hides from the count', () => {
    // Counts balance (one message taken twice, one never), keys do not.
    const hidden = line({ notReceived: 0, ackedNotStored: 1 });
    expect(ledgerFailures(ledger(frames(), hidden))).toEqual([
      '1 messages of line acknowledged by the broker have no stored reading, more than the 0 readings the gateway refused account for',
    ]);
    // Messages the gateway refused (both readings of each) are not stored either, and are no loss.
    const refused = line({
      accepted: 196,
      stored: 196,
      delivered: 196,
      refused: { bad_timestamp: 4 },
      ackedNotStored: 2,
    });
    expect(ledgerFailures(ledger(frames(), refused))).toEqual([]);
  });
});
