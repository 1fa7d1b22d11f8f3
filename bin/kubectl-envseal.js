#!/usr/bin/env node
// kubectl plugin entry point: `kubectl envseal COMMAND ...` runs this with the same arguments.
import { start } from './start.js';

await start('kubectl envseal');
