// Jobs: the tenant's fine-tuning jobs (OpenAI's fine-tuning API), a form to
// start one from a JSONL file, and the selected job's loss curve and events.
// Everything polls every 2 s while a job is queued or running, and slowly otherwise.

import { api } from './api.js';
import { el, formatTime, formatNum, poller, showError, submitting } from './util.js';
import { newChart, drawLines } from './charts.js';

const POLL_MS = 2000;
const IDLE_MS = 15000; // still notice jobs started elsewhere (the CLI, the SDK)
const ACTIVE = new Set(['queued', 'running', 'validating_files']);

export function mount(root) {
  let jobs = [];
  let selected = null; // job id
  // What the user did (start, cancel) fails into `error`, kept until their next
  // action; the poll into `loadError`, which its next success clears.
  const error = el('p.error', { role: 'alert', testid: 'jobs-error', hidden: true });
  const loadError = el('p.error', { role: 'alert', testid: 'jobs-load-error', hidden: true });
  const tbody = el('tbody', { testid: 'jobs-body' });
  const detail = el('section.card.job-detail', { testid: 'job-detail', hidden: true });
  const lossChart = newChart('loss-chart', 'Training loss by step', 240);
  const detailHead = el('div.detail-head');
  const eventList = el('ol.events', { testid: 'job-events' });
  detail.append(detailHead, el('h3', 'Loss'), lossChart, el('h3', 'Recent events'), eventList);

  root.append(
    el('header.page-head', el('h1', 'Fine-tuning jobs')),
    newJobForm((job) => { selected = job.id; poll.now(); }, error),
    error,
    loadError,
    el('div.card.table-wrap', el('table.table',
      el('thead', el('tr', el('th', 'Job'), el('th', 'Status'), el('th', 'Progress'), el('th.num', 'Train loss'),
        el('th', 'Versions'), el('th', 'Model'), el('th', ''))),
      tbody)),
    detail,
  );

  async function load() {
    const list = await api('/v1/fine_tuning/jobs?limit=20');
    jobs = list.data ?? [];
    showError(loadError, null);
    renderList();
    const job = jobs.find((j) => j.id === selected);
    if (job) await loadDetail(job);
    else detail.hidden = true;
  }

  function renderList() {
    if (!jobs.length) {
      tbody.replaceChildren(el('tr', el('td.empty', { colSpan: 7 }, 'No fine-tuning jobs yet: start one above.')));
      return;
    }
    tbody.replaceChildren(...jobs.map((j) => {
      const m = j.myriad ?? {};
      const pct = m.total_steps ? Math.min(100, (100 * (m.step ?? 0)) / m.total_steps) : 0;
      const cancel = ACTIVE.has(j.status) ? el('button.danger', {
        type: 'button', testid: 'job-cancel', onclick: async (e) => {
          e.stopPropagation();
          showError(error, null);
          try { await api(`/v1/fine_tuning/jobs/${encodeURIComponent(j.id)}/cancel`, { method: 'POST' }); poll.now(); }
          catch (err) { showError(error, err); }
        },
      }, 'Cancel') : null;
      return el(`tr.clickable${j.id === selected ? '.selected' : ''}`, {
        testid: 'job-row', dataset: { id: j.id, status: j.status }, onclick: () => { selected = j.id; poll.now(); },
      },
        el('td', el('div.mono.small', j.id),
          el('div.muted.small', [j.model, j.user_provided_suffix, formatTime(j.created_at)].filter(Boolean).join(' · '))),
        el('td', el(`span.badge.status-${j.status}`, { testid: 'job-status' }, j.status)),
        el('td', el('div.progress', { title: `${m.step ?? 0} / ${m.total_steps ?? '?'} steps` }, el('div', { style: `width:${pct}%` })),
          el('div.muted.small', `${m.step ?? 0} / ${m.total_steps ?? '?'}`)),
        el('td.num', formatNum(m.train_loss, 4)),
        el('td', { testid: 'job-versions' }, versionBadges(m.versions ?? [])),
        el('td.mono', j.fine_tuned_model ?? '—', j.error?.message ? el('div.error.small', j.error.message) : null),
        el('td', cancel));
    }));
  }

  async function loadDetail(job) {
    const base = `/v1/fine_tuning/jobs/${encodeURIComponent(job.id)}`;
    const [csv, evs] = await Promise.all([
      api(`${base}/loss.csv`, { text: true }).catch(() => ''),
      api(`${base}/events?limit=15`),
    ]);
    detail.hidden = false;
    detail.dataset.id = job.id;
    detailHead.replaceChildren(el('h2', job.fine_tuned_model ?? job.user_provided_suffix ?? job.id),
      el(`span.badge.status-${job.status}`, job.status));
    const { loss, evalLoss } = parseLoss(csv);
    const series = [{ name: 'train loss', color: '#2563eb', points: loss }];
    if (evalLoss) series.push({ name: 'eval loss', color: '#db2777', points: evalLoss });
    drawLines(lossChart, series, { zero: false });
    eventList.replaceChildren(...(evs.data ?? []).map((e) =>
      el(`li.level-${e.level}`, el('span.muted.small', new Date(e.created_at * 1000).toLocaleTimeString()), ' ', e.message)));
  }

  const poll = poller(load, () => (jobs.some((j) => ACTIVE.has(j.status)) ? POLL_MS : IDLE_MS), (e) => showError(loadError, e));
  return () => poll.stop();
}

/** The newest versions as badges, and how many more (a long job publishes many). */
function versionBadges(versions, shown = 2) {
  const more = versions.length - shown;
  return [
    more > 0 ? el('span.badge.more', { title: versions.join('\n') }, `+${more} more`) : null,
    ...versions.slice(-shown).map((v) => el('span.badge.mono.version', v)),
  ];
}

/** loss.csv (step,loss,...[,eval_loss]) to [[step, loss]] and, when present, [[step, eval_loss]]. */
function parseLoss(csv) {
  const lines = csv.trim().split(/\r?\n/);
  const head = (lines.shift() ?? '').split(',');
  const col = (n) => head.indexOf(n);
  const [s, l, ev] = [col('step'), col('loss'), col('eval_loss')];
  if (s < 0 || l < 0) return { loss: [], evalLoss: null };
  const rows = lines.map((line) => line.split(','));
  const num = (v) => (v === undefined || v.trim() === '' ? null : Number(v));
  return {
    loss: rows.map((r) => [num(r[s]), num(r[l])]).filter((p) => p[0] !== null),
    // Eval runs every so many steps: chart only the steps that have one.
    evalLoss: ev < 0 ? null : rows.map((r) => [num(r[s]), num(r[ev])]).filter((p) => p[0] !== null && p[1] !== null),
  };
}

/** The "New job" form: uploads the JSONL, then creates the job on it. */
function newJobForm(onCreated, error) {
  const file = el('input', { type: 'file', accept: '.jsonl,application/jsonl,application/x-ndjson', required: true, testid: 'job-file', 'aria-label': 'Training JSONL' });
  const validation = el('input', { type: 'file', accept: '.jsonl,application/jsonl,application/x-ndjson', testid: 'job-validation-file', 'aria-label': 'Validation JSONL (optional)' });
  const model = el('select', { required: true, testid: 'job-model', 'aria-label': 'Base model' });
  const suffix = el('input', { placeholder: 'my-task', pattern: '[A-Za-z0-9._\\-]*', testid: 'job-suffix', 'aria-label': 'Suffix' });
  const steps = el('input', { type: 'number', min: '1', value: '60', testid: 'job-steps', 'aria-label': 'Steps' });
  const lr = el('input', { type: 'number', min: '0', step: 'any', value: '0.002', testid: 'job-lr', 'aria-label': 'Learning rate' });
  const rank = el('input', { type: 'number', min: '1', value: '8', testid: 'job-rank', 'aria-label': 'Rank' });
  const submit = el('button.primary', { type: 'submit', testid: 'job-submit' }, 'Start job');
  const status = el('span.muted', { testid: 'job-form-status', role: 'status' });

  // Base models only: a job trains a new adapter on one.
  api('/v1/models').then((list) => {
    model.replaceChildren(...list.data.filter((m) => m.owned_by === 'myriad').map((m) => el('option', { value: m.id }, m.id)));
  }).catch((e) => showError(error, e));

  const form = el('form.card.new-job', { testid: 'job-form' },
    el('h2', 'New job'),
    el('div.fields',
      el('label.wide', 'Training file (JSONL)', file),
      el('label.wide', 'Validation file (JSONL, optional: an eval loss at each version)', validation),
      el('label', 'Base model', model),
      el('label', 'Suffix', suffix),
      el('label', 'Steps', steps),
      el('label', 'Learning rate', lr),
      el('label', 'Rank', rank),
      el('div.actions', submit, status)));

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submitting({ submit, status, error }, async () => {
      status.textContent = 'Uploading the file…';
      const upload = (f) => {
        const body = new FormData();
        body.append('purpose', 'fine-tune');
        body.append('file', f, f.name);
        return api('/v1/files', { form: body });
      };
      const uploaded = await upload(file.files[0]);
      const validated = validation.files[0] ? await upload(validation.files[0]) : null;
      status.textContent = `${uploaded.myriad?.examples ?? '?'} examples; creating the job…`;
      const job = await api('/v1/fine_tuning/jobs', {
        json: {
          model: model.value,
          training_file: uploaded.id,
          ...(validated ? { validation_file: validated.id } : {}),
          ...(suffix.value.trim() ? { suffix: suffix.value.trim() } : {}),
          hyperparameters: { steps: Number(steps.value), learning_rate: Number(lr.value), rank: Number(rank.value) },
        },
      });
      status.textContent = `Started ${job.id}.`;
      file.value = '';
      validation.value = '';
      onCreated(job);
    });
  });
  return form;
}
