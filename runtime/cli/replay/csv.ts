import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';
import { VigilError } from '../../errors.js';
import type { Reading } from '../../telemetry/reading.js';

/**
 * Recorded telemetry for `vigil replay`: a CSV file with a header naming an `asset` column, a
 * `time` column (ms since the epoch, or ISO 8601) or a `cycle` column, and one column per tag.
 * Each row becomes one batch of readings of its asset, as a gateway would have received them.
 * `cycle` is also a tag (the counter axis of cycle-based models). An empty cell is a missing
 * value: no reading for that tag in that row.
 */
export interface ReplayRow {
  /** 1-based line number in the file, for messages. */
  line: number;
  asset: string;
  /** The row's time (ms) or cycle, whichever the file has. */
  axis: number;
  readings: Reading[];
}

export interface CsvLayout {
  axis: 'time' | 'cycle';
  tags: string[];
}

export async function* readReplayCsv(
  file: string,
  source: string,
  onLayout?: (layout: CsvLayout) => void,
): AsyncGenerator<ReplayRow> {
  const parser = createReadStream(file).pipe(
    parse({ trim: true, skip_empty_lines: true, relax_column_count: false }),
  );
  let header: string[] | undefined;
  let assetCol = -1;
  let axisCol = -1;
  let axis: 'time' | 'cycle' = 'time';
  let tagCols: Array<[number, string]> = [];
  let line = 0;
  const t0 = Date.now();
  try {
    for await (const record of parser as AsyncIterable<string[]>) {
      line += 1;
      if (!header) {
        header = record;
        assetCol = header.indexOf('asset');
        const timeCol = header.indexOf('time');
        const cycleCol = header.indexOf('cycle');
        if (assetCol < 0 || (timeCol < 0 && cycleCol < 0))
          throw new VigilError(
            'VIGIL_ERR_INPUT_INVALID',
            `${file}: the header needs an 'asset' column and a 'time' or 'cycle' column; it has: ${header.join(', ')}`,
          );
        axis = timeCol >= 0 ? 'time' : 'cycle';
        axisCol = timeCol >= 0 ? timeCol : cycleCol;
        // The cycle counter is also a reading: cycle-based models window on it.
        tagCols = header.flatMap((h, i) =>
          i === assetCol || (axis === 'time' && i === axisCol) ? [] : [[i, h] as [number, string]],
        );
        onLayout?.({ axis, tags: tagCols.map(([, t]) => t) });
        continue;
      }
      const asset = record[assetCol]!;
      const rawAxis = record[axisCol]!;
      const axisValue = axis === 'time' ? parseTime(rawAxis) : Number(rawAxis);
      if (asset === '' || !Number.isFinite(axisValue))
        throw new VigilError(
          'VIGIL_ERR_INPUT_INVALID',
          `${file}:${line}: needs an asset and a ${axis === 'time' ? 'time (ms or ISO 8601)' : 'numeric cycle'}, got '${asset}' and '${rawAxis}'`,
        );
      // Cycle files carry no clock: each row is stamped one second after the one before, so that
      // time only moves forward, as it does live, and a counter that restarts (a replaced
      // engine) is seen as a reset rather than as late readings.
      const sourceTime = axis === 'time' ? axisValue : t0 + line * 1000;
      const readings: Reading[] = [];
      for (const [i, tag] of tagCols) {
        const cell = record[i]!;
        if (cell === '') continue;
        const value = Number(cell);
        readings.push({
          source,
          asset,
          tag,
          value: Number.isFinite(value) ? value : (cell as unknown as number),
          quality: 'good',
          sourceTime,
          receivedAt: sourceTime,
        });
      }
      yield { line, asset, axis: axisValue, readings };
    }
  } catch (err) {
    if (err instanceof VigilError) throw err;
    throw new VigilError(
      'VIGIL_ERR_INPUT_INVALID',
      `${file}: cannot read it as CSV: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

function parseTime(s: string): number {
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  return Date.parse(s);
}
