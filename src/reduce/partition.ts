// Cutting a step's microbatches [0,n) into contiguous ranges for participants, so each can
// pre-sum whole subtrees of the fixed reduction tree.
import type { TreeNode } from './ordered-sum.js';

/** Splits leaves [0,n) into at most `parts` contiguous non-empty ranges, sizes differing by at most one. */
export function splitEvenly(n: number, parts: number): TreeNode[] {
  return splitProportional(n, Array.from({ length: parts }, () => 1)).filter((r): r is TreeNode => r !== null);
}

/**
 * Splits leaves [0,n) into one contiguous range per weight, sized in proportion to the weights
 * (largest remainder, ties to the earlier participant). A participant whose share rounds to
 * zero gets null.
 */
export function splitProportional(n: number, weights: number[]): (TreeNode | null)[] {
  const total = weights.reduce((a, b) => a + b, 0);
  if (total <= 0) return weights.map(() => null);
  const exact = weights.map((w) => (n * w) / total);
  const sizes = exact.map(Math.floor);
  let left = n - sizes.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, i] of order) {
    if (left === 0) break;
    sizes[i]++;
    left--;
  }
  let lo = 0;
  return sizes.map((s) => {
    if (s === 0) return null;
    const range: TreeNode = [lo, lo + s];
    lo += s;
    return range;
  });
}
