#!/usr/bin/env node
// kubectl plugin entry point: `kubectl envseal COMMAND ...` runs this with the same arguments.
import { main } from '../dist/cli/main.js';

await main({ programName: 'kubectl envseal' });
