// Small DOM and formatting helpers shared by the pages.

/**
 * Creates an element: el('td.num', {title: 'x', dataset: {id}}, 'text', child...).
 * A tag may carry classes after dots; props are properties, except `dataset`,
 * `testid` (data-testid) and names with a dash or `aria`, which are attributes.
 */
export function el(tag, props, ...children) {
  if (props === null || typeof props !== 'object' || props instanceof Node || Array.isArray(props)) {
    children.unshift(props);
    props = {};
  }
  const [name, ...classes] = tag.split('.');
  const node = document.createElement(name);
  if (classes.length) node.className = classes.join(' ');
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'testid') node.setAttribute('data-testid', v);
    else if (k.includes('-') || k.startsWith('aria')) node.setAttribute(k, v === true ? '' : v);
    else node[k] = v;
  }
  node.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function formatBytes(n) {
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 || n >= 100 ? 0 : 1)} ${units[i]}`;
}

/** Unix seconds to local date and time. */
export const formatTime = (s) => (s ? new Date(s * 1000).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' }) : '—');

export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${ms >= 100 ? Math.round(ms) : ms.toFixed(1)} ms`;
}

/** A rate or count with at most a few significant digits. */
export function formatNum(x, digits = 1) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 1e6) return `${(x / 1e6).toFixed(1)}M`;
  if (Math.abs(x) >= 1e4) return `${(x / 1e3).toFixed(1)}k`;
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

/** A stable, readable colour for a name (adapters in charts and chips). */
export function colorOf(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 60% 48%)`;
}

/**
 * Calls `fn` now and then again `delay()` ms after each call ends (a number
 * works too); a slow call never overlaps the next, a null delay pauses until
 * `now()`, and errors go to `onError` rather than stopping it.
 */
export function poller(fn, delay, onError = console.error) {
  const next = typeof delay === 'function' ? delay : () => delay;
  let timer = null;
  let running = false;
  let again = false;
  let stopped = false;
  const tick = async () => {
    timer = null;
    running = true;
    try { await fn(); } catch (e) { if (!stopped) onError(e); }
    running = false;
    if (stopped) return;
    const ms = again ? 0 : next();
    again = false;
    if (ms !== null) timer = setTimeout(tick, ms);
  };
  tick();
  return {
    stop() { stopped = true; clearTimeout(timer); },
    // Runs a tick right away (after a change the user made), or right after the one running.
    now() {
      if (stopped) return;
      if (running) { again = true; return; }
      clearTimeout(timer);
      tick();
    },
  };
}

/** Shows an error's message (the node's, for an ApiError) in a banner, or hides the banner for null. */
export function showError(node, err) {
  node.hidden = !err;
  node.textContent = err ? (err.message || String(err)) : '';
}

/**
 * Runs a form's `action`: its submit button disabled meanwhile, the error
 * banner cleared, and on failure the status emptied and the error shown.
 */
export async function submitting({ submit, status, error }, action) {
  submit.disabled = true;
  showError(error, null);
  try {
    await action();
  } catch (err) {
    status.textContent = '';
    showError(error, err);
  } finally {
    submit.disabled = false;
  }
}
