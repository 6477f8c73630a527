/**
 * How much the forwarder puts on the link at once: messages in flight and rows per message,
 * adapted to what the link carries. An acknowledgement timeout halves both (never below 1); each
 * acknowledged message grows the window by one message and the message by a sixteenth (at least
 * one row), up to the configured maxInFlight and batchSize. On a link too slow for the
 * configuration this settles just below what it can acknowledge within the timeout instead of
 * reconnecting forever; on a good link it stays at the configured sizes.
 */
export class SendWindow {
  private messageLimit: number;
  private rowLimit: number;

  constructor(
    private readonly maxMessages: number,
    private readonly maxRows: number,
  ) {
    this.messageLimit = maxMessages;
    this.rowLimit = maxRows;
  }

  /** Messages that may be in flight now. */
  get messages(): number {
    return this.messageLimit;
  }

  /** Rows one message may carry now. */
  get rows(): number {
    return this.rowLimit;
  }

  /** A message was acknowledged: the link carries what is sent now; try a little more. */
  acked(): void {
    this.messageLimit = Math.min(this.maxMessages, this.messageLimit + 1);
    this.rowLimit = Math.min(this.maxRows, this.rowLimit + Math.max(1, Math.floor(this.rowLimit / 16)));
  }

  /**
   * Nothing was acknowledged for the ack timeout. The oldest message alone took that long, so a
   * smaller one is tried, and less is put in flight to be lost at the next timeout.
   */
  timedOut(): void {
    this.messageLimit = Math.max(1, Math.floor(this.messageLimit / 2));
    this.rowLimit = Math.max(1, Math.floor(this.rowLimit / 2));
  }
}
