// Simulated workers for `npm run scaling`'s load mode: N protocol-correct WebSocket clients in one
// process that answer every assignment with a zero gradient after a fixed delay per microbatch
// (a measured compute time), so the coordinator's own per-step cost can be measured with far
// more participants than this machine has cores. The model trained this way is meaningless.
//
//   node scripts/sim-workers.mjs <ws-url> <count> <delay-ms-per-microbatch>
import WebSocket from 'ws';
import { decode, encode } from '../dist/protocol/codec.js';
import { loadMnist } from '../dist/data/mnist.js';
import { coverNodes } from '../dist/reduce/ordered-sum.js';

const [url, count, delayMs] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const sha = loadMnist({ trainLimit: 1, testLimit: 1 }).sha256;
let open = 0;
for (let i = 0; i < count; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20, generateMask: (m) => m.fill(0) });
  let params = 0;
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
        ws.send(encode({ type: 'ready', threads: 1 }));
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

