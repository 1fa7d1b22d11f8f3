// `npx node bench/files/cli.ts encrypt|decrypt ...`: envseal's CLI as a process, straight
// from the TypeScript sources (the benchmark runs the compiled build).
import { main } from '../../src/cli/main.ts';

await main();
