// Checkpoints: atomic save, discovery of the newest complete one, and verified load.
//
// A checkpoint is a folder `ckpt-e<epochs done>-s<steps done in the next epoch>` holding
//   model.json + weights.bin   the model in tfjs layers format (loads with tf.loadLayersModel)
//   optimizer.bin              the optimizer's slot arrays, float32 little-endian
//   state.json                 run configuration, progress, metrics, and the SHA-256 of each file
// It is written under a temporary name, every file fsynced, then renamed into place, so a crash
// leaves either the previous checkpoints or a complete new one; leftover temporary folders are
// ignored. Loading re-hashes every file and refuses anything that does not match.
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync, existsSync } from 'node:fs';
import { join, basename } from 'node:path';
import { CHECKPOINT_FORMAT_VERSION, CHECKPOINT_PREFIX, CHECKPOINT_STATE_FILE } from '../constants.js';
import { CheckpointError, writeError } from '../errors.js';
import { makeDirs } from '../files.js';
import { modelSpec, type Activation, type ArchName, type ModelSpec } from '../model/architectures.js';
import { exportModel } from '../model/export.js';
import { compactInto, float32Bytes, weightsSha256 } from '../model/weights.js';
import type { OptimizerState } from '../optim/optimizer.js';

const MODEL_FILE = 'model.json';
const WEIGHTS_FILE = 'weights.bin';
const OPTIMIZER_FILE = 'optimizer.bin';
const TMP_PREFIX = '.tmp-';

/** Where training stands: `epoch` epochs are complete and `step` steps of the next one are done. */
export interface Progress {
  epoch: number;
  step: number;
  globalStep: number;
  /** Mid-epoch only: the running sums of the epoch so far, so its record comes out the same. */
  partial?: { lossSum: number; samples: number; trainMs: number };
}

export interface CheckpointState {
  format: number;
  savedAt: string;
  /** The run configuration that must match for --resume (arch, seed, batch settings, ...). */
  config: Record<string, unknown>;
  progress: Progress;
  optimizer: { name: OptimizerState['name']; t: number; slots: { name: string; length: number }[] };
  weightsSha256: string;
  /** Epoch records written so far (the metrics history). */
  metrics: Record<string, unknown>[];
  files: Record<string, string>;
}

export interface LoadedCheckpoint {
  path: string;
  state: CheckpointState;
  weights: Float32Array;
  optimizer: OptimizerState;
}

export function checkpointName(p: Progress): string {
  return `${CHECKPOINT_PREFIX}e${String(p.epoch).padStart(4, '0')}-s${String(p.step).padStart(6, '0')}`;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function writeFileSynced(path: string, data: Uint8Array | string): void {
  const fd = openSync(path, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface SaveInput {
  dir: string;
  spec: ModelSpec;
  weights: Float32Array;
  optimizer: OptimizerState;
  progress: Progress;
  config: Record<string, unknown>;
  metrics: Record<string, unknown>[];
}

/**
 * Writes a checkpoint atomically; returns its folder. A write that fails for the disk's or the
 * folder's reasons (WRITE_ERRORS) leaves no temporary folder and throws a CheckpointError naming
 * the newest complete checkpoint to resume from.
 */
export async function saveCheckpoint(input: SaveInput): Promise<string> {
  const name = checkpointName(input.progress);
  const tmpPath = join(input.dir, `${TMP_PREFIX}${name}-${process.pid}`);
  try {
    return await writeCheckpoint(input, name, tmpPath);
  } catch (err) {
    const e = writeError(err, `a checkpoint into ${input.dir}`);
    if (!e) throw err;
    try {
      rmSync(tmpPath, { recursive: true, force: true });
    } catch {
      // The folder cannot even be listed: nothing of ours can be left in it either.
    }
    const newest = existsSync(input.dir) ? listCheckpoints(input.dir).at(-1) : undefined;
    throw new CheckpointError(
      `${e.message}; ${newest ? `the newest complete checkpoint is ${newest}` : 'no complete checkpoint is there yet'}: ` +
        `make room or fix the folder, then continue with --resume (or pass another --checkpoint-dir)`,
    );
  }
}

async function writeCheckpoint(input: SaveInput, name: string, tmpPath: string): Promise<string> {
  makeDirs(input.dir);
  const finalPath = join(input.dir, name);
  rmSync(tmpPath, { recursive: true, force: true });
  mkdirSync(tmpPath);
  const { modelJson, weightsBin } = await exportModel(input.spec, input.weights, WEIGHTS_FILE);
  const slotNames = Object.keys(input.optimizer.slots).sort();
  const optimizerBin = Buffer.concat(slotNames.map((n) => float32Bytes(input.optimizer.slots[n])));
  const modelText = JSON.stringify(modelJson);
  const files: Record<string, string> = {
    [MODEL_FILE]: sha256(Buffer.from(modelText)),
    [WEIGHTS_FILE]: sha256(weightsBin),
    [OPTIMIZER_FILE]: sha256(optimizerBin),
  };
  writeFileSynced(join(tmpPath, MODEL_FILE), modelText);
  writeFileSynced(join(tmpPath, WEIGHTS_FILE), weightsBin);
  writeFileSynced(join(tmpPath, OPTIMIZER_FILE), optimizerBin);
  const state: CheckpointState = {
    format: CHECKPOINT_FORMAT_VERSION,
    savedAt: new Date().toISOString(),
    config: input.config,
    progress: input.progress,
    optimizer: {
      name: input.optimizer.name,
      t: input.optimizer.t,
      slots: slotNames.map((n) => ({ name: n, length: input.optimizer.slots[n].length })),
    },
    weightsSha256: weightsSha256(input.weights),
    metrics: input.metrics,
    files,
  };
  writeFileSynced(join(tmpPath, CHECKPOINT_STATE_FILE), JSON.stringify(state, null, 2));
  fsyncDir(tmpPath);
  rmSync(finalPath, { recursive: true, force: true });
  renameSync(tmpPath, finalPath);
  fsyncDir(input.dir);
  return finalPath;
}

/** Complete checkpoint folders in `dir`, oldest first (temporary folders are not listed). */
export function listCheckpoints(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && e.name.startsWith(CHECKPOINT_PREFIX))
    .map((e) => e.name)
    .sort()
    .map((n) => join(dir, n));
}

function readVerified(path: string, file: string, expected: string | undefined): Buffer {
  const full = join(path, file);
  let data: Buffer;
  try {
    data = readFileSync(full);
  } catch {
    throw new CheckpointError(`${full} is missing: the checkpoint is incomplete; delete ${basename(path)} or resume from another`);
  }
  if (expected === undefined || sha256(data) !== expected) {
    throw new CheckpointError(`${full} does not match its recorded SHA-256: the checkpoint is corrupt; delete ${basename(path)} or resume from another`);
  }
  return data;
}

function toFloat32(buf: Buffer, offset: number, length: number): Float32Array {
  const out = new Float32Array(length);
  const view = new DataView(buf.buffer, buf.byteOffset + offset, length * 4);
  for (let i = 0; i < length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/** Loads and verifies one checkpoint folder against the model it must hold. */
export function loadCheckpoint(path: string, spec: ModelSpec): LoadedCheckpoint {
  let state: CheckpointState;
  try {
    state = JSON.parse(readFileSync(join(path, CHECKPOINT_STATE_FILE), 'utf8')) as CheckpointState;
  } catch (err) {
    throw new CheckpointError(`${join(path, CHECKPOINT_STATE_FILE)} is missing or not JSON (${(err as Error).message}); the checkpoint is corrupt`);
  }
  if (state.format !== CHECKPOINT_FORMAT_VERSION) {
    throw new CheckpointError(`${path}: checkpoint format ${state.format} is not supported (expected ${CHECKPOINT_FORMAT_VERSION})`);
  }
  if (state.config?.arch !== undefined && state.config.arch !== spec.arch) {
    throw new CheckpointError(`${path} holds an --arch ${String(state.config.arch)} model, not ${spec.arch}; pass the same --arch`);
  }
  readVerified(path, MODEL_FILE, state.files?.[MODEL_FILE]);
  const weightsBin = readVerified(path, WEIGHTS_FILE, state.files?.[WEIGHTS_FILE]);
  const optimizerBin = readVerified(path, OPTIMIZER_FILE, state.files?.[OPTIMIZER_FILE]);

  const fullArrays: Float32Array[] = [];
  let offset = 0;
  for (const p of spec.params) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    if (offset + n * 4 > weightsBin.length) break;
    const arr = toFloat32(weightsBin, offset, n);
    if (p.mask && arr.some((v, i) => p.mask![i] === 0 && v !== 0)) {
      throw new CheckpointError(`${path}: masked weights of layer ${p.layer} are not zero; this is not a ${spec.arch} checkpoint`);
    }
    fullArrays.push(arr);
    offset += n * 4;
  }
  if (fullArrays.length !== spec.params.length || offset !== weightsBin.length) {
    throw new CheckpointError(`${path}: weights.bin holds ${weightsBin.length} bytes, which does not fit --arch ${spec.arch}`);
  }
  const weights = new Float32Array(spec.size);
  compactInto(spec, fullArrays, weights);
  if (weightsSha256(weights) !== state.weightsSha256) {
    throw new CheckpointError(`${path}: weights do not match the recorded weightsSha256; the checkpoint is corrupt`);
  }
  const slots: Record<string, Float32Array> = {};
  let o = 0;
  for (const s of state.optimizer.slots) {
    if (o + s.length * 4 > optimizerBin.length) throw new CheckpointError(`${path}: optimizer.bin is shorter than state.json says`);
    slots[s.name] = toFloat32(optimizerBin, o, s.length);
    o += s.length * 4;
  }
  return { path, state, weights, optimizer: { name: state.optimizer.name, t: state.optimizer.t, slots } };
}

/**
 * Deletes mid-epoch checkpoints (step > 0) other than `keep`: only the newest one is worth
 * resuming from, while every end-of-epoch checkpoint is kept.
 */
export function pruneMidEpoch(dir: string, keep?: string): void {
  for (const path of listCheckpoints(dir)) {
    if (path !== keep && !path.endsWith('-s000000')) rmSync(path, { recursive: true, force: true });
  }
}

/**
 * Opens `path` for evaluation or prediction: a checkpoint folder, or a --checkpoint-dir (its
 * newest complete checkpoint). The architecture comes from the checkpoint's own state.json.
 */
export function openCheckpoint(path: string): LoadedCheckpoint & { spec: ModelSpec } {
  let folder = path;
  if (!existsSync(join(path, CHECKPOINT_STATE_FILE))) {
    const all = listCheckpoints(path);
    if (all.length === 0) throw new CheckpointError(`${path} is neither a checkpoint folder nor a folder holding checkpoints`);
    folder = all[all.length - 1];
  }
  let config: Record<string, unknown>;
  try {
    config = (JSON.parse(readFileSync(join(folder, CHECKPOINT_STATE_FILE), 'utf8')) as CheckpointState).config ?? {};
  } catch (err) {
    throw new CheckpointError(`${join(folder, CHECKPOINT_STATE_FILE)} is missing or not JSON (${(err as Error).message}); the checkpoint is corrupt`);
  }
  const spec = modelSpec((config.arch as ArchName) ?? 'lenet5', (config.activation as Activation) ?? 'relu');
  return { ...loadCheckpoint(folder, spec), spec };
}

/** The newest complete checkpoint in `dir`, verified; undefined when there is none. */
export function loadNewestCheckpoint(dir: string, spec: ModelSpec): LoadedCheckpoint | undefined {
  const all = listCheckpoints(dir);
  if (all.length === 0) return undefined;
  return loadCheckpoint(all[all.length - 1], spec);
}
