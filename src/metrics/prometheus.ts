// /metrics in Prometheus text format (prom-client), read from the run's live state.
import { Counter, Gauge, Registry } from 'prom-client';
import { STEP_PHASES, type RunState } from './state.js';

export function prometheusRegistry(state: RunState): Registry {
  const registry = new Registry();
  const live = () => state.participants().filter((p) => p.state !== 'closed');
  const lastEpoch = () => state.epochs.at(-1);
  const steps = new Counter({ name: 'lenet_steps_total', help: 'Optimizer steps completed by this process', registers: [registry] });
  const samples = new Counter({ name: 'lenet_samples_total', help: 'Training samples processed by this process', registers: [registry] });
  const phase = new Gauge({ name: 'lenet_step_phase_seconds', help: 'Time of the last step, by phase', labelNames: ['phase'], registers: [registry] });
  const loss = new Gauge({ name: 'lenet_train_loss', help: 'Mean training loss of the last step', registers: [registry] });
  const sps = new Gauge({ name: 'lenet_samples_per_second', help: 'Training throughput of the last step', registers: [registry] });
  const rejected = new Counter({ name: 'lenet_rejected_frames_total', help: 'Connections and frames refused, by reason', labelNames: ['reason'], registers: [registry] });
  for (const [reason, n] of state.rejected) rejected.inc({ reason }, n);
  state.onReject((reason) => rejected.inc({ reason }));
  state.onStep((s) => {
    steps.inc();
    samples.inc(s.samples);
    for (const p of STEP_PHASES) phase.set({ phase: p }, s.timing[p] / 1000);
    loss.set(s.loss);
    sps.set(s.samplesPerSecond);
  });
  new Counter({
    name: 'lenet_verified_results_total',
    help: 'Remote ranges recomputed by the coordinator and compared bit for bit',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(state.verification().checked);
    },
  });
  new Counter({
    name: 'lenet_verification_failures_total',
    help: 'Remote ranges whose sums recomputation did not give (their workers were ejected)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(state.verification().failed);
    },
  });
  new Gauge({
    name: 'lenet_participants',
    help: 'Participants currently computing gradients, by kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const now = live();
      this.set({ kind: 'local' }, now.filter((p) => p.kind === 'local').length);
      this.set({ kind: 'remote' }, now.filter((p) => p.kind === 'remote').length);
      this.set({ kind: 'browser' }, now.filter((p) => p.kind === 'browser').length);
    },
  });
  new Gauge({
    name: 'lenet_participant_threads',
    help: 'Compute threads of the participants currently taking part',
    registers: [registry],
    collect() {
      this.set(live().reduce((a, p) => a + p.threads, 0));
    },
  });
  new Gauge({
    name: 'lenet_epoch',
    help: 'Epochs completed',
    registers: [registry],
    collect() {
      this.set(lastEpoch()?.epoch ?? 0);
    },
  });
  new Gauge({
    name: 'lenet_test_accuracy',
    help: 'Test accuracy after the last completed epoch (0..1)',
    registers: [registry],
    collect() {
      const e = lastEpoch();
      if (e) this.set(e.testAccuracy);
    },
  });
  new Gauge({
    name: 'lenet_test_loss',
    help: 'Test loss after the last completed epoch',
    registers: [registry],
    collect() {
      const e = lastEpoch();
      if (e) this.set(e.testLoss);
    },
  });
  return registry;
}
