// Runs the suite-wide leak check (test/e2e/zz-leaks.test.ts) after every other file,
// whatever order vitest's default sequencer picks (unknown files first, then failed
// first, then longest first): it scans what all the others recorded.
import { BaseSequencer, type TestSpecification } from 'vitest/node';

export const LEAK_CHECK_FILE = 'test/e2e/zz-leaks.test.ts';

export class LeakCheckLastSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const isLeakCheck = (file: TestSpecification) => file.moduleId.replaceAll('\\', '/').endsWith(LEAK_CHECK_FILE);
    return [...sorted.filter((f) => !isLeakCheck(f)), ...sorted.filter(isLeakCheck)];
  }
}
