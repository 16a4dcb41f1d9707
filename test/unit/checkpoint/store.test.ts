// Checkpoints: round trip, atomicity leftovers, corruption detection, and loading the saved model
// with stock tfjs (tf.loadLayersModel over HTTP, no project code).
import { createServer, type Server } from 'node:http';
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import * as tfjs from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../../src/backend/select.js';
import { listCheckpoints, loadCheckpoint, loadNewestCheckpoint, saveCheckpoint } from '../../../src/checkpoint/store.js';
import { Adam } from '../../../src/optim/optimizer.js';
import { loadMnist } from '../../../src/data/mnist.js';
import { copyImage } from '../../../src/data/distort.js';
import { modelSpec, type ArchName } from '../../../src/model/architectures.js';
import { forward } from '../../../src/model/forward.js';
import { expandWeights, initWeights, weightsSha256 } from '../../../src/model/weights.js';
import { CheckpointError } from '../../../src/errors.js';
import { tempDir } from '../../helpers.js';

const dir = tempDir('lenet-ckpt-');
beforeAll(async () => {
  await initBackend('wasm');
});
afterAll(() => dir.remove());

async function save(sub: string, arch: ArchName, epoch: number, seed = 1): Promise<{ path: string; weights: Float32Array }> {
  const spec = modelSpec(arch);
  const weights = initWeights(spec, seed);
  const adam = new Adam(spec.size);
  adam.apply(weights, Float32Array.from({ length: spec.size }, (_, i) => Math.sin(i)), 0.01);
  const path = await saveCheckpoint({
    dir: join(dir.path, sub),
    spec,
    weights,
    optimizer: adam.state(),
    progress: { epoch, step: 0, globalStep: epoch * 10 },
    config: { arch },
    metrics: [{ type: 'epoch', epoch }],
  });
  return { path, weights };
}

describe('checkpoint store', () => {
  it('round-trips weights, optimizer state and progress', async () => {
    const { path, weights } = await save('a', 'lenet5', 1);
    const loaded = loadCheckpoint(path, modelSpec('lenet5'));
    expect(loaded.weights).toEqual(weights);
    expect(loaded.state.weightsSha256).toBe(weightsSha256(weights));
    expect(loaded.optimizer.t).toBe(1);
    expect(loaded.optimizer.slots.m.length).toBe(60806);
    expect(loaded.state.progress).toEqual({ epoch: 1, step: 0, globalStep: 10 });
  });

  it('finds the newest complete checkpoint and ignores unfinished temporary folders', async () => {
    await save('b', 'lenet5', 1);
    await save('b', 'lenet5', 2);
    mkdirSync(join(dir.path, 'b', '.tmp-ckpt-e0003-s000000-999'));
    expect(listCheckpoints(join(dir.path, 'b')).map((p) => p.slice(-18))).toEqual(['ckpt-e0001-s000000', 'ckpt-e0002-s000000']);
    expect(loadNewestCheckpoint(join(dir.path, 'b'), modelSpec('lenet5'))!.state.progress.epoch).toBe(2);
    expect(loadNewestCheckpoint(join(dir.path, 'nothing-here'), modelSpec('lenet5'))).toBeUndefined();
  });

  it('detects a corrupted weights file', async () => {
    const { path } = await save('c', 'lenet5', 1);
    const file = join(path, 'weights.bin');
    const bytes = readFileSync(file);
    bytes[100] ^= 1;
    writeFileSync(file, bytes);
    expect(() => loadCheckpoint(path, modelSpec('lenet5'))).toThrow(CheckpointError);
    expect(() => loadCheckpoint(path, modelSpec('lenet5'))).toThrow(/weights\.bin does not match its recorded SHA-256/);
  });

  it('detects a truncated state file and a missing file', async () => {
    const { path } = await save('d', 'lenet5', 1);
    writeFileSync(join(path, 'state.json'), readFileSync(join(path, 'state.json')).subarray(0, 50));
    expect(() => loadCheckpoint(path, modelSpec('lenet5'))).toThrow(/state\.json is missing or not JSON/);
    const other = await save('e', 'lenet5', 1);
    writeFileSync(join(other.path, 'optimizer.bin'), '');
    expect(() => loadCheckpoint(other.path, modelSpec('lenet5'))).toThrow(/optimizer\.bin does not match/);
  });

  it('refuses a checkpoint of the other architecture', async () => {
    const { path } = await save('f', 'keras', 1);
    expect(() => loadCheckpoint(path, modelSpec('lenet5'))).toThrow(/holds an --arch keras model, not lenet5/);
  });
});

describe('saved model in stock tfjs', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      const file = join(dir.path, decodeURIComponent(req.url ?? '/'));
      if (!existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200).end(readFileSync(file));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  for (const arch of ['lenet5', 'keras'] as const) {
    it(`${arch}: tf.loadLayersModel computes the training forward pass (softmax of its logits)`, async () => {
      const { path, weights } = await save(`g-${arch}`, arch, 1, 5);
      const url = `${base}/${path.slice(dir.path.length + 1)}/model.json`;
      const model = await tfjs.loadLayersModel(url);
      const spec = modelSpec(arch);
      expect(model.countParams()).toBe(arch === 'lenet5' ? 60806 + 900 : 44426); // + C3's 900 masked zeros
      const mnist = loadMnist({ trainLimit: 1, testLimit: 32 });
      const pixels = new Float32Array(32 * 784);
      for (let i = 0; i < 32; i++) copyImage(mnist.test.images, i, pixels, i * 784);
      const x = tfjs.tensor4d(pixels, [32, 28, 28, 1]);
      const stock = (model.predict(x) as tfjs.Tensor).dataSync();
      const params = expandWeights(spec, weights).map((w, i) => tfjs.tensor(w, spec.params[i].shape));
      const ours = tfjs.softmax(forward(spec, params, x)).dataSync();
      for (let i = 0; i < stock.length; i++) expect(Math.abs(stock[i] - ours[i])).toBeLessThan(1e-5);
      tfjs.dispose([x, ...params]);
      model.dispose();
    });
  }
});
