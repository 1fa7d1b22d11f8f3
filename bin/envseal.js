#!/usr/bin/env node
// envseal: the CLI entry point. Everything lives in dist/cli (built from src/cli by `npm run build`).
import { main } from '../dist/cli/main.js';

await main({ programName: 'envseal' });
