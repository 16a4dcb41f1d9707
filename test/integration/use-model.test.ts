// Using a trained model: `eval` reproduces the run's own accuracy, `predict` reads PNGs.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMnist } from '../../src/data/mnist.js';
import { tempDir } from '../helpers.js';
import { readJsonLines, runCli } from './run-cli.js';

const dir = tempDir('lenet-use-');
const ckpt = join(dir.path, 'ckpt');
const metrics = join(dir.path, 'run.jsonl');
afterAll(() => dir.remove());

beforeAll(async () => {
  const r = await runCli('lenet-coord', ['start', '--epochs', '2', '--train-limit', '6000', '--test-limit', '1000', '--threads', '2', '--quiet', '--port', '0', '--checkpoint-dir', ckpt, '--metrics-out', metrics]);
  expect(r.code, r.stderr).toBe(0);
});

function writePng(path: string, width: number, height: number, grey: (x: number, y: number) => number): void {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      png.data[i] = png.data[i + 1] = png.data[i + 2] = grey(x, y);
      png.data[i + 3] = 255;
    }
  }
  writeFileSync(path, PNG.sync.write(png));
}

describe('lenet-coord eval', () => {
  it('prints the same accuracy as the run\'s last epoch record, and a confusion matrix', async () => {
    const last = readJsonLines(metrics).filter((r) => r.type === 'epoch').pop()!;
    const json = await runCli('lenet-coord', ['eval', '--checkpoint', ckpt, '--test-limit', '1000', '--json']);
    expect(json.code, json.stderr).toBe(0);
    const result = JSON.parse(json.stdout) as { accuracy: number; confusion: number[]; total: number; checkpoint: string };
    expect(result.accuracy).toBe(last.testAccuracy);
    expect(result.total).toBe(1000);
    expect(result.confusion.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(result.checkpoint).toMatch(/ckpt-e0002-s000000$/);
    const text = await runCli('lenet-coord', ['eval', '--checkpoint', join(ckpt, 'ckpt-e0002-s000000'), '--test-limit', '1000']);
    expect(text.stdout).toMatch(new RegExp(`^accuracy: ${(last.testAccuracy as number).toFixed(4)} \\(\\d+/1000\\)$`, 'm'));
    expect(text.stdout).toMatch(/confusion matrix/);
  });

  it('says clearly when the checkpoint is missing', async () => {
    const r = await runCli('lenet-coord', ['eval', '--checkpoint', join(dir.path, 'nothing')]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error LENET_ERR_CHECKPOINT: .*neither a checkpoint folder nor a folder holding checkpoints/);
  });
});

describe('lenet-coord predict', () => {
  it('returns the labels of MNIST test images written out as PNG, as they are and redrawn dark-on-light at 3x', async () => {
    const mnist = loadMnist({ trainLimit: 1, testLimit: 20 });
    const plain: string[] = [];
    const redrawn: string[] = [];
    for (let i = 0; i < 20; i++) {
      const px = (x: number, y: number): number => mnist.test.images[i * 784 + y * 28 + x];
      plain.push(join(dir.path, `digit-${i}.png`));
      writePng(plain[i], 28, 28, px);
      redrawn.push(join(dir.path, `drawn-${i}.png`));
      writePng(redrawn[i], 84, 96, (x, y) => 255 - (y >= 6 && y < 90 ? px(Math.floor(x / 3), Math.floor((y - 6) / 3)) : 0));
    }
    const truth = Array.from(mnist.test.labels);
    const run = async (files: string[]): Promise<number[]> => {
      const r = await runCli('lenet-coord', ['predict', '--checkpoint', ckpt, '--json', ...files]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { label: number }[]).map((x) => x.label);
    };
    const a = await run(plain);
    const b = await run(redrawn);
    const hits = (xs: number[]): number => xs.filter((x, i) => x === truth[i]).length;
    expect(hits(a)).toBeGreaterThanOrEqual(18);
    expect(hits(b)).toBeGreaterThanOrEqual(16);
    const text = await runCli('lenet-coord', ['predict', '--checkpoint', ckpt, plain[0]]);
    expect(text.stdout).toMatch(new RegExp(`digit-0\\.png: ${a[0]} \\(p=(0\\.\\d{3}|1\\.000)\\)`));
  });

  it('rejects a file that is not a PNG', async () => {
    const bogus = join(dir.path, 'not.png');
    writeFileSync(bogus, 'hello');
    const r = await runCli('lenet-coord', ['predict', '--checkpoint', ckpt, bogus]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not\.png: not a readable PNG/);
  });
});
