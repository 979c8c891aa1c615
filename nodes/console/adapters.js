// Adapters: the tenant's adapters a page at a time (the node pages and
// searches them, so this stays quick at thousands), their residency and
// traffic refreshed every 2 s, an upload form and delete buttons.

import { api } from './api.js';
import { el, formatBytes, formatTime, formatMs, formatNum, debounce, poller, showError, submitting } from './util.js';

const PAGE = 50;
const POLL_MS = 2000;

const WHERE = {
  slot: (r) => `slot ${r.slot}`,
  loading: (r) => (r.slot === undefined || r.slot === null ? 'loading' : `loading → slot ${r.slot}`),
  host_cache: () => 'host cache',
  fetching: () => 'fetching',
  store: () => 'store',
  failed: () => 'failed',
};

/** Residency badges, one per distinct place (a cluster may hold it on several workers). */
function residencyBadges(list = []) {
  const seen = new Map();
  for (const r of list) {
    const text = (WHERE[r.where] ?? (() => r.where))(r);
    const b = seen.get(text) ?? { where: r.where, text, workers: [] };
    if (r.worker) b.workers.push(r.worker);
    seen.set(text, b);
  }
  return [...seen.values()].map((b) =>
    el(`span.badge.where-${b.where}`, { dataset: { where: b.where }, title: b.workers.join(', ') || 'no worker holds it' }, b.text));
}

export function mount(root) {
  const state = {
    q: '',
    cursors: [''], // `after` of each page visited, so Prev can go back
    expanded: new Set(),
    prev: new Map(), // id -> {requests, t}: the last poll's counters, for rates
    rates: new Map(),
  };

  // Two banners: one for what the user did (upload, delete), kept until their
  // next action, and one for the poll, which its next success clears.
  const error = el('p.error', { role: 'alert', testid: 'adapters-error', hidden: true });
  const loadError = el('p.error', { role: 'alert', testid: 'adapters-load-error', hidden: true });
  const search = el('input', { type: 'search', placeholder: 'Search names…', testid: 'adapters-search', 'aria-label': 'Search adapters' });
  const total = el('span.muted', { testid: 'adapters-total' });
  const prevBtn = el('button', { type: 'button', testid: 'adapters-prev', disabled: true }, '← Prev');
  const nextBtn = el('button', { type: 'button', testid: 'adapters-next', disabled: true }, 'Next →');
  const pageNo = el('span.muted', { testid: 'adapters-page' });
  const tbody = el('tbody', { testid: 'adapters-body' });
  const table = el('table.table', el('thead', el('tr',
    el('th', ''), el('th', 'Name'), el('th', 'Version'), el('th.num', 'Rank'), el('th', 'Targets'), el('th.num', 'Size'),
    el('th', 'Created'), el('th', 'Residency'), el('th.num', 'Req/s'), el('th.num', 'TTFT p50'), el('th.num', 'E2E p50'), el('th', ''))), tbody);

  root.append(
    el('header.page-head', el('h1', 'Adapters'), el('div.toolbar', search, total)),
    uploadForm(() => poll.now(), error),
    error,
    loadError,
    el('div.card.table-wrap', table),
    el('div.pager', prevBtn, pageNo, nextBtn),
  );

  async function load() {
    const after = state.cursors.at(-1);
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (after) params.set('after', after);
    if (state.q) params.set('q', state.q);
    const list = await api(`/v1/adapters?${params}`);
    // The user paged or searched meanwhile: that answer is on its way (poll.now).
    if (after !== state.cursors.at(-1) || params.get('q') !== (state.q || null)) return;
    // A page emptied by deletes: show the one before it.
    if (!list.data.length && state.cursors.length > 1) {
      state.cursors.pop();
      return load();
    }
    showError(loadError, null);
    updateRates(list.data);
    render(list);
  }

  function updateRates(data) {
    const now = performance.now();
    for (const a of data) {
      const req = a.metrics?.requests ?? 0;
      const p = state.prev.get(a.id);
      if (p && now > p.t) state.rates.set(a.id, Math.max(0, (req - p.requests) / ((now - p.t) / 1000)));
      state.prev.set(a.id, { requests: req, t: now });
    }
  }

  function render(list) {
    total.textContent = `${list.total ?? list.data.length} adapter${list.total === 1 ? '' : 's'}`;
    total.dataset.total = String(list.total ?? list.data.length);
    const first = (state.cursors.length - 1) * PAGE;
    pageNo.textContent = list.data.length ? `${first + 1}–${first + list.data.length}` : '';
    prevBtn.disabled = state.cursors.length === 1;
    nextBtn.disabled = !list.has_more;
    nextBtn.dataset.after = list.last_id ?? '';
    if (!list.data.length) {
      tbody.replaceChildren(el('tr', el('td.empty', { colSpan: 12 },
        state.q ? `No adapter matches “${state.q}”.` : 'No adapters yet: upload one above.')));
      return;
    }
    tbody.replaceChildren(...list.data.flatMap(rows));
  }

  /** An adapter's row, and its versions' rows when expanded. */
  function rows(a) {
    const versions = [...(a.versions ?? [])].sort((x, y) => y.version - x.version);
    const latest = versions[0] ?? {};
    const open = state.expanded.has(a.id);
    const m = a.metrics ?? {};
    const toggle = el('button.icon', {
      type: 'button', testid: 'adapter-expand', 'aria-expanded': String(open),
      title: open ? 'Hide versions' : 'Show all versions', onclick: () => {
        if (open) state.expanded.delete(a.id); else state.expanded.add(a.id);
        poll.now();
      },
    }, open ? '▾' : '▸');
    const del = el('button.danger', {
      type: 'button', testid: 'adapter-delete', onclick: async () => {
        if (!confirm(`Delete ${a.id} and all its versions?`)) return;
        showError(error, null);
        try {
          await api(`/v1/adapters/${encodeURIComponent(a.id)}`, { method: 'DELETE' });
          poll.now();
        } catch (e) { showError(error, e); }
      },
    }, 'Delete');
    const row = el('tr', { testid: 'adapter-row', dataset: { id: a.id } },
      el('td', toggle),
      el('td.name', a.name, el('div.muted.small', a.tenant)),
      el('td', `v${latest.version ?? '?'}`, versions.length > 1 ? el('span.muted.small', ` of ${versions.length}`) : null),
      el('td.num', String(latest.rank ?? '—')),
      el('td.targets', { title: (latest.target_modules ?? []).join(', ') }, targets(latest.target_modules)),
      el('td.num', formatBytes(latest.size_bytes)),
      el('td', formatTime(latest.created)),
      el('td', { testid: 'residency' }, residencyBadges(latest.residency)),
      el('td.num', { testid: 'adapter-rps' }, state.rates.has(a.id) ? formatNum(state.rates.get(a.id), 2) : '—'),
      el('td.num', formatMs(p50(m.ttft_ms))),
      el('td.num', formatMs(p50(m.e2e_ms))),
      el('td', del));
    if (!open) return [row];
    return [row, ...versions.map((v) => el('tr.sub', { testid: 'adapter-version', dataset: { id: v.id } },
      el('td'),
      el('td.mono', v.id),
      el('td', `v${v.version} `, v.pins ? el('span.badge', `${v.pins} pinned`) : null, v.deleting ? el('span.badge.where-failed', 'deleting') : null),
      el('td.num', String(v.rank ?? '—')),
      el('td.targets', { title: (v.target_modules ?? []).join(', ') }, targets(v.target_modules)),
      el('td.num', formatBytes(v.size_bytes)),
      el('td', formatTime(v.created)),
      el('td', residencyBadges(v.residency)),
      el('td.mono.small', { colSpan: 3, title: v.sha256 }, `sha256 ${(v.sha256 ?? '').slice(0, 12)}`),
      el('td')))];
  }

  const poll = poller(load, POLL_MS, (e) => showError(loadError, e));

  search.addEventListener('input', debounce(() => {
    state.q = search.value.trim();
    state.cursors = [''];
    poll.now();
  }, 250));
  // Both wait for the page they asked for (render enables them), so a double
  // click moves one page.
  nextBtn.addEventListener('click', () => {
    if (!nextBtn.dataset.after) return;
    state.cursors.push(nextBtn.dataset.after);
    nextBtn.disabled = prevBtn.disabled = true;
    poll.now();
  });
  prevBtn.addEventListener('click', () => {
    if (state.cursors.length > 1) state.cursors.pop();
    nextBtn.disabled = prevBtn.disabled = true;
    poll.now();
  });

  return () => poll.stop();
}

/** A percentile of a latency summary; none before its first sample (count 0). */
const p50 = (h) => (h && h.count !== 0 ? h.p50 : null);

/** Short module names: q_proj, k_proj, ... -> q k v o gate up down. */
function targets(list = []) {
  return list.map((t) => t.replace(/_proj$/, '')).join(' ') || '—';
}

/**
 * The upload form: a name and the PEFT folder's two files, picked as files
 * or as the folder itself (the files are found in it by name).
 */
function uploadForm(onUploaded, error) {
  const name = el('input', { name: 'name', required: true, placeholder: 'my-adapter', pattern: '[A-Za-z0-9._\\-]+', testid: 'upload-name', 'aria-label': 'Adapter name' });
  const files = el('input', { type: 'file', multiple: true, accept: '.json,.safetensors', testid: 'upload-files', 'aria-label': 'adapter_config.json and adapter_model.safetensors' });
  const folder = el('input', { type: 'file', webkitdirectory: true, testid: 'upload-folder', 'aria-label': 'PEFT adapter folder' });
  const submit = el('button.primary', { type: 'submit', testid: 'upload-submit' }, 'Upload');
  const status = el('span.muted', { testid: 'upload-status', role: 'status' });

  // A picked folder names the adapter unless the user typed a name.
  folder.addEventListener('change', () => {
    const path = folder.files[0]?.webkitRelativePath ?? '';
    if (!name.value && path.includes('/')) name.value = path.split('/')[0].replace(/[^A-Za-z0-9._-]/g, '-');
  });

  const form = el('form.card.upload', { testid: 'upload-form' },
    el('h2', 'Upload a PEFT adapter'),
    el('div.fields',
      el('label', 'Name', name),
      el('label', 'Files', files),
      el('label', 'or a folder', folder),
      el('div.actions', submit, status)),
    el('p.muted.small.hint', 'Pick adapter_config.json and adapter_model.safetensors, or the folder that holds them.'));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(error, null);
    const picked = [...files.files, ...folder.files];
    const find = (n) => picked.find((f) => f.name === n);
    const config = find('adapter_config.json');
    const weights = find('adapter_model.safetensors');
    if (!config || !weights) {
      showError(error, new Error('Pick adapter_config.json and adapter_model.safetensors (or their folder).'));
      return;
    }
    const body = new FormData();
    body.append('name', name.value.trim());
    body.append('adapter_config.json', config, 'adapter_config.json');
    body.append('adapter_model.safetensors', weights, 'adapter_model.safetensors');
    await submitting({ submit, status, error }, async () => {
      status.textContent = `Uploading ${formatBytes(config.size + weights.size)}…`;
      const added = await api('/v1/adapters', { form: body });
      status.textContent = `Added ${added.id}.`;
      form.reset();
      onUploaded();
    });
  });
  return form;
}
