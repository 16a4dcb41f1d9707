#!/usr/bin/env node
import '../dist/cli/coord.js';
