/**
 * One class's delivery window: what was sent and awaits PUBACK, in order, and the two cursors.
 * `sent` is how far rows were read and published in this connection; `acked` is the highest seq
 * the broker acknowledged with every message before it acknowledged too. Only `acked` is ever
 * persisted: an outage drops what is in flight and sending resumes after `acked`, in order.
 */

export interface SentMessage {
  first: number;
  last: number;
  rows: number;
  acked: boolean;
  /** Set when an outage dropped it: a late acknowledgement must not move the cursor. */
  dropped: boolean;
}

export interface Advance {
  /** The new acked cursor. */
  seq: number;
  /** Rows released by this acknowledgement (of this message and of acked ones waiting behind it). */
  rows: number;
}

export class ClassWindow {
  acked: number;
  sent: number;
  private readonly pending: SentMessage[] = [];

  constructor(acked: number) {
    this.acked = acked;
    this.sent = acked;
  }

  /** Messages published and not yet released (an acked one waits for the ones before it). */
  get inFlight(): number {
    return this.pending.length;
  }

  /** Messages still awaiting their PUBACK. */
  get unacked(): number {
    let n = 0;
    for (const m of this.pending) if (!m.acked) n++;
    return n;
  }

  add(first: number, last: number, rows: number): SentMessage {
    const message: SentMessage = { first, last, rows, acked: false, dropped: false };
    this.pending.push(message);
    this.sent = last;
    return message;
  }

  /**
   * Records the PUBACK of `message`; returns how far the acked cursor moved, or undefined when it
   * did not (an earlier message is still unacknowledged, or the message was dropped).
   */
  ack(message: SentMessage): Advance | undefined {
    if (message.dropped || message.acked) return undefined;
    message.acked = true;
    let rows = 0;
    while (this.pending.length > 0 && this.pending[0]!.acked) {
      const head = this.pending.shift()!;
      this.acked = Math.max(this.acked, head.last);
      rows += head.rows;
    }
    return rows > 0 ? { seq: this.acked, rows } : undefined;
  }

  /**
   * Drops everything in flight (connection lost or an ack timed out): the next rows sent are the
   * ones after the acked cursor. Returns how many messages had not been acknowledged.
   */
  reset(): number {
    let unacked = 0;
    for (const m of this.pending) {
      m.dropped = true;
      if (!m.acked) unacked++;
    }
    this.pending.length = 0;
    this.sent = this.acked;
    return unacked;
  }
}
