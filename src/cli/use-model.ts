// `lenet-coord eval` and `lenet-coord predict`: using a trained checkpoint.
import { NUM_CLASSES } from '../constants.js';
import { evaluate } from '../coordinator/evaluate.js';
import { UsageError } from '../errors.js';
import { BACKEND_CHOICES, initBackend } from '../backend/select.js';
import { openCheckpoint } from '../checkpoint/store.js';
import { GradientComputer } from '../compute/gradients.js';
import { loadMnist } from '../data/mnist.js';
import { mnistInput } from '../data/png.js';
import { choiceFlag, optionalIntFlag, parseFlags, pathFlag } from './args.js';

export const EVAL_USAGE = `Usage: lenet-coord eval --checkpoint PATH [options]

Evaluates a checkpoint on the MNIST test set: prints 'accuracy: ...' and the confusion matrix.
PATH is a checkpoint folder (ckpt-e0010-s000000) or a --checkpoint-dir (its newest checkpoint).

Options:
  --checkpoint PATH          required
  --json                     print one JSON object instead
  --data-dir DIR             MNIST folder                       [embedded copy]
  --test-limit N             only the first N test images
  --backend auto|wasm|onnx|tensorflow|cpu                       [auto]
  -h, --help
`;

export const PREDICT_USAGE = `Usage: lenet-coord predict --checkpoint PATH [--json] IMAGE.png...

Classifies PNG images of handwritten digits. Any size and colour: each is turned into grey,
inverted if the paper is lighter than the ink, cropped to the digit, scaled to fit 20x20 and
centred by its centre of mass in 28x28, as MNIST was prepared. A 28x28 image with a dark
background is taken as already prepared.
`;

function openCheckpointFlag(path: string | undefined): ReturnType<typeof openCheckpoint> {
  if (path === undefined) throw new UsageError('--checkpoint PATH is required (a checkpoint folder or a --checkpoint-dir)');
  return openCheckpoint(path);
}

function openModel(path: string | undefined): GradientComputer {
  const ckpt = openCheckpointFlag(path);
  const empty = new Uint8Array(0);
  const computer = new GradientComputer(ckpt.spec, empty, empty, 0, false);
  computer.setWeights(ckpt.weights, 0);
  return computer;
}

/** A backend's note (a fallback) goes to stderr, beside the results on stdout. */
const note = (msg: string): void => void process.stderr.write(`${msg}\n`);

export async function evalCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { flags } = parseFlags(argv, {
    checkpoint: { type: 'string' },
    json: { type: 'boolean' },
    'data-dir': { type: 'string' },
    'test-limit': { type: 'string' },
    backend: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (flags.help) {
    out(EVAL_USAGE);
    return 0;
  }
  await initBackend(choiceFlag(flags, 'backend', BACKEND_CHOICES, 'auto'), note);
  const ckpt = openCheckpointFlag(pathFlag(flags, 'checkpoint'));
  const data = loadMnist({ dataDir: pathFlag(flags, 'data-dir'), trainLimit: 0, testLimit: optionalIntFlag(flags, 'test-limit', 1) });
  // The same evaluation the training run does after each epoch, so the accuracies agree.
  const { correct, total, accuracy, loss, confusion } = await evaluate(undefined, ckpt.spec, data, ckpt.weights, 0);
  const where = ckpt.path;
  const { epoch, step } = ckpt.state.progress;
  if (flags.json) {
    out(JSON.stringify({ checkpoint: where, epoch, step, accuracy, correct, total, testLoss: loss, confusion }) + '\n');
    return 0;
  }
  out(`checkpoint: ${where} (${epoch} epochs${step ? ` and ${step} steps` : ''})\n`);
  out(`accuracy: ${accuracy.toFixed(4)} (${correct}/${total})\n`);
  out(`test loss: ${loss.toFixed(4)}\n`);
  out('confusion matrix (rows: true digit, columns: predicted):\n');
  out('      ' + Array.from({ length: NUM_CLASSES }, (_, i) => String(i).padStart(6)).join('') + '\n');
  for (let t = 0; t < NUM_CLASSES; t++) {
    out(`  ${t}   ` + confusion.slice(t * NUM_CLASSES, (t + 1) * NUM_CLASSES).map((c) => String(c).padStart(6)).join('') + '\n');
  }
  return 0;
}

export async function predictCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { flags, positionals } = parseFlags(
    argv,
    { checkpoint: { type: 'string' }, json: { type: 'boolean' }, backend: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    true,
  );
  if (flags.help) {
    out(PREDICT_USAGE);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError('give at least one PNG image: lenet-coord predict --checkpoint PATH digit.png');
  const inputs = positionals.map((p) => mnistInput(p));
  await initBackend(choiceFlag(flags, 'backend', BACKEND_CHOICES, 'auto'), note);
  const computer = openModel(pathFlag(flags, 'checkpoint'));
  const pixels = new Float32Array(inputs.length * 784);
  inputs.forEach((x, i) => pixels.set(x, i * 784));
  const probs = computer.predict(pixels, inputs.length);
  computer.dispose();
  const results = positionals.map((image, i) => {
    const p = Array.from(probs.subarray(i * NUM_CLASSES, (i + 1) * NUM_CLASSES));
    const label = p.indexOf(Math.max(...p));
    return { image, label, probability: p[label], probabilities: p };
  });
  if (flags.json) out(JSON.stringify(results) + '\n');
  else for (const r of results) out(`${r.image}: ${r.label} (p=${r.probability.toFixed(3)})\n`);
  return 0;
}
