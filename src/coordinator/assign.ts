// Assignment of a step's microbatches to participants: contiguous ranges of microbatch positions,
// so each participant can pre-sum whole subtrees of the fixed reduction tree.
import type { TreeNode } from '../reduce/ordered-sum.js';

/** Splits leaves [0,n) into at most `parts` contiguous non-empty ranges, sizes differing by at most one. */
export function splitEvenly(n: number, parts: number): TreeNode[] {
  const out: TreeNode[] = [];
  const base = Math.floor(n / parts);
  const extra = n % parts;
  let lo = 0;
  for (let p = 0; p < parts && lo < n; p++) {
    const size = base + (p < extra ? 1 : 0);
    if (size === 0) continue;
    out.push([lo, lo + size]);
    lo += size;
  }
  return out;
}
