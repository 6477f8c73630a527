import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../runtime/ops/metrics.js';

describe('docs/METRICS.md', () => {
  it('documents every metric Vigil exports', async () => {
    const doc = await readFile(path.resolve(import.meta.dirname, '../../docs/METRICS.md'), 'utf8');
    const names = (await new Metrics({ processMetrics: false }).registry.getMetricsAsJSON()).map(
      (m) => m.name,
    );
    expect(names.length).toBeGreaterThan(10);
    const missing = names.filter((n) => !doc.includes(`\`${n}\``));
    expect(missing).toEqual([]);
  });
});
