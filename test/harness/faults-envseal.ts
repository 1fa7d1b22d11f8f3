// `envseal` run from source (Node 24 strips the types): what bin/envseal.js runs from
// dist/, for tests that need the controller as a real process (SIGKILL, failover).
import { main } from '../../src/cli/main.ts';

await main({ programName: 'envseal' });
