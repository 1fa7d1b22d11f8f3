// `npx node bench/files/cli.ts encrypt|decrypt ...`: envseal's file commands as a
// process, straight from the TypeScript sources (the benchmark runs the compiled build).
import { mainFiles } from '../../src/files/cli-main.ts';

await mainFiles();
