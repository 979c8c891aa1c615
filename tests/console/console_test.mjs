// The web console (nodes/console) in headless Chromium against a real
// myriad-node on 127.0.0.1: sign-in, tenants kept apart, an upload through
// the page (and a refused one), a reply streamed token by token, two models
// compared, a mixture's experts, a fine-tuning job's loss curve growing while
// it trains (and another cancelled), the live page, and 1,000 adapters paged.
// Screenshots of each page go to MYRIAD_ARTIFACTS.
// Run with node --test; MYRIAD_CLI and MYRIAD_NODE name the built binaries,
// MYRIAD_ARTIFACTS a folder for the screenshots (default: a temporary one),
// CHROMIUM the browser (default /usr/bin/chromium), and MYRIAD_CONSOLE_DIR,
// when set, serves the pages from that folder (--console-dir) instead of the
// copy built into the node.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const cli = process.env.MYRIAD_CLI;
const nodeBin = process.env.MYRIAD_NODE;
assert.ok(cli && nodeBin, 'MYRIAD_CLI and MYRIAD_NODE must name the built binaries');
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
assert.ok(existsSync(chromium), `no browser at ${chromium} (apt-get install chromium, or set CHROMIUM)`);

const dir = mkdtempSync(join(tmpdir(), 'myriad-console-'));
// The node's store fsyncs each adapter it adds: on a disk 1,000 of them take
// 10-30 s, in memory (tmpfs) about 3 s.
const dataDir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'myriad-console-data-'));
const artifacts = process.env.MYRIAD_ARTIFACTS ?? join(dir, 'artifacts');
mkdirSync(artifacts, { recursive: true });
const STEPS = 80; // the fine-tuning job's steps

let server;
let exited;
let base; // http://127.0.0.1:PORT
let browser;
let page;
const pageErrors = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function call(key, path, body) {
  const r = await fetch(`${base}${path}`, {
    method: body ? 'POST' : 'GET',
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  assert.equal(r.status, 200, `${path}: ${text}`);
  return text.startsWith('{') ? JSON.parse(text) : text;
}

const chat = (key, model, maxTokens = 8) => call(key, '/v1/chat/completions', {
  model, messages: [{ role: 'user', content: 'Hello there, how are you?' }], max_tokens: maxTokens, temperature: 1,
});

const shot = (name) => page.screenshot({ path: join(artifacts, name), fullPage: true });

/** The data-id of the adapter rows on screen. */
const rowIds = () => page.$$eval('[data-testid=adapter-row]', (rows) => rows.map((r) => r.dataset.id));

/** Waits until the adapter rows on screen are exactly `ids` (in any order). */
async function waitForRows(ids, timeout = 5000) {
  await page.waitForFunction((want) => {
    const got = [...document.querySelectorAll('[data-testid=adapter-row]')].map((r) => r.dataset.id).sort();
    return JSON.stringify(got) === JSON.stringify(want);
  }, { timeout }, [...ids].sort()).catch(async (e) => {
    throw new Error(`rows ${JSON.stringify(await rowIds())}, want ${JSON.stringify(ids)}: ${e.message}`);
  });
}

/**
 * When `selector` became visible, in ms since the page's navigation started
 * (the page's own clock: what the page costs, not the browser's start-up).
 */
async function visibleAt(selector) {
  const h = await page.waitForFunction((sel) => {
    const e = document.querySelector(sel);
    return e && e.checkVisibility({ visibilityProperty: true }) && performance.now();
  }, {}, selector);
  return h.jsonValue();
}

/** Sets an input's value as a user would (select all, type). */
async function fill(testid, value) {
  const input = await page.$(`[data-testid=${testid}]`);
  await input.click({ clickCount: 3 });
  await input.press('Backspace');
  await input.type(String(value));
}

before(async () => {
  execFileSync(cli, ['make-model', '--shape', 'tiny', '--seed', '1', '--dtype', 'f32', '--out', join(dir, 'tiny')]);
  for (const [name, seed] of [['a', 3], ['b', 4], ['c', 5]]) {
    execFileSync(cli, ['make-adapter', '--model', join(dir, 'tiny'), '--rank', '8', '--seed', String(seed), '--out', join(dir, name)]);
  }
  writeFileSync(join(dir, 'keys.json'), JSON.stringify({
    'alpha-key': 'alpha', 'beta-key': 'beta', 'gamma-key': 'gamma', 'ops-key': { tenant: 'ops', admin: true },
  }));
  const args = ['--model', join(dir, 'tiny'), '--data', dataDir, '--http', '127.0.0.1:0', '--rpc', '127.0.0.1:0',
    '--api-keys', join(dir, 'keys.json'), '--slots', '2', '--threads', '1', '--log-level', 'warn'];
  if (process.env.MYRIAD_CONSOLE_DIR) args.push('--console-dir', process.env.MYRIAD_CONSOLE_DIR);
  const started = await startNode(args, /on (http:\/\/127\.0\.0\.1:\d+)/);
  server = started.p;
  base = started.m[1];
  exited = started.exited;
  // alpha's "chat"; beta's "chat" (the same name, other weights) and "secret".
  await call('alpha-key', '/v1/adapters', { name: 'chat', path: join(dir, 'a') });
  await call('beta-key', '/v1/adapters', { name: 'chat', path: join(dir, 'b') });
  await call('beta-key', '/v1/adapters', { name: 'secret', path: join(dir, 'b') });

  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${join(dir, 'chromium')}`],
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 860 });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => d.accept()); // the Delete button's confirm()
  console.log(`# screenshots in ${artifacts}`);
});

after(async () => {
  await browser?.close().catch(() => {});
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGTERM');
    const done = await Promise.race([exited, sleep(5000).then(() => null)]);
    if (!done) server.kill('SIGKILL');
  }
  rmSync(dataDir, { recursive: true, force: true });
  // Everything but the screenshots (which stay in dir/artifacts unless MYRIAD_ARTIFACTS named a folder).
  for (const f of ['tiny', 'a', 'b', 'c', 'broken', 'mix', 'chromium', 'keys.json', 'train.jsonl', 'valid.jsonl', 'corpus.jsonl']) rmSync(join(dir, f), { recursive: true, force: true });
  if (process.env.MYRIAD_ARTIFACTS) rmSync(dir, { recursive: true, force: true });
  else console.log(`# screenshots left in ${artifacts}`);
});

test('GET / is the sign-in page, and it shows in under a second', async () => {
  const r = await fetch(`${base}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/html/);
  const html = await r.text();
  assert.match(html, /data-testid="signin-form"/);
  assert.match(html, /data-testid="signin-key"/);
  assert.match(html, /src="\/console\/console\.js"/);
  const js = await fetch(`${base}/console/console.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /javascript/);

  const t0 = performance.now();
  await page.goto(`${base}/`);
  const ms = await visibleAt('[data-testid=signin-key]');
  console.log(`# sign-in form visible ${ms.toFixed(0)} ms after the navigation started (${(performance.now() - t0).toFixed(0)} ms here)`);
  assert.ok(ms < 1000, `the sign-in form took ${ms.toFixed(0)} ms`);
  assert.equal(await page.$('#app:not([hidden])'), null, 'the console shows before sign-in');

  // A wrong key stays on the form with the node's message.
  await fill('signin-key', 'not-a-key');
  await page.click('[data-testid=signin-submit]');
  await page.waitForSelector('[data-testid=signin-error]', { visible: true });
  assert.match(await page.$eval('[data-testid=signin-error]', (e) => e.textContent), /invalid API key/i);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('myriad.key')), null);
  await fill('signin-key', '');
  await shot('signin.png');
});

test('each tenant sees its own adapters: the form, ?key= and sign-out', async () => {
  await fill('signin-key', 'alpha-key');
  await page.click('[data-testid=signin-submit]');
  await page.waitForSelector('[data-testid=adapter-row]');
  assert.match(page.url(), /#\/adapters$/);
  await waitForRows(['alpha/chat']);
  assert.equal(await page.$eval('[data-testid=adapters-total]', (e) => e.dataset.total), '1');

  await page.goto(`${base}/?key=beta-key`);
  await page.waitForSelector('[data-testid=adapter-row]');
  await waitForRows(['beta/chat', 'beta/secret']);
  assert.ok(!page.url().includes('key='), `the key stays in the URL: ${page.url()}`);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('myriad.key')), 'beta-key');

  await page.click('[data-testid=signout]');
  await page.waitForSelector('[data-testid=signin-key]', { visible: true });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('myriad.key')), null);
  await fill('signin-key', 'alpha-key');
  await page.click('[data-testid=signin-submit]');
  await waitForRows(['alpha/chat']);
});

test('an adapter uploaded through the page is listed, shows where it lives, and deletes', async () => {
  await fill('upload-name', 'uploaded');
  const files = await page.$('[data-testid=upload-files]');
  await files.uploadFile(join(dir, 'c', 'adapter_config.json'), join(dir, 'c', 'adapter_model.safetensors'));
  await page.click('[data-testid=upload-submit]');
  await page.waitForFunction(() => /Added alpha\/uploaded@1/.test(document.querySelector('[data-testid=upload-status]').textContent));
  await waitForRows(['alpha/chat', 'alpha/uploaded']);
  const row = '[data-testid=adapter-row][data-id="alpha/uploaded"]';
  assert.equal(await page.$eval(`${row} [data-testid=residency]`, (e) => e.textContent), 'store');

  // A request loads it into a slot; the next poll (every 2 s) shows it there,
  // and a request rate above 0 (its counter moved between two polls).
  await chat('alpha-key', 'uploaded', 4);
  await Promise.all([
    page.waitForSelector(`${row} [data-testid=residency] [data-where=slot]`, { timeout: 5000 }),
    page.waitForFunction((sel) => Number(document.querySelector(sel)?.textContent) > 0, { timeout: 5000 },
      `${row} [data-testid=adapter-rps]`),
  ]);
  await page.click(`${row} [data-testid=adapter-expand]`);
  await page.waitForSelector('[data-testid=adapter-version][data-id="alpha/uploaded@1"]');
  await shot('adapters.png');

  // A file the node refuses: its message shows on the page, and nothing is added.
  mkdirSync(join(dir, 'broken'));
  writeFileSync(join(dir, 'broken', 'adapter_model.safetensors'), 'not a safetensors file');
  await fill('upload-name', 'broken');
  await files.uploadFile(join(dir, 'c', 'adapter_config.json'), join(dir, 'broken', 'adapter_model.safetensors'));
  await page.click('[data-testid=upload-submit]');
  await page.waitForSelector('[data-testid=adapters-error]', { visible: true });
  assert.match(await page.$eval('[data-testid=adapters-error]', (e) => e.textContent), /safetensors/);
  assert.deepEqual((await rowIds()).sort(), ['alpha/chat', 'alpha/uploaded']);

  await page.click(`${row} [data-testid=adapter-delete]`);
  await waitForRows(['alpha/chat']);
  const models = (await call('alpha-key', '/v1/models')).data.map((m) => m.id);
  assert.ok(!models.includes('alpha/uploaded'), JSON.stringify(models));
});

test('the playground streams a reply token by token, compares two models, and shows a mixture\'s experts', async () => {
  // A mixture of two experts (myriad moe create: a second on this tiny corpus), routed top-2.
  execFileSync(cli, ['moe', 'corpus', '--per-domain', '10', '--out', join(dir, 'corpus.jsonl')]);
  execFileSync(cli, ['moe', 'create', '--model', join(dir, 'tiny'), '--corpus', join(dir, 'corpus.jsonl'), '--k', '2',
    '--steps', '5', '--threads', '1', '--top-k', '2', '--temperature', '1', '--out', join(dir, 'mix')], { stdio: 'pipe' });
  await call('alpha-key', '/v1/mixtures', { name: 'mix', path: join(dir, 'mix') });

  await page.click('[data-testid=nav-playground]');
  await page.waitForSelector('[data-testid=model-a] option[value="alpha/chat"]');
  await page.select('[data-testid=model-a]', 'alpha/chat');
  await fill('max-tokens', 24);
  await fill('temperature', 1);
  // Every change to the reply's text, as the page makes it: each token appends
  // to one text node, so each intermediate length is a mutation's old value.
  await page.evaluate(() => {
    window.__lengths = [];
    window.__batches = 0;
    new MutationObserver((records) => {
      window.__batches++;
      for (const r of records) if (r.type === 'characterData') window.__lengths.push(r.oldValue.length);
    }).observe(document.querySelector('[data-testid=messages-a]'), { subtree: true, characterData: true, characterDataOldValue: true });
  });
  // A random tiny model (sampling at temperature 1 from a fresh seed) may end a
  // reply at once with its end token, or after two tokens, too short to show
  // growth: ask again then. A page that does not stream fails every attempt.
  let text = '';
  let lengths = [];
  const grewEnough = () => new Set(lengths.filter((n) => n > 0 && n < text.length)).size >= 2;
  for (let attempt = 0; attempt < 5 && (text.length < 3 || !grewEnough()); attempt++) {
    await page.evaluate(() => { window.__lengths = []; });
    await fill('chat-input', 'Hello there, how are you?');
    await page.click('[data-testid=chat-send]');
    await page.waitForFunction(() => {
      const m = [...document.querySelectorAll('[data-testid=assistant-message][data-col=a]')].at(-1);
      return m && m.dataset.state !== 'streaming';
    }, { timeout: 15000 });
    const last = await page.$$eval('[data-testid=assistant-message][data-col=a]', (ms) => {
      const m = ms.at(-1);
      return { state: m.dataset.state, text: m.querySelector('.text').textContent, meta: m.querySelector('.meta').textContent };
    });
    assert.equal(last.state, 'done', JSON.stringify(last));
    text = last.text;
    lengths = await page.evaluate(() => window.__lengths);
  }
  const intermediate = new Set(lengths.filter((n) => n > 0 && n < text.length));
  console.log(`# reply of ${text.length} chars in ${lengths.length} text updates (${await page.evaluate(() => window.__batches)} observer batches)`);
  assert.ok(text.length >= 3, `the reply stayed short: ${JSON.stringify(text)}`);
  assert.ok(intermediate.size >= 2, `the reply did not grow token by token: lengths ${JSON.stringify(lengths)}, final ${text.length}`);
  await shot('playground.png');
  // The turns so far (one, or more when a reply ended at once and was asked again).
  const turns = await page.$$eval('[data-testid=messages-a] [data-testid=user-message]', (m) => m.length);

  // Compare: the same message to alpha/chat and to the base model at once.
  await page.click('[data-testid=compare-toggle]');
  await page.waitForSelector('[data-testid=model-b]', { visible: true });
  await page.select('[data-testid=model-b]', 'tiny');
  await page.evaluate(() => {
    window.__streaming = 0;
    new MutationObserver(() => {
      window.__streaming = Math.max(window.__streaming, document.querySelectorAll('[data-testid=assistant-message][data-state=streaming]').length);
    }).observe(document.querySelector('.chat-columns'), { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
  });
  await fill('chat-input', 'Tell me more.');
  await page.click('[data-testid=chat-send]');
  await page.waitForFunction(() => {
    const done = (col) => {
      const m = [...document.querySelectorAll(`[data-testid=assistant-message][data-col=${col}]`)].at(-1);
      return m && m.dataset.state === 'done';
    };
    return done('a') && done('b') && !document.querySelector('[data-state=streaming]');
  }, { timeout: 15000 });
  assert.equal(await page.evaluate(() => window.__streaming), 2, 'the two replies did not stream at the same time');
  // Both columns hold the whole conversation: the earlier turns and this one, each with its reply.
  for (const col of ['a', 'b']) {
    assert.equal(await page.$$eval(`[data-testid=messages-${col}] [data-testid=user-message]`, (m) => m.length), turns + 1, col);
    assert.equal(await page.$$eval(`[data-testid=messages-${col}] [data-testid=assistant-message]`, (m) => m.length), turns + 1, col);
  }
  await shot('playground-compare.png');

  // The mixture's experts and their weights show above its answer.
  await page.click('[data-testid=compare-toggle]');
  await page.select('[data-testid=model-a]', 'alpha/mix');
  await fill('chat-input', 'My invoice is wrong, please help.');
  await page.click('[data-testid=chat-send]');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=assistant-message][data-col=a]')].at(-1).dataset.state !== 'streaming',
    { timeout: 15000 });
  const experts = await page.$$eval('[data-testid=assistant-message][data-col=a]', (ms) =>
    [...ms.at(-1).querySelectorAll('[data-testid=experts] .chip')].map((c) => ({ name: c.dataset.name, weight: Number(c.querySelector('b').textContent) })));
  assert.deepEqual(experts.map((e) => e.name).sort(), ['expert-0', 'expert-1'], JSON.stringify(experts));
  assert.ok(Math.abs(experts[0].weight + experts[1].weight - 1) < 0.02, JSON.stringify(experts));
  await shot('playground-mixture.png');
});

test('a fine-tuning job from the page: its loss curve grows while it runs, then it publishes', async () => {
  // Long enough examples that a step takes a while (the chart polls every 2 s).
  const lines = [];
  for (let i = 0; i < 20; i++) {
    const p = String.fromCharCode(97 + (i * 7) % 26, 97 + (i * 3) % 26, 97 + (i * 11) % 26);
    lines.push(JSON.stringify({ prompt: `Shout this back: ${p} `.repeat(5), completion: `${p.toUpperCase()} `.repeat(5) }));
  }
  writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  writeFileSync(join(dir, 'valid.jsonl'), lines.slice(0, 4).join('\n') + '\n');

  await page.click('[data-testid=nav-jobs]');
  await page.waitForSelector('[data-testid=job-model] option[value=tiny]');
  const file = await page.$('[data-testid=job-file]');
  await file.uploadFile(join(dir, 'train.jsonl'));
  await page.$('[data-testid=job-validation-file]').then((f) => f.uploadFile(join(dir, 'valid.jsonl')));
  await page.select('[data-testid=job-model]', 'tiny');
  await fill('job-suffix', 'caps');
  await fill('job-steps', STEPS);
  await fill('job-lr', 0.002);
  await fill('job-rank', 8);
  await page.click('[data-testid=job-submit]');
  await page.waitForSelector('[data-testid=job-row]', { timeout: 5000 });
  await page.waitForSelector('[data-testid=job-detail]:not([hidden]) [data-testid=loss-chart]');

  // Watch the selected job's status and the chart's points until it ends.
  const seen = [];
  const t0 = performance.now();
  for (;;) {
    const o = await page.evaluate(() => ({
      status: document.querySelector('[data-testid=job-row]')?.dataset.status,
      points: Number(document.querySelector('[data-testid=loss-chart]').dataset.points),
    }));
    seen.push(o);
    if (!['queued', 'running', 'validating_files'].includes(o.status)) break;
    assert.ok(performance.now() - t0 < 60000, `the job still ${o.status} after 60 s`);
    await sleep(200);
  }
  const running = seen.filter((o) => o.status === 'running' && o.points > 0).map((o) => o.points);
  console.log(`# loss chart points while running: ${[...new Set(running)].join(', ')}; job took ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  assert.ok(running.length >= 2 && running.at(-1) > running[0],
    `the loss chart did not grow while the job ran: ${JSON.stringify(seen.filter((o, i) => i === 0 || o.points !== seen[i - 1].points || o.status !== seen[i - 1].status))}`);
  assert.equal(seen.at(-1).status, 'succeeded');
  // The last refresh reads the whole loss.csv: one point per step.
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid=loss-chart]').dataset.points) === n, { timeout: 5000 }, STEPS);
  // The validation file's loss at each published version: a second series.
  assert.match(await page.$eval('[data-testid=loss-chart]', (c) => c.textContent), /eval loss/);
  const versions = await page.$$eval('[data-testid=job-row] [data-testid=job-versions] .badge.version', (b) => b.map((x) => x.textContent));
  assert.ok(versions.length >= 1 && versions.every((v) => v.startsWith('alpha/caps@')), JSON.stringify(versions));
  assert.match(await page.$eval('[data-testid=job-row]', (r) => r.textContent), /alpha\/caps/);
  assert.ok(await page.$$eval('[data-testid=job-events] li', (l) => l.length) > 0, 'no events listed');
  await shot('jobs.png');

  // A long job, cancelled from its row.
  await page.$('[data-testid=job-file]').then((f) => f.uploadFile(join(dir, 'train.jsonl')));
  await fill('job-suffix', 'long');
  await fill('job-steps', 100000);
  await page.click('[data-testid=job-submit]');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=job-row]').length === 2);
  const longRow = '[data-testid=job-row]:first-child';
  assert.match(await page.$eval(longRow, (r) => r.textContent), /long/);
  await page.waitForSelector(`${longRow} [data-testid=job-cancel]`);
  await page.click(`${longRow} [data-testid=job-cancel]`);
  await page.waitForSelector(`${longRow}[data-status=cancelled]`, { timeout: 10000 });
  assert.equal(await page.$(`${longRow} [data-testid=job-cancel]`), null, 'a cancelled job keeps its Cancel button');
});

test('the live page charts throughput and shows the active set', async () => {
  await page.click('[data-testid=nav-live]');
  await page.waitForSelector('[data-testid=worker-card]', { timeout: 5000 });
  // A few requests spread over two snapshots, so there is a rate to chart.
  for (let i = 0; i < 4; i++) {
    await chat('alpha-key', 'chat', 16);
    await sleep(400);
  }
  // Two rates at least (three snapshots), one of them above 0.
  await page.waitForFunction(() => {
    const svg = document.querySelector('[data-testid=chart-tokens]');
    return Number(svg.dataset.max) > 0 && Number(svg.dataset.points) >= 2;
  }, { timeout: 5000 });
  assert.ok(await page.$eval('[data-testid=chart-tokens] path[data-series]', (p) => p.getAttribute('d').length) > 0);
  const chips = await page.$$eval('[data-testid=active-set] [data-testid=slot-chip]', (c) => c.map((x) => x.textContent));
  assert.ok(chips.some((c) => c.startsWith('alpha/chat')), `active set: ${JSON.stringify(chips)}`);
  assert.ok(!chips.some((c) => c.startsWith('beta/')), `another tenant's adapter by name: ${JSON.stringify(chips)}`);
  assert.ok(Number(await page.$eval('[data-testid=chart-active]', (s) => s.dataset.rows)) >= 1);
  await sleep(1200); // one more snapshot, so the charts have a few points in the screenshot
  await shot('live.png');

  // Leaving the page ends its stream (the fetch is aborted).
  const closed = new Promise((resolve) => page.on('requestfailed', (r) => {
    if (r.url().includes('/v1/console/live')) resolve(r.failure()?.errorText);
  }));
  await page.click('[data-testid=nav-adapters]');
  const why = await Promise.race([closed, sleep(3000).then(() => 'still open')]);
  assert.match(why, /ABORTED/, `the live stream after leaving the page: ${why}`);
});

test('1,000 adapters: the first page shows quickly, with the total, and pages', async () => {
  // One folder under 1,000 names (the store keeps its bytes once), 8 at a time.
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < 1000) {
      const name = `n${String(next++).padStart(4, '0')}`;
      await call('gamma-key', '/v1/adapters', { name, path: join(dir, 'a') });
    }
  }));
  console.log(`# registered 1,000 adapters in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const t1 = performance.now();
  await page.goto(`${base}/?key=gamma-key`);
  const ms = await page.waitForFunction(
    () => document.querySelectorAll('[data-testid=adapter-row]').length === 50 && performance.now()).then((h) => h.jsonValue());
  console.log(`# first page of 1,000 adapters ${ms.toFixed(0)} ms after the navigation started (${(performance.now() - t1).toFixed(0)} ms here)`);
  assert.ok(ms < 1000, `the first page took ${ms.toFixed(0)} ms`);
  assert.equal(await page.$eval('[data-testid=adapters-total]', (e) => e.dataset.total), '1000');
  assert.equal((await rowIds())[0], 'gamma/n0000');

  await page.click('[data-testid=adapters-next]');
  await page.waitForFunction(() => document.querySelector('[data-testid=adapter-row]')?.dataset.id === 'gamma/n0050');
  assert.equal((await rowIds()).at(-1), 'gamma/n0099');
  await page.click('[data-testid=adapters-prev]');
  await page.waitForFunction(() => document.querySelector('[data-testid=adapter-row]')?.dataset.id === 'gamma/n0000');

  await page.type('[data-testid=adapters-search]', 'n09');
  await page.waitForFunction(() => document.querySelector('[data-testid=adapters-total]').dataset.total === '100');
  assert.equal((await rowIds())[0], 'gamma/n0900');
  await shot('adapters-1000.png');
});

/**
 * Spawns myriad-node with `args`; resolves once `pattern` shows on its
 * stdout with the process, the match, and a promise of its exit.
 */
async function startNode(args, pattern) {
  const p = spawn(nodeBin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })));
  let out = '';
  const m = await new Promise((resolve, reject) => {
    p.stdout.on('data', (d) => {
      out += d.toString();
      const found = out.match(pattern);
      if (found) resolve(found);
    });
    p.on('exit', () => reject(new Error(`myriad-node ${args.join(' ')} exited early: ${out}`)));
  });
  return { p, m, exited };
}

test('a cluster: the live page charts each worker beside the total', async () => {
  // A gateway (no engine of its own) and two workers that join it.
  const clusterData = mkdtempSync(join(dataDir, 'cluster-'));
  const gw = await startNode(['--role', 'gateway', '--model', join(dir, 'tiny'), '--data', clusterData,
    '--http', '127.0.0.1:0', '--rpc', '127.0.0.1:0', '--cluster', '127.0.0.1:0', '--log-level', 'warn'],
  /on (http:\/\/127\.0\.0\.1:\d+)[\s\S]*workers join on (127\.0\.0\.1:\d+)/);
  const [gwUrl, join_] = [gw.m[1], gw.m[2]];
  // The workers' logs (info: joining, retries) are printed if the test fails
  // (the gateway's stderr is the test's own).
  const logs = { w0: '', w1: '' };
  const workers = ['w0', 'w1'].map((id) => {
    const w = spawn(nodeBin, ['--role', 'worker', '--join', join_, '--model', join(dir, 'tiny'),
      '--threads', '1', '--slots', '2', '--worker-id', id, '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
    w.stderr.on('data', (d) => { logs[id] += d; });
    w.on('exit', (code, signal) => { logs[id] += `\n[exited: ${code ?? signal}]`; });
    return w;
  });
  try {
    const get = async (path) => (await fetch(`${gwUrl}${path}`)).json();
    for (let i = 0; i < 100 && (await get('/admin/cluster')).workers?.filter((w) => w.up).length !== 2; i++) await sleep(100);
    for (const [name, folder] of [['x', 'a'], ['y', 'b'], ['z', 'c']]) {
      const r = await fetch(`${gwUrl}/v1/adapters`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, path: join(dir, folder) }) });
      assert.equal(r.status, 200, await r.text());
    }
    await page.goto(`${gwUrl}/?key=any#/live`);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=worker-card]').length === 2, { timeout: 10000 });
    // Load for a few seconds: three adapters over two workers.
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        await Promise.all(['x', 'y', 'z', 'tiny'].map((model) => fetch(`${gwUrl}/v1/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model, prompt: `request ${i}`, max_tokens: 48, ignore_eos: true }),
        }).then((r) => r.text())));
      }
    })();
    // One line per worker beside the total.
    await page.waitForFunction(() => {
      return document.querySelectorAll('[data-testid=chart-tokens] path[data-series]').length === 3 &&
        Number(document.querySelector('[data-testid=chart-tokens]').dataset.points) >= 3;
    }, { timeout: 15000 });
    await sleep(2500);
    stop = true;
    await load;
    const series = await page.$$eval('[data-testid=chart-tokens] path[data-series]', (ps) => ps.map((p) => p.dataset.series));
    assert.deepEqual(series.sort(), ['all workers', 'w0', 'w1']);
    // The totals the page charts are the workers' (the gateway runs no engine).
    const live = await (async () => {
      const r = await fetch(`${gwUrl}/v1/console/live`);
      const reader = r.body.getReader();
      let text = '';
      while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
      reader.cancel();
      return JSON.parse(text.slice(text.indexOf('data: ') + 6, text.indexOf('\n\n')));
    })();
    const perWorker = live.workers.map((w) => w.output_tokens);
    assert.ok(perWorker.every((t) => t > 0), `each worker served: ${JSON.stringify(perWorker)}`);
    assert.equal(live.totals.output_tokens, perWorker[0] + perWorker[1]);
    // Latency: each worker's own p50 and p99 (the gateway has no percentiles of its own).
    const ttft = await page.$$eval('[data-testid=chart-ttft] path[data-series]', (ps) => ps.map((p) => p.dataset.series).sort());
    assert.deepEqual(ttft, ['w0 p50', 'w0 p99', 'w1 p50', 'w1 p99']);
    assert.ok(live.totals.slot_loads >= 3, `slot loads over the workers: ${live.totals.slot_loads}`);
    const cards = await page.$$eval('[data-testid=worker-card]', (cs) => cs.map((c) => c.dataset.id).sort());
    assert.deepEqual(cards, ['w0', 'w1']);
    await shot('live-cluster.png');
    await page.goto(`${base}/#/adapters`);
  } catch (e) {
    for (const [who, text] of Object.entries(logs)) console.log(`# ${who}'s log:\n${text.split('\n').slice(-30).map((l) => `#   ${l}`).join('\n')}`);
    throw e;
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    gw.p.kill('SIGKILL');
  }
});

test('no script errors on any page, and SIGTERM stops the node', async () => {
  assert.deepEqual(pageErrors, []);
  server.kill('SIGTERM');
  const done = await Promise.race([exited, sleep(10000).then(() => null)]);
  assert.ok(done, 'myriad-node did not exit within 10 s of SIGTERM');
  assert.equal(done.code, 0);
});
