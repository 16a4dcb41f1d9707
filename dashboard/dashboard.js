// The lenet-dist dashboard: polls /api/state once a second and redraws. uPlot is served by the
// coordinator from its installed package, so the page works on machines without internet.
/* global uPlot */
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const charts = {};

  // Each y series may name its own scale; the first gets the left axis, a second the right one.
  function chart(id, series, data) {
    const el = $(id);
    const width = Math.max(300, el.clientWidth || 500);
    if (!charts[id]) {
      const axes = [{ incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] }, { scale: series[1].scale || 'y' }];
      if (series.length > 2) axes.push({ side: 1, scale: series[2].scale, grid: { show: false } });
      charts[id] = new uPlot({ width, height: 220, series, scales: { x: { time: false } }, axes }, data, el);
    } else {
      charts[id].setData(data);
    }
  }

  function fmt(x, digits) {
    return typeof x === 'number' && isFinite(x) ? x.toFixed(digits) : '–';
  }

  function render(s) {
    const info = s.info || {};
    $('summary').textContent = `${info.arch} (${info.params} params), backend ${info.backend}, global batch ${info.globalBatch} = microbatches of ${info.microbatch}, seed ${info.seed}, ${info.url || ''}`;
    $('phase').textContent = s.phase;
    const last = s.recent[s.recent.length - 1];
    const lastEpoch = s.epochs[s.epochs.length - 1];
    $('epoch').textContent = `${lastEpoch ? lastEpoch.epoch : 0} / ${info.epochs}`;
    $('step').textContent = last ? String(last.step + 1) : '–';
    $('throughput').textContent = last ? fmt(last.samplesPerSecond, 0) : '–';
    $('accuracy').textContent = lastEpoch ? `${fmt(lastEpoch.testAccuracy * 100, 2)}%` : '–';
    const live = s.participants.filter((p) => p.state !== 'closed');
    $('participant-count').textContent = `${live.length} (${live.reduce((a, p) => a + p.threads, 0)} threads)`;

    chart('chart-epochs', [{ label: 'epoch' }, { label: 'test accuracy %', stroke: '#4c78a8', scale: 'acc' }, { label: 'train loss', stroke: '#f58518', scale: 'loss' }],
      [s.epochs.map((e) => e.epoch), s.epochs.map((e) => e.testAccuracy * 100), s.epochs.map((e) => e.trainLoss)]);
    chart('chart-loss', [{ label: 'step' }, { label: 'batch loss', stroke: '#f58518' }], [s.recent.map((r) => r.step + 1), s.recent.map((r) => r.loss)]);
    chart('chart-throughput', [{ label: 'step' }, { label: 'samples/s', stroke: '#54a24b' }], [s.recent.map((r) => r.step + 1), s.recent.map((r) => r.samplesPerSecond)]);

    const phases = ['compute', 'transfer', 'reduce', 'optimizer'];
    const mean = {};
    for (const p of phases) mean[p] = s.recent.length ? s.recent.reduce((a, r) => a + r.timing[p], 0) / s.recent.length : 0;
    const max = Math.max(1e-9, ...phases.map((p) => mean[p]));
    $('breakdown').innerHTML = phases
      .map((p) => `<div class="bar" data-phase="${p}"><span class="name">${p}</span><span class="fill" style="width:${(300 * mean[p]) / max}px"></span><span class="ms">${fmt(mean[p], 2)} ms</span></div>`)
      .join('');

    $('participants').querySelector('tbody').innerHTML = s.participants
      .map((p) => `<tr class="state-${p.state}"><td>${p.id}</td><td>${p.name}</td><td>${p.kind}</td><td>${p.threads}</td><td>${p.microbatches}</td>` +
        `<td>${p.lastHeartbeatMsAgo === null ? '–' : `${fmt(p.lastHeartbeatMsAgo / 1000, 1)} s ago`}</td><td>${p.late}</td><td>${p.failures}</td><td>${p.state}</td></tr>`)
      .join('');
  }

  async function poll() {
    try {
      const res = await fetch('/api/state', { cache: 'no-store' });
      if (res.ok) render(await res.json());
    } catch (err) {
      $('summary').textContent = `coordinator unreachable (${err.message}); retrying`;
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
