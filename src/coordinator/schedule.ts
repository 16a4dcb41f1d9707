// The learning-rate schedule: linear warm-up, then exponential decay per epoch. It depends only on
// the global step, never on the total number of epochs, so a run extended with --resume follows
// the same schedule as a run that asked for all its epochs at once.

export interface ScheduleConfig {
  lr: number;
  /** Multiplier applied per epoch after warm-up (1 = constant). */
  decayPerEpoch: number;
  warmupSteps: number;
  stepsPerEpoch: number;
}

/** Learning rate for the update at global step `step` (counted from 0). */
export function learningRate(c: ScheduleConfig, step: number): number {
  const warm = c.warmupSteps > 0 ? Math.min(1, (step + 1) / c.warmupSteps) : 1;
  return c.lr * warm * Math.pow(c.decayPerEpoch, step / c.stepsPerEpoch);
}
