import { defineConfig } from 'vitest/config';
import { LeakCheckLastSequencer } from './test/harness/leak-check-sequencer.ts';

export default defineConfig({
  test: {
    // The suite-wide leak check scans what every other e2e file recorded: it runs last.
    sequence: { sequencer: LeakCheckLastSequencer },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 600_000,
          // One real control plane and emulators are shared; files run one at a time.
          fileParallelism: false,
        },
      },
    ],
  },
});
