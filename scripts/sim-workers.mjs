// Simulated workers for `npm run scaling`'s load mode: N protocol-correct WebSocket clients in one
// process that answer every assignment with a zero gradient after a fixed delay per microbatch
// (a measured compute time), so the coordinator's own per-step cost can be measured with far
// more participants than this machine has cores. They answer the join probe honestly (one real
// gradient per distinct probe). The model trained this way is meaningless.
//
//   node scripts/sim-workers.mjs <ws-url> <count> <delay-ms-per-microbatch>
import WebSocket from 'ws';
import { decode, encode } from '../dist/protocol/codec.js';
import { loadMnist } from '../dist/data/mnist.js';
import { coverNodes } from '../dist/reduce/ordered-sum.js';
import { initBackend } from '../dist/backend/select.js';
import { honestProbeDigest } from '../dist/compute/probe.js';

const [url, count, delayMs] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const mnist = loadMnist({ testLimit: 1 });
const sha = mnist.sha256;

/**
 * The honest answer to the join probe, which every worker must pass: its microbatch's gradient,
 * computed here on the wasm backend, and its digest. Computed once per distinct probe.
 */
const answers = new Map();
function probeAnswer(msg, config) {
  const key = `${config.arch}/${config.activation}/${config.seed}/${Buffer.from(msg.weights.buffer, msg.weights.byteOffset, 64).toString('hex')}/${msg.samples.join(',')}`;
  if (!answers.has(key)) {
    answers.set(key, initBackend('wasm').then(() => honestProbeDigest(config, mnist.train.images, mnist.train.labels, msg)));
  }
  return answers.get(key);
}
let open = 0;
for (let i = 0; i < count; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20, generateMask: (m) => m.fill(0) });
  let params = 0;
  let config;
  ws.on('open', () => open++);
  ws.on('error', () => undefined);
  ws.on('close', () => {
    if (--open === 0) process.exit(0);
  });
  ws.on('message', (data) => {
    const msg = decode(data);
    switch (msg.type) {
      case 'challenge':
        ws.send(encode({ type: 'hello', packageVersion: 'sim', backend: 'wasm', threads: 1, datasetSha256: sha, authProof: new Uint8Array(0), name: `sim-${i}` }));
        break;
      case 'welcome':
        params = msg.config.paramCount;
        config = msg.config;
        ws.send(encode({ type: 'ready', threads: 1 }));
        break;
      case 'probe':
        probeAnswer(msg, config).then((digest) => ws.send(encode({ type: 'probe_result', digest })));
        break;
      case 'assignment': {
        const examples = msg.sizes.reduce((a, b) => a + b, 0);
        const zero = new Float32Array(params);
        setTimeout(() => {
          // One result for the whole range is what a real worker sends for an aligned range;
          // for unaligned ranges the coordinator wants one per subtree, so send those.
          for (const [lo, hi] of coverNodes(msg.microbatches, msg.lo, msg.hi)) {
            let n = 0;
            for (let j = lo; j < hi; j++) n += msg.sizes[j - msg.lo];
            ws.send(encode({ type: 'result', step: msg.step, lo, hi, examples: n, lossSum: n, gradient: zero, computeMs: delayMs * (msg.hi - msg.lo) }));
          }
        }, delayMs * (msg.hi - msg.lo));
        break;
      }
      case 'goodbye':
        ws.close();
        break;
      default:
        break;
    }
  });
}

