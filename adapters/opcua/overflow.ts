/**
 * A server whose queue for a monitored item is full throws the oldest samples away and flags the
 * next value with the Overflow info bit. The reading keeps the flag (`Good#Overflow`), and the log
 * says what to change; but an item that overflows every publish would flood the log, so each item
 * is named at most once per interval, with the count of overflows seen since.
 */
export class OverflowWarnings {
  private readonly items = new Map<string, { loggedAt: number; since: number }>();

  constructor(private readonly everyMs = 60_000) {}

  /**
   * Whether an overflow of `key` (one per item) is to be logged now; if so, how many further
   * overflows of it went unlogged since the last line.
   */
  due(key: string, now: number): { log: true; suppressed: number } | { log: false } {
    const seen = this.items.get(key);
    if (seen && now - seen.loggedAt < this.everyMs) {
      seen.since += 1;
      return { log: false };
    }
    this.items.set(key, { loggedAt: now, since: 0 });
    return { log: true, suppressed: seen?.since ?? 0 };
  }
}

/** The warning for an item whose samples were lost at the server, with what to change. */
export function overflowMessage(
  item: { nodeId: string; asset: string; tag: string; queueSize: number; samplingIntervalMs: number },
  publishingIntervalMs: number,
  suppressed: number,
): string {
  const again = suppressed > 0 ? ` (${suppressed} more times since the last warning)` : '';
  return (
    `samples of ${item.asset}/${item.tag} (${item.nodeId}) were lost at the OPC-UA server${again}: its queue ` +
    `for the item (queueSize ${item.queueSize}) filled up between two publishes, sampling every ` +
    `${item.samplingIntervalMs} ms and publishing every ${publishingIntervalMs} ms; raise the item's ` +
    'queueSize or shorten subscription.publishingIntervalMs (or sample less often if every sample is not needed)'
  );
}
