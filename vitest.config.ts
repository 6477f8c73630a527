import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests start real brokers and daemons on free ports; two cores, so keep the
    // number of test files running at once small.
    maxWorkers: 2,
  },
});
