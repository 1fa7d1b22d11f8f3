#!/usr/bin/env node
// envseal: the CLI entry point. Everything lives in dist/ (built from src/ by `npm run build`).
import { start } from './start.js';

await start('envseal');
