// One gradient task's work, microbatch by microbatch: the same steps whether a pool thread runs it
// (thread.ts, which may block) or a one-thread remote worker runs it on its own main thread
// (inline.ts, which must yield to its socket between them).
import { coverNodes, leaves, reduceInPlace, slot, wholeSlot, type Slab, type SlotPart, type TreeNode } from '../reduce/ordered-sum.js';
import { roundToFloat16, type GradDType } from '../reduce/float16.js';
import type { GradientComputer, MicrobatchInput, PreparedMicrobatch } from './gradients.js';
import type { GradientTask } from './types.js';

export class GradientTaskRun {
  /** The task's maximal subtrees: where its sums are left in the slab. */
  readonly nodes: TreeNode[];
  private readonly inputs: MicrobatchInput[] = [];
  /** Microbatches whose convolutions' forward pass ran ahead, from the first. */
  private readonly ahead: PreparedMicrobatch[] = [];
  /** The next microbatch to finish. */
  private leaf: number;

  /**
   * `onDense`, with an `early` task: called once the dense layers' part of the sums, and the
   * losses and counts, are final, before the last microbatch's convolutions' backward pass.
   */
  constructor(
    private readonly computer: GradientComputer,
    private readonly slab: Slab,
    private readonly denseFrom: number,
    private readonly gradDType: GradDType,
    private readonly task: GradientTask,
    private readonly onDense: () => void,
  ) {
    this.nodes = task.leavesOnly ? leaves(task.lo, task.hi) : coverNodes(task.microbatches, task.lo, task.hi);
    this.leaf = task.lo;
    for (let i = 0, offset = 0; i < task.hi - task.lo; offset += task.sizes[i], i++) {
      const size = task.sizes[i];
      this.inputs.push({ samples: task.samples.subarray(offset, offset + size), positions: task.positions.subarray(offset, offset + size), epoch: task.epoch });
    }
  }

  /**
   * Runs the convolutions' forward pass of the next microbatch not yet run ahead, which needs
   * only the convolutions' weights. Returns false when every microbatch has been.
   */
  runAhead(): boolean {
    if (this.ahead.length === this.inputs.length) return false;
    this.ahead.push(this.computer.prepare(this.inputs[this.ahead.length], true));
    return true;
  }

  /** Finishes the next microbatch (the sums too after the last); returns false when none is left. */
  finishNext(): boolean {
    const { task, slab } = this;
    if (this.leaf === task.hi) return false;
    const leaf = this.leaf++;
    const i = leaf - task.lo;
    const size = task.sizes[i];
    const grad = slot(slab, leaf);
    const last = task.early === true && leaf === task.hi - 1;
    const prepared = this.ahead[i] ?? this.computer.prepare(this.inputs[i], false);
    const onDense = (loss: number): void => {
      slab.loss[leaf] = loss;
      slab.count[leaf] = size;
      this.sum({ from: this.denseFrom, to: slab.width, totals: true });
      this.onDense();
    };
    const loss = this.computer.finish(prepared, grad, last ? onDense : undefined);
    if (!last) {
      slab.loss[leaf] = loss;
      slab.count[leaf] = size;
    }
    if (this.gradDType === 'float16') roundToFloat16(grad);
    if (this.leaf < task.hi) return true;
    if (task.early) this.sum({ from: 0, to: this.denseFrom, totals: false });
    else if (!task.leavesOnly) this.sum(wholeSlot(slab));
    return false;
  }

  /** Frees what ran ahead; call once, finished or not. */
  release(): void {
    for (const p of this.ahead) this.computer.release(p);
  }

  private sum(part: SlotPart): void {
    for (const [lo, hi] of this.nodes) reduceInPlace(this.slab, lo, hi, (a, b) => b - a === 1, part);
  }
}
