// The live state of a run, for the dashboard (/api/state) and Prometheus (/metrics): what the
// trainer reports after each step and epoch, plus the participants as they are right now.
import type { EpochRecord } from './recorder.js';

/** Where a step's time goes, in report order: the whole step, then its phases. */
export const STEP_PHASES = ['step', 'compute', 'transfer', 'reduce', 'optimizer'] as const;
export type StepPhase = (typeof STEP_PHASES)[number];

export interface StepSample {
  step: number;
  epoch: number;
  /** Mean training loss of the step's batch. */
  loss: number;
  samples: number;
  samplesPerSecond: number;
  timing: Record<StepPhase, number>;
  at: number;
}

export interface ParticipantView {
  id: string;
  kind: 'local' | 'remote' | 'browser';
  name: string;
  threads: number;
  microbatches: number;
  lastHeartbeatMsAgo: number | null;
  late: number;
  failures: number;
  state: string;
}

/** Steps kept for the dashboard's recent-steps charts. */
export const RECENT_STEPS = 300;

export class RunState {
  readonly startedAt = Date.now();
  info: Record<string, unknown> = {};
  epochs: EpochRecord[] = [];
  recent: StepSample[] = [];
  phase: 'starting' | 'waiting' | 'training' | 'evaluating' | 'stopping' | 'stopped' | 'done' | 'failed' = 'starting';
  totalSteps = 0;
  samplesTotal = 0;
  readonly rejected = new Map<string, number>();
  /** Remote ranges recomputed (verify.ts), and how many differed. */
  verification: () => { checked: number; failed: number } = () => ({ checked: 0, failed: 0 });
  participants: () => ParticipantView[] = () => [];
  private readonly stepListeners: ((s: StepSample) => void)[] = [];
  private readonly rejectListeners: ((reason: string) => void)[] = [];

  onStep(fn: (s: StepSample) => void): void {
    this.stepListeners.push(fn);
  }

  onReject(fn: (reason: string) => void): void {
    this.rejectListeners.push(fn);
  }

  recordStep(s: StepSample): void {
    this.recent.push(s);
    if (this.recent.length > RECENT_STEPS) this.recent.shift();
    this.totalSteps++;
    this.samplesTotal += s.samples;
    for (const l of this.stepListeners) l(s);
  }

  recordEpoch(r: EpochRecord): void {
    this.epochs.push(r);
  }

  reject(reason: string): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
    for (const l of this.rejectListeners) l(reason);
  }

  toJSON(): Record<string, unknown> {
    return {
      info: this.info,
      phase: this.phase,
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      totalSteps: this.totalSteps,
      samplesTotal: this.samplesTotal,
      epochs: this.epochs,
      recent: this.recent,
      participants: this.participants(),
      rejected: Object.fromEntries(this.rejected),
    };
  }
}
