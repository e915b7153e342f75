import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // leak tests measure the heap after a forced collection
    execArgv: ['--expose-gc'],
    // two cores: keep integration tests that spawn processes from starving each other
    maxWorkers: 2,
  },
});
