// Playground: chat with a base model, an adapter or a mixture, streamed
// token by token. "Compare" adds a second column with its own model: each
// message then goes to both at once, and each column keeps its own replies.

import { api, events, ApiError } from './api.js';
import { el, formatMs, showError } from './util.js';

export function mount(root) {
  const abort = new AbortController();
  let models = [];
  let busy = 0; // columns still streaming

  const error = el('p.error', { role: 'alert', testid: 'playground-error', hidden: true });
  const temperature = el('input', { type: 'number', min: '0', max: '2', step: '0.1', value: '0.7', testid: 'temperature', 'aria-label': 'Temperature' });
  const maxTokens = el('input', { type: 'number', min: '1', value: '64', testid: 'max-tokens', 'aria-label': 'Max tokens' });
  const compare = el('input', { type: 'checkbox', testid: 'compare-toggle' });
  const clear = el('button', { type: 'button', testid: 'chat-clear' }, 'Clear');
  const input = el('textarea', { rows: 2, placeholder: 'Say something… (Enter sends, Shift+Enter breaks the line)', testid: 'chat-input', 'aria-label': 'Message' });
  const send = el('button.primary', { type: 'submit', testid: 'chat-send' }, 'Send');
  const stop = el('button', { type: 'button', testid: 'chat-stop', hidden: true }, 'Stop');
  let turn = new AbortController(); // the replies in flight, for Stop

  const columns = [column('a'), column('b')];
  columns[1].root.hidden = true;
  const form = el('form.chat-input', { testid: 'chat-form' }, input, el('div.actions', send, stop));

  root.append(
    el('header.page-head', el('h1', 'Playground'), el('div.toolbar',
      el('label.inline', 'Temperature', temperature),
      el('label.inline', 'Max tokens', maxTokens),
      el('label.inline.toggle', compare, 'Compare'),
      clear)),
    error,
    el('div.chat-columns', columns.map((c) => c.root)),
    form,
  );

  /** One chat column: its model picker, its messages, and its history. */
  function column(name) {
    const select = el('select', { testid: `model-${name}`, 'aria-label': `Model ${name.toUpperCase()}` });
    const list = el('div.messages', { testid: `messages-${name}` },
      el('p.muted.empty', 'Pick a model and send a message.'));
    return {
      name, select, list, history: [],
      root: el('section.card.chat-column', { testid: 'chat-column', dataset: { col: name } },
        el('div.column-head', el('strong', name === 'a' ? 'Model' : 'Compare with'), select), list),
    };
  }

  const open = () => columns.filter((c) => !c.root.hidden);

  // Base models, adapters and mixtures, grouped; column A starts on an adapter.
  api('/v1/models', { signal: abort.signal }).then((list) => {
    models = list.data ?? [];
    const groups = [
      ['Base models', models.filter((m) => m.owned_by === 'myriad' && !m.experts)],
      ['Adapters', models.filter((m) => m.parent && !m.experts)],
      ['Mixtures', models.filter((m) => m.experts)],
    ].filter(([, ms]) => ms.length);
    for (const c of columns) {
      c.select.replaceChildren(...groups.map(([label, ms]) =>
        el('optgroup', { label }, ms.map((m) => el('option', { value: m.id }, m.id)))));
    }
    const adapter = models.find((m) => m.parent && !m.experts);
    if (adapter) columns[0].select.value = adapter.id;
  }).catch((e) => { if (!abort.signal.aborted) showError(error, e); });

  compare.addEventListener('change', () => {
    const [a, b] = columns;
    b.root.hidden = !compare.checked;
    // The second column continues the conversation so far, then diverges.
    if (compare.checked) {
      b.history = a.history.map((m) => ({ ...m }));
      b.list.replaceChildren(...b.history.map((m) => bubble(m.role, m.content, 'b').node));
      if (!b.history.length) b.list.replaceChildren(el('p.muted.empty', 'Replies of the second model appear here.'));
    }
    root.classList.toggle('comparing', compare.checked);
  });

  clear.addEventListener('click', () => {
    turn.abort();
    for (const c of columns) {
      c.history = [];
      c.list.replaceChildren(el('p.muted.empty', 'Pick a model and send a message.'));
    }
  });

  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  stop.addEventListener('click', () => turn.abort());

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || busy) return;
    input.value = '';
    showError(error, null);
    turn = new AbortController();
    const signal = AbortSignal.any([abort.signal, turn.signal]);
    const targets = open();
    busy = targets.length;
    send.disabled = true;
    stop.hidden = false;
    for (const c of targets) {
      c.list.querySelector('.empty')?.remove();
      c.history.push({ role: 'user', content: text });
      c.list.append(bubble('user', text).node);
      reply(c, signal).finally(() => {
        if (--busy === 0) { send.disabled = false; stop.hidden = true; input.focus(); }
      });
    }
  });

  /** Streams one column's answer into a new assistant bubble. */
  async function reply(c, signal) {
    const b = bubble('assistant', '', c.name);
    b.node.dataset.state = 'streaming';
    c.list.append(b.node);
    const started = performance.now();
    let firstAt = null;
    let usage = null;
    let finish = null;
    try {
      const stream = events('/v1/chat/completions', {
        signal,
        json: {
          model: c.select.value,
          messages: c.history,
          stream: true,
          temperature: Number(temperature.value),
          max_tokens: Number(maxTokens.value),
          stream_options: { include_usage: true },
        },
      });
      for await (const chunk of stream) {
        if (chunk.error) throw new ApiError(500, chunk.error.message, chunk.error.code);
        if (chunk.experts) b.experts(chunk.experts);
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices?.[0];
        if (choice?.finish_reason) finish = choice.finish_reason;
        const delta = choice?.delta?.content;
        if (delta) {
          firstAt ??= performance.now();
          b.text.appendData(delta); // one small DOM update per token
          c.list.scrollTop = c.list.scrollHeight;
        }
      }
      c.history.push({ role: 'assistant', content: b.text.data });
      b.node.dataset.state = 'done';
      const secs = (performance.now() - started) / 1000;
      b.meta([
        usage ? `${usage.completion_tokens} tokens` : null,
        firstAt ? `first token ${formatMs(firstAt - started)}` : null,
        `${secs.toFixed(2)} s`,
        finish ? `finish: ${finish}` : null,
      ].filter(Boolean).join(' · '));
    } catch (e) {
      if (abort.signal.aborted) return;
      b.node.dataset.state = 'error';
      // A stopped reply keeps what arrived; a failed one says why.
      if (e.name === 'AbortError') {
        c.history.push({ role: 'assistant', content: b.text.data });
        b.meta('stopped');
      } else {
        c.history.pop(); // the user message got no answer: leave it out of the next turn
        b.meta(e.message, true);
      }
    }
  }

  return () => abort.abort();
}

/** A message bubble; an assistant's has room for the mixture's experts and a meta line. */
function bubble(role, content, col) {
  const text = document.createTextNode(content);
  const experts = el('div.experts', { testid: 'experts', hidden: true });
  const meta = el('div.meta.muted.small');
  const node = el(`div.msg.${role}`, role === 'assistant' ? { testid: 'assistant-message', dataset: { col } } : { testid: 'user-message' },
    role === 'assistant' ? experts : null,
    el('div.text', text),
    role === 'assistant' ? meta : null);
  return {
    node,
    text,
    experts(list) {
      experts.hidden = false;
      experts.replaceChildren(el('span.muted.small', 'experts '), ...list.map((x) =>
        el('span.chip', { dataset: { name: x.name } }, `${x.name} `, el('b', (x.weight ?? 0).toFixed(2)))));
    },
    meta(line, isError) {
      meta.textContent = line;
      meta.classList.toggle('error', Boolean(isError));
    },
  };
}
