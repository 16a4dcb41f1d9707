import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Integration tests start real coordinator processes that use every core; running test
    // files one at a time keeps their timings and the machine sane.
    fileParallelism: false,
  },
});
