#!/usr/bin/env node
import '../dist/cli/worker.js';
