// Live: the node's workers and traffic from GET /v1/console/live, a stream
// of snapshots (one a second). The node sends counters since it started;
// rates here are deltas between consecutive snapshots. The last 120 are kept.

import { events } from './api.js';
import { el, formatMs, formatNum, colorOf, showError } from './util.js';
import { newChart, drawLines, drawStrip } from './charts.js';

const KEEP = 120;
const STRIP_ROWS = 16;
const INTERVAL_MS = 1000;
const COLORS = { a: '#2563eb', b: '#db2777' };
// Workers of a cluster, in the order the node lists them.
const WORKER_COLORS = ['#16a34a', '#ea580c', '#7c3aed', '#0891b2', '#ca8a04', '#be123c'];
const workerColor = (i) => WORKER_COLORS[i % WORKER_COLORS.length];

export function mount(root) {
  const samples = []; // ring buffer: oldest first, at most KEEP
  const abort = new AbortController();
  let retryMs = 1000;

  const status = el('span.badge', { testid: 'live-status' }, 'connecting…');
  const error = el('p.error', { role: 'alert', testid: 'live-error', hidden: true });
  const stats = el('div.stats', { testid: 'live-stats' });
  const workers = el('div.workers', { testid: 'live-workers' });
  const charts = {
    tokens: newChart('chart-tokens', 'Output tokens per second'),
    requests: newChart('chart-requests', 'Requests per second'),
    queue: newChart('chart-queue', 'Queued and running requests'),
    ttft: newChart('chart-ttft', 'Time to first token'),
    itl: newChart('chart-itl', 'Inter-token latency'),
  };
  const strip = newChart('chart-active', 'Active adapters over time', 40);
  const swaps = el('span.muted', { testid: 'live-swaps' });

  const panel = (title, svg, extra) => el('section.card.chart-card', el('h2', title, extra), svg);
  root.append(
    el('header.page-head', el('h1', 'Live'), el('div.toolbar', status)),
    error,
    stats,
    workers,
    el('div.charts',
      panel('Throughput (output tokens/s)', charts.tokens),
      panel('Requests/s', charts.requests),
      panel('Queue depth', charts.queue),
      panel('TTFT', charts.ttft),
      panel('Inter-token latency', charts.itl),
      panel('Active set over time', strip, swaps)),
  );

  function add(snap) {
    const prev = samples.at(-1);
    // workerTokensPerS: worker id -> its own rate (a cluster's gateway lists each worker).
    const s = { t: snap.time_ms ?? Date.now(), snap, tokensPerS: null, requestsPerS: null, workerTokensPerS: {} };
    if (prev && s.t > prev.t) {
      const dt = (s.t - prev.t) / 1000;
      const d = (k) => (snap.totals?.[k] ?? 0) - (prev.snap.totals?.[k] ?? 0);
      // A node restarted under us counts from 0 again: no rate across that.
      if (d('output_tokens') >= 0 && d('requests') >= 0) {
        s.tokensPerS = d('output_tokens') / dt;
        s.requestsPerS = d('requests') / dt;
      }
      for (const w of snap.workers ?? []) {
        const before = (prev.snap.workers ?? []).find((p) => p.id === w.id);
        const dw = (w.output_tokens ?? 0) - (before?.output_tokens ?? 0);
        if (before && dw >= 0) s.workerTokensPerS[w.id] = dw / dt;
      }
    }
    samples.push(s);
    if (samples.length > KEEP) samples.shift();
    render();
  }

  function render() {
    const last = samples.at(-1);
    const snap = last.snap;
    const totals = snap.totals ?? {};
    const stat = (label, value, testid) => el('div.stat', { testid }, el('div.stat-value', value), el('div.stat-label', label));
    stats.replaceChildren(
      stat('tokens/s', formatNum(last.tokensPerS), 'stat-tokens'),
      stat('requests/s', formatNum(last.requestsPerS, 2), 'stat-requests'),
      stat('queued · running', `${totals.queued ?? 0} · ${totals.running ?? 0}`, 'stat-queue'),
      stat('requests', formatNum(totals.requests ?? 0), 'stat-total'),
      stat('adapter swaps', formatNum(totals.swaps ?? 0), 'stat-swaps'),
      stat('slot loads', formatNum(totals.slot_loads ?? 0), 'stat-loads'),
      stat('training running · queued', `${snap.training?.running ?? 0} · ${snap.training?.queued ?? 0}`, 'stat-training'),
    );
    workers.replaceChildren(...(snap.workers ?? []).map(workerCard));

    // x: seconds before the newest sample.
    const xy = (f) => samples.map((s) => [(s.t - last.t) / 1000, f(s)]);
    const xFormat = (x) => (x === 0 ? 'now' : `${+x.toFixed(Math.abs(x) < 10 ? 1 : 0)}s`);
    // A summary with no samples yet (count 0) is no data, not 0 ms.
    const lat = (k, p) => (s) => {
      const h = s.snap.latency?.[k];
      return h && h.count !== 0 ? h[p] ?? null : null;
    };
    // A cluster: one line per worker beside the total.
    const workerIds = (snap.workers ?? []).map((w) => w.id);
    drawLines(charts.tokens, [
      { name: workerIds.length > 1 ? 'all workers' : 'tokens/s', color: COLORS.a, points: xy((s) => s.tokensPerS) },
      ...(workerIds.length > 1 ? workerIds.map((id, i) => ({
        name: id, color: workerColor(i), points: xy((s) => s.workerTokensPerS[id] ?? null),
      })) : []),
    ], { xFormat });
    drawLines(charts.requests, [{ name: 'requests/s', color: COLORS.a, points: xy((s) => s.requestsPerS) }], { xFormat });
    drawLines(charts.queue, [
      { name: 'queued', color: COLORS.b, points: xy((s) => s.snap.totals?.queued ?? 0) },
      { name: 'running', color: COLORS.a, points: xy((s) => s.snap.totals?.running ?? 0) },
    ], { xFormat });
    // A gateway runs no engine: its latency is each worker's (percentiles
    // of different workers do not combine), p50 solid and p99 dashed.
    const perWorker = !(snap.latency?.ttft_ms?.count > 0) && workerIds.length > 0;
    const workerLat = (k) => workerIds.flatMap((id, i) => ['p50', 'p99'].map((p) => ({
      name: `${id} ${p}`, color: workerColor(i), dashed: p === 'p99',
      points: xy((s) => (s.snap.workers ?? []).find((w) => w.id === id)?.[k]?.[p] || null),
    })));
    drawLines(charts.ttft, perWorker ? workerLat('ttft_ms') : [
      { name: 'p50', color: COLORS.a, points: xy(lat('ttft_ms', 'p50')) },
      { name: 'p99', color: COLORS.b, points: xy(lat('ttft_ms', 'p99')) },
    ], { xFormat, unit: ' ms' });
    drawLines(charts.itl, perWorker ? workerLat('itl_ms') : [
      { name: 'p50', color: COLORS.a, points: xy(lat('itl_ms', 'p50')) },
      { name: 'p99', color: COLORS.b, points: xy(lat('itl_ms', 'p99')) },
    ], { xFormat, unit: ' ms' });

    // One row per adapter active in the window, across all workers: the
    // STRIP_ROWS most recently active, so a busy node keeps a readable strip.
    const names = [];
    for (const s of [...samples].reverse()) {
      for (const w of s.snap.workers ?? []) for (const a of w.active ?? []) if (a && !names.includes(a)) names.push(a);
    }
    names.splice(STRIP_ROWS);
    drawStrip(strip, names.map((name) => ({
      name, color: colorOf(name),
      on: samples.map((s) => (s.snap.workers ?? []).some((w) => (w.active ?? []).includes(name))),
    })), samples.length);
    // Slot loads change the set; swaps are adapters preempted at the time slice.
    swaps.textContent = ` · ${totals.slot_loads ?? 0} slot loads, ${totals.swaps ?? 0} swaps since start`;
  }

  function workerCard(w) {
    // The resident adapters, then a placeholder for each free slot.
    const active = w.active ?? [];
    const chips = active.map((name) => el('span.chip', { testid: 'slot-chip', title: name, style: `--chip:${colorOf(name)}` }, name));
    for (let i = active.length; i < (w.slots ?? 0); i++) chips.push(el('span.chip.empty', 'free'));
    return el('section.card.worker', { testid: 'worker-card', dataset: { id: w.id } },
      el('div.worker-head',
        el('strong', w.id),
        el(`span.badge.${w.up === false ? 'where-failed' : 'where-slot'}`, w.up === false ? 'down' : 'up'),
        w.draining ? el('span.badge.where-loading', 'draining') : null),
      el('div.muted.small', w.device ?? ''),
      el('div.chips', { testid: 'active-set' }, chips),
      el('div.kv',
        el('span', `${w.slots ?? 0} slots`),
        el('span', `${w.queued ?? 0} queued`),
        el('span', `${w.running ?? 0} running`),
        el('span', `${w.host_cached ?? 0} in host cache`),
        el('span', `step ${formatMs(w.step_ms)}`),
        el('span', { testid: 'worker-tokens' }, `${formatNum(samples.at(-1)?.workerTokensPerS[w.id] ?? null)} tokens/s`),
        el('span', `TTFT p50 ${w.ttft_ms?.p50 ? formatMs(w.ttft_ms.p50) : '—'}`)));
  }

  // Reads the stream until it ends or fails, then retries with a growing
  // delay (reset by any snapshot), until the page is left.
  async function connect() {
    while (!abort.signal.aborted) {
      try {
        status.textContent = 'connecting…';
        for await (const snap of events(`/v1/console/live?interval_ms=${INTERVAL_MS}`, { signal: abort.signal })) {
          status.textContent = 'live';
          status.className = 'badge where-slot';
          showError(error, null);
          retryMs = 1000;
          add(snap);
        }
        throw new Error('the live stream ended');
      } catch (e) {
        if (abort.signal.aborted) return;
        showError(error, e);
        status.className = 'badge where-loading';
        status.textContent = `reconnecting in ${Math.round(retryMs / 1000)} s`;
        await new Promise((r) => setTimeout(r, retryMs));
        retryMs = Math.min(retryMs * 2, 15000);
      }
    }
  }
  connect();

  return () => abort.abort();
}
