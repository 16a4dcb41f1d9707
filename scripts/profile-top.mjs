// Summarises a V8 CPU profile (`node --cpu-prof`): the functions with the most self time, and
// that time grouped by where the code lives (lenet-dist, ws, protobufjs, tfjs, Node internals,
// garbage collection, idle). Used for docs/performance.md's account of what bounds the coordinator.
//
//   node scripts/profile-top.mjs PROFILE.cpuprofile [N] [--skip SECONDS]
//
// --skip leaves out the first SECONDS of the profile (start-up: module loading, reading MNIST).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { skip: { type: 'string', default: '0' }, help: { type: 'boolean', short: 'h' } } });
const [file, count] = [positionals[0], Number(positionals[1] ?? 15)];
if (!file || values.help) {
  console.log('Usage: node scripts/profile-top.mjs PROFILE.cpuprofile [N] [--skip SECONDS]');
  process.exit(values.help ? 0 : 2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
// Self time per node: each sample's node, weighted by the time until the next sample.
const skipUs = Number(values.skip) * 1e6;
const selfUs = new Map();
let at = 0;
profile.samples.forEach((id, i) => {
  at += profile.timeDeltas[i];
  if (at >= skipUs) selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
});
const byFunction = new Map();
const byPlace = new Map();
const place = (url, name) => {
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'garbage collection';
  if (name === '(program)') return 'V8 / native (program)';
  if (/node_modules\/ws\//.test(url)) return 'ws';
  if (/node_modules\/protobufjs\/|@protobufjs/.test(url)) return 'protobufjs';
  if (/node_modules\/@tensorflow\//.test(url)) return 'tfjs';
  if (/\/dist\//.test(url)) return 'lenet-dist';
  if (url.startsWith('node:') || url === '') return 'Node internals';
  return 'other';
};
let total = 0;
for (const node of profile.nodes) {
  const us = selfUs.get(node.id) ?? 0;
  total += us;
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName || '(anonymous)';
  const key = `${name} ${url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${lineNumber + 1}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  const p = place(url, name);
  byPlace.set(p, (byPlace.get(p) ?? 0) + us);
}
const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
console.log(`profile: ${(total / 1e6).toFixed(1)} s sampled`);
console.log('by place:');
for (const [p, us] of [...byPlace].sort((a, b) => b[1] - a[1])) console.log(`  ${pct(us)}  ${p}`);
console.log(`top ${count} functions by self time:`);
for (const [k, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, count)) console.log(`  ${pct(us)}  ${k}`);
