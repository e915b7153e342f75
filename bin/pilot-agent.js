#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (run `npm run build` once after cloning).
import { main } from '../dist/cli/main.js';

main(process.argv);
