// The console's shell: sign-in, the nav, and hash routing to the pages.
// Each page module exports mount(container) and returns an unmount function
// that stops its polls and streams, so only the page on screen costs anything.

import { api, getKey, setKey, clearKey, setUnauthorizedHandler } from './api.js';
import { $, showError } from './util.js';
import * as adapters from './adapters.js';
import * as live from './live.js';
import * as jobs from './jobs.js';
import * as playground from './playground.js';

const pages = { adapters, live, jobs, playground };
let unmount = null;

function showSignin(message) {
  stopPage();
  document.body.classList.remove('booting');
  $('#app').hidden = true;
  $('#signin').hidden = false;
  showError($('#signin-error'), message ? { message } : null);
  $('#signin-key').focus();
}

function showApp() {
  document.body.classList.remove('booting');
  $('#signin').hidden = true;
  $('#app').hidden = false;
  const key = getKey();
  $('#whoami').textContent = key ? `key …${key.slice(-4)}` : 'no key (open node)';
  if (!pages[routeName()]) location.replace('#/adapters'); // fires hashchange -> route()
  else route();
}

const routeName = () => location.hash.replace(/^#\/?/, '').split(/[/?]/)[0];

function stopPage() {
  if (unmount) unmount();
  unmount = null;
}

function route() {
  if (getKey() === null) return;
  const name = routeName();
  const page = pages[name];
  if (!page) { location.replace('#/adapters'); return; }
  stopPage();
  for (const a of document.querySelectorAll('.nav a')) a.classList.toggle('active', a.dataset.route === name);
  const container = $('#page');
  container.replaceChildren();
  container.dataset.page = name;
  unmount = page.mount(container);
}

/** Checks a key against the node (GET /v1/models) and signs in with it. */
async function signIn(key) {
  const button = $('#signin-form button');
  button.disabled = true;
  try {
    await api('/v1/models', { key });
    setKey(key);
    showApp();
  } catch (e) {
    clearKey();
    showSignin(e.message);
  } finally {
    button.disabled = false;
  }
}

function start() {
  // /?key=KEY signs in with KEY; the key then leaves the URL (history, screen shares).
  const params = new URLSearchParams(location.search);
  if (params.has('key')) {
    setKey(params.get('key'));
    params.delete('key');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
  }

  $('#signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn($('#signin-key').value.trim());
  });
  $('#signout').addEventListener('click', () => {
    clearKey();
    $('#signin-key').value = '';
    showSignin();
  });
  // A key revoked (or a node restarted with other keys) while signed in.
  setUnauthorizedHandler((err) => {
    clearKey();
    showSignin(err.message);
  });
  window.addEventListener('hashchange', route);

  const key = getKey();
  if (key === null) showSignin();
  else signIn(key);
}

start();
