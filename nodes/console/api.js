// The node's HTTP API as the pages use it: the key, JSON calls, and
// server-sent events read through fetch (EventSource cannot send headers).

const KEY = 'myriad.key';

/** The stored key: null when signed out; '' is a valid key for an open node. */
export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (key) => sessionStorage.setItem(KEY, key);
export const clearKey = () => sessionStorage.removeItem(KEY);

/** An HTTP error carrying the OpenAI-shaped body's message. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Set by the shell: what to do when the node answers 401 to a stored key.
let onUnauthorized = () => {};
export const setUnauthorizedHandler = (fn) => { onUnauthorized = fn; };

function headers(extra, key = getKey()) {
  const h = new Headers(extra);
  // An empty key means "no key": an open node needs no header at all.
  if (key) h.set('Authorization', `Bearer ${key}`);
  return h;
}

async function errorOf(res) {
  const text = await res.text().catch(() => '');
  let message = text || res.statusText || `HTTP ${res.status}`;
  let code;
  try {
    const err = JSON.parse(text).error;
    if (err?.message) ({ message, code } = err);
  } catch { /* not JSON: keep the text */ }
  return new ApiError(res.status, message, code);
}

/**
 * Calls the API. `json` sends a JSON body, `form` a FormData (multipart);
 * `key` overrides the stored key (sign-in checks one before storing it);
 * `text` returns the body as text. Throws ApiError on a non-2xx answer.
 */
export async function api(path, { method, json, form, signal, key, text } = {}) {
  const init = { method: method ?? (json || form ? 'POST' : 'GET'), signal };
  if (json !== undefined) {
    init.headers = headers({ 'Content-Type': 'application/json' }, key);
    init.body = JSON.stringify(json);
  } else {
    init.headers = headers({}, key);
    if (form) init.body = form; // the browser sets the multipart boundary
  }
  const res = await fetch(path, init);
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && key === undefined) onUnauthorized(err);
    throw err;
  }
  return text ? res.text() : res.json();
}

/**
 * POSTs (or GETs, without `json`) and yields each `data:` payload of the
 * text/event-stream answer, parsed as JSON, until `[DONE]` or the end.
 */
export async function* events(path, { json, signal } = {}) {
  const init = json === undefined
    ? { headers: headers({ Accept: 'text/event-stream' }), signal }
    : { method: 'POST', headers: headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
        body: JSON.stringify(json), signal };
  const res = await fetch(path, init);
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401) onUnauthorized(err);
    throw err;
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      // Events end with a blank line; a read may hold several, or half of one.
      let end;
      while ((end = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end).replace(/^\r?\n\r?\n/, '');
        const data = block.split(/\r?\n/)
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(l[5] === ' ' ? 6 : 5))
          .join('\n');
        if (!data) continue; // a comment or keep-alive
        if (data === '[DONE]') return;
        yield JSON.parse(data);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
